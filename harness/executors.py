"""Executors walk a plan's cells and write each finished cell to the store.

``local`` runs cells in this process, one after another, grouped by model so each model is
loaded once. ``ray`` (harness/ray_executor.py) runs each cell as a Ray task on a cluster. Both
share the bookkeeping here: ``Schedule`` says which cell may start (not in the store, not claimed
by another run, its warm-start source settled), ``WarmStarts`` keeps the best MNLI checkpoint,
and a cell that raises is retried, then recorded as failed while the others go on. Cells already
in the store are skipped, which is what makes a rerun resume.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace

from tqdm.auto import tqdm

from harness.cells import checkpoint_path, failed_record, run_cell, save_checkpoint
from harness.errors import UserError
from harness.plan import Cell
from harness.results import ResultStore
from harness.runner import Runner
from harness.tasks import TaskSpec

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 2


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # an unreadable file holds the cell's record path
    loads: int = 0  # from_pretrained calls, over every worker

    def line(self) -> str:
        text = f"{len(self.done)} cells run, {len(self.skipped)} already in the store, {len(self.failed)} failed"
        if self.blocked:
            text += f", {len(self.blocked)} blocked by unreadable record files"
        return text

    @property
    def settled(self) -> int:
        return len(self.done) + len(self.skipped) + len(self.failed) + len(self.blocked)


class WarmStarts:
    """RTE, MRPC and STS-B start from the best MNLI checkpoint of the same model. Only that
    checkpoint is kept (under ``<checkpoint_root>/checkpoints``, a folder every worker reads);
    a waiting cell learns which one once every MNLI cell of its model has settled."""

    def __init__(self, store: ResultStore, cells: list[Cell], checkpoint_root: str | os.PathLike | None = None):
        self.store = store
        self.where = ResultStore(checkpoint_root) if checkpoint_root else store
        self.source_tasks = {c.warm_start_from for c in cells if c.warm_start_from}
        self.by_task: dict[tuple, list[Cell]] = {}
        for c in cells:
            if not c.waiting:
                self.by_task.setdefault(self._group(c, c.task), []).append(c)

    def path(self, key: str):
        return checkpoint_path(self.where, key)

    def keeps_state(self, cell: Cell) -> bool:
        return cell.task in self.source_tasks

    @staticmethod
    def _group(cell: Cell, task: str) -> tuple:
        return cell.model, task, cell.limit, cell.data_dir

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

    def is_best(self, cell: Cell, record: dict) -> bool:
        best = self.best(self.siblings(cell, cell.task), fresh=(cell, record))
        return best is not None and best[0].key == cell.key

    def prune(self, cell: Cell) -> None:
        """Delete the checkpoints of finished cells of ``cell``'s task that are not the best.
        Called after a record is written, so a crash in between leaves one checkpoint too many,
        never none: a finished cell is not fine-tuned again for a checkpoint lost that way."""
        siblings = self.siblings(cell, cell.task)
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
                        cell.warm_start_from, cell.model.name, cell.task)
            return replace(cell, warm_start_from=None), None
        source = best[0]
        if sources:
            self.prune(sources[0])
        if not self.path(source.key).exists():
            return cell, source
        return cell.with_init(source.key), None


class Schedule:
    """The cells still to run, in plan order, and which one may start now."""

    def __init__(self, cells: list[Cell], store: ResultStore, warm: WarmStarts, summary: Summary):
        self.todo = list(cells)
        self.open = {c.key for c in cells}  # cells without a final record yet (running ones included)
        self.store = store
        self.warm = warm
        self.summary = summary
        self.claims: dict[str, int] = {}  # cells running in this run -> their claim
        self.again: set[str] = set()  # finished source cells fine-tuned again for a lost checkpoint
        self.tried_again: set[str] = set()

    def take(self, wait: bool = False) -> Cell | None:
        """The next cell to run, claimed for this run; None when none can start now: those left
        wait for cells running here or, unless ``wait``, for cells another run is computing."""
        while True:
            cell, elsewhere = self._scan()
            if cell is not None or elsewhere is None or not wait or self.claims:
                return cell
            # only cells another run holds are left: wait until it lets one go, then look again
            self.store.release(self.store.claim(elsewhere.key, wait=True))

    def _scan(self) -> tuple[Cell | None, Cell | None]:
        """(the first cell that can start, claimed; the first cell another run holds)."""
        i, elsewhere = 0, None
        while i < len(self.todo):
            cell = self.todo[i]
            if cell.waiting:
                if any(c.key in self.open for c in self.warm.siblings(cell, cell.warm_start_from)):
                    i += 1
                    continue
                cell = self._resolve(i)
            if cell.key not in self.again and self._settle_now(i, cell):
                continue
            claim = self.store.claim(cell.key)
            if claim is None:
                elsewhere = elsewhere or cell
                i += 1
                continue
            if cell.key not in self.again and self.store.has(cell.key):  # finished there a moment ago
                self.store.release(claim)
                self._settle_now(i, cell)
                continue
            del self.todo[i]
            self.claims[cell.key] = claim
            return cell, elsewhere
        return None, elsewhere

    def _resolve(self, i: int) -> Cell:
        cell, source = self.warm.resolve(self.todo[i])
        if source is not None and source.key in self.tried_again:
            log.warning("the %s checkpoint of %s is still missing: %s starts from the pretrained weights",
                        source.task, cell.model.name, cell.task)
            cell, source = replace(cell, warm_start_from=None), None
        self.todo[i] = cell
        if source is not None:  # fine-tune the source again (deterministic on CPU), then this cell
            log.warning("checkpoint of %s is missing: fine-tuning it again", source.key)
            self.again.add(source.key)
            self.tried_again.add(source.key)
            self.todo.insert(i, source)
            self.open.add(source.key)
            return source
        return cell

    def _settle_now(self, i: int, cell: Cell) -> bool:
        """Drop a cell the store already settles (finished, or blocked by an unreadable file)."""
        if self.store.has(cell.key):
            self.summary.skipped.append(cell.key)
        elif self.store.unreadable(cell.key):
            log.warning("%s is not a record this harness reads; it is left as it is and cell %s is not run: "
                        "move the file away to run the cell", self.store.record_path(cell.key), cell.key)
            self.summary.blocked.append(cell.key)
        else:
            return False
        del self.todo[i]
        self.open.discard(cell.key)
        return True

    def finish(self, cell: Cell, record: dict | None = None, error: BaseException | None = None,
               wall_time: float = 0.0) -> None:
        """Write the cell's record (ok, or failed with its error), then drop its claim."""
        try:
            if record is not None:
                self.store.write(record)
                self.summary.done.append(cell.key)
                if self.warm.keeps_state(cell):
                    self.warm.prune(cell)
            elif cell.key in self.again:  # its finished record stays; dependants fall back to pretrained
                log.error("fine-tuning %s again failed: %s", cell.key, error)
            else:
                self.store.write(failed_record(cell, error, wall_time))
                self.summary.failed.append(cell.key)
        finally:
            self.again.discard(cell.key)
            self.drop(cell)

    def drop(self, cell: Cell) -> None:
        """Give up a claim without a record (the run stops; the cell runs next time)."""
        self.open.discard(cell.key)
        claim = self.claims.pop(cell.key, None)
        if claim is not None:
            self.store.release(claim)

    def close(self) -> None:
        for key in list(self.claims):
            self.store.release(self.claims.pop(key))
        if self.todo:
            log.info("%d cells not started", len(self.todo))


class LocalExecutor:
    def __init__(self, runner: Runner, store: ResultStore, tasks: dict[str, TaskSpec], progress: bool = True,
                 log_samples: bool = False, retries: int = DEFAULT_RETRIES):
        self.runner = runner
        self.store = store
        self.tasks = tasks
        self.progress = progress
        self.log_samples = log_samples
        self.retries = retries

    def describe(self) -> str:
        return self.runner.describe()

    def close(self) -> None:
        pass

    def run(self, cells: list[Cell]) -> Summary:
        summary = Summary()
        loads = self.runner.loads
        warm = WarmStarts(self.store, cells)
        schedule = Schedule(cells, self.store, warm, summary)
        bar = tqdm(total=len(cells), desc="cells", disable=not self.progress)
        try:
            while (cell := schedule.take(wait=True)) is not None:
                bar.set_postfix_str(f"{cell.model.name} {cell.task}", refresh=True)
                record, error, wall_time = self._attempts(cell, warm)
                schedule.finish(cell, record, error, wall_time)
                bar.update(summary.settled - bar.n)
        finally:
            schedule.close()
            bar.close()
        summary.loads = self.runner.loads - loads
        return summary

    def _attempts(self, cell: Cell, warm: WarmStarts) -> tuple[dict | None, BaseException | None, float]:
        """Run the cell, again after an error up to ``retries`` times: (record, last error, seconds)."""
        error = None
        for attempt in range(self.retries + 1):
            start = time.perf_counter()
            try:
                return self._execute(cell, warm), None, time.perf_counter() - start
            except (UserError, KeyboardInterrupt):
                raise
            except Exception as exc:  # a broken cell must not stop the others
                error = exc
                log.warning("cell %s failed (attempt %d of %d): %s: %s", cell.key, attempt + 1, self.retries + 1,
                            type(exc).__name__, exc, exc_info=attempt == self.retries)
        return None, error, time.perf_counter() - start

    def _execute(self, cell: Cell, warm: WarmStarts) -> dict:
        record, state = run_cell(cell, self.tasks.get(cell.task), self.runner, self.store,
                                 keep_state=warm.keeps_state(cell), progress=self.progress,
                                 log_samples=self.log_samples)
        if state is not None and warm.is_best(cell, record):
            save_checkpoint(state, warm.path(cell.key))  # before the record: a record means its checkpoint is kept
        return record


def make_executor(args, store: ResultStore, tasks: dict[str, TaskSpec]):
    """The executor the flags ask for (``--executor``, ``--retries`` and the Ray flags)."""
    kind = getattr(args, "executor", None) or "local"
    retries = getattr(args, "retries", DEFAULT_RETRIES)
    if retries is None or retries < 0:
        raise UserError(f"--retries must be 0 or more, not {retries}")
    common = {"progress": not getattr(args, "quiet", False), "log_samples": getattr(args, "log_samples", False),
              "retries": retries}
    if kind == "local":
        ray_only = [flag for flag, attr in (("--address", "address"), ("--gpus-per-cell", "gpus_per_cell"),
                                            ("--shared-dir", "shared_dir")) if getattr(args, attr, None) is not None]
        if ray_only:
            raise UserError(f"{', '.join(ray_only)} only apply to --executor ray; add --executor ray or drop them")
        return LocalExecutor(Runner(args.device, args.dtype, args.attn, args.token_budget), store, tasks, **common)
    if kind == "ray":
        from harness.ray_executor import RayExecutor

        return RayExecutor(store, tasks, settings=(args.device, args.dtype, args.attn, args.token_budget),
                           address=getattr(args, "address", None), gpus_per_cell=getattr(args, "gpus_per_cell", None),
                           shared_dir=getattr(args, "shared_dir", None), **common)
    raise UserError(f"unknown --executor '{kind}'; use local (this process) or ray (a Ray cluster)")
