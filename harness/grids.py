"""The fine-tuning grids of the paper's protocol (Ettin follows ModernBERT), as FinetuneConfig lists."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

from harness.configs import FinetuneConfig, Recipe
from harness.errors import UserError
from harness.tasks import TaskSpec

MAX_LENGTH = 512

PAPER_LR = (1e-5, 3e-5, 5e-5, 8e-5, 1e-4)
PAPER_WEIGHT_DECAY = (1e-6, 5e-6, 8e-6, 1e-5)
# Ettin's sweep (orionw/bert24 create_glue_sweep.py @ae0db97: batch_sizes = [16, 32]); ModernBERT's
# GLUE runs used 64 (AnswerDotAI/ModernBERT issue #196), which no Ettin source shows: README, "The
# batch-size axis".
PAPER_BATCH_SIZE = (16, 32)
PAPER_EPOCHS = {"short": (1, 2, 3, 4), "long": (2, 5, 10, 12)}
# "small": the learning-rate sweep with everything else fixed at a middle value of the paper grid.
SMALL_FIXED = {"weight_decay": 8e-6, "batch_size": 32, "epochs": {"short": 2, "long": 5}}
GRIDS = ("small", "paper")


def axes(task: TaskSpec, name: str = "small") -> dict[str, tuple]:
    """The values each tunable axis takes in grid ``name`` for ``task``."""
    if name not in GRIDS:
        raise UserError(f"unknown --grid '{name}'; use {' or '.join(GRIDS)}")
    group = task.epochs_group if task.epochs_group in PAPER_EPOCHS else "long"
    if name == "paper":
        return {"lr": PAPER_LR, "weight_decay": PAPER_WEIGHT_DECAY, "batch_size": PAPER_BATCH_SIZE,
                "epochs": PAPER_EPOCHS[group]}
    return {"lr": PAPER_LR, "weight_decay": (SMALL_FIXED["weight_decay"],),
            "batch_size": (SMALL_FIXED["batch_size"],), "epochs": (SMALL_FIXED["epochs"][group],)}


def grid(task: TaskSpec, name: str = "small", lr=None, weight_decay=None, batch_size=None, epochs=None,
         max_length: int = MAX_LENGTH, recipe: Recipe | None = None) -> list[FinetuneConfig]:
    """The configurations to try for ``task``; explicit values replace that axis of the grid."""
    values = axes(task, name)
    for axis, given in (("lr", lr), ("weight_decay", weight_decay), ("batch_size", batch_size), ("epochs", epochs)):
        if given:
            values[axis] = tuple(given)
    base = FinetuneConfig(lr=1.0, weight_decay=0.0, batch_size=1, epochs=1, max_length=max_length,
                          recipe=recipe or Recipe())
    return [replace(base, lr=float(a), weight_decay=float(b), batch_size=int(c), epochs=int(d))
            for a, b, c, d in itertools.product(values["lr"], values["weight_decay"], values["batch_size"],
                                                values["epochs"])]


def is_paper_grid(task: TaskSpec, configs: list[dict]) -> bool:
    """True when ``configs`` (tunable values) cover every point of the paper grid for ``task``."""
    paper = {tuple(c.tunable().values()) for c in grid(task, "paper")}
    return paper <= {tuple(c[k] for k in FinetuneConfig.TUNABLE) for c in configs}


def parse_floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{flag} takes comma-separated numbers, e.g. {flag} 3e-5,5e-5; got '{text}'") from None
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise UserError(f"{flag} values must be finite numbers >= 0; got '{text}'")
    return values


def parse_ints(text: str | None, flag: str) -> tuple[int, ...] | None:
    values = parse_floats(text, flag)
    if values is None:
        return None
    if any(v != int(v) or v < 1 for v in values):
        raise UserError(f"{flag} takes positive whole numbers, e.g. {flag} 16,32; got '{text}'")
    return tuple(int(v) for v in values)
