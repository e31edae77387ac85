"""Figures of a comparison (scaling curves, the paper's Figure 1 view, the gap heatmap), saved as
PNG and PDF or returned as inline SVG for the results page.

One colour and one marker per architecture in every figure (encoders blue circles, decoders orange
squares), and encoder points sit a little left of decoder points of the same size, so a pair with
equal scores stays visible as two marks. Panels of one task family share the height of their y
range, so equal gaps look equal. Every function copes with partial results (missing sizes, one
architecture). Figures are built on ``matplotlib.figure.Figure`` (no pyplot), so nothing changes
the caller's backend and nothing needs a display.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import matplotlib
import matplotlib.text
import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from harness.models import PARAMETERS
from harness.report.frame import GEN_AVG, GLUE_AVG, RET_AVG, display, model_scores, task_order
from harness.report.tables import DAGGER, not_significant

COLORS = {"encoder": "#0072B2", "decoder": "#D55E00"}  # Okabe-Ito blue and vermillion
MARKERS = {"encoder": "o", "decoder": "s"}
GAP_CMAP = LinearSegmentedColormap.from_list("gap", [COLORS["decoder"], "#ffffff", COLORS["encoder"]])
STYLES = {"encoder": "-", "decoder": "-", "encoder-from-decoder": "--", "decoder-from-encoder": "--"}
AVERAGE_COLUMNS = {GLUE_AVG: "glue_avg", GEN_AVG: "gen_avg", RET_AVG: "ret_avg"}
AVERAGE_FAMILY = {GLUE_AVG: "glue", GEN_AVG: "generative", RET_AVG: "retrieval"}
DODGE = {"encoder": 10 ** -0.012, "decoder": 10 ** 0.012}  # x factor: about 3% apart on the log axis
ETTIN_FAMILIES = ("ettin", "ettin-cross")


def plain_text(fig: Figure) -> Figure:
    """Every label drawn as written: a '$' in a model or pair name is not math text."""
    for text in fig.findobj(matplotlib.text.Text):
        text.set_parse_math(False)
    return fig


def save_figure(fig: Figure, stem: str | Path) -> list[str]:
    """``fig`` as ``stem``.png and .pdf; returns their paths."""
    return _save(fig, stem)


def _save(fig: Figure, stem: str | Path) -> list[str]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(str(path))
    return paths


def svg_text(fig: Figure, prefix: str) -> str:
    """The figure as an ``<svg>`` element to inline in HTML: text stays text (small, searchable) and
    every id gets ``prefix`` so that several figures in one page never share an id."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ettin"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text[text.index("<svg"):], flags=re.S)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r'(href="#|url\(#)([^")]+)', rf"\1{prefix}-\2", text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{prefix}" ', 1)


def _lines(scores: pd.DataFrame):
    """(label, architecture, line style, rows sorted by parameters, group) per line: one per Ettin
    variant (and revision); one per variant of another family of pairs (the demo's tiny pair); any
    other model a line of its own. ``group`` tells related lines (same family) from unrelated ones."""
    scores = scores[scores["parameters"].notna()]
    keys = []
    for v, n, r, fam in zip(scores["variant"], scores["model_name"], scores["revision"], scores["family"]):
        if v in STYLES and fam in ETTIN_FAMILIES:
            kind, group = v, "ettin"
        elif v in STYLES and isinstance(fam, str) and fam:
            kind, group = f"{fam} {v}", fam
        else:
            kind, group = f"model:{n}", f"model:{n}"
        keys.append((kind, r if isinstance(r, str) else "", group))
    scores = scores.assign(_key=keys)
    for (kind, rev, group), g in scores.groupby("_key", sort=False):
        arch = g["architecture"].iloc[0]
        variant = kind.split(" ")[-1]
        label = kind.replace("model:", "").replace("-from-", " (from ") + (")" if "-from-" in kind else "")
        yield label + (f" @{rev}" if rev else ""), arch, STYLES.get(variant, ":"), g.sort_values("parameters"), group


def _panel(ax, scores: pd.DataFrame, column: str, std: str | None = None) -> tuple[float, float] | None:
    """Draw one panel; returns the (low, high) of what it drew (error bars included), None if nothing."""
    xs, lows, highs = [], [], []
    lines = list(_lines(scores[scores[column].notna()] if column in scores else scores.iloc[:0]))
    label_points = len({line[4] for line in lines}) > 1  # unrelated models share this axis
    for label, arch, style, g, group in lines:
        x = g["parameters"].to_numpy(float)
        y = g[column].to_numpy(float)
        yerr = np.nan_to_num(g[std].to_numpy(float)) if std and std in g else None
        color = COLORS.get(arch, "grey")
        ax.errorbar(x * DODGE.get(arch, 1.0), y, yerr=yerr, label=label, color=color, linestyle=style,
                    marker=MARKERS.get(arch, "D"), markersize=5, capsize=3)
        if label_points and group != "ettin":
            for xi, yi, name in zip(x, y, g["model_name"]):
                ax.annotate(str(name), (xi * DODGE.get(arch, 1.0), yi), xytext=(4, 4), textcoords="offset points",
                            fontsize=7, color=color)
        xs += list(x)
        spread = yerr if yerr is not None else 0.0
        lows.append(float(np.min(y - spread)))
        highs.append(float(np.max(y + spread)))
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("score (x100)")
    if not xs:
        ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
        return None
    log_axis(ax, xs)
    ax.grid(alpha=0.3)
    return min(lows), max(highs)


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


def family_limits(ranges: dict, families: dict, pad: float = 0.08, least: float = 2.0, ceiling: float = 100.5) -> dict:
    """Per panel, y limits centred on its data whose height is the same for every panel of one family:
    the largest data range of the family plus ``pad`` of it on each side (at least ``least`` points);
    moved down where they would pass ``ceiling`` (a score x100 tops out at 100) and the data does not."""
    height: dict = {}
    for panel, (lo, hi) in ranges.items():
        fam = families.get(panel)
        height[fam] = max(height.get(fam, 0.0), hi - lo)
    out = {}
    for panel, (lo, hi) in ranges.items():
        h = max(height[families.get(panel)] * (1 + 2 * pad), least)
        top = max((lo + hi) / 2 + h / 2, hi)
        if top > ceiling >= hi:
            top = ceiling
        out[panel] = (top - h, top)
    return out


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


def scaling_figure(best: pd.DataFrame) -> Figure:
    """Score vs parameter count (log x), one panel per task and average, a line per architecture
    with the seed spread (std) as error bars; panels of a task family share their y range's height."""
    scores = _wide(best)
    order = task_order(best)
    families = {t: g for g, t in order}
    panels = [t for _, t in order]
    panels += [name for name, col in AVERAGE_COLUMNS.items() if scores[col].notna().any()]
    families.update({name: AVERAGE_FAMILY[name] for name in AVERAGE_COLUMNS})
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4 * ncols, 3.3 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    ranges = {}
    for ax, panel in zip(axes, panels):
        column = AVERAGE_COLUMNS.get(panel, panel)
        drawn = _panel(ax, scores, column, None if panel in AVERAGE_COLUMNS else f"{panel}_std")
        if drawn:
            ranges[panel] = drawn
        ax.set_title(display(panel))
    for panel, limits in family_limits(ranges, families).items():
        axes[panels.index(panel)].set_ylim(*limits)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.get_layout_engine().set(rect=(0, 0, 1, 1 - 0.6 / (3.3 * nrows + 0.6)))
    _legend(fig, axes)
    return plain_text(fig)


# The paper's Figure 1: three panels, each for the four families (encoders, decoders, and each
# continued with the other objective); the published points are read off the plot (approximate).
FIGURE1_PANELS = (("MNLI (fine-tuned)", "mnli"), ("MS MARCO dev nDCG@10 (fine-tuned embedders)", "msmarco"),
                  ("Generative average", "gen_avg"))
PAPER_MARKERS = {"encoder": "D", "decoder": "D", "encoder-from-decoder": "^", "decoder-from-encoder": "v"}


def reference_variant(model_id: str) -> str:
    """The Ettin family a reference row's hub id names."""
    name = str(model_id).rsplit("/", 1)[-1]
    for short, variant in (("enc-from-dec", "encoder-from-decoder"), ("encoder-from-decoder", "encoder-from-decoder"),
                           ("dec-from-enc", "decoder-from-encoder"), ("decoder-from-encoder", "decoder-from-encoder"),
                           ("ettin-encoder", "encoder"), ("ettin-decoder", "decoder")):
        if short in name:
            return variant
    return "other"


def figure1_figure(best: pd.DataFrame, reference: pd.DataFrame | None = None) -> Figure:
    """The paper's Figure 1 view: MNLI, MS MARCO retrieval and the generative average of the four
    families across sizes; the published points as hollow markers where the run has Ettin models."""
    scores = _wide(best)
    scores = scores[scores["variant"].isin(list(STYLES))]
    fig = Figure(figsize=(15, 4.4), layout="constrained")
    axes = fig.subplots(1, len(FIGURE1_PANELS))
    ettin = (scores["family"].isin(ETTIN_FAMILIES)).any()
    for ax, (title, column) in zip(axes, FIGURE1_PANELS):
        std = f"{column}_std" if column in ("mnli", "msmarco") else None
        drawn = _panel(ax, scores, column, std)
        ax.set_title(title)
        if drawn and reference is not None and not reference.empty and ettin:
            xs = list(scores.loc[scores[column].notna(), "parameters"].astype(float))
            rows = reference[reference["task"] == column]
            for variant, g in rows.groupby(rows["model"].map(reference_variant)):
                if variant not in STYLES:
                    continue
                arch = g["architecture"].iloc[0]
                x = np.array([PARAMETERS[s] for s in g["size"]], dtype=float)
                ax.scatter(x * DODGE.get(arch, 1.0), g["value"], facecolors="none", edgecolors=COLORS[arch],
                           marker=PAPER_MARKERS[variant], label=f"{variant.replace('-from-', ' (from ')}"
                           f"{')' if '-from-' in variant else ''} (paper)")
                xs += list(x)
            log_axis(ax, xs)
    fig.get_layout_engine().set(rect=(0, 0, 1, 0.88))
    _legend(fig, axes)
    return plain_text(fig)


def gap_heatmap_figure(table: pd.DataFrame, sig: pd.DataFrame | None = None) -> Figure:
    """Gap (encoder - decoder, x100) per row (size) and task; grey where a side is missing (rows and
    tasks without any gap are left out); a gap the paired test finds not significant is hatched
    and carries a dagger."""
    gaps = table.xs("gap", axis=1, level=1).dropna(how="all").dropna(axis=1, how="all") if not table.empty else None
    tasks = list(gaps.columns) if gaps is not None and not gaps.empty else []
    rows = list(gaps.index) if tasks else ["-"]
    gaps = gaps.to_numpy(float) if tasks else np.full((1, 1), np.nan)
    marks = not_significant(sig)
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
            value = gaps[i, j]
            if not np.isfinite(value):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="black")
                continue
            weak = (rows[i], tasks[j]) in marks
            if weak:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#777777",
                                       linewidth=0, gid=f"ns-{i}-{j}"))
            dark = abs(value) > 0.6 * bound
            ax.text(j, i, f"{value:+.1f}{DAGGER if weak else ''}", ha="center", va="center", fontsize=8,
                    color="white" if dark else "black", fontweight="normal" if weak else "bold")
    title = "encoder - decoder (points; blue: encoder better)" if finite.size else "no encoder-decoder pairs"
    ax.set_title(title + (f"\nhatched, {DAGGER}: not significant (paired bootstrap)" if marks else ""))
    fig.colorbar(image, ax=ax, label="gap (x100)")
    return plain_text(fig)


def plot_scaling(best: pd.DataFrame, stem: str | Path) -> list[str]:
    """The scaling figure as ``stem``.png and .pdf; returns their paths."""
    return _save(scaling_figure(best), stem)


def plot_figure1(best: pd.DataFrame, stem: str | Path, reference: pd.DataFrame | None = None) -> list[str]:
    """The Figure 1 view as ``stem``.png and .pdf; returns their paths."""
    return _save(figure1_figure(best, reference), stem)


def plot_gap_heatmap(table: pd.DataFrame, stem: str | Path, sig: pd.DataFrame | None = None) -> list[str]:
    """The gap heatmap as ``stem``.png and .pdf (non-significant gaps marked when ``sig`` is given)."""
    return _save(gap_heatmap_figure(table, sig), stem)
