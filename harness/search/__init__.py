"""Searches that reach the grid's answer for less than the grid: ``asha``, successive halving on
Ray Tune's ASHA scheduler over the configurations a grid run would fine-tune (``--search asha``).

What the best configuration of an ASHA run means: among the configurations that completed their
full schedule, the one with the best final dev score; that score is exactly the number a grid
cell of the same configuration and seed gives (the same fine-tuning, the same seed, the same
schedule; rung evaluations draw no random numbers). Stopped configurations are recorded with the
partial score they had reached and never chosen as best.
"""

from __future__ import annotations

from harness.search.space import AshaConfig, AshaSettings, asha_cells

__all__ = ["AshaConfig", "AshaSettings", "asha_cells", "run_asha"]


def run_asha(cells, execution, runner, output_path: str, asha: AshaSettings) -> int:
    from harness.search.driver import run

    return run(cells, execution, runner, output_path, asha)
