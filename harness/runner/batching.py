"""Token-budget batches over length-sorted rows, padding, and the out-of-memory back-off."""

from __future__ import annotations

import inspect
import logging
from typing import Callable, Sequence

import torch

log = logging.getLogger(__name__)

# Padded tokens (rows x longest row) per forward pass, before any out-of-memory back-off.
DEFAULT_TOKEN_BUDGET = {"cuda": 65536, "cpu": 8192, "mps": 16384}
MIN_TOKEN_BUDGET = 64


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def length_batches(lengths: Sequence[int], budget: int, max_rows: int | None = None) -> list[list[int]]:
    """Indices grouped into batches whose padded size (rows x longest) stays within ``budget``.

    Rows are sorted longest first, so each batch holds rows of similar length (little padding)
    and the first batch is the largest one: an out-of-memory error shows up at once.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = max(int(lengths[i]), 1)
        width = max(longest, n)
        if current and (width * (len(current) + 1) > budget or (max_rows and len(current) >= max_rows)):
            batches.append(current)
            current, longest, width = [], 0, n
        current.append(i)
        longest = width
    if current:
        batches.append(current)
    return batches


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right", device=None) -> dict:
    """input_ids, attention_mask and position_ids for a list of token id lists.

    position_ids count real tokens only, so a left-padded row sees the same positions as a
    right-padded one (a rotary decoder then gives identical outputs for both sides).
    """
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        span = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[row, span] = torch.as_tensor(s, dtype=torch.long)
        mask[row, span] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
    if device is not None:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return batch


_POSITION_IDS: dict[type, bool] = {}


def accepts_position_ids(model) -> bool:
    """Whether the model's forward takes position_ids (then padding on either side is exact)."""
    cls = type(model)
    if cls not in _POSITION_IDS:
        try:
            _POSITION_IDS[cls] = "position_ids" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            _POSITION_IDS[cls] = False
    return _POSITION_IDS[cls]


class Batcher:
    """Runs work in token-budget batches; an out-of-memory error halves the budget for the rest
    of the process and the work is split and run again."""

    def __init__(self, budget: int, on_oom: Callable[[], None] = lambda: None):
        self.budget = int(budget)
        self.on_oom = on_oom

    def back_off(self, exc: BaseException, rows: int) -> None:
        """Halve the budget after ``exc`` (an OOM); re-raise when nothing smaller is left to try."""
        self.on_oom()
        if self.budget <= MIN_TOKEN_BUDGET and rows <= 1:
            raise exc
        self.budget = max(MIN_TOKEN_BUDGET, self.budget // 2)
        log.warning("out of memory: token budget halved to %d", self.budget)

    def map(self, lengths: Sequence[int], fn: Callable[[list[int]], Sequence], max_rows: int | None = None) -> list:
        """Run ``fn`` over batches of row indices; results come back in input order."""
        results: list = [None] * len(lengths)
        pending = length_batches(lengths, self.budget, max_rows)
        while pending:
            batch = pending.pop(0)
            try:
                out = fn(batch)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                self.back_off(exc, rows=len(batch))
                smaller = length_batches([lengths[i] for i in batch], self.budget, max_rows)
                pending = [[batch[j] for j in b] for b in smaller] + pending
                continue
            for i, r in zip(batch, out):
                results[i] = r
        return results

    def retry(self, fn: Callable[[int], object], rows: int):
        """``fn(budget)`` until it runs without running out of memory (the budget halves each time)."""
        while True:
            try:
                return fn(self.budget)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                self.back_off(exc, rows=rows)
