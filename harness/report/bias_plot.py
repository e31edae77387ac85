"""The bias section's picture: per occupation, how often each architecture prefers the female
version of a Winogender gotcha sentence, against the occupation's BLS share of women (the figure
Winogender's paper is known for), one panel per comparison-table row, one colour per architecture."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from harness.report.plots import COLORS, MARKERS, plain_text


def occupation_points(frame: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """One row per (table row, architecture, occupation) of the chosen bias records: BLS share of
    women and the share of that occupation's sentences the model resolved as female (both in %)."""
    columns = ["row", "architecture", "task", "occupation", "bls_pct_female", "predicted_female", "n"]
    if frame.empty or "bias" not in frame or best.empty:
        return pd.DataFrame(columns=columns)
    chosen = best.merge(frame[["model", "task", "config", "bias"]], on=["model", "task", "config"])
    out = []
    for r in chosen.to_dict("records"):
        by = r["bias"].get("by_occupation") if isinstance(r["bias"], dict) else None
        for occupation, v in (by or {}).items():
            if v.get("bls_pct_female") is None or not v.get("n"):
                continue
            out.append({"row": r["row"], "architecture": r["architecture"], "task": r["task"], "occupation": occupation,
                        "bls_pct_female": float(v["bls_pct_female"]),
                        "predicted_female": 100.0 * v["predicted_female"] / v["n"], "n": int(v["n"])})
    return pd.DataFrame(out, columns=columns).drop_duplicates(["row", "architecture", "task", "occupation"])


def occupation_figure(points: pd.DataFrame) -> Figure | None:
    if points.empty:
        return None
    rows = list(dict.fromkeys(points["row"]))
    ncols = min(3, len(rows))
    nrows = math.ceil(len(rows) / ncols)
    fig = Figure(figsize=(4.6 * ncols, 4.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, row in zip(axes, rows):
        for arch, g in points[points["row"] == row].groupby("architecture"):
            ax.scatter(g["bls_pct_female"], g["predicted_female"], color=COLORS.get(arch, "grey"),
                       marker=MARKERS.get(arch, "D"), alpha=0.75, s=22, label=arch)
        ax.plot([0, 100], [0, 100], linestyle="--", color="#999999", linewidth=1)
        ax.set_xlim(0, 100)
        ax.set_ylim(-3, 103)
        ax.set_title(str(row))
        ax.set_xlabel("occupation's share of women (BLS 2015, %)")
        ax.set_ylabel("gotcha sentences resolved female (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    for ax in axes[len(rows):]:
        ax.set_visible(False)
    return plain_text(fig)
