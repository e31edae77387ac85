"""Pictures of a training trajectory (harness/report/trajectory.py): learning curves of both
architectures against tokens seen (log scale) or training order, with intervals as bands, training
phases shaded and the gap's sign changes marked with their uncertainty; and a compact "gap over
training" heatmap (tasks x checkpoints)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.report.frame import display
from harness.report.plots import COLORS, GAP_CMAP, MARKERS, plain_text
from harness.report.trajectory import axis_of, crossings, gap_series, uses_tokens

PHASE_SHADES = {"pretraining": "#f2f2f2", "training": "#f2f2f2", "extension": "#e4ecf5", "decay": "#f7eadf"}


def tokens_label(x: float) -> str:
    n = 10 ** x
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{float(f'{n / div:.2g}'):g}{unit}"
    return f"{n:.0f}"


def _shade_phases(ax, traj: pd.DataFrame, xs: pd.Series) -> None:
    phases = traj.assign(x=xs).dropna(subset=["phase"]).groupby("phase", sort=False)["x"].agg(["min", "max"])
    if len(phases) < 2:
        return
    bounds = phases.sort_values("min")
    for (phase, span), nxt in zip(bounds.iterrows(), list(bounds["min"].iloc[1:]) + [None]):
        right = (span["max"] + nxt) / 2 if nxt is not None else span["max"]
        ax.axvspan(span["min"], right, color=PHASE_SHADES.get(phase, "#eeeeee"), zorder=0, lw=0)
        ax.text(span["min"], 1.0, phase, transform=ax.get_xaxis_transform(), fontsize=7, va="top", color="#555555")


def _x_ticks(ax, xs: pd.Series, traj: pd.DataFrame, tokens: bool) -> None:
    ticks = sorted(set(xs))
    if tokens:
        shown = [t for i, t in enumerate(ticks) if i == 0 or t - ticks[i - 1] > 0.12] if len(ticks) > 1 else ticks
        ax.set_xticks(shown, [tokens_label(t) for t in shown], fontsize=7, rotation=45)
    else:
        names = dict(zip(xs, traj["revision"]))
        step = max(1, math.ceil(len(ticks) / 8))
        shown = ticks[::step]
        ax.set_xticks(shown, [names[t] for t in shown], fontsize=7, rotation=45, ha="right")


def curves_figure(traj: pd.DataFrame, pair: str) -> Figure:
    """One panel per task (and average) of ``pair``'s trajectory: both architectures' scores, their
    intervals as bands, phases shaded, sign changes of the gap as dashed lines in a grey band."""
    traj = traj[traj["pair"] == pair]
    tasks = list(dict.fromkeys(traj["task"]))
    tokens = uses_tokens(traj)
    cross = crossings(traj)
    cols = min(4, max(1, len(tasks)))
    rows = math.ceil(len(tasks) / cols) if tasks else 1
    fig = Figure(figsize=(3.2 * cols + 0.6, 2.7 * rows + 0.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, task in zip(axes, tasks):
        part = traj[traj["task"] == task].sort_values("order")
        xs = axis_of(part)
        _shade_phases(ax, part, xs)
        for arch in ("encoder", "decoder"):
            side = part[part["architecture"] == arch]
            if side.empty:
                continue
            x = xs[side.index]
            ax.plot(x, side["score"], color=COLORS[arch], marker=MARKERS[arch], ms=4, lw=1.5, label=arch,
                    gid=f"curve-{arch}")
            if side["lo"].notna().any():
                ax.fill_between(x, side["lo"], side["hi"], color=COLORS[arch], alpha=0.18, lw=0, gid=f"band-{arch}")
        for c in cross[cross["task"] == task].to_dict("records"):
            ax.axvspan(c["band_from"], c["band_to"], color="#999999", alpha=0.18, lw=0, gid="crossing-band")
            ax.axvline(c["x"], color="#333333", ls="--", lw=1, gid="crossing")
        _x_ticks(ax, xs, part, tokens)
        ax.set_title(display(task), fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(alpha=0.3, lw=0.5)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    what = "tokens seen (log scale)" if tokens else "checkpoint, in training order (tokens seen unknown)"
    fig.supxlabel(what, fontsize=9)
    fig.supylabel("score (x100)", fontsize=9)
    title = f"{pair}: encoder and decoder over training"
    if not cross.empty:
        title += "\ndashed: the gap changes sign (grey: not significant around it)"
    fig.suptitle(title, fontsize=10)
    if tasks:
        axes[0].legend(fontsize=7, frameon=False)
    return plain_text(fig)


def gap_heatmap_figure(traj: pd.DataFrame, pair: str) -> Figure:
    """Tasks x checkpoints (training order) of ``pair``: encoder minus decoder, x100."""
    series = gap_series(traj[traj["pair"] == pair])
    revisions = list(dict.fromkeys(series.sort_values("order")["revision"]))
    tasks = list(dict.fromkeys(series["task"]))
    grid = np.full((max(1, len(tasks)), max(1, len(revisions))), np.nan)
    for r in series.to_dict("records"):
        grid[tasks.index(r["task"]), revisions.index(r["revision"])] = r["gap"]
    fig = Figure(figsize=(max(4.0, 0.55 * len(revisions) + 2.8), max(2.4, 0.42 * len(tasks) + 1.6)),
                 layout="constrained")
    ax = fig.subplots()
    finite = grid[np.isfinite(grid)]
    bound = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    ax.set_facecolor("#dddddd")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=GAP_CMAP, vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(revisions)), revisions, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(tasks)), [display(t) for t in tasks], fontsize=8)
    if len(revisions) <= 16:
        for i in range(len(tasks)):
            for j in range(len(revisions)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:+.1f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(grid[i, j]) > 0.6 * bound else "black")
    ax.set_title(f"{pair}: gap over training (encoder - decoder, x100; blue: encoder better)", fontsize=9)
    fig.colorbar(image, ax=ax, label="gap (x100)")
    return plain_text(fig)
