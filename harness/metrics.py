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


# The number of each GLUE task that enters the GLUE average, as ModernBERT and Ettin report it:
# CoLA Matthews correlation, STS-B Spearman, every other task accuracy (MNLI: matched);
# WNLI is left out of the average, as in those papers.
GLUE_AVERAGE_METRIC = {
    "cola": "matthews_correlation",
    "sst2": "accuracy",
    "mrpc": "accuracy",
    "stsb": "spearmanr",
    "qqp": "accuracy",
    "mnli": "accuracy",
    "qnli": "accuracy",
    "rte": "accuracy",
}


# The Ettin paper's generative suite (its Table 4), in its column order; the generative average
# is the plain mean of their headline scores.
GENERATIVE_TASKS = ("arc_challenge", "hellaswag", "lambada_openai", "openbookqa", "piqa", "sciq", "social_iqa",
                    "triviaqa", "winogrande", "wsc273")


def generative_average(scores: dict[str, float]) -> float | None:
    """Mean of the ten generative tasks' headline scores; None unless all ten are present."""
    if not all(task in scores and scores[task] is not None for task in GENERATIVE_TASKS):
        return None
    return float(np.mean([scores[t] for t in GENERATIVE_TASKS]))


def glue_average(scores: dict[str, float]) -> float | None:
    """Mean of the GLUE-average tasks' headline scores; None unless all eight are present."""
    if not all(task in scores and scores[task] is not None for task in GLUE_AVERAGE_METRIC):
        return None
    return float(np.mean([scores[t] for t in GLUE_AVERAGE_METRIC]))
