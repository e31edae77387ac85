"""A whole report: built once from results folders, printed to the terminal and written to a folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.report import plots, tables
from harness.report.frame import average_notes, best_scores, column_groups, comparison_table, load_results
from harness.report.leaderboard import leaderboard_frame, write_leaderboard
from harness.report.reference import delta_table, load_reference, versus_published
from harness.report.significance import significance_table

N_BOOT = 1000
HEADER = "Best dev score per model and task (x100; gap = encoder - decoder)"


@dataclass
class Report:
    frame: pd.DataFrame  # headline_frame: one row per finished record
    best: pd.DataFrame  # best configuration per (model, revision, task), mean/std/n over seeds
    table: pd.DataFrame  # comparison table
    vs_paper: pd.DataFrame  # measured minus published
    significance: pd.DataFrame | None  # bootstrap CIs and paired tests; None when not computed
    notes: list[str] = field(default_factory=list)

    @property
    def groups(self) -> dict:
        return column_groups(self.best)

    def text(self) -> str:
        """The terminal view: comparison per task group, notes, measured minus published."""
        parts = [f"{HEADER}:", tables.terminal(self.table, self.groups, self.significance), ""]
        parts += self.notes
        grid = delta_table(self.vs_paper)
        if not grid.empty:
            parts.append("\nMeasured minus published (Ettin paper, x100; ~ published value read off a figure):\n"
                         + grid.to_string())
        return "\n".join(parts)


def build_report(roots, n_boot: int = N_BOOT, seed: int = 0) -> Report:
    """Everything a report shows; ``n_boot=0`` skips the significance tests (faster)."""
    roots = list(roots) if isinstance(roots, (list, tuple)) else [roots]
    frame = load_results(*roots)
    best = best_scores(frame)
    table = comparison_table(best)
    sig = significance_table(frame, best, n_boot=n_boot, seed=seed) if n_boot > 0 else None
    notes = average_notes(best)
    if sig is not None and sig["p_value"].notna().any():
        notes.append(f"{tables.DAGGER} gap not significant (paired bootstrap, {n_boot} resamples, 95%)")
    return Report(frame, best, table, versus_published(best, load_reference()), sig, notes)


def write_report(roots, out_dir: str | Path, n_boot: int = N_BOOT, seed: int = 0,
                 report: Report | None = None) -> dict[str, str]:
    """Write the tables (md, tex, csv), plots (png, pdf), leaderboard and significance of results
    folder(s) into ``out_dir``; returns {name: path}."""
    report = report or build_report(roots, n_boot=n_boot, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}

    def put(name: str, text: str) -> None:
        (out / name).write_text(text)
        paths[name] = str(out / name)

    def put_csv(name: str, df: pd.DataFrame) -> None:
        df.to_csv(out / name, index=False)
        paths[name] = str(out / name)

    notes = "".join(f"\n{n}\n" for n in report.notes)
    put("comparison.md", f"# Encoder vs decoder\n\n{HEADER}.\n\n"
        + tables.markdown(report.table, report.groups, report.significance) + notes)
    put("comparison.tex", tables.latex(report.table, report.groups, report.significance, caption=HEADER))
    put_csv("comparison.csv", tables.flat_csv_frame(report.table))
    scores = report.best.assign(score=report.best["score"] * 100, std=report.best["std"] * 100)
    put_csv("scores.csv", scores)
    if not report.vs_paper.empty:
        put_csv("vs_paper.csv", report.vs_paper)
        grid = delta_table(report.vs_paper)
        put("vs_paper.md", "Measured minus published (x100; ~ read off a figure)\n\n"
            + tables.long_markdown(grid.reset_index()) + "\n" + tables.long_markdown(report.vs_paper))
        put("vs_paper.tex", tables.long_latex(report.vs_paper.drop(columns=["model", "source"])))
    if report.significance is not None:
        sig = report.significance
        put_csv("significance.csv", sig)
        shown = sig.assign(p_value=["-" if pd.isna(p) else f"{p:.3f}" for p in sig["p_value"]])
        put("significance.md", tables.long_markdown(shown))
        put("significance.tex", tables.long_latex(shown))
    board = leaderboard_frame(report.frame, report.best)
    put_csv("leaderboard.csv", board)
    stems = {"scaling": plots.plot_scaling(report.best, out / "plots" / "scaling"),
             "figure1": plots.plot_figure1(report.best, out / "plots" / "figure1", load_reference()),
             "gap_heatmap": plots.plot_gap_heatmap(report.table, out / "plots" / "gap_heatmap")}
    for name, files in stems.items():
        for f in files:
            paths[f"plots/{Path(f).name}"] = f
    return paths


__all__ = ["Report", "build_report", "write_report", "write_leaderboard"]
