"""Executors walk a plan's cells and write each finished cell to the store.

``local`` runs cells in this process, one after another, grouped by model so each model is
loaded once. Cells already in the store are skipped, which is what makes a rerun resume.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from harness.cells import checkpoint_path, failed_record, run_cell, save_checkpoint
from harness.errors import UserError
from harness.plan import Cell
from harness.results import ResultStore
from harness.runner import Runner
from harness.tasks import TaskSpec

log = logging.getLogger(__name__)


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"{len(self.done)} cells run, {len(self.skipped)} already in the store, {len(self.failed)} failed"


class LocalExecutor:
    def __init__(self, runner: Runner, store: ResultStore, tasks: dict[str, TaskSpec], progress: bool = True,
                 log_samples: bool = False):
        self.runner = runner
        self.store = store
        self.tasks = tasks
        self.progress = progress
        self.log_samples = log_samples

    def run(self, cells: list[Cell]) -> Summary:
        summary = Summary()
        sources = {c.warm_start_from for c in cells if c.warm_start_from}
        bar = tqdm(total=len(cells), desc="cells", disable=not self.progress)
        for cell in cells:
            if cell.waiting:
                cell = self._resolve_warm_start(cell, cells)
            if self.store.has(cell.key):
                summary.skipped.append(cell.key)
                bar.update(1)
                continue
            bar.set_postfix_str(f"{cell.model.name} {cell.task}", refresh=True)
            start = time.perf_counter()
            try:
                self._execute(cell, cells, keep_state=cell.task in sources)
                summary.done.append(cell.key)
            except (UserError, KeyboardInterrupt):
                raise
            except Exception as exc:  # a broken cell must not stop the others
                log.exception("cell %s failed", cell.key)
                self.store.write(failed_record(cell, exc, time.perf_counter() - start))
                summary.failed.append(cell.key)
            bar.update(1)
        bar.close()
        return summary

    def _execute(self, cell: Cell, cells: list[Cell], keep_state: bool) -> dict:
        record, state = run_cell(cell, self.tasks.get(cell.task), self.runner, self.store, keep_state=keep_state,
                                 progress=self.progress, log_samples=self.log_samples)
        if state is not None:
            self._keep_if_best(cell, record, state, cells)
        self.store.write(record)
        return record

    # -- warm start (RTE, MRPC, STS-B from the best MNLI checkpoint) -------------------------
    def _siblings(self, cell: Cell, task: str, cells: list[Cell]) -> list[Cell]:
        return [c for c in cells if c.task == task and c.model == cell.model and c.limit == cell.limit
                and c.data_dir == cell.data_dir and not c.waiting]

    def _best(self, cells: list[Cell]) -> tuple[Cell, dict] | None:
        best = None
        for c in cells:
            record = self.store.get(c.key)
            if record is None or record.get("status") != "ok":
                continue
            score = record["metrics"].get(record["headline_metric"], float("-inf"))
            if best is None or score > best[2]:
                best = (c, record, score)
        return None if best is None else best[:2]

    def _keep_if_best(self, cell: Cell, record: dict, state: dict, cells: list[Cell]) -> None:
        """Keep one checkpoint per (model, task): that of the best finished cell so far."""
        previous = self._best(self._siblings(cell, cell.task, cells))
        score = record["metrics"][record["headline_metric"]]
        if previous is not None:
            prev_cell, prev_record = previous
            if prev_record["metrics"][prev_record["headline_metric"]] >= score and \
                    checkpoint_path(self.store, prev_cell.key).exists():
                return
        save_checkpoint(state, checkpoint_path(self.store, cell.key))
        if previous is not None and previous[0].key != cell.key:
            checkpoint_path(self.store, previous[0].key).unlink(missing_ok=True)

    def _resolve_warm_start(self, cell: Cell, cells: list[Cell]) -> Cell:
        best = self._best(self._siblings(cell, cell.warm_start_from, cells))
        if best is None:
            log.warning("no finished %s cell for %s: %s starts from the pretrained weights",
                        cell.warm_start_from, cell.model.name, cell.task)
            return Cell(**{**cell.__dict__, "warm_start_from": None})
        source, _ = best
        if not checkpoint_path(self.store, source.key).exists():
            # the record survived but its checkpoint did not (deleted, or a crash in between):
            # fine-tune that cell again, which is deterministic for a given seed on CPU
            self._execute(source, cells, keep_state=True)
        return cell.with_init(source.key)
