"""From records to scores: the headline metric per cell, the best configuration per
(model, task) on the dev split (as the papers report), its spread over seeds, and the
encoder-vs-decoder comparison table with the GLUE and generative averages."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from harness.errors import UserError
from harness.metrics import GENERATIVE_TASKS, GLUE_AVERAGE_METRIC, generative_average, glue_average
from harness.results import load_frame

MODEL_COLUMNS = ["model", "model_name", "revision", "architecture", "size", "variant", "family", "parameters"]
SIZE_ORDER = ("tiny", "17m", "32m", "68m", "150m", "400m", "1b")
GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
GLUE_AVG, GEN_AVG = "GLUE avg", "Gen avg"
DISPLAY = {
    "cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP", "mnli": "MNLI", "qnli": "QNLI",
    "rte": "RTE", "wnli": "WNLI", "arc_challenge": "ARC", "hellaswag": "HS", "lambada_openai": "LMB",
    "openbookqa": "OBQA", "piqa": "PIQA", "sciq": "SciQ", "social_iqa": "SIQA", "triviaqa": "TQA",
    "winogrande": "WG", "wsc273": "WSC", "glue_avg": GLUE_AVG, "gen_avg": GEN_AVG,
}
GROUP_TITLES = {"glue": "GLUE", "generative": "Generative"}


def display(task: str) -> str:
    return DISPLAY.get(task, task)


def check_roots(roots) -> list[str]:
    """The results folders as strings; a missing one is the user's error."""
    roots = [str(r) for r in roots]
    if not roots:
        raise UserError("no results folder given; pass the --output-path of a run")
    for root in roots:
        if not os.path.isdir(root):
            raise UserError(f"results folder '{root}' does not exist; pass the --output-path of a run")
    return roots


def headline_frame(*roots) -> pd.DataFrame:
    """One row per finished record with its headline score and a hashable configuration."""
    df = load_frame(*roots)
    if df.empty:
        return pd.DataFrame(columns=MODEL_COLUMNS + ["task", "task_group", "config", "seed", "score"])
    df = df.copy()
    df["score"] = [m.get(h) if isinstance(m, dict) else None for m, h in zip(df["metrics"], df["headline_metric"])]
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    df["config"] = [_config(hp) for hp in df["hyperparameters"]]
    for col in ("revision", "size", "variant", "seed", "parameters"):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df[df["score"].notna()].reset_index(drop=True)


def _config(hp) -> str:
    # The MNLI checkpoint a warm-started cell started from is chosen per run, not part of the recipe:
    # seeds of one recipe must aggregate even when a resumed run picked another checkpoint.
    hp = {k: v for k, v in hp.items() if k != "init_from"} if isinstance(hp, dict) else {}
    return json.dumps(hp, sort_keys=True, default=str)


def load_results(*roots) -> pd.DataFrame:
    """headline_frame of existing folders; a missing folder or one without finished records is a UserError."""
    roots = check_roots(roots)
    df = headline_frame(*roots)
    if df.empty:
        raise UserError(f"no finished results in {', '.join(roots)}; run 'ettin-eval run ... --output-path DIR' first")
    return df


def best_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, revision, task): the configuration with the best mean dev score over seeds,
    with that score's mean, standard deviation and number of seeds (scores as stored, 0-1)."""
    columns = MODEL_COLUMNS + ["task", "task_group", "config", "score", "std", "n_seeds", "row"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    df = df.assign(_rev=df["revision"].fillna("").astype(str), _seed=df["seed"].astype(str))
    keys = ["model", "_rev", "task"]
    per_config = (
        df.groupby(keys + ["config"], dropna=False)
        .agg(score=("score", "mean"), std=("score", "std"), n_seeds=("_seed", "nunique"))
        .reset_index()
    )
    best_idx = per_config.groupby(keys, dropna=False)["score"].idxmax()
    best = per_config.loc[best_idx].reset_index(drop=True)
    info = df.drop_duplicates(keys)[MODEL_COLUMNS + ["_rev", "task", "task_group"]]
    out = best.merge(info, on=keys, how="left")
    out["std"] = out["std"].fillna(0.0)
    out["row"] = [row_label(r) for r in out.to_dict("records")]
    return out[columns]


def row_label(r: dict) -> str:
    """The comparison-table row of a model: its size for the Ettin pair (and the demo's tiny pair),
    '<size> (cross)' for the cross-objective pair, the model name otherwise; '@rev' for a revision."""
    size, family = r.get("size"), r.get("family")
    if size and family in ("ettin", "tiny"):
        label = str(size)
    elif size and family == "ettin-cross":
        label = f"{size} (cross)"
    else:
        label = str(r.get("model_name") or r.get("model"))
    rev = r.get("revision")
    return f"{label}@{rev}" if rev and rev == rev else label


def task_order(best: pd.DataFrame) -> list[tuple[str, str]]:
    """(group, task), grouped: GLUE, generative, then other groups; in a group the paper's tasks
    in paper order, then any others by name."""
    groups = dict(zip(best["task"], best["task_group"]))
    known = [t for t in GLUE_TASKS + GENERATIVE_TASKS if t in groups]
    others = sorted(t for t in groups if t not in known)
    pairs = [(str(groups[t] or "other"), t) for t in known + others]
    rank = {"glue": 0, "generative": 1}
    return sorted(pairs, key=lambda p: (rank.get(p[0], 2), p[0]))


def group_average(scores: dict, group: str) -> float | None:
    """The paper's average of one group: GLUE over its eight tasks, generative over the ten Table 4
    tasks; None unless every one of them is present."""
    clean = {t: v for t, v in scores.items() if v is not None and pd.notna(v)}
    return glue_average(clean) if group == "glue" else generative_average(clean)


AVERAGES = {"glue": (GLUE_AVG, tuple(GLUE_AVERAGE_METRIC)), "generative": (GEN_AVG, GENERATIVE_TASKS)}


def comparison_table(best: pd.DataFrame, scale: float = 100.0) -> pd.DataFrame:
    """Rows: size; columns: (task, encoder | decoder | gap), gap = encoder - decoder.

    Tasks come in paper order, each group followed by its average ('GLUE avg', 'Gen avg'; blank
    unless all its tasks are present). The cross-objective pair is a row '<size> (cross)'
    (encoder column: encoder-from-decoder); other models are rows of their own name.
    """
    if best.empty:
        return pd.DataFrame()
    best = best.assign(row=[row_label(r) for r in best.to_dict("records")])
    pivot = best.pivot_table(index="row", columns=["task", "architecture"], values="score", aggfunc="max") * scale
    empty = pd.Series(np.nan, index=pivot.index, dtype=float)
    columns = {}
    order = task_order(best)
    for i, (group, task) in enumerate(order):
        for arch in ("encoder", "decoder"):
            columns[(task, arch)] = pivot[(task, arch)] if (task, arch) in pivot else empty
        columns[(task, "gap")] = columns[(task, "encoder")] - columns[(task, "decoder")]
        last_of_group = i + 1 == len(order) or order[i + 1][0] != group
        if last_of_group and _has_average(group, [t for g, t in order if g == group]):
            name = AVERAGES[group][0]
            for arch in ("encoder", "decoder"):
                values = [group_average({t: columns[(t, arch)][row] for g, t in order if g == group}, group)
                          for row in pivot.index]
                columns[(name, arch)] = pd.Series(values, index=pivot.index, dtype=float)
            columns[(name, "gap")] = columns[(name, "encoder")] - columns[(name, "decoder")]
    table = pd.DataFrame(columns)
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    rank = {s: i for i, s in enumerate(SIZE_ORDER)}
    table = table.loc[sorted(table.index, key=lambda r: (rank.get(r.split(" ")[0].split("@")[0], 99), str(r)))]
    table.index.name = "size"
    return table


def column_groups(best: pd.DataFrame) -> dict[str, list[str]]:
    """Group title -> the table's task columns of that group (averages included)."""
    out: dict[str, list[str]] = {}
    for group, task in task_order(best):
        out.setdefault(GROUP_TITLES.get(group, group), []).append(task)
    order = task_order(best)
    for group, (name, _) in AVERAGES.items():
        if _has_average(group, [t for g, t in order if g == group]):
            out[GROUP_TITLES[group]].append(name)
    return out


def _has_average(group: str, tasks: list[str]) -> bool:
    """A group's average column shows once any of the tasks it averages is present."""
    return group in AVERAGES and bool(set(tasks) & set(AVERAGES[group][1]))


def average_notes(best: pd.DataFrame) -> list[str]:
    """Why an average is blank: one line per average that some row has part of the tasks for."""
    notes = []
    for group, (name, needed) in AVERAGES.items():
        gaps = {}
        for (row, arch), g in best.groupby(["row", "architecture"], sort=False):
            have = set(g["task"]) & set(needed)
            if have and len(have) < len(needed):
                gaps[f"{row} {arch}"] = [t for t in needed if t not in have]
        if not gaps:
            continue
        by_missing: dict[str, list[str]] = {}
        for who, missing in gaps.items():
            by_missing.setdefault(", ".join(missing), []).append(who)
        where = "; ".join(f"missing {m}" + ("" if len(by_missing) == 1 else f" ({_some(who)})")
                          for m, who in by_missing.items())
        notes.append(f"{name} needs all {len(needed)} of {', '.join(needed)}, so it is blank here: {where}")
    return notes


def _some(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def model_scores(best: pd.DataFrame, scale: float = 100.0) -> pd.DataFrame:
    """One row per (model, revision): its best score per task (x scale), the GLUE and generative
    averages, and the fewest seeds behind any of its scores."""
    if best.empty:
        return pd.DataFrame(columns=MODEL_COLUMNS + ["row", "glue_avg", "gen_avg", "seeds"])
    best = best.assign(_rev=best["revision"].fillna("").astype(str))
    rows = []
    for _, g in best.groupby(["model", "_rev"], sort=False):
        first = g.iloc[0]
        scores = dict(zip(g["task"], g["score"] * scale))
        rows.append({**{c: first[c] for c in MODEL_COLUMNS}, "row": first["row"],
                     "glue_avg": group_average(scores, "glue"), "gen_avg": group_average(scores, "generative"),
                     "seeds": int(g["n_seeds"].min()), **scores})
    return pd.DataFrame(rows)
