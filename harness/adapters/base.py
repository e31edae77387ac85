"""The adapter interface: ``run(cell, runner, options) -> CellResult``; adapters read data and ask
the runner, and never write files (the schedule writes records, samples and checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunOptions:
    """What the schedule hands a cell besides the cell itself."""

    init_state: dict | None = None  # warm-start weights (the best MNLI checkpoint), or None
    keep_state: bool = False  # return the fine-tuned weights (this cell may be a warm-start source)
    log_samples: bool = False  # keep per-example outputs of generative tasks too
    progress: bool = False  # show progress bars inside the cell


@dataclass
class CellResult:
    """What a cell produced; ``harness.records.build_record`` turns it into the stored record."""

    metrics: dict[str, float]
    headline_metric: str
    split: str
    n_examples: int
    samples: list[dict] | None = None
    state: dict | None = None  # fine-tuned weights, for warm starts
    tokens_processed: int = 0  # real tokens through any forward pass of this cell
    parameters: int | None = None  # backbone parameters of the loaded model
    loaded_id: str | None = None  # the hub id or path that actually loaded
    loaded_commit: str | None = None  # its hub snapshot's commit sha (None for a local folder)
    details: dict = field(default_factory=dict)  # adapter-specific record fields
