"""Aggregation of result records into scores, comparison tables, plots, a leaderboard and
significance tests.

    report = build_report(["results/runs/glue"])      # everything, once
    print(report.text())                               # the terminal view
    write_report(["results/runs/glue"], "report/")     # tables, plots, leaderboard, significance
    write_leaderboard(["results/runs/glue"], "board.csv")
"""

from harness.report.build import Report, build_report
from harness.report.frame import (
    best_scores,
    comparison_table,
    headline_frame,
    load_results,
    model_scores,
)
from harness.report.leaderboard import COLUMNS as LEADERBOARD_COLUMNS
from harness.report.leaderboard import leaderboard_frame, write_leaderboard
from harness.report.plots import plot_figure1, plot_gap_heatmap, plot_scaling
from harness.report.reference import delta_table, load_reference, versus_published
from harness.report.significance import bootstrap_ci, outputs_of, paired_bootstrap, significance_table
from harness.report.write import write_report

__all__ = [
    "LEADERBOARD_COLUMNS", "Report", "best_scores", "bootstrap_ci", "build_report", "comparison_table",
    "delta_table", "headline_frame", "leaderboard_frame", "load_reference", "load_results", "model_scores",
    "outputs_of", "paired_bootstrap", "plot_figure1", "plot_gap_heatmap", "plot_scaling", "significance_table",
    "versus_published", "write_leaderboard", "write_report",
]
