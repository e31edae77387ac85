"""From records to scores: the headline metric per cell, the best configuration per
(model, task) on the dev split (as the papers report), and its spread over seeds."""

from __future__ import annotations

import json

import pandas as pd

from harness.metrics import glue_average
from harness.results import load_frame

MODEL_COLUMNS = ["model", "model_name", "revision", "architecture", "size", "variant", "family", "parameters"]


def headline_frame(*roots) -> pd.DataFrame:
    """One row per finished record with its headline score and a hashable configuration."""
    df = load_frame(*roots)
    if df.empty:
        return pd.DataFrame(columns=MODEL_COLUMNS + ["task", "task_group", "config", "seed", "score"])
    df = df.copy()
    df["score"] = [m.get(h) if isinstance(m, dict) else None for m, h in zip(df["metrics"], df["headline_metric"])]
    df["config"] = [json.dumps(hp, sort_keys=True) for hp in df["hyperparameters"]]
    for col in ("revision", "size", "variant"):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def best_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, revision, task): the configuration with the best mean dev score over seeds,
    with that score's mean, standard deviation and number of seeds."""
    if df.empty:
        return pd.DataFrame(columns=MODEL_COLUMNS + ["task", "task_group", "config", "score", "std", "n_seeds"])
    df = df.assign(_rev=df["revision"].fillna("").astype(str))
    keys = ["model", "_rev", "task"]
    per_config = (
        df.groupby(keys + ["config"], dropna=False)
        .agg(score=("score", "mean"), std=("score", "std"), n_seeds=("seed", "nunique"))
        .reset_index()
    )
    best_idx = per_config.groupby(keys, dropna=False)["score"].idxmax()
    best = per_config.loc[best_idx].reset_index(drop=True)
    info = df.drop_duplicates(keys)[MODEL_COLUMNS + ["_rev", "task", "task_group"]]
    out = best.merge(info, on=keys, how="left")
    out["std"] = out["std"].fillna(0.0)
    return out[MODEL_COLUMNS + ["task", "task_group", "config", "score", "std", "n_seeds"]]


def comparison_table(best: pd.DataFrame, scale: float = 100.0) -> pd.DataFrame:
    """Rows: size; columns: (task, encoder | decoder | gap), gap = encoder - decoder.

    Cross-objective and other models appear as their own rows (keyed by model name).
    """
    if best.empty:
        return pd.DataFrame()
    best = best.copy()
    best["row"] = [s if fam in ("ettin", "tiny") and s else name
                   for s, fam, name in zip(best["size"], best["family"], best["model_name"])]
    pivot = best.pivot_table(index="row", columns=["task", "architecture"], values="score", aggfunc="max") * scale
    tasks = list(dict.fromkeys(best["task"]))
    glue = {t for t, g in zip(best["task"], best["task_group"]) if g == "glue"}
    columns = {}
    for task in tasks:
        enc = pivot.get((task, "encoder"))
        dec = pivot.get((task, "decoder"))
        columns[(task, "encoder")] = enc if enc is not None else pd.Series(index=pivot.index, dtype=float)
        columns[(task, "decoder")] = dec if dec is not None else pd.Series(index=pivot.index, dtype=float)
        columns[(task, "gap")] = columns[(task, "encoder")] - columns[(task, "decoder")]
    table = pd.DataFrame(columns)
    if glue:
        averages = {arch: [_glue_avg({t: table.at[row, (t, arch)] for t in glue}) for row in table.index]
                    for arch in ("encoder", "decoder")}
        if any(v is not None for values in averages.values() for v in values):
            for arch, values in averages.items():
                table[("GLUE avg", arch)] = pd.to_numeric(pd.Series(values, index=table.index), errors="coerce")
            table[("GLUE avg", "gap")] = table[("GLUE avg", "encoder")] - table[("GLUE avg", "decoder")]
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    order = {s: i for i, s in enumerate(("tiny", "17m", "32m", "68m", "150m", "400m", "1b"))}
    table = table.loc[sorted(table.index, key=lambda r: (order.get(r, 99), str(r)))]
    table.index.name = "size"
    return table


def _glue_avg(scores: dict) -> float | None:
    clean = {t: v for t, v in scores.items() if pd.notna(v)}
    return glue_average(clean)
