"""Training trajectories: the checkpoints of an encoder/decoder pair in training order, per task,
with each architecture's score and interval, the gap and where its sign changes.

A comparison row whose models ran at two or more revisions (``--revisions``) is a trajectory; its
row label without ``@revision`` names it. Scores come from the report's best configuration per
model, revision and task (x100); intervals and the gap's paired test from its significance table
(so a checkpoint is compared with the same examples on both sides). Where every checkpoint of a
trajectory knows its tokens seen (the record's ``trajectory``, harness/revisions.py), that is the
axis; otherwise the training order is.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.report.frame import GEN_AVG, GLUE_AVG, RET_AVG, row_label, task_order
from harness.revisions import training_key

COLUMNS = ["pair", "model", "model_name", "architecture", "revision", "order", "phase", "tokens_seen", "tokens_source",
           "task", "score", "lo", "hi", "gap", "gap_lo", "gap_hi", "row"]
CROSSING_COLUMNS = ["pair", "task", "before", "after", "x", "tokens_seen", "band_from", "band_to", "from_leader",
                    "to_leader", "certain"]
AVERAGES = (GLUE_AVG, GEN_AVG, RET_AVG)


def _place(frame: pd.DataFrame) -> dict:
    """(model, revision) -> the record's trajectory dict (phase, tokens_seen, tokens_source)."""
    if "trajectory" not in frame:
        return {}
    return {(m, r): t for m, r, t in zip(frame["model"], frame["revision"], frame["trajectory"])
            if isinstance(t, dict) and isinstance(r, str)}


def trajectory_frame(report) -> pd.DataFrame:
    """One row per model, revision and task (and GLUE/generative/retrieval average) of every
    trajectory, in training order: tokens seen, score and interval (x100), the gap at that
    checkpoint and its interval."""
    best = report.best
    if best.empty or "revision" not in best or not best["revision"].notna().any():
        return pd.DataFrame(columns=COLUMNS)
    best = best[best["revision"].notna()].copy()
    # the row without its revision, keeping the protocol tag rows_apart adds where a task ran under
    # several protocols: scores of different protocols never share a curve
    best["pair"] = [row_label({**r, "revision": None}) + r["row"][len(row_label(r)):] for r in best.to_dict("records")]
    many = best.groupby("pair")["revision"].nunique()
    best = best[best["pair"].isin(many[many >= 2].index)]
    if best.empty:
        return pd.DataFrame(columns=COLUMNS)
    place = _place(report.frame)
    sig = {} if report.significance is None else {(r["row"], r["task"]): r
                                                    for r in report.significance.to_dict("records")}
    rows = []
    for r in best.to_dict("records"):
        s = sig.get((r["row"], r["task"]), {})
        arch = r["architecture"]
        rows.append({**_position(r, place), "task": r["task"], "score": 100 * r["score"],
                     "lo": s.get(f"{arch}_lo"), "hi": s.get(f"{arch}_hi"),
                     "gap": s.get("gap"), "gap_lo": s.get("gap_lo"), "gap_hi": s.get("gap_hi")})
    rows += _averages(report, best, place)
    out = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("lo", "hi", "gap", "gap_lo", "gap_hi", "tokens_seen"):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    _fill_gaps(out)
    rank = {t: i for i, (_, t) in enumerate(task_order(best))}
    rank.update({a: len(rank) + i for i, a in enumerate(AVERAGES)})
    out["_task"] = out["task"].map(rank)
    return out.sort_values(["pair", "_task", "architecture", "order"]).drop(columns="_task").reset_index(drop=True)


def _position(r: dict, place: dict) -> dict:
    where = place.get((r["model"], r["revision"]), {})
    return {"pair": r["pair"], "model": r["model"], "model_name": r["model_name"], "architecture": r["architecture"],
            "revision": r["revision"], "order": training_key(r["revision"]), "phase": where.get("phase"),
            "tokens_seen": where.get("tokens_seen"), "tokens_source": where.get("tokens_source"), "row": r["row"]}


def _averages(report, best: pd.DataFrame, place: dict) -> list[dict]:
    """The comparison table's group averages of each checkpoint (no interval: several tasks)."""
    table, rows = report.table, []
    for avg in AVERAGES:
        for r in best.drop_duplicates(["row", "architecture"]).to_dict("records"):
            if (avg, r["architecture"]) not in table.columns or r["row"] not in table.index:
                continue
            value = table.at[r["row"], (avg, r["architecture"])]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            gap = table.at[r["row"], (avg, "gap")] if (avg, "gap") in table.columns else None
            rows.append({**_position(r, place), "task": avg, "score": float(value), "gap": gap})
    return rows


def _fill_gaps(out: pd.DataFrame) -> None:
    """The gap of a checkpoint without a paired test: encoder minus decoder score, no interval;
    the training order as a whole number per pair."""
    wide = out.pivot_table(index=["pair", "revision", "task"], columns="architecture", values="score", aggfunc="first")
    for i in out.index[out["gap"].isna()]:
        key = (out.at[i, "pair"], out.at[i, "revision"], out.at[i, "task"])
        if key in wide.index and {"encoder", "decoder"} <= set(wide.columns):
            out.at[i, "gap"] = wide.at[key, "encoder"] - wide.at[key, "decoder"]
    for pair, group in out.groupby("pair"):
        ranks = {rev: k for k, rev in enumerate(sorted(group["revision"].unique(), key=training_key))}
        out.loc[group.index, "order"] = [ranks[rev] for rev in group["revision"]]
    out["order"] = out["order"].astype(int)


def uses_tokens(traj: pd.DataFrame) -> bool:
    """Whether a trajectory's checkpoints all know their tokens seen (else it is plotted by order)."""
    return bool(len(traj)) and traj["tokens_seen"].notna().all() and (traj["tokens_seen"] > 0).all()


def axis_of(traj: pd.DataFrame) -> pd.Series:
    """Each row's x: log10 tokens seen, or the training order."""
    return np.log10(traj["tokens_seen"].astype(float)) if uses_tokens(traj) else traj["order"].astype(float)


def gap_series(traj: pd.DataFrame) -> pd.DataFrame:
    """Per pair, task and checkpoint (both architectures present): x, gap and its interval."""
    rows = []
    for pair, group in traj.groupby("pair", sort=False):
        group = group.assign(x=axis_of(group))
        both = group.groupby(["task", "revision"])["architecture"].nunique()
        group = group[[both.get((t, r), 0) == 2 for t, r in zip(group["task"], group["revision"])]]
        rows.append(group[group["architecture"] == "encoder"][
            ["pair", "task", "revision", "order", "tokens_seen", "x", "gap", "gap_lo", "gap_hi"]])
    if not rows:
        return pd.DataFrame(columns=["pair", "task", "revision", "order", "tokens_seen", "x", "gap", "gap_lo", "gap_hi"])
    return pd.concat(rows).sort_values(["pair", "task", "order"]).reset_index(drop=True)


def _significant(lo, hi) -> bool:
    return not (pd.isna(lo) or pd.isna(hi)) and (lo > 0 or hi < 0)


def _leader(gap: float) -> str:
    return "encoder" if gap > 0 else "decoder"


def crossings(traj: pd.DataFrame) -> pd.DataFrame:
    """Where the encoder-minus-decoder gap changes sign between consecutive checkpoints: the point
    (linear in the axis between them), and its uncertainty band, from the last checkpoint before
    whose gap interval excludes zero to the first one after (the checkpoints themselves where no
    interval exists). ``certain``: both ends of the band are significant, on opposite sides."""
    rows = []
    for (pair, task), s in gap_series(traj).groupby(["pair", "task"], sort=False):
        s = s[s["gap"].notna()].reset_index(drop=True)
        for i in range(len(s) - 1):
            a, b = s.loc[i], s.loc[i + 1]
            if a["gap"] * b["gap"] >= 0:
                continue
            t = a["gap"] / (a["gap"] - b["gap"])
            x = a["x"] + t * (b["x"] - a["x"])
            left = max((j for j in range(i + 1) if _significant(s.at[j, "gap_lo"], s.at[j, "gap_hi"])), default=None)
            right = min((j for j in range(i + 1, len(s)) if _significant(s.at[j, "gap_lo"], s.at[j, "gap_hi"])),
                        default=None)
            rows.append({"pair": pair, "task": task, "before": a["revision"], "after": b["revision"], "x": x,
                         "tokens_seen": 10 ** x if uses_tokens(traj[traj["pair"] == pair]) else None,
                         "band_from": s.at[left if left is not None else i, "x"],
                         "band_to": s.at[right if right is not None else i + 1, "x"],
                         "from_leader": _leader(a["gap"]), "to_leader": _leader(b["gap"]),
                         "certain": left is not None and right is not None
                         and s.at[left, "gap"] * s.at[right, "gap"] < 0})
    return pd.DataFrame(rows, columns=CROSSING_COLUMNS)


def trajectory_csv_frame(traj: pd.DataFrame) -> pd.DataFrame:
    """trajectory.csv: one row per model, revision and task in training order."""
    return traj.drop(columns=["row"]).sort_values(["pair", "architecture", "task", "order"], kind="stable")


def final_rows(traj: pd.DataFrame) -> dict:
    """pair -> the comparison row of its last checkpoint (the per-size comparison it links to)."""
    last = traj.sort_values("order").groupby("pair").tail(1)
    return dict(zip(last["pair"], last["row"]))
