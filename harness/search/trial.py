"""One ASHA trial where Ray Tune runs it: a grid configuration fine-tuned by the harness's own
classification adapter, reporting its dev score to Tune at every rung and its full result at
the end.

What a trial reports (each a plain dict, consumed by the driver's recorder):
``asha_t`` (ASHA's time axis, see ``space.py``), ``score`` (the task's headline metric on its first
eval split), ``rank`` (the score ASHA compares: the headline, ties broken by the mean
log-probability of the gold label, or minus the squared error for regression, at 1e-9 of its
weight, so that small dev sets where many configurations share an accuracy still rank), ``progress``
(fraction of its own steps), ``step``, ``train_tokens`` (tokens trained so far, rung evaluations not
included), ``full_train_tokens`` (what the whole configuration trains: the grid's cost of it).
The last report also carries the ``CellResult`` the record is built from. A configuration the
store already holds is replayed from its record (no training); one stopped early last time is
replayed to where it stopped, and trained again (from the start, with the same seed) only if ASHA
now lets it go further.
"""

from __future__ import annotations

import math
import time

from harness import metrics
from harness.adapters import classification, finetune
from harness.adapters.base import RunOptions
from harness.errors import UserError, first_line, one_line
from harness.execution.faults import can_pass
from harness.execution.warm_start import load_checkpoint, save_checkpoint
from harness.search.space import AshaSettings

_RUNNERS: dict[tuple, object] = {}  # in each worker process: runner settings -> Runner
TIE_WEIGHT = 1e-9


def runner_for(settings: tuple):
    from harness.execution.settings import quiet_libraries
    from harness.runner import Runner

    if settings not in _RUNNERS:
        quiet_libraries()
        _RUNNERS[settings] = Runner(*settings)
    return _RUNNERS[settings]


def tie_break(spec, outputs: list, labels: list) -> float:
    """Mean log-probability of the gold label (classification) or minus the mean squared error."""
    if not labels:
        return 0.0
    if spec.is_regression:
        return -sum((o - y) ** 2 for o, y in zip(outputs, labels)) / len(labels)
    return sum(math.log(max(o[int(y)], 1e-12)) for o, y in zip(outputs, labels)) / len(labels)


def rank_of(score: float, tie: float) -> float:
    return score + TIE_WEIGHT * max(-100.0, min(100.0, tie))


class Rungs:
    """The fine-tuning loop's rung callback: at each rung's step, score the first eval split and
    report to Tune (rungs up to ``after`` were replayed from the store and are not reported again)."""

    def __init__(self, cell, runner, asha: AshaSettings, report, after: float = 0.0):
        self.cell, self.runner, self.asha, self.report, self.after = cell, runner, asha, report, after
        self.steps: dict[int, list[float]] | None = None
        self.full_train_tokens = None
        self.start_tokens = runner.tokens_processed

    def encoded(self, split: str):
        tok = self.runner.tokenizer(self.cell.model)
        c = self.cell
        return tok, classification.encode(tok, c.model.architecture, c.task, split, c.data.folder, c.data.limit,
                                          c.config.max_length)

    def train_tokens_per_epoch(self) -> int:
        return sum(len(ids) for ids in self.encoded(self.cell.task.train_split)[1].ids)

    def __call__(self, step: int, total_steps: int, train_tokens: int, model) -> None:
        if self.steps is None:
            self.steps = self.asha.rung_steps(total_steps)
            self.full_train_tokens = self.train_tokens_per_epoch() * self.cell.config.epochs
        units = [u for u in self.steps.get(step, []) if u > self.after]
        if not units:
            return
        spec = self.cell.task
        tok, data = self.encoded(spec.primary_split)
        preds, outputs = classification.predictions(spec, finetune.predict(self.runner, model, data.ids,
                                                                           tok.pad_token_id))
        labels = data.labels.tolist()
        scores = metrics.compute(list(spec.metrics), preds, labels)
        score = scores[spec.headline_metric]
        for unit in units:
            self.report({"asha_t": unit, "score": score, "rank": rank_of(score, tie_break(spec, outputs, labels)),
                         "progress": step / total_steps, "step": step, "total_steps": total_steps,
                         "train_tokens": train_tokens, "full_train_tokens": self.full_train_tokens,
                         "metrics": scores, "n_examples": len(labels), "replayed": False,
                         "tokens_processed": self.runner.tokens_processed - self.start_tokens,
                         "parameters": self.runner.parameters_of(self.cell.model),
                         "loaded_id": self.runner.loaded_id_of(self.cell.model), "device": self.runner.describe()})


def final_report(cell, result, asha: AshaSettings, full_train_tokens: int, wall_time_s: float, device: str) -> dict:
    spec = cell.task
    rows = [s for s in result.samples or [] if s.get("split") == spec.primary_split]
    outputs = [s.get("score" if spec.is_regression else "probs") for s in rows]
    score = result.metrics[spec.headline_metric]
    steps = result.details.get("train_steps")
    return {"asha_t": asha.max_t, "score": score, "rank": rank_of(score, tie_break(spec, outputs, [s["label"] for s in rows])),
            "progress": 1.0, "step": steps, "total_steps": steps, "train_tokens": result.details.get("train_tokens"),
            "full_train_tokens": full_train_tokens, "metrics": result.metrics, "n_examples": result.n_examples,
            "cell_result": result, "wall_time_s": wall_time_s, "device": device, "replayed": False}


def replay(stored: dict | None, asha: AshaSettings, report) -> tuple[bool, float]:
    """Report what the store holds of this configuration: (complete, last rung replayed)."""
    if not stored:
        return False, 0.0
    last = 0.0
    for entry in stored["history"]:
        if entry["asha_t"] in asha.units[:-1]:
            report({**entry, "replayed": True})
            last = entry["asha_t"]
    if stored["complete"]:
        report({**stored["final"], "asha_t": asha.max_t, "replayed": True})
        return True, asha.max_t
    return False, last


def run_trial(config: dict, cells=None, stored=None, settings: tuple = (), asha: AshaSettings = None,
              init_paths=None, checkpoint_paths=None, report=None) -> None:
    """The Tune trainable: ``config["index"]`` picks the configuration (cell) of this experiment."""
    if report is None:
        from ray import tune

        report = tune.report
    cell = cells[config["index"]]
    complete, after = replay((stored or {}).get(cell.key), asha, report)
    if complete:
        return
    start = time.perf_counter()
    runner = runner_for(settings)
    rungs = Rungs(cell, runner, asha, report, after)
    init_path = (init_paths or {}).get(cell.key)
    checkpoint_path = (checkpoint_paths or {}).get(cell.key)
    options = RunOptions(init_state=load_checkpoint(init_path) if init_path else None,
                         keep_state=checkpoint_path is not None, rung_callback=rungs)
    try:
        result = classification.run(cell, runner, options)
    except Exception as exc:
        if can_pass(exc):  # out of memory, a lost connection: Tune runs the trial again (--retries)
            raise
        # a fault that will recur (or the user's to fix): recorded as failed, not retried; no "rank",
        # so ASHA ignores this report
        user = isinstance(exc, UserError)
        report({"asha_t": asha.max_t, "error": first_line(exc) if user else one_line(exc), "user_error": user,
                "wall_time_s": time.perf_counter() - start})
        return
    finally:
        runner.hardware.empty_cache()
    if result.state is not None and checkpoint_path:
        save_checkpoint(result.state, checkpoint_path)  # a candidate; the driver keeps the best
    result.state = None
    full = rungs.full_train_tokens or rungs.train_tokens_per_epoch() * cell.config.epochs
    report(final_report(cell, result, asha, full, time.perf_counter() - start, runner.describe()))
