"""From records to scores: the headline metric per cell, the best configuration per
(model, task) on the dev split (as the papers report), its spread over seeds, and the
encoder-vs-decoder comparison table with the GLUE and generative averages."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from harness.errors import UserError
from harness.results import load_frame
from harness.revisions import training_key
from harness.suite import suite

MODEL_COLUMNS = ["model", "model_name", "revision", "architecture", "size", "variant", "family", "pair", "parameters"]
SIZE_ORDER = ("tiny", "17m", "32m", "68m", "150m", "400m", "1b")
GLUE_TASKS = suite().members("glue")
GENERATIVE_TASKS = suite().averaged("generative")  # the paper's Table 4, in its column order
RETRIEVAL_TASKS = suite().averaged("retrieval") + ("msmarco",)  # MTEB(eng, v2) retrieval, then Figure 1's MS MARCO
GLUE_AVG, GEN_AVG = suite().groups["glue"].average, suite().groups["generative"].average
RET_AVG = suite().groups["retrieval"].average
GROUP_TITLES = {name: g.title for name, g in suite().groups.items()}
# group -> (average's display name, the tasks it averages)
AVERAGES = {name: (g.average, suite().averaged(name)) for name, g in suite().groups.items()}


def display(task: str) -> str:
    return suite().display(task)


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
    """One row per finished record with its headline score, configuration and protocol."""
    df = load_frame(*roots)
    if df.empty:
        return pd.DataFrame(columns=MODEL_COLUMNS + ["task", "task_group", "config", "protocol", "protocol_key",
                                                     "seed", "score"])
    df = df.copy()
    df["score"] = [m.get(h) if isinstance(m, dict) else None for m, h in zip(df["metrics"], df["headline_metric"])]
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    # seeds of one configuration share a config key (whichever MNLI checkpoint a warm start read)
    df["config"] = df["config_key"]
    df["protocol"] = [p.get("label", "") if isinstance(p, dict) else "" for p in df["protocol"]]
    # harness/search: a configuration ASHA stopped early holds a partial score (never a best)
    df["stopped_early"] = [bool(s.get("stopped_early")) if isinstance(s, dict) else False
                           for s in (df["search"] if "search" in df else [None] * len(df))]
    for col in ("revision", "size", "variant", "seed", "parameters", "pair"):
        if col not in df:
            df[col] = None
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df[df["score"].notna()].reset_index(drop=True)


def load_results(*roots) -> pd.DataFrame:
    """headline_frame of existing folders; a missing folder or one without finished records is a UserError."""
    roots = check_roots(roots)
    df = headline_frame(*roots)
    if df.empty:
        raise UserError(f"no finished results in {', '.join(roots)}; run 'ettin-eval run ... --output-path DIR' first")
    return df


def is_test_split(split) -> bool:
    return isinstance(split, str) and "test" in split.lower()


def best_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, revision, task, protocol): the configuration with the best mean dev score over
    seeds, with that score's mean, standard deviation and number of seeds (scores as stored, 0-1).

    Only tunable hyperparameters are chosen among: records of different protocols (recipe,
    scoring options, data, limit, protocol version) are never pooled or chosen between, and on a
    test split nothing is chosen (each configuration stays apart)."""
    columns = MODEL_COLUMNS + ["task", "task_group", "config", "protocol", "protocol_key", "score", "std", "n_seeds",
                               "configs", "row"]
    if "stopped_early" in df:  # ASHA: only configurations that completed their schedule are chosen among
        df = df[~df["stopped_early"].astype(bool)]
    if df.empty:
        return pd.DataFrame(columns=columns)
    df = df.assign(_rev=df["revision"].fillna("").astype(str), _seed=df["seed"].astype(str),
                   _choice=[c if is_test_split(s) else p for c, p, s in zip(df["config"], df["protocol_key"], df["split"])])
    keys = ["model", "_rev", "task", "_choice"]
    per_config = (df.groupby(keys + ["config"], dropna=False)
                  .agg(score=("score", "mean"), std=("score", "std"), n_seeds=("_seed", "nunique"))
                  .reset_index())
    per_config["configs"] = per_config.groupby(keys, dropna=False)["config"].transform("count")
    best = per_config.loc[per_config.groupby(keys, dropna=False)["score"].idxmax()].reset_index(drop=True)
    info = df.drop_duplicates(keys)[MODEL_COLUMNS + ["_rev", "task", "task_group", "protocol", "protocol_key",
                                                     "_choice"]]
    out = best.merge(info, on=keys, how="left")
    out["std"] = out["std"].fillna(0.0)
    out["row"] = rows_apart(out)
    return out[columns]


def rows_apart(best: pd.DataFrame) -> list[str]:
    """Each score's table row: the model's row label, with the protocol added where a row's task has
    scores under several protocols, so that scores of different protocols are never shown as one
    number, and an encoder and a decoder are compared only under the same protocol label."""
    frame = best.assign(_base=[row_label(r) for r in best.to_dict("records")])
    labels = frame["protocol"].fillna("").astype(str)
    several = frame.assign(_label=labels).groupby(["_base", "task"])["_label"].transform("nunique") > 1
    keys_per_label = frame.assign(_label=labels).groupby(["_base", "task", "architecture", "_label"])[
        "_choice"].transform("nunique")
    out = []
    for base, many, label, clash, choice in zip(frame["_base"], several, labels, keys_per_label, frame["_choice"]):
        tag = label + (f" #{str(choice)[:6]}" if clash > 1 else "")
        out.append(f"{base} [{tag}]" if many or clash > 1 else base)
    return out


def row_label(r: dict) -> str:
    """The comparison-table row of a model: its size for the Ettin pair (and the demo's tiny pair),
    '<size> (cross)' for the cross-objective pair, the model name otherwise; '@rev' for a revision."""
    size, family = r.get("size"), r.get("family")
    if r.get("pair"):
        label = str(r["pair"])
    elif size and family in ("ettin", "tiny"):
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
    known = [t for t in suite().tasks if t in groups]
    others = sorted(t for t in groups if t not in known)
    pairs = [(str(groups[t] or "other"), t) for t in known + others]
    rank = {name: i for i, name in enumerate(suite().groups)}
    return sorted(pairs, key=lambda p: (rank.get(p[0], 2), p[0]))


def group_average(scores: dict, group: str) -> float | None:
    """The paper's average of one group (tasks/suite.yaml); None unless every task it averages is present."""
    clean = {t: v for t, v in scores.items() if v is not None and pd.notna(v)}
    return suite().average(group, clean) if group in suite().groups else None


def comparison_table(best: pd.DataFrame, scale: float = 100.0) -> pd.DataFrame:
    """Rows: size; columns: (task, encoder | decoder | gap), gap = encoder - decoder.

    Tasks come in paper order, each group followed by its average ('GLUE avg', 'Gen avg'; blank
    unless all its tasks are present). The cross-objective pair is a row '<size> (cross)'
    (encoder column: encoder-from-decoder); other models are rows of their own name.
    """
    if best.empty:
        return pd.DataFrame()
    if "row" not in best:
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
    revision = dict(zip(best["row"], best["revision"]))  # a trajectory's checkpoints in training order
    table = table.loc[sorted(table.index, key=lambda r: (rank.get(r.split(" ")[0].split("@")[0], 99), "@" in r,
                                                         r.split("@")[0], _training_key(revision.get(r)), str(r)))]
    table.index.name = "size"
    return table


def _training_key(revision) -> tuple:
    return training_key(revision) if isinstance(revision, str) else (-1, 0, "")


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


def row_protocols(best: pd.DataFrame) -> dict[str, str]:
    """Table row -> the protocol label(s) of its scores ('paper' when it follows the published one)."""
    return {row: "; ".join(sorted(set(g["protocol"]))) for row, g in best.groupby("row", sort=False)}


def follows_paper(label) -> bool:
    """True for 'paper', and for a label that adds only how the paper's protocol was computed: in
    bf16 (the paper's own precision, bf16 autocast) or with another attention implementation."""
    parts = str(label).split(", ")
    return label == "paper" or all(p == "bf16" or p.startswith("attention ") for p in parts)


def protocol_notes(best: pd.DataFrame) -> list[str]:
    """One line per protocol in the table: which rows ran it, and whether it is the paper's."""
    notes = []
    for label, g in best.groupby("protocol", sort=True):
        rows = _some(list(dict.fromkeys(g["row"])), 4)
        if follows_paper(label):
            computed = "" if label == "paper" else f", computed in {label}"
            notes.append(f"Protocol: the paper's (full grid, hub data, published scoring options{computed}) for {rows}")
        else:
            notes.append(f"Protocol: {label} for {rows}: NOT the paper's protocol; do not set these numbers "
                         "beside the published ones")
        if "asha search" in str(label):
            notes.append(f"ASHA search ({label}): each score is the best configuration among those that completed "
                         "their full schedule; configurations stopped early are never chosen")
    return notes


def row_clash_notes(best: pd.DataFrame) -> list[str]:
    """One line per model row label (pair name, size) that two or more different models of one
    architecture share: their scores of different tasks land in one row as if of one model (of the
    same task, in rows told apart only by a hash)."""
    if best.empty:
        return []
    frame = best.assign(_base=[row_label(r) for r in best.to_dict("records")])
    notes = []
    for (row, arch), g in frame.groupby(["_base", "architecture"], sort=False):
        ids = list(dict.fromkeys(g["model"].astype(str)))
        if len(ids) > 1:
            notes.append(f"Clash: row {row} holds {arch} scores of {len(ids)} different models ({', '.join(ids)}), "
                         "shown as if of one model; give them different --pair names or report them apart")
    return notes


def _some(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def model_scores(best: pd.DataFrame, scale: float = 100.0) -> pd.DataFrame:
    """One row per (model, revision): its best score per task (x scale), the GLUE and generative
    averages, and the fewest seeds behind any of its scores."""
    if best.empty:
        return pd.DataFrame(columns=MODEL_COLUMNS + ["row", "protocol", "glue_avg", "gen_avg", "seeds"])
    best = best.assign(_rev=best["revision"].fillna("").astype(str))
    rows = []
    for _, g in best.groupby(["model", "_rev", "row"], sort=False):
        first = g.iloc[0]
        scores = dict(zip(g["task"], g["score"] * scale))
        rows.append({**{c: first[c] for c in MODEL_COLUMNS}, "row": first["row"],
                     "protocol": "; ".join(sorted(set(g["protocol"]))),
                     **{grp.average_column: group_average(scores, name) for name, grp in suite().groups.items()},
                     "seeds": int(g["n_seeds"].min()), **scores})
    return pd.DataFrame(rows)
