"""Bootstrap confidence intervals and the paired bootstrap test of encoder vs decoder, from the
per-example outputs a run keeps (classification: dev predictions; generative: ``--log-samples``).

A score with several seeds is the mean over seeds of the metric, so each bootstrap replicate
resamples the examples once and averages the metric over the seeds on that resample. Encoder and
decoder are paired by example identity (split + idx, or lm-eval's doc_id): both see the same
resampled examples, which is what makes the test paired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.metrics import METRICS
from harness.report.frame import task_order
from harness.results import ResultStore

LEVEL = 0.95


@dataclass
class Outputs:
    """Per-example outputs of one score: ``values`` [seeds, examples] are predictions (with
    ``labels``) for a classification metric, or per-example metric values (``labels`` None)."""

    metric: str
    ids: list
    values: np.ndarray
    labels: np.ndarray | None = None

    def take(self, ids: list) -> "Outputs":
        pos = {k: i for i, k in enumerate(self.ids)}
        idx = np.array([pos[k] for k in ids], dtype=int)
        return Outputs(self.metric, list(ids), self.values[:, idx], None if self.labels is None else self.labels[idx])

    def score(self, idx: np.ndarray | None = None) -> float:
        idx = np.arange(len(self.ids)) if idx is None else idx
        return float(self.replicates(idx[None, :])[0])

    def replicates(self, idx: np.ndarray) -> np.ndarray:
        """The score on each resample; ``idx`` is [replicates, examples] of positions."""
        per_example = self._per_example()
        if per_example is not None:  # a mean over examples: averaging the seeds first gives the same number
            return per_example[idx].mean(axis=1)
        fn = METRICS[self.metric]
        return np.array([np.mean([fn(v[i], self.labels[i]) for v in self.values]) for i in idx])

    def _per_example(self) -> np.ndarray | None:
        """Per-example value averaged over seeds, for scores that are a mean over examples
        (per-example metric values; accuracy, equal to harness.metrics.accuracy); None otherwise."""
        if self.labels is None:
            return self.values.astype(float).mean(axis=0)
        if self.metric == "accuracy":
            return (self.values == self.labels[None, :]).mean(axis=0)
        return None


def _row_id(row: dict):
    if "query_id" in row:  # retrieval: one row per judged query
        return ("query", row["query_id"])
    if "sentid" in row:  # bias: one row per sentence
        return ("sentence", row["sentid"])
    if "doc_id" in row:
        return ("doc", row["doc_id"])
    return (row.get("split"), row["idx"])


def _metric_value(row: dict, metric: str):
    for key in (metric, metric.split(",")[0]):
        if key in row:
            value = row[key]
            return float(value[0] if isinstance(value, (list, tuple)) else value)
    return None


def outputs_of(records: list[dict], read=None) -> Outputs | None:
    """The per-example outputs of one score's records (its seeds), aligned on the examples every
    seed has; None when a record kept no per-example outputs. ``read(record)`` gives a record's
    rows (default: from the results folder named by its ``results_dir``)."""
    per_seed = []
    metric = records[0]["headline_metric"]
    classification = None
    read = read or (lambda record: ResultStore(record["results_dir"]).read_samples(record))
    for record in records:
        has = isinstance(record.get("samples"), str)  # None reads back from a DataFrame as NaN
        rows = read(record) if has else []
        if not rows:
            return None
        classification = "pred" in rows[0] and "label" in rows[0]
        table = {}
        for row in rows:
            if classification:
                if row.get("split", record.get("split")) == record.get("split"):
                    table[_row_id(row)] = (row["pred"], row["label"])
            else:
                value = _metric_value(row, metric)
                if value is not None:
                    table.setdefault(_row_id(row), (value, None))
        per_seed.append(table)
    ids = [k for k in per_seed[0] if all(k in t for t in per_seed[1:])]
    if not ids or (classification and metric != "accuracy" and metric not in METRICS):
        return None
    values = np.array([[t[k][0] for k in ids] for t in per_seed])
    labels = np.array([per_seed[0][k][1] for k in ids]) if classification else None
    return Outputs(metric, ids, values, labels)


def _resampled(outputs: list[Outputs], n_boot: int, seed: int, cells: int = 2_000_000) -> list[np.ndarray]:
    """Each output's score on the same ``n_boot`` resamples of its examples, drawn in chunks of
    about ``cells`` indices so that a 40k-example dev set does not need gigabytes."""
    rng = np.random.default_rng(seed)
    n = len(outputs[0].ids)
    chunk = max(1, cells // max(n, 1))
    parts: list[list[np.ndarray]] = [[] for _ in outputs]
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        for part, out in zip(parts, outputs):
            part.append(out.replicates(idx))
    return [np.concatenate(p) for p in parts]


def bootstrap_ci(outputs: Outputs, n_boot: int = 1000, seed: int = 0, level: float = LEVEL) -> tuple:
    """(point estimate, low, high): percentile bootstrap interval of the score."""
    (reps,) = _resampled([outputs], n_boot, seed)
    lo, hi = np.nanquantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return outputs.score(), float(lo), float(hi)


def bootstrap_stderr(outputs: Outputs, n_boot: int = 1000, seed: int = 0) -> float:
    """The standard error of the score: the standard deviation of its bootstrap replicates."""
    (reps,) = _resampled([outputs], n_boot, seed)
    return float(np.nanstd(reps, ddof=1))


def paired_bootstrap(a: Outputs, b: Outputs, n_boot: int = 1000, seed: int = 0, level: float = LEVEL) -> dict:
    """Paired bootstrap of score(a) - score(b) on the examples both have: the difference, its
    percentile interval, a two-sided p-value, and whether the interval excludes zero."""
    in_b = set(b.ids)
    common = [k for k in a.ids if k in in_b]
    if not common:
        raise ValueError("the two outputs share no example")
    a, b = a.take(common), b.take(common)
    reps_a, reps_b = _resampled([a, b], n_boot, seed)
    diffs = reps_a - reps_b
    diff = a.score() - b.score()
    lo, hi = np.nanquantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    return {"diff": diff, "lo": float(lo), "hi": float(hi), "p_value": float(p), "n": len(common),
            "significant": bool(lo > 0 or hi < 0)}


SIG_COLUMNS = ["row", "task", "encoder", "encoder_lo", "encoder_hi", "decoder", "decoder_lo", "decoder_hi",
               "gap", "gap_lo", "gap_hi", "p_value", "significant", "n_examples"]


def significance_table(frame: pd.DataFrame, best: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
                       scale: float = 100.0) -> pd.DataFrame:
    """Per comparison-table row and task: each architecture's score with its bootstrap CI, and the
    paired test of the gap (encoder - decoder). Cells without per-example outputs are left out."""
    chosen = best.merge(frame.drop(columns=["score", "task_group"]), on=["model", "task", "config"],
                        suffixes=("", "_rec"))
    same_rev = chosen["revision"].fillna("").astype(str) == chosen["revision_rec"].fillna("").astype(str)
    chosen = chosen[same_rev].drop_duplicates(["row", "task", "architecture", "cell_key"])
    found: dict = {}
    for (row, task, arch), group in chosen.groupby(["row", "task", "architecture"], sort=False):
        out = outputs_of(group.to_dict("records"))
        if out is not None:
            found.setdefault((row, task), {})[arch] = out
    rows = []
    for (row, task), pair in found.items():
        entry = {"row": row, "task": task}
        for arch, out in pair.items():
            point, lo, hi = bootstrap_ci(out, n_boot, seed)
            entry.update({arch: point * scale, f"{arch}_lo": lo * scale, f"{arch}_hi": hi * scale})
        entry["n_examples"] = max(len(o.ids) for o in pair.values())
        if len(pair) == 2:
            test = paired_bootstrap(pair["encoder"], pair["decoder"], n_boot, seed)
            entry.update({"gap": test["diff"] * scale, "gap_lo": test["lo"] * scale, "gap_hi": test["hi"] * scale,
                          "p_value": test["p_value"], "significant": test["significant"], "n_examples": test["n"]})
        rows.append(entry)
    table = pd.DataFrame(rows, columns=SIG_COLUMNS)
    row_rank = {r: i for i, r in enumerate(dict.fromkeys(best.sort_values("parameters", na_position="last")["row"]))}
    task_rank = {t: i for i, (_, t) in enumerate(task_order(best))}
    order = sorted(table.index, key=lambda i: (row_rank.get(table.at[i, "row"], 99),
                                               task_rank.get(table.at[i, "task"], 99)))
    return table.loc[order].reset_index(drop=True)
