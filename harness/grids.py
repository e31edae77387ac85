"""Fine-tuning hyperparameters: the shared recipe and its grids (Ettin follows ModernBERT)."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

from harness.errors import UserError
from harness.tasks import TaskSpec

# AdamW betas/eps, warmup and max length are fixed by the recipe; the grid varies the rest.
BETAS = (0.9, 0.98)
EPS = 1e-6
WARMUP_RATIO = 0.06
MAX_LENGTH = 512
MAX_GRAD_NORM = 1.0

PAPER_LR = (1e-5, 3e-5, 5e-5, 8e-5, 1e-4)
PAPER_WEIGHT_DECAY = (1e-6, 5e-6, 8e-6, 1e-5)
PAPER_BATCH_SIZE = (16, 32)
PAPER_EPOCHS = {"short": (1, 2, 3, 4), "long": (2, 5, 10, 12)}
# "small": the learning-rate sweep with everything else fixed at a middle value of the paper grid.
SMALL_FIXED = {"weight_decay": 8e-6, "batch_size": 32, "epochs": {"short": 2, "long": 5}}
GRIDS = ("small", "paper")


@dataclass(frozen=True)
class Hyper:
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    warmup_ratio: float = WARMUP_RATIO
    max_length: int = MAX_LENGTH

    def to_dict(self) -> dict:
        return asdict(self)


def grid(task: TaskSpec, name: str = "small", lr=None, weight_decay=None, batch_size=None, epochs=None,
         max_length: int = MAX_LENGTH) -> list[Hyper]:
    """The configurations to try for ``task``; explicit values replace that axis of the grid."""
    if name not in GRIDS:
        raise UserError(f"unknown --grid '{name}'; use {' or '.join(GRIDS)}")
    group = task.epochs_group if task.epochs_group in PAPER_EPOCHS else "long"
    if name == "paper":
        axes = {"lr": PAPER_LR, "weight_decay": PAPER_WEIGHT_DECAY, "batch_size": PAPER_BATCH_SIZE,
                "epochs": PAPER_EPOCHS[group]}
    else:
        axes = {"lr": PAPER_LR, "weight_decay": (SMALL_FIXED["weight_decay"],),
                "batch_size": (SMALL_FIXED["batch_size"],), "epochs": (SMALL_FIXED["epochs"][group],)}
    for axis, values in (("lr", lr), ("weight_decay", weight_decay), ("batch_size", batch_size), ("epochs", epochs)):
        if values:
            axes[axis] = tuple(values)
    return [Hyper(lr=float(a), weight_decay=float(b), batch_size=int(c), epochs=int(d), max_length=max_length)
            for a, b, c, d in itertools.product(axes["lr"], axes["weight_decay"], axes["batch_size"], axes["epochs"])]


def parse_floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{flag} takes comma-separated numbers, e.g. {flag} 3e-5,5e-5; got '{text}'") from None
    if any(v < 0 for v in values):
        raise UserError(f"{flag} values must not be negative; got '{text}'")
    return values


def parse_ints(text: str | None, flag: str) -> tuple[int, ...] | None:
    values = parse_floats(text, flag)
    if values is None:
        return None
    if any(v != int(v) or v < 1 for v in values):
        raise UserError(f"{flag} takes positive whole numbers, e.g. {flag} 16,32; got '{text}'")
    return tuple(int(v) for v in values)
