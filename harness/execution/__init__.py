"""Running a plan: ``run_cells`` hands the cells to one ``Schedule`` (order, retries, store
writes) on the executor the settings ask for (``local``: this process; ``ray``: a Ray cluster).
A new executor is a class with ``has_room``, ``idle``, ``submit``, ``next_outcome``,
``cancel_all``, ``describe`` and ``close`` (see local.py), and a line in ``make_executor``."""

from __future__ import annotations

from harness.execution.schedule import Schedule, Summary
from harness.execution.settings import ExecutionSettings, RunnerSettings
from harness.plan import Cell
from harness.results import ResultStore

__all__ = ["ExecutionSettings", "RunnerSettings", "Schedule", "Summary", "make_executor", "run_cells"]


def make_executor(settings: ExecutionSettings, runner: RunnerSettings):
    if settings.executor == "ray":
        from harness.execution.ray import RayExecutor

        return RayExecutor(runner.as_tuple(), address=settings.address, gpus_per_cell=settings.gpus_per_cell)
    from harness.execution.local import LocalExecutor
    from harness.runner import Runner

    return LocalExecutor(Runner(*runner.as_tuple()))


def run_cells(cells: list[Cell], store: ResultStore, settings: ExecutionSettings, executor) -> Summary:
    """Every cell of ``cells`` the store does not hold, run on ``executor`` and recorded."""
    schedule = Schedule(cells, store, retries=settings.retries, log_samples=settings.log_samples,
                        checkpoint_root=settings.shared_dir, quiet=settings.quiet)
    return schedule.run(executor)
