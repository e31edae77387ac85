"""GLUE metrics on scikit-learn and scipy, named as Hugging Face ``evaluate``'s glue metric names them.

Pure functions of predictions and references; nothing here knows about models.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def accuracy(preds, refs) -> float:
    return float(accuracy_score(refs, preds))


def f1(preds, refs) -> float:
    return float(f1_score(refs, preds))


def matthews_correlation(preds, refs) -> float:
    return float(matthews_corrcoef(refs, preds))


def pearson(preds, refs) -> float:
    return float(pearsonr(np.asarray(preds, dtype=float), np.asarray(refs, dtype=float))[0])


def spearman(preds, refs) -> float:
    return float(spearmanr(np.asarray(preds, dtype=float), np.asarray(refs, dtype=float))[0])


METRICS = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearmanr": spearman,
}


def compute(names: list[str], preds, refs) -> dict[str, float]:
    """The named metrics of predictions against references, e.g. ``{"accuracy": 0.91}``."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    return {name: METRICS[name](preds, refs) for name in names}
