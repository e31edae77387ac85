"""Warm starts: RTE, MRPC and STS-B start from the best MNLI checkpoint of the same model, chosen
once every MNLI cell of that model has settled; only the best checkpoint is kept."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import replace
from pathlib import Path

from harness.plan import Cell
from harness.results import ResultStore, atomic_write

log = logging.getLogger(__name__)


def load_checkpoint(path: str | Path) -> dict:
    """The warm-start weights at ``path``; a grid of dependent cells reads the same file, so the
    last one read stays in memory (keyed by its modification time, in case it is replaced)."""
    return _read_checkpoint(str(path), Path(path).stat().st_mtime_ns)


@functools.lru_cache(maxsize=1)
def _read_checkpoint(path: str, mtime_ns: int) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def save_checkpoint(state: dict, path: str | Path) -> None:
    from safetensors.torch import save_file

    def write(fd: int, tmp: str) -> None:
        os.close(fd)
        save_file({k: v.contiguous() for k, v in state.items()}, tmp)

    atomic_write(path, write)


class WarmStarts:
    """Which cells are warm-start sources, which checkpoint a waiting cell starts from, and which
    checkpoints may go. Checkpoints live under ``checkpoint_root`` (a folder every worker reads)."""

    def __init__(self, store: ResultStore, cells: list[Cell], checkpoint_root: str | os.PathLike | None = None):
        self.store = store
        self.where = ResultStore(checkpoint_root) if checkpoint_root else store
        self.source_tasks = {c.warm_start_from for c in cells if c.warm_start_from}
        self.by_task: dict[tuple, list[Cell]] = {}
        for c in cells:
            if not c.waiting:
                self.by_task.setdefault(self._group(c, c.task.name), []).append(c)

    def path(self, key: str) -> Path:
        return self.where.checkpoint_path(key)

    def keeps_state(self, cell: Cell) -> bool:
        """A warm-start source, or a fine-tuned embedder (the best per model and task is kept)."""
        return cell.task.name in self.source_tasks or getattr(cell.config, "fine_tuned", False)

    @staticmethod
    def _group(cell: Cell, task: str) -> tuple:
        return cell.model, task, cell.data.limit, cell.data.folder

    def siblings(self, cell: Cell, task: str) -> list[Cell]:
        """The cells of ``task`` run on the same model and data as ``cell``, in plan order."""
        return self.by_task.get(self._group(cell, task), [])

    def best(self, cells: list[Cell], fresh: tuple[Cell, dict] | None = None) -> tuple[Cell, dict] | None:
        """The finished cell with the highest headline score (a tie goes to the earlier cell of
        the plan, so the choice does not depend on which cell finished first)."""
        best = None
        for c in cells:
            record = fresh[1] if fresh and c.key == fresh[0].key else self.store.get(c.key)
            if record is None or record.get("status") != "ok":
                continue
            score = record["metrics"].get(record["headline_metric"], float("-inf"))
            if best is None or score > best[2]:
                best = (c, record, score)
        return None if best is None else best[:2]

    def prune(self, cell: Cell) -> None:
        """Delete the checkpoints of finished cells of ``cell``'s task that are not the best.
        Called after a record is written, so a crash in between leaves one checkpoint too many,
        never none: a finished cell is not fine-tuned again for a checkpoint lost that way."""
        siblings = self.siblings(cell, cell.task.name)
        best = self.best(siblings)
        for c in siblings:
            if (best is None or c.key != best[0].key) and self.store.get(c.key) is not None:
                self.path(c.key).unlink(missing_ok=True)

    def resolve(self, cell: Cell) -> tuple[Cell, Cell | None]:
        """``cell`` starting from its source task's best checkpoint, and the source cell to
        fine-tune again first when that checkpoint is gone (deleted by hand, or never kept)."""
        sources = self.siblings(cell, cell.warm_start_from)
        best = self.best(sources)
        if best is None:
            log.warning("no finished %s cell for %s: %s starts from the pretrained weights",
                        cell.warm_start_from, cell.model.name, cell.task.name)
            return replace(cell, warm_start_from=None), None
        source = best[0]
        if sources:
            self.prune(sources[0])
        if not self.path(source.key).exists():
            return cell, source
        return cell.with_init(source.key), None
