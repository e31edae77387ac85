"""Warm starts under ASHA: RTE, MRPC and STS-B start from the checkpoint of the best MNLI
configuration that completed its full schedule (stopped configurations save no checkpoint and
are never chosen), once every MNLI experiment of the model has ended; the other checkpoints go."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from harness.plan import Cell
from harness.results import ResultStore

log = logging.getLogger(__name__)


class AshaWarmStarts:
    def __init__(self, store: ResultStore, cells: list[Cell], checkpoint_root: str | os.PathLike | None = None):
        self.store, self.cells = store, cells
        self.where = ResultStore(checkpoint_root) if checkpoint_root else store
        self.source_tasks = {c.warm_start_from for c in cells if c.warm_start_from}

    def path(self, key: str) -> Path:
        return self.where.checkpoint_path(key)

    def checkpoint_paths(self, group: list[Cell]) -> dict[str, str]:
        """Where each configuration of a source task saves its weights when it completes."""
        return {c.key: str(self.path(c.key)) for c in group if c.task.name in self.source_tasks}

    def init_paths(self, group: list[Cell]) -> dict[str, str]:
        return {c.key: str(self.path(c.init_key)) for c in group if c.init_key}

    def sources_of(self, cell: Cell) -> list[Cell]:
        return [c for c in self.cells if c.model == cell.model and c.task.name == cell.warm_start_from
                and (c.data.folder, c.data.limit) == (cell.data.folder, cell.data.limit)]

    def best(self, cell: Cell) -> str | None:
        """The key of the completed source configuration with the best score (the earlier in the
        plan on a tie), over every seed, as the grid chooses its warm start."""
        best = None
        for source in self.sources_of(cell):
            record = self.store.get(source.key)
            if record is None or record.get("status") != "ok" or (record.get("search") or {}).get("stopped_early"):
                continue
            score = record["metrics"].get(record["headline_metric"], float("-inf"))
            if best is None or score > best[1]:
                best = (source.key, score)
        return None if best is None else best[0]

    def resolve(self, group: list[Cell]) -> list[Cell]:
        """The experiment's cells, each starting from its source's best checkpoint (or, when there
        is none, from the pretrained weights, said in a warning and in the protocol label)."""
        out = []
        for cell in group:
            if not cell.waiting:
                out.append(cell)
                continue
            key = self.best(cell)
            if key is not None:
                self.prune(cell, key)
            if key is None or not self.path(key).exists():
                log.warning("no %s checkpoint of a completed configuration for %s: %s starts from the pretrained "
                            "weights", cell.warm_start_from, cell.model.name, cell.task.name)
                out.append(replace(cell, warm_start_from=None))
            else:
                out.append(cell.with_init(key))
        return out

    def resolve_trials(self, trials: list[list[Cell]]) -> list[list[Cell]]:
        """``resolve`` for an experiment's trials, keeping them apart."""
        return [self.resolve(trial) for trial in trials]

    def prune(self, cell: Cell, keep: str) -> None:
        for source in self.sources_of(cell):
            if source.key != keep:
                self.path(source.key).unlink(missing_ok=True)
