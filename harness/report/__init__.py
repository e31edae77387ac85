"""Aggregation of result records into scores, comparison tables and exports."""

from harness.report.frame import best_scores, comparison_table, headline_frame

__all__ = ["best_scores", "comparison_table", "headline_frame"]
