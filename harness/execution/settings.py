"""How a run executes, as plain values the CLI fills in: runner, executor, retries, output."""

from __future__ import annotations

import os
from dataclasses import dataclass

from harness.errors import UserError


@dataclass(frozen=True)
class RunnerSettings:
    device: str = "auto"
    dtype: str = "auto"
    attention: str = "auto"
    token_budget: int | None = None

    def as_tuple(self) -> tuple:
        return (self.device, self.dtype, self.attention, self.token_budget)


@dataclass(frozen=True)
class ExecutionSettings:
    executor: str = "local"  # "local" | "ray"
    retries: int = 2
    address: str | None = None  # ray
    gpus_per_cell: float | None = None  # ray
    shared_dir: str | None = None  # ray: where warm-start checkpoints live (default: the results folder)
    log_samples: bool = False
    quiet: bool = False

    def __post_init__(self):
        if self.executor not in ("local", "ray"):
            raise UserError(f"unknown --executor '{self.executor}'; use local (this process) or ray (a Ray cluster)")
        if self.retries is None or self.retries < 0:
            raise UserError(f"--retries must be 0 or more, not {self.retries}")
        if self.executor == "local":
            ray_only = [flag for flag, value in (("--address", self.address), ("--gpus-per-cell", self.gpus_per_cell),
                                                 ("--shared-dir", self.shared_dir)) if value is not None]
            if ray_only:
                raise UserError(f"{', '.join(ray_only)} only apply to --executor ray; add --executor ray or drop them")


def quiet_libraries() -> None:
    """transformers' and datasets' own progress bars and info logs off (the harness reports progress)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
