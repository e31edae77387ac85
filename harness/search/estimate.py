"""What share of the grid's training tokens an ASHA run is expected to train, before it runs.

Two figures. The nominal one (``AshaSettings.nominal_fraction``) is synchronous successive halving:
every rung keeps exactly the top 1/R. Ray Tune's ASHA is asynchronous: a trial reaching a rung is
compared only with the trials that reached it before, so the first trials to arrive always go on,
and with few configurations per experiment that free pass costs a large share. The simulated
figure runs Tune's own ASHA bracket (the scheduler's decision rule, not a copy of it) over each
experiment's trials, in the order the driver starts them, one trial at a time, with random rung
scores, and weighs each configuration by its epoch count (its share of the grid's tokens).
Random scores assume nothing about which configurations are good; on real runs, where rung
scores predict final ones, the survivors are the same number of trials, so the share is similar.
"""

from __future__ import annotations

import random
import types

from harness.search.space import AshaSettings, experiments, trial_order

REPEATS = 200


def simulated_share(cells, asha: AshaSettings, repeats: int = REPEATS) -> tuple[float, list[int]] | None:
    """(expected share of the training tokens, configurations per experiment) for ``cells`` (ASHA
    cells of fine-tuning tasks) run one trial at a time; None when there is nothing to simulate or
    the installed Ray has no ASHA bracket to simulate with."""
    try:
        from ray.tune.schedulers.async_hyperband import _Bracket
        from ray.tune.schedulers.trial_scheduler import TrialScheduler
    except ImportError:
        return None
    groups = [trials for trials in experiments(cells) if trials and hasattr(trials[0][0].config, "epochs")]
    if not groups:
        return None
    shares: dict[tuple, float] = {}  # experiments of one shape (the paper grid's are all alike) run once
    spent = full = 0.0
    for trials in groups:
        order = trial_order(trials)
        cost = tuple(trials[i][0].config.epochs * len(trials[i]) for i in order)  # rows per epoch: the task's
        if cost not in shares:
            shares[cost] = _share(cost, asha, repeats, _Bracket, TrialScheduler.STOP)
        spent += shares[cost] * sum(cost)
        full += sum(cost)
    return spent / full, sorted({len(trials) for trials in groups})


def _share(cost: tuple, asha: AshaSettings, repeats: int, bracket_class, stop) -> float:
    """Tokens trained / the grid's for trials of these costs arriving in this order."""
    rng = random.Random(0)
    spent = 0.0
    for _ in range(repeats):
        bracket = bracket_class(1, asha.max_t, asha.reduction_factor, 0)
        for index, weight in enumerate(cost):
            trial = types.SimpleNamespace(trial_id=str(index))
            reached = asha.max_t
            for unit in asha.units[:-1]:  # the last rung is the end: nothing is saved by stopping there
                if bracket.on_result(trial, unit, rng.random()) == stop:
                    reached = unit
                    break
            spent += weight * reached / asha.max_t
    return spent / (repeats * sum(cost))
