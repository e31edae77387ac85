"""A whole report: built once from results folders, printed to the terminal and written to a folder."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from harness.report import tables
from harness.report.frame import (
    average_notes,
    best_scores,
    column_groups,
    comparison_table,
    load_results,
    protocol_notes,
    row_clash_notes,
)
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
    notes = row_clash_notes(best) + protocol_notes(best) + average_notes(best)
    if sig is not None and sig["p_value"].notna().any():
        notes.append(f"{tables.DAGGER} gap not significant (paired bootstrap, {n_boot} resamples, 95%)")
    return Report(frame, best, table, versus_published(best, load_reference()), sig, notes)


__all__ = ["Report", "build_report"]
