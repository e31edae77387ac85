"""Writing a report folder: tables (md, tex, csv), plots (png, pdf), leaderboard, significance
tables and the results page (index.html)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from harness.report import plots, tables
from harness.report.build import HEADER, N_BOOT, Report, build_report
from harness.report.frame import row_protocols
from harness.report.html import write_index
from harness.report.leaderboard import leaderboard_frame
from harness.report.reference import delta_table, load_reference
from harness.report.trajectory import trajectory_csv_frame, trajectory_frame
from harness.report.trajectory_plot import curves_figure, gap_heatmap_figure


def write_report(roots, out_dir: str | Path, n_boot: int = N_BOOT, seed: int = 0,
                 report: Report | None = None) -> dict[str, str]:
    """Write the tables (md, tex, csv), plots (png, pdf), leaderboard, significance and the results
    page (index.html) of results folder(s) into ``out_dir``; returns {name: path}."""
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
    put_csv("comparison.csv", tables.flat_csv_frame(report.table, row_protocols(report.best)))
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
             "gap_heatmap": plots.plot_gap_heatmap(report.table, out / "plots" / "gap_heatmap", report.significance)}
    from harness.report.bias_plot import occupation_figure, occupation_points

    bias = occupation_figure(occupation_points(report.frame, report.best))
    if bias is not None:
        stems["bias_occupations"] = plots.save_figure(bias, out / "plots" / "bias_occupations")
    stems.update(_trajectory(report, out, put_csv))
    for name, files in stems.items():
        for f in files:
            paths[f"plots/{Path(f).name}"] = f
    paths["index.html"] = write_index(report, out, roots=roots)
    return paths


def _trajectory(report: Report, out: Path, put_csv) -> dict:
    """trajectory.csv and, per trajectory, its curves and gap heatmap (nothing without one)."""
    traj = trajectory_frame(report)
    if traj.empty:
        return {}
    put_csv("trajectory.csv", trajectory_csv_frame(traj))
    stems = {}
    for pair in dict.fromkeys(traj["pair"]):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", pair).strip("_") or "pair"
        stems[f"trajectory_{slug}"] = plots.save_figure(curves_figure(traj, pair), out / "plots" / f"trajectory_{slug}")
        stems[f"trajectory_gap_{slug}"] = plots.save_figure(gap_heatmap_figure(traj, pair),
                                                            out / "plots" / f"trajectory_gap_{slug}")
    return stems
