"""ASHA's view of a grid: its configurations as ASHA cells, its experiments, the rungs, and the
step of each rung.

Rungs are fractions of each configuration's *own* schedule. A configuration keeps the learning
rate schedule of its full run (linear decay over all the steps of its own epoch count), so a
4-epoch configuration at its first rung is 1/16 of the way through the 4-epoch run, not a 1-epoch
run. One experiment holds every configuration of a model and task (all the grid's epoch counts),
and a trial is one configuration with all its seeds: ASHA compares the mean over seeds, as the
grid's best configuration is the best mean over seeds. At a rung every configuration stands at
the same point of its own warm-up and linear decay, and the training rows of a 1-epoch and a
4-epoch configuration stand 1:4, as they do at the end; a rung is a scaled-down grid. (Comparing
at equal training rows instead would set a finished 1-epoch run against a 4-epoch run at a
quarter of its schedule, still at a high learning rate, and stop long schedules for that alone.) With reduction factor R and K rungs, the rungs sit at R^(k-K+1) of the
steps, k = 0..K-1: the default R = 4 (Ray Tune's own default), K = 3 puts them at 1/16, 1/4 and 1
of each configuration's steps. ASHA's time axis counts in units of the first rung (1, 4, 16), so
its ``max_t`` (R^(K-1)) is the end of every configuration.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace

from harness.configs import FinetuneConfig
from harness.errors import UserError
from harness.plan import Cell


@dataclass(frozen=True)
class AshaConfig(FinetuneConfig):
    """A grid configuration run under ASHA: the same fine-tuning, another cell key and protocol
    key, so that an ASHA record (which may be a partial run) is never taken for a grid cell and
    never pooled with grid records in a report."""

    search: str = "asha"

    def identity(self, architecture: str) -> dict:
        return {**super().identity(architecture), "search": self.search}


@dataclass(frozen=True)
class AshaSettings:
    reduction_factor: float = 4.0
    rungs: int = 3

    def __post_init__(self):
        if not self.reduction_factor > 1:
            raise UserError(f"--asha-reduction-factor must be above 1, not {self.reduction_factor:g}")
        if self.rungs < 2:
            raise UserError(f"--asha-rungs must be at least 2 (one rung would stop nothing), not {self.rungs}")

    @property
    def max_t(self) -> float:
        return self.reduction_factor ** (self.rungs - 1)

    @property
    def units(self) -> list[float]:
        """Where the rungs are on ASHA's time axis: 1, R, R^2, ..., R^(K-1) = max_t."""
        return [self.reduction_factor ** k for k in range(self.rungs)]

    @property
    def fractions(self) -> list[float]:
        return [u / self.max_t for u in self.units]

    def rung_steps(self, total_steps: int) -> dict[int, list[float]]:
        """Optimizer step -> the rungs (time units) reported after it, for every rung but the last
        (the end of training, reported with the full result). Two rungs that fall on one step of a
        short schedule are both reported there."""
        out: dict[int, list[float]] = {}
        for unit, fraction in zip(self.units[:-1], self.fractions[:-1]):
            step = min(total_steps, max(1, math.ceil(fraction * total_steps - 1e-9)))
            out.setdefault(step, []).append(unit)
        return out

    def nominal_fraction(self) -> float:
        """ASHA's training tokens as a fraction of the grid's when each rung keeps 1/R of the
        configurations and the survivors are average ones: sum over rungs of (f_k - f_k-1) / R^k."""
        fractions = [0.0] + self.fractions
        return sum((fractions[k + 1] - fractions[k]) / self.reduction_factor ** k for k in range(self.rungs))

    def describe(self) -> str:
        rungs = ", ".join("1" if f >= 1 else f"1/{round(1 / f):d}" for f in self.fractions)
        return f"ASHA, reduction factor {self.reduction_factor:g}, rungs at {rungs} of each configuration's steps"

    def to_dict(self) -> dict:
        return {**asdict(self), "rung_fractions": [round(f, 6) for f in self.fractions]}


def asha_cell(cell: Cell) -> Cell:
    """``cell`` with its configuration run under ASHA (fine-tuning cells only)."""
    config = cell.config
    if not isinstance(config, FinetuneConfig) or isinstance(config, AshaConfig):
        return cell
    fields = {k: getattr(config, k) for k in ("lr", "weight_decay", "batch_size", "epochs", "max_length", "recipe")}
    return replace(cell, config=AshaConfig(**fields))


def asha_cells(cells: list[Cell]) -> list[Cell]:
    return [asha_cell(c) for c in cells]


def experiment_key(cell: Cell) -> tuple:
    """Cells of one Tune experiment: one model, task, data and protocol; its trials are every
    configuration of the grid (learning rate x weight decay x batch size x epochs), each trial
    training all its seeds. Configurations of different epoch counts meet at the same fractions
    of their own schedules (see the module's docstring), where the data each has seen stands in
    the same ratio as at the end of the grid's runs."""
    return cell.model, cell.task.name, cell.data, cell.protocol_key


def experiments(cells: list[Cell]) -> list[list[list[Cell]]]:
    """The ASHA cells grouped into experiments, in plan order (warm-start sources first), each a
    list of trials, each trial the cells of one configuration, one per seed (in seed order)."""
    groups: dict[tuple, dict] = {}
    for cell in cells:
        groups.setdefault(experiment_key(cell), {}).setdefault(cell.config, []).append(cell)
    return [[sorted(trial, key=lambda c: c.seed) for trial in group.values()] for group in groups.values()]


def trial_order(trials: list[list[Cell]]) -> list[int]:
    """The order trials start in: a fixed shuffle, because ASHA lets the first trials to reach a
    rung continue whatever their score; in grid order those would always be the smallest learning
    rates."""
    order = list(range(len(trials)))
    random.Random(f"asha-{len(trials)}").shuffle(order)
    return order
