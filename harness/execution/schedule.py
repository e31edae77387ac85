"""The schedule: which cell runs next, retries, timing, and every write to the results store.

Executors only decide where a cell runs. The schedule hands them jobs in plan order (cells the
store holds are skipped, cells another run has claimed are left to it, warm-start cells wait for
their source), judges each outcome by the one retry policy (``faults.can_pass``), and writes in a
fixed order: the winning warm-start checkpoint before its record, samples before the record that
names them, losing checkpoints after. A record never holds a metric that is not a finite number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from harness.errors import UserError
from harness.execution.faults import can_pass, describe
from harness.execution.progress import Progress
from harness.execution.warm_start import WarmStarts
from harness.execution.work import Job, Outcome
from harness.plan import Cell
from harness.records import bad_metrics, build_record, failed_record
from harness.results import ResultStore

log = logging.getLogger(__name__)


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # an unreadable file holds the cell's record path
    errors: dict[str, str] = field(default_factory=dict)  # failed cell -> its error
    loads: int = 0  # from_pretrained calls, over every worker

    def line(self) -> str:
        text = f"{len(self.done)} cells run, {len(self.skipped)} already in the store, {len(self.failed)} failed"
        if self.blocked:
            text += f", {len(self.blocked)} blocked by unreadable record files"
        return text

    @property
    def settled(self) -> int:
        return len(self.done) + len(self.skipped) + len(self.failed) + len(self.blocked)


class CellQueue:
    """The cells still to run, in plan order, and which one may start now."""

    def __init__(self, cells: list[Cell], store: ResultStore, warm: WarmStarts, summary: Summary):
        self.todo = list(cells)
        self.open = {c.key for c in cells}  # cells without a final record yet (running ones included)
        self.store, self.warm, self.summary = store, warm, summary
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
                        source.task.name, cell.model.name, cell.task.name)
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

    def release(self, cell: Cell) -> None:
        """The cell has its final record, or is given up (the run stops; it runs next time)."""
        self.again.discard(cell.key)
        self.open.discard(cell.key)
        claim = self.claims.pop(cell.key, None)
        if claim is not None:
            self.store.release(claim)

    def close(self) -> None:
        for key in list(self.claims):
            self.store.release(self.claims.pop(key))
        if self.todo:
            log.info("%d cells not started", len(self.todo))


class Schedule:
    def __init__(self, cells: list[Cell], store: ResultStore, retries: int = 2, log_samples: bool = False,
                 checkpoint_root=None, quiet: bool = False):
        self.cells, self.store, self.retries, self.log_samples = cells, store, retries, log_samples
        self.checkpoint_root, self.quiet = checkpoint_root, quiet

    def run(self, executor) -> Summary:
        """Run every cell the store does not hold on ``executor``; returns what happened."""
        summary = Summary()
        self.warm = WarmStarts(self.store, self.cells, self.checkpoint_root)
        self.queue = CellQueue(self.cells, self.store, self.warm, summary)
        self.progress = Progress(len(self.cells), quiet=self.quiet)
        stop: UserError | None = None
        try:
            while True:
                while stop is None and executor.has_room():
                    cell = self.queue.take(wait=executor.idle())
                    if cell is None:
                        break
                    self.progress.started(f"{cell.model.name} {cell.task.name}")
                    executor.submit(self._job(cell))
                    self.progress.finished(summary.settled, "")
                if executor.idle():
                    break
                job, outcome = executor.next_outcome()
                summary.loads += outcome.loads
                stop = self._settle(job, outcome, executor, stop, summary)
        finally:
            executor.cancel_all()
            self.queue.close()
            self.progress.close()
        if stop is not None:
            raise stop
        return summary

    def _job(self, cell: Cell, attempt: int = 0) -> Job:
        return Job(cell=cell, attempt=attempt, log_samples=self.log_samples, progress=self.progress.inner_bars,
                   init_path=str(self.warm.path(cell.init_key)) if cell.init_key else None,
                   checkpoint_path=str(self.warm.path(cell.key)) if self.warm.keeps_state(cell) else None)

    def _settle(self, job: Job, outcome: Outcome, executor, stop, summary: Summary):
        """Retry, record or give up one finished job; returns the error that stops the run, if any."""
        cell, error = job.cell, outcome.error
        if error is not None:
            if isinstance(error, UserError):  # the user's to fix: finish what runs, then stop
                self.queue.release(cell)
                return stop or error
            if can_pass(error) and job.attempt < self.retries and stop is None:
                log.warning("cell %s failed (attempt %d of %d), retrying: %s", cell.key, job.attempt + 1,
                            self.retries + 1, describe(error))
                executor.submit(self._job(cell, job.attempt + 1))
                return stop
            self._fail(cell, describe(error), outcome, summary)
            return stop
        bad = bad_metrics(outcome.result.metrics)
        if bad:
            self._fail(cell, f"metric(s) {', '.join(bad)} not a finite number: {outcome.result.metrics}", outcome,
                       summary)
            return stop
        again = cell.key in self.queue.again and self.store.has(cell.key)
        if again:  # fine-tuned again for its lost checkpoint: its finished record stays as it is
            record = self.store.get(cell.key)
        else:
            samples = self.store.write_samples(cell.key, outcome.result.samples) if outcome.result.samples else None
            record = build_record(cell, outcome.result, outcome.wall_time_s, outcome.device, samples)
            self.store.write(record)  # after its checkpoint (saved by the worker), before pruning the losers
        if self.warm.keeps_state(cell):
            self.warm.prune(cell)
        summary.done.append(cell.key)
        self.queue.release(cell)
        score = record["metrics"].get(record["headline_metric"])
        self.progress.finished(summary.settled, f"ok     {self._describe(cell)}: {record['headline_metric']} "
                                                f"{score:.4f} ({outcome.wall_time_s:.1f} s)")
        return stop

    def _fail(self, cell: Cell, error: str, outcome: Outcome, summary: Summary) -> None:
        if cell.key in self.queue.again:  # its earlier record stays; dependants fall back to pretrained
            log.error("fine-tuning %s again failed: %s", cell.key, error)
        else:
            self.store.write(failed_record(cell, error, outcome.wall_time_s))
            summary.failed.append(cell.key)
            summary.errors[cell.key] = error
        self.warm.path(cell.key).unlink(missing_ok=True)
        self.queue.release(cell)
        self.progress.finished(summary.settled, f"FAILED {self._describe(cell)}: {error}")

    @staticmethod
    def _describe(cell: Cell) -> str:
        hp = cell.config.tunable() if hasattr(cell.config, "tunable") else {}
        config = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())
        return f"{cell.model.name} {cell.task.name} {config} seed {cell.seed}".replace("  ", " ")
