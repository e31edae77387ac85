"""The driver side of an ASHA experiment: a Ray Tune callback that turns each trial's end into one
record in the results store, through the harness's record builder.

A configuration that ran its full schedule gets the record a grid cell would get (metrics of every
eval split, samples, the same fields), plus ``search``; one ASHA stopped gets a record of the
score it had reached, marked ``search.stopped_early`` with its ``progress`` (fraction of its own
steps): the report never chooses it as a best configuration. Replayed trials (already in the
store) are not written again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ray import tune

from harness.adapters.base import CellResult
from harness.errors import one_line
from harness.records import bad_metrics, build_record, failed_record
from harness.results import ResultStore
from harness.search.space import AshaSettings

log = logging.getLogger(__name__)
RUNG_FIELDS = ("asha_t", "score", "rank", "progress", "step", "train_tokens", "eval_tokens", "metrics")


@dataclass
class Tally:
    completed: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    replayed: list[str] = field(default_factory=list)  # settled from the store, not trained again
    errors: dict[str, str] = field(default_factory=dict)
    user_errors: list[str] = field(default_factory=list)  # failures the user must fix: the run stops (exit 2)
    unrecorded: list[str] = field(default_factory=list)  # trials whose records could not be written: exit 1
    train_tokens: int = 0  # trained in this run
    full_train_tokens: int = 0  # what the grid would train for every configuration settled here
    search_train_tokens: int = 0  # what ASHA trained for them, this run and the runs it resumes

    def line(self) -> str:
        text = (f"{len(self.completed)} cells completed, {len(self.stopped)} stopped early, "
                f"{len(self.failed)} failed, {len(self.replayed)} already in the store")
        if self.full_train_tokens:
            text += (f"; training tokens {self.search_train_tokens:,} = "
                     f"{self.search_train_tokens / self.full_train_tokens:.1%} of the full grid's "
                     f"{self.full_train_tokens:,}")
        if self.unrecorded:
            text += f"; {len(self.unrecorded)} trials NOT RECORDED"
        return text

    @property
    def code(self) -> int:
        """The run's exit code: 1 when a configuration failed or a record could not be written."""
        return 1 if self.failed or self.unrecorded else 0


def trial_error(trial) -> str:
    """The exception a failed trial raised, as ``Type: first line``."""
    error = None
    for getter in ("get_pickled_error", "get_error"):
        try:
            error = getattr(trial, getter)()
        except Exception:
            error = None
        if error is not None:
            break
    cause = getattr(error, "cause", None) or error
    return one_line(cause) if cause is not None else "the trial failed"


def rung_entry(result: dict) -> dict:
    return {k: result.get(k) for k in RUNG_FIELDS}


def stored_trials(store: ResultStore, cells, asha: AshaSettings) -> dict[str, dict]:
    """Cell key -> what the store holds of that configuration: its rung history, whether it
    completed, its final entry."""
    out = {}
    for cell in cells:
        record = store.get(cell.key)
        search = (record or {}).get("search") or {}
        if record is None or record.get("status") != "ok" or search.get("method") != "asha":
            continue
        complete = not search.get("stopped_early")
        fits = search.get("rung_fractions") == asha.to_dict()["rung_fractions"]
        if not complete and not fits:
            continue  # stopped under other rungs: its history does not fit these
        # completed under other rungs: its final result stands, its rung scores (other fractions) do not
        out[cell.key] = {"history": (search.get("history") or []) if fits else [], "complete": complete,
                         "final": search.get("final"),
                         "train_tokens": search.get("search_train_tokens", 0), "full": search.get("full_train_tokens")}
    return out


class Recorder(tune.Callback):
    """``trials``: the experiment's configurations, each a list of cells (one per seed)."""

    def __init__(self, trials, store: ResultStore, asha: AshaSettings, stored: dict, tally: Tally, name: str):
        self.trials, self.store, self.asha, self.stored, self.tally, self.name = trials, store, asha, stored, tally, name
        self.history: dict[str, dict[str, list[dict]]] = {}  # trial id -> cell key -> rung entries

    def cells(self, trial):
        return self.trials[trial.config["index"]]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("asha_t") is not None and result["asha_t"] < self.asha.max_t:
            history = self.history.setdefault(trial.trial_id, {})
            for key, entry in (result.get("seeds") or {}).items():
                history.setdefault(key, []).append(rung_entry({**entry, "asha_t": result["asha_t"]}))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.history.pop(trial.trial_id, None)  # it starts again and reports its rungs again

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if last.get("asha_t") is None:
            return
        history = self.history.pop(trial.trial_id, {})
        cells = self.cells(trial)
        try:
            if last.get("error"):
                failed = set(last.get("cells") or [c.key for c in cells])
                for cell in cells:
                    if cell.key in failed:
                        self.settle(cell, last, [])
                return
            for cell in cells:
                entry = (last.get("seeds") or {}).get(cell.key)
                if entry is not None:
                    self.settle(cell, {**entry, "asha_t": last["asha_t"], "configuration_score": last["score"],
                                       "time_total_s": (last.get("time_total_s") or 0.0) / len(cells)},
                                history.get(cell.key, []))
        except Exception as exc:  # a callback that raises would end the whole experiment: the run fails at its end
            log.exception("could not record trial %s", trial.trial_id)
            self.tally.unrecorded.append(f"trial {trial.trial_id}: {one_line(exc)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        """A trial that raised more than --retries times (a fault that can pass, e.g. out of memory)."""
        for cell in self.cells(trial):
            self.fail(cell, trial_error(trial), (trial.last_result or {}).get("time_total_s", 0.0))

    def fail(self, cell, error: str, wall_time_s: float, user_error: bool = False) -> None:
        if self.store.has(cell.key):  # a finished seed (stored earlier, or replayed) stays finished
            return
        if user_error:  # the user's to fix: no record (as in a grid run); the run stops after this experiment
            self.tally.user_errors.append(error)
            return
        self.store.write(failed_record(cell, error, wall_time_s))
        self.tally.failed.append(cell.key)
        self.tally.errors[cell.key] = error

    def settle(self, cell, last: dict, history: list[dict]) -> None:
        if last.get("error"):
            self.fail(cell, last["error"], last.get("wall_time_s", 0.0), last.get("user_error", False))
            return
        earlier = self.stored.get(cell.key) or {}
        if last.get("replayed"):
            self.tally.replayed.append(cell.key)
            self.tally.full_train_tokens += last.get("full_train_tokens") or earlier.get("full") or 0
            self.tally.search_train_tokens += earlier.get("train_tokens") or 0
            return
        complete = last["asha_t"] >= self.asha.max_t
        spent = (last.get("train_tokens") or 0) + (earlier.get("train_tokens") or 0)
        search = {"method": "asha", "progress": round(last["progress"], 6), "stopped_early": not complete,
                  "rung": last["asha_t"], **self.asha.to_dict(), "metric": cell.task.headline_metric,
                  "rank": last["rank"], "configuration_score": last.get("configuration_score"),
                  "full_train_tokens": last["full_train_tokens"],
                  "search_train_tokens": spent,
                  # dev scoring at the rungs, beside training: not in the record's tokens_processed
                  "rung_eval_tokens": sum(e.get("eval_tokens") or 0 for e in history),
                  "history": history, "final": rung_entry(last) if complete else None,
                  "experiment": self.name}
        if complete:
            result = last["cell_result"]
            result.details = {**result.details, "search": search}
            samples = self.store.write_samples(cell.key, result.samples) if result.samples else None
            record = build_record(cell, result, last["wall_time_s"], last["device"], samples)
        else:
            result = CellResult(metrics=last["metrics"], headline_metric=cell.task.headline_metric,
                                split=cell.task.primary_split, n_examples=last["n_examples"],
                                tokens_processed=last.get("train_tokens") or 0, parameters=last["parameters"],
                                loaded_id=last["loaded_id"], loaded_commit=last.get("loaded_commit"),
                                details={"train_tokens": last["train_tokens"], "train_steps": last["step"],
                                         "search": search})
            record = build_record(cell, result, last.get("time_total_s", 0.0), last["device"], None)
        bad = bad_metrics(record["metrics"])
        if bad:
            self.fail(cell, f"metric(s) {', '.join(bad)} not a finite number: {record['metrics']}",
                      record["wall_time_s"])
            return
        self.store.write(record)
        (self.tally.completed if complete else self.tally.stopped).append(cell.key)
        self.tally.train_tokens += last.get("train_tokens") or 0
        self.tally.full_train_tokens += last.get("full_train_tokens") or 0
        self.tally.search_train_tokens += spent
