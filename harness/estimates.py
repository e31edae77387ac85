"""What every bill counts in (``harness.cost`` for all cells, ``harness.retrieval.cost`` for
retrieval ones): a cell's tokens and steps, and tokens estimated from words where not counted."""

from __future__ import annotations

from dataclasses import dataclass

TOKENS_PER_WORD = 1.3


def estimate_row(texts: list[str], max_length: int) -> float:
    """1.3 tokens per whitespace-separated word plus the template's special tokens, at most max_length."""
    specials = 2 if len(texts) == 1 else 3
    return min(float(max_length), TOKENS_PER_WORD * sum(len(t.split()) for t in texts) + specials)


@dataclass
class CellCost:
    train_tokens: float
    score_tokens: float
    steps: int
    train_rows: int
    sources: tuple[str, ...]
