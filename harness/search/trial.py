"""One ASHA trial where Ray Tune runs it: one grid configuration fine-tuned for every seed of the
run side by side by the harness's own classification adapter, reporting the mean of its seeds' dev
scores to Tune at every rung and every seed's full result at the end.

The seeds train in lockstep on the one loaded model: each seed is a paused
``classification.run_steps``; before a seed resumes its weights and random state are put back,
so every seed trains exactly as its grid cell does (the same steps, the same dropout draws).
ASHA thus ranks a configuration by the mean over seeds, as the report ranks the grid's, and a
configuration that completes has every seed, like a grid configuration.

What a trial reports (each a plain dict, consumed by the driver's recorder): ``asha_t`` (ASHA's
time axis, see ``space.py``), ``rank`` and ``score`` (the means over seeds), and ``seeds``: for each
seed's cell key, ``score`` (the task's headline metric on its first eval split), ``rank`` (the
headline, ties broken by the mean log-probability of the gold label, or minus the squared error
for regression, at 1e-9 of its weight, so that small dev sets where many configurations share an
accuracy still rank), ``progress`` (fraction of its own steps), ``step``, ``train_tokens`` (tokens
trained so far, rung evaluations not included), ``full_train_tokens`` (what the whole
configuration trains: the grid's cost of it), ``eval_tokens`` (the dev tokens scored at this rung); the last report also carries each seed's
``CellResult``. A configuration the store already holds is replayed from its records (no
training); seeds stopped early last time are replayed to where they stopped, and trained again
(from the start, with the same seed) only if ASHA now lets the configuration go further.
"""

from __future__ import annotations

import math
import random
import statistics
import time

import torch

from harness import metrics
from harness.adapters import classification, finetune
from harness.adapters.base import RunOptions
from harness.errors import UserError, first_line, one_line
from harness.models import hub_commit
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


def rung_units(asha: AshaSettings, after: float):
    """``pause_at`` for ``run_steps``: the steps of the rungs past ``after`` (ASHA time units)."""
    def pause_at(total_steps: int) -> set[int]:
        return {step for step, units in asha.rung_steps(total_steps).items() if any(u > after for u in units)}
    return pause_at


class Seed:
    """One seed of the configuration, paused between rungs: its generator, and while another
    seed runs, its weights and random state."""

    def __init__(self, cell, steps):
        self.cell, self.steps = cell, steps
        self.model = self.weights = self.rng = None
        self.result = None

    def advance(self):
        """Resume to the next pause: (step, total_steps, train_tokens, model), or None at the end."""
        if self.weights is not None:
            with torch.no_grad():
                self.model.load_state_dict(self.weights)
            random.setstate(self.rng[0])
            torch.set_rng_state(self.rng[1])
            if self.rng[2] is not None:
                torch.cuda.set_rng_state_all(self.rng[2])
            self.weights = None
        try:
            return next(self.steps)
        except StopIteration as done:
            self.result = done.value
            return None

    def pause(self, model) -> None:
        self.model = model
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.rng = (random.getstate(), torch.get_rng_state(),
                    torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


class Rungs:
    """Scores a seed's model on the first eval split at a rung."""

    def __init__(self, cells, runner, asha: AshaSettings):
        self.cells, self.runner, self.asha = cells, runner, asha
        self.full_train_tokens = None

    def encoded(self, cell, split: str):
        tok = self.runner.tokenizer(cell.model)
        return tok, classification.encode(tok, cell.model.architecture, cell.task, split, cell.data.folder,
                                          cell.data.limit, cell.config.max_length)

    def train_tokens(self) -> int:
        """What one seed of this configuration trains over its whole schedule."""
        if self.full_train_tokens is None:
            cell = self.cells[0]
            self.full_train_tokens = sum(len(ids) for ids in self.encoded(cell, cell.task.train_split)[1].ids) * \
                cell.config.epochs
        return self.full_train_tokens

    def entry(self, cell, step: int, total_steps: int, train_tokens: int, model) -> dict:
        spec = cell.task
        tok, data = self.encoded(cell, spec.primary_split)
        preds, outputs = classification.predictions(spec, finetune.predict(self.runner, model, data.ids,
                                                                           tok.pad_token_id))
        labels = data.labels.tolist()
        scores = metrics.compute(list(spec.metrics), preds, labels)
        score = scores[spec.headline_metric]
        return {"score": score, "rank": rank_of(score, tie_break(spec, outputs, labels)),
                "progress": step / total_steps, "step": step, "total_steps": total_steps,
                "train_tokens": train_tokens, "full_train_tokens": self.train_tokens(),
                "eval_tokens": sum(len(ids) for ids in data.ids), "metrics": scores, "n_examples": len(labels), "replayed": False,
                "parameters": self.runner.parameters_of(cell.model),
                "loaded_id": self.runner.loaded_id_of(cell.model), "device": self.runner.describe(),
                "loaded_commit": hub_commit(self.runner.loaded_id_of(cell.model) or cell.model.model_id,
                                            cell.model.revision)}


def combined(unit: float, seeds: dict[str, dict]) -> dict:
    """One report to Tune: the configuration's rank and score (means over its seeds) and each seed's entry."""
    entries = list(seeds.values())
    return {"asha_t": unit, "rank": statistics.fmean(e["rank"] for e in entries),
            "score": statistics.fmean(e["score"] for e in entries), "seeds": seeds,
            "replayed": all(e.get("replayed") for e in entries)}


def final_entry(cell, result, asha: AshaSettings, full_train_tokens: int, wall_time_s: float, device: str) -> dict:
    spec = cell.task
    rows = [s for s in result.samples or [] if s.get("split") == spec.primary_split]
    outputs = [s.get("score" if spec.is_regression else "probs") for s in rows]
    score = result.metrics[spec.headline_metric]
    steps = result.details.get("train_steps")
    return {"score": score, "rank": rank_of(score, tie_break(spec, outputs, [s["label"] for s in rows])),
            "progress": 1.0, "step": steps, "total_steps": steps, "train_tokens": result.details.get("train_tokens"),
            "full_train_tokens": full_train_tokens, "metrics": result.metrics, "n_examples": result.n_examples,
            "cell_result": result, "wall_time_s": wall_time_s, "device": device, "replayed": False}


def entry_at(stored: dict | None, unit: float) -> dict | None:
    for entry in (stored or {}).get("history") or []:
        if entry["asha_t"] == unit:
            return {**entry, "replayed": True}
    return None


def kept_seeds(cells, stored: dict, asha: AshaSettings) -> dict[str, dict]:
    """Cell key -> final entry of the seeds the store holds complete with a score at every rung
    of these settings (a seed completed under other rungs has no score to rank with at these; it
    trains again, to the same numbers, beside the configuration's other seeds)."""
    kept = {}
    for cell in cells:
        held = stored.get(cell.key) or {}
        if held.get("complete") and all(entry_at(held, unit) for unit in asha.units[:-1]):
            kept[cell.key] = {**held["final"], "replayed": True}
    return kept


def replay(cells, stored: dict, asha: AshaSettings, report) -> float:
    """Report the rungs the store holds for every seed of the configuration; the last one replayed
    (ASHA time units), or ``max_t`` when every seed completed."""
    after = 0.0
    for unit in asha.units[:-1]:
        entries = {c.key: entry_at(stored.get(c.key), unit) for c in cells}
        if any(e is None for e in entries.values()):
            break
        report(combined(unit, entries))
        after = unit
    if all((stored.get(c.key) or {}).get("complete") for c in cells):
        report(combined(asha.max_t, {c.key: {**stored[c.key]["final"], "replayed": True} for c in cells}))
        return asha.max_t
    return after


def run_trial(config: dict, trials=None, stored=None, settings: tuple = (), asha: AshaSettings = None,
              init_paths=None, checkpoint_paths=None, report=None) -> None:
    """The Tune trainable: ``config["index"]`` picks the configuration (its cells, one per seed)."""
    if report is None:
        from ray import tune

        report = tune.report
    cells = trials[config["index"]]
    stored = stored or {}
    after = replay(cells, stored, asha, report)
    if after >= asha.max_t:
        return
    start = time.perf_counter()
    runner = runner_for(settings)
    rungs = Rungs(cells, runner, asha)
    kept = kept_seeds(cells, stored, asha)
    live = [c for c in cells if c.key not in kept]
    checkpoint_paths = checkpoint_paths or {}
    seeds = []
    try:
        for cell in live:
            init_path = (init_paths or {}).get(cell.key)
            options = RunOptions(init_state=load_checkpoint(init_path) if init_path else None,
                                 keep_state=cell.key in checkpoint_paths)
            seeds.append(Seed(cell, classification.run_steps(cell, runner, options, rung_units(asha, after))))
        train(seeds, rungs, asha, after, kept, stored, report)
    except Exception as exc:
        if can_pass(exc):  # out of memory, a lost connection: Tune runs the trial again (--retries)
            raise
        # a fault that will recur (or the user's to fix): recorded as failed, not retried; no "rank",
        # so ASHA ignores this report
        user = isinstance(exc, UserError)
        report({"asha_t": asha.max_t, "error": first_line(exc) if user else one_line(exc), "user_error": user,
                "cells": [c.key for c in live], "wall_time_s": time.perf_counter() - start})
        return
    finally:
        runner.hardware.empty_cache()
    wall = (time.perf_counter() - start) / max(1, len(seeds))
    finals = dict(kept)
    for seed in seeds:
        result = seed.result
        if result.state is not None:
            save_checkpoint(result.state, checkpoint_paths[seed.cell.key])  # a candidate; the driver keeps the best
        result.state = None
        finals[seed.cell.key] = final_entry(seed.cell, result, asha, rungs.train_tokens(), wall, runner.describe())
    report(combined(asha.max_t, {c.key: finals[c.key] for c in cells}))


def train(seeds: list[Seed], rungs: Rungs, asha: AshaSettings, after: float, kept: dict, stored: dict,
          report) -> None:
    """Every live seed to each of its pauses in turn (they pause at the same steps: one
    configuration, one data set); at each, the rungs that step stands for are reported, with the
    rung entries of the seeds the store holds completed."""
    while True:
        entries, point = {}, None
        for seed in seeds:
            point = seed.advance()
            if point is None:
                continue
            step, total_steps, train_tokens, model = point
            entries[seed.cell.key] = rungs.entry(seed.cell, step, total_steps, train_tokens, model)
            if len(seeds) > 1:
                seed.pause(model)
        if not entries:
            return
        for unit in asha.rung_steps(total_steps)[step]:
            if unit > after:
                report(combined(unit, {**{k: entry_at(stored[k], unit) for k in kept}, **entries}))
