"""One cell run where an executor placed it: the job handed over, the outcome handed back.

``execute`` is the same code in this process (local) and on a Ray worker: it reads the warm-start
checkpoint the schedule chose, runs the cell's adapter, and saves the fine-tuned weights of a
warm-start source as a candidate checkpoint. Records and samples are written by the schedule."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from harness.adapters import adapter_for
from harness.adapters.base import CellResult, RunOptions
from harness.errors import UserError
from harness.models import hub_commit
from harness.execution.warm_start import load_checkpoint, save_checkpoint
from harness.plan import Cell


@dataclass
class Job:
    cell: Cell
    attempt: int = 0
    init_path: str | None = None  # the warm-start checkpoint to start from
    checkpoint_path: str | None = None  # where to put the fine-tuned weights of a warm-start source
    log_samples: bool = False
    progress: bool = False
    submitted: float = field(default_factory=time.perf_counter)


@dataclass
class Outcome:
    result: CellResult | None = None
    error: BaseException | None = None
    wall_time_s: float = 0.0
    device: str = ""
    loads: int = 0  # models loaded from disk for this cell
    worker: str = ""


def check_compute(cell: Cell, runner) -> None:
    """A cell runs under the dtype and attention its key names, or not at all (a record keyed fp32
    but computed in bf16 would be reused as an fp32 number)."""
    if runner.hardware.compute != cell.compute:
        have, want = runner.hardware.compute, cell.compute
        raise UserError(f"cell {cell.key} was planned for {want.dtype}/{want.attention} but the runner computes in "
                        f"{have.dtype}/{have.attention}; plan the cells with the runner's --dtype and --attn")


def execute(job: Job, runner, worker: str = "") -> Outcome:
    """Run ``job`` on ``runner``; an exception comes back in the outcome (for the schedule to
    judge), except an interrupt."""
    start, loads = time.perf_counter(), runner.loads
    try:
        check_compute(job.cell, runner)
        options = RunOptions(init_state=load_checkpoint(job.init_path) if job.init_path else None,
                             keep_state=job.checkpoint_path is not None, log_samples=job.log_samples,
                             progress=job.progress)
        result = adapter_for(job.cell.adapter)(job.cell, runner, options)
        if result.state is not None and job.checkpoint_path:
            save_checkpoint(result.state, job.checkpoint_path)  # a candidate; the schedule keeps the best
        result.state = None
        if result.loaded_commit is None:  # read where the model loaded (a Ray worker's cache), no network
            result.loaded_commit = hub_commit(result.loaded_id or job.cell.model.model_id, job.cell.model.revision)
        outcome = Outcome(result=result)
    except Exception as exc:  # judged by the schedule's retry policy
        outcome = Outcome(error=exc)
    finally:
        runner.hardware.empty_cache()
    outcome.wall_time_s = time.perf_counter() - start
    outcome.device, outcome.loads, outcome.worker = runner.describe(), runner.loads - loads, worker
    return outcome
