"""Figures of a comparison, each saved as PNG and PDF. One colour for encoders and one for decoders
in every figure; every function copes with partial results (missing sizes, one architecture).

Figures are built on ``matplotlib.figure.Figure`` (no pyplot), so nothing changes the caller's
backend and nothing needs a display.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from harness.models import PARAMETERS
from harness.report.frame import GEN_AVG, GLUE_AVG, display, model_scores, task_order

COLORS = {"encoder": "#0072B2", "decoder": "#D55E00"}  # Okabe-Ito blue and vermillion
GAP_CMAP = LinearSegmentedColormap.from_list("gap", [COLORS["decoder"], "#ffffff", COLORS["encoder"]])
STYLES = {"encoder": "-", "decoder": "-", "encoder-from-decoder": "--", "decoder-from-encoder": "--"}
AVERAGE_COLUMNS = {GLUE_AVG: "glue_avg", GEN_AVG: "gen_avg"}


def _save(fig: Figure, stem: str | Path) -> list[str]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(str(path))
    return paths


def _lines(scores: pd.DataFrame):
    """(label, architecture, line style, rows sorted by parameters) per line: one per variant
    (and revision); a model outside the Ettin variants is a line of its own."""
    scores = scores[scores["parameters"].notna()]
    keys = [(v if v in STYLES else f"model:{n}", r if isinstance(r, str) else "")
            for v, n, r in zip(scores["variant"], scores["model_name"], scores["revision"])]
    scores = scores.assign(_key=keys)
    for (kind, rev), g in scores.groupby("_key", sort=False):
        arch = g["architecture"].iloc[0]
        label = kind.replace("model:", "").replace("-from-", " (from ") + (")" if "-from-" in kind else "")
        yield label + (f" @{rev}" if rev else ""), arch, STYLES.get(kind, ":"), g.sort_values("parameters")


def _panel(ax, scores: pd.DataFrame, column: str, std: str | None = None) -> bool:
    xs = []
    for label, arch, style, g in _lines(scores[scores[column].notna()] if column in scores else scores.iloc[:0]):
        yerr = g[std].to_numpy(float) if std and std in g else None
        ax.errorbar(g["parameters"].to_numpy(float), g[column].to_numpy(float), yerr=yerr, label=label,
                    color=COLORS.get(arch, "grey"), linestyle=style, marker="o", capsize=3)
        xs += list(g["parameters"].astype(float))
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("score (x100)")
    if not xs:
        ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
        return False
    log_axis(ax, xs)
    ax.grid(alpha=0.3)
    return True


def human(n: float) -> str:
    """A parameter count in two significant figures, as model sizes are named: 16.8M -> 17M, 1.03B -> 1B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{float(f'{n / div:.2g}'):g}{unit}"
    return f"{n:.0f}"


def log_axis(ax, xs: list[float]) -> None:
    """Log x with a tick at each model size present (labels like 17M, 1.03B) and room around them."""
    ticks = []
    for x in sorted(set(xs)):
        if not ticks or x > ticks[-1] * 1.15:  # nearly equal sizes (an encoder/decoder pair) share a tick
            ticks.append(x)
    ax.set_xscale("log")
    ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter([human(t) for t in ticks]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.tick_params(axis="x", labelsize=8)


def _wide(best: pd.DataFrame) -> pd.DataFrame:
    """model_scores plus '<task>_std' columns (x100)."""
    scores = model_scores(best)
    stds = best.assign(_rev=best["revision"].fillna("").astype(str)).pivot_table(
        index=["model", "_rev"], columns="task", values="std", aggfunc="max") * 100
    stds.columns = [f"{c}_std" for c in stds.columns]
    scores["_rev"] = scores["revision"].fillna("").astype(str)
    return scores.merge(stds.reset_index(), on=["model", "_rev"], how="left")


def _legend(fig: Figure, axes) -> None:
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    labels.sort(key=lambda lab: ("decoder" in lab.split(" ")[0], "paper" in lab, lab))
    if labels:
        fig.legend([handles[lab] for lab in labels], labels, loc="upper center", ncol=min(4, len(labels)),
                   bbox_to_anchor=(0.5, 1.0), frameon=False)


def plot_scaling(best: pd.DataFrame, stem: str | Path) -> list[str]:
    """Score vs parameter count (log x), one panel per task and average, a line per architecture
    with the seed spread (std) as error bars."""
    scores = _wide(best)
    panels = [t for _, t in task_order(best)]
    panels += [name for name, col in AVERAGE_COLUMNS.items() if scores[col].notna().any()]
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4 * ncols, 3.3 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        column = AVERAGE_COLUMNS.get(panel, panel)
        _panel(ax, scores, column, None if panel in AVERAGE_COLUMNS else f"{panel}_std")
        ax.set_title(display(panel))
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.get_layout_engine().set(rect=(0, 0, 1, 1 - 0.6 / (3.3 * nrows + 0.6)))
    _legend(fig, axes)
    return _save(fig, stem)


def plot_figure1(best: pd.DataFrame, stem: str | Path, reference: pd.DataFrame | None = None) -> list[str]:
    """The paper's Figure 1 view: MNLI (a classification task) and the generative average of both
    architectures across sizes; the published numbers as hollow markers where the run has Ettin models."""
    scores = _wide(best)
    scores = scores[scores["variant"].isin(["encoder", "decoder"])]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (title, column) in zip(axes, (("MNLI (fine-tuned)", "mnli"), ("Generative average", "gen_avg"))):
        drawn = _panel(ax, scores, column, "mnli_std" if column == "mnli" else None)
        ax.set_title(title)
        if drawn and reference is not None and not reference.empty and (scores["family"] == "ettin").any():
            xs = list(scores.loc[scores[column].notna(), "parameters"].astype(float))
            for arch, g in reference[reference["task"] == column].groupby("architecture"):
                x = [PARAMETERS[s] for s in g["size"]]
                ax.scatter(x, g["value"], facecolors="none", edgecolors=COLORS[arch], marker="s",
                           label=f"{arch} (paper)")
                xs += x
            log_axis(ax, xs)
    fig.get_layout_engine().set(rect=(0, 0, 1, 0.9))
    _legend(fig, axes)
    return _save(fig, stem)


def plot_gap_heatmap(table: pd.DataFrame, stem: str | Path) -> list[str]:
    """Gap (encoder - decoder, x100) per row (size) and task; grey where a side is missing
    (rows and tasks without any gap are left out)."""
    gaps = table.xs("gap", axis=1, level=1).dropna(how="all").dropna(axis=1, how="all") if not table.empty else None
    tasks = list(gaps.columns) if gaps is not None and not gaps.empty else []
    rows = list(gaps.index) if tasks else ["-"]
    gaps = gaps.to_numpy(float) if tasks else np.full((1, 1), np.nan)
    fig = Figure(figsize=(max(4.0, 0.9 * len(tasks) + 2.5), max(2.5, 0.5 * len(rows) + 1.6)), layout="constrained")
    ax = fig.subplots()
    finite = gaps[np.isfinite(gaps)]
    bound = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    ax.set_facecolor("#dddddd")
    image = ax.imshow(np.ma.masked_invalid(gaps), cmap=GAP_CMAP, vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(tasks)), [display(t) for t in tasks], rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("task")
    ax.set_ylabel("size")
    for i in range(gaps.shape[0]):
        for j in range(gaps.shape[1]):
            text = f"{gaps[i, j]:+.1f}" if np.isfinite(gaps[i, j]) else "n/a"
            dark = np.isfinite(gaps[i, j]) and abs(gaps[i, j]) > 0.6 * bound
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_title("encoder - decoder (points; blue: encoder better)" if finite.size else "no encoder-decoder pairs")
    fig.colorbar(image, ax=ax, label="gap (x100)")
    return _save(fig, stem)
