"""Per-example comparison of an encoder and a decoder on one task: the 2x2 table of right and wrong,
McNemar's exact test and the examples on which the two disagree, read from the samples files.

Reads both sample formats defensively: classification rows ``{split, idx, pred, label}`` (with
``input`` and ``probs`` when the run kept them) and lm-eval's logged samples (``doc_id``, ``doc``,
``arguments``, ``filtered_resps``, ``target`` and per-document metric values). A field a run did not
keep shows as missing; it never breaks the page.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from harness.report.frame import display
from harness.results import ResultStore

MAX_EXAMPLES = 200  # disagreements kept per pair in the page (a random sample beyond that)
MAX_INPUT = 600  # characters of an input kept in the page
UNGRADED = ("perplexity", "bits_per_byte")  # headline metrics with no right or wrong per document
LABELS = {
    "mnli": ("entailment", "neutral", "contradiction"), "rte": ("entailment", "not_entailment"),
    "qnli": ("entailment", "not_entailment"), "wnli": ("not_entailment", "entailment"),
    "sst2": ("negative", "positive"), "cola": ("unacceptable", "acceptable"),
    "mrpc": ("not_equivalent", "equivalent"), "qqp": ("not_duplicate", "duplicate"),
}


@dataclass
class Example:
    input: str | None
    gold: str
    pred: str
    conf: float | None  # the model's probability of its prediction; None when not kept
    right: bool | None  # None for a regression task
    error: float | None = None  # regression: |prediction - gold|


def _clip(text, limit: int = MAX_INPUT) -> str | None:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "…"


def _label(task: str, value) -> str:
    names = LABELS.get(task, ())
    if isinstance(value, (int, np.integer)) and 0 <= value < len(names):
        return f"{names[value]} ({value})"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _classification(task: str, row: dict) -> Example:
    pred, label = row["pred"], row["label"]
    probs = row.get("probs")
    if isinstance(pred, float) or "score" in row:  # regression (STS-B)
        return Example(_clip(row.get("input")), _label(task, float(label)), _label(task, float(pred)), None, None,
                       abs(float(pred) - float(label)))
    conf = None
    if isinstance(probs, (list, tuple)) and isinstance(pred, int) and 0 <= pred < len(probs):
        conf = float(probs[pred])
    return Example(_clip(row.get("input")), _label(task, label), _label(task, pred), conf, pred == label)


def _requests(row: dict) -> list[tuple[str, str]]:
    """(context, continuation) of each request of an lm-eval sample, whichever way lm-eval logged them."""
    args = row.get("arguments") or []
    if isinstance(args, dict):
        args = [[a.get("arg_0"), a.get("arg_1")] for a in args.values() if isinstance(a, dict)]
    return [(str(a[0]), str(a[1]) if len(a) > 1 and isinstance(a[1], str) else "") for a in args
            if isinstance(a, (list, tuple)) and a]


def _lm_eval(row: dict, metric: str) -> Example:
    value = row.get(metric, row.get(metric.split(",")[0]))
    right = None if value is None else float(value[0] if isinstance(value, list) else value) >= 0.5
    resps = row.get("filtered_resps") or []
    requests = _requests(row)
    target = row.get("target")
    lls = [r[0] if isinstance(r, (list, tuple)) else r for r in resps]
    if requests and len(requests) == len(lls) and all(isinstance(v, (int, float)) for v in lls):
        contexts, conts = zip(*requests)
        same_ctx = len(set(contexts)) == 1
        choices = [c.strip() for c in (conts if len(set(conts)) > 1 or same_ctx else contexts)]
        text = contexts[0] if same_ctx else (row.get("doc") or {}).get("sentence", contexts[0])
        lls = np.asarray(lls, dtype=float)
        if len(lls) == 1:  # one continuation: right when it is the greedy one
            greedy = bool(resps[0][1]) if isinstance(resps[0], (list, tuple)) and len(resps[0]) > 1 else None
            pred = "(greedy: the target)" if greedy else "(not greedy)"
            return Example(_clip(text), choices[0], pred, float(math.exp(lls[0])), greedy if right is None else right)
        scores = lls / np.array([max(len(c), 1) for c in choices]) if metric.startswith("acc_norm") else lls
        pred = int(np.argmax(scores))
        probs = np.exp(lls - lls.max())
        gold = choices[target] if isinstance(target, int) and 0 <= target < len(choices) else str(target)
        if right is None:
            right = gold == choices[pred]
        return Example(_clip(text), gold, choices[pred], float(probs[pred] / probs.sum()), right)
    pred = resps[0] if isinstance(resps, list) and resps else resps
    while isinstance(pred, list) and pred:
        pred = pred[0]
    gold = " / ".join(map(str, target)) if isinstance(target, list) else str(target)
    text = requests[0][0] if requests else None
    if right is None:
        right = str(pred).strip() == gold.strip()
    return Example(_clip(text), _clip(gold, 200), _clip(str(pred), 200), None, right)


def _retrieval(row: dict, metric: str) -> Example:
    """A judged query: its nDCG@10 (``metric``) and the top documents the model ranked."""
    value = float(row.get(metric, row.get("ndcg_at_10", 0.0)))
    top = "; ".join(f"{d.get('id')} ({float(d.get('score', 0)):.2f}) {_clip(d.get('text', ''), 80)}"
                    for d in (row.get("top") or [])[:3])
    relevant = ", ".join(map(str, row.get("relevant") or []))
    return Example(_clip(row.get("input")), _clip(relevant, 200), f"{metric} {value:.3f} · top: {top}", None, None,
                   1.0 - value)


def _bias(row: dict) -> Example:
    """A Winogender sentence: the gotcha gender as gold, the model's preferred gender and its evidence."""
    evidence = row.get("mass") or row.get("perplexity") or {}
    kind = "mass" if "mass" in row else "perplexity"
    detail = ", ".join(f"{g} {float(v):.3g}" for g, v in evidence.items())
    pred = str(row.get("pred"))
    return Example(_clip(row.get("input")), str(row.get("gender")), f"{pred} ({kind}: {detail})", None,
                   pred == row.get("gender"))


class Samples(Mapping):
    """One record's per-example outputs: {example id: Example}, built lazily (a dev set of 40k rows
    is tabulated from the cheap right/wrong of each row; only the examples shown are built in full)."""

    def __init__(self, task: str, metric: str, rows: dict):
        self.task, self.metric, self.rows, self._built = task, metric, rows, {}

    def __getitem__(self, key) -> Example:
        if key not in self._built:
            row = self.rows[key]
            if "query_id" in row:
                self._built[key] = _retrieval(row, self.metric)
            elif "sentid" in row:
                self._built[key] = _bias(row)
            else:
                self._built[key] = _lm_eval(row, self.metric) if "doc_id" in row else _classification(self.task, row)
        return self._built[key]

    def __iter__(self):
        return iter(self.rows)

    def __contains__(self, key) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def outcome(self, key) -> tuple[bool | None, float | None]:
        """(right, absolute error) of one example without building it: error for regression only."""
        row = self.rows[key]
        if "query_id" in row:  # retrieval: no right or wrong, 1 - nDCG@10 as the error
            return None, 1.0 - float(row.get(self.metric, 0.0))
        if "sentid" in row:  # bias: "right" is preferring the gotcha gender
            return row.get("pred") == row.get("gender"), None
        if "doc_id" in row:
            value = row.get(self.metric, row.get(self.metric.split(",")[0]))
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value), None
        elif not (isinstance(row["pred"], float) or "score" in row):
            return row["pred"] == row["label"], None
        example = self[key]
        return example.right, example.error


def read_rows(path: Path) -> list[dict] | None:
    """The rows of a samples file (JSON lines), parsed as one JSON array (twice as fast as line by
    line on a 40k-row dev set); a file with a bad line is read line by line, skipping it."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return json.loads("[" + ",".join(lines) + "]")
    except (ValueError, RecursionError):
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except (ValueError, RecursionError):
                continue
        return rows


def examples_of(record: dict) -> Samples | None:
    """The per-example outputs of one record's samples (its scored split only); None when none were kept."""
    path = ResultStore(record["results_dir"]).samples_of(record)
    if path is None:
        return None
    rows = read_rows(path)
    if rows is None:
        return None
    out = {}
    for row in rows:
        if "query_id" in row:
            out[("query", row["query_id"])] = row
        elif "sentid" in row:
            out[("sentence", row["sentid"])] = row
        elif "doc_id" in row:
            out[("doc", row["doc_id"])] = row
        elif "pred" in row and "label" in row and row.get("split", record.get("split")) == record.get("split"):
            out[(row.get("split"), row["idx"])] = row
    metric = str(record.get("headline_metric") or "acc")
    return Samples(str(record.get("task")), metric, out) if out else None


def mcnemar(b: int, c: int) -> float:
    """Two-sided p-value of McNemar's exact test: b and c are the two kinds of disagreement."""
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def _sample(n: int, cap: int, seed: int = 0) -> list[int]:
    if n <= cap:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=cap, replace=False).tolist())


def _row(key, enc: Example, dec: Example) -> list:
    ident = key[1] if key[0] in ("doc", "query", "sentence") else f"{key[0]}/{key[1]}"

    def conf(e):
        return round(e.conf, 3) if e.conf is not None and math.isfinite(e.conf) else None

    return [str(ident), enc.input if enc.input is not None else dec.input, enc.gold, enc.pred, conf(enc),
            dec.pred, conf(dec), enc.right, dec.right]


def compare(task: str, enc: Mapping, dec: Mapping, cap: int = MAX_EXAMPLES) -> dict:
    """The 2x2 table, McNemar's test and (up to ``cap``) disagreeing examples of two example maps."""
    keys = [k for k in enc if k in dec]
    outcome = {side: (m.outcome if isinstance(m, Samples) else lambda k, m=m: (m[k].right, m[k].error))
               for side, m in (("enc", enc), ("dec", dec))}
    right = {k: (outcome["enc"](k), outcome["dec"](k)) for k in keys}
    out = {"n": len(keys), "kind": "classification"}
    if keys and all(side[1] is not None for side in right[keys[0]]):  # regression: where their errors differ most
        picked = sorted(keys, key=lambda k: -abs(right[k][0][1] - right[k][1][1]))[:cap]
        out.update(kind="retrieval" if keys[0][0] == "query" else "regression", n_disagree=len(keys))
    else:
        cells = {(True, True): 0, (True, False): 0, (False, True): 0, (False, False): 0}
        differ = []
        for k in keys:
            a, b = bool(right[k][0][0]), bool(right[k][1][0])
            cells[(a, b)] += 1
            if a != b:
                differ.append(k)
        b, c = cells[(True, False)], cells[(False, True)]
        picked = [differ[i] for i in _sample(len(differ), cap)]
        out.update(table=[[cells[(True, True)], b], [c, cells[(False, False)]]], p=mcnemar(b, c),
                   n_disagree=len(differ))
    out["examples"] = [_row(k, enc[k], dec[k]) for k in picked]
    out["has_input"] = any(e[1] is not None for e in out["examples"])
    out["has_conf"] = any(e[4] is not None or e[6] is not None for e in out["examples"])
    return out


def chosen_records(frame: pd.DataFrame, best: pd.DataFrame) -> dict:
    """(row, task, architecture) -> the record whose samples the drill-down shows: the lowest seed of
    the best configuration (the one with samples), of the best-scoring model in that row."""
    best = best.sort_values("score", ascending=False).drop_duplicates(["row", "task", "architecture"])
    rev = frame["revision"].fillna("").astype(str)
    out = {}
    for b in best.to_dict("records"):
        same = frame[(frame["model"] == b["model"]) & (frame["task"] == b["task"]) & (frame["config"] == b["config"])
                     & (rev == ("" if b["revision"] is None or b["revision"] != b["revision"] else str(b["revision"])))]
        with_samples = same[[isinstance(s, str) for s in same["samples"]]] if "samples" in same else same.iloc[:0]
        pick = with_samples if not with_samples.empty else same
        if not pick.empty:
            pick = pick.assign(_seed=pd.to_numeric(pick["seed"], errors="coerce")).sort_values("_seed")
            out[(b["row"], b["task"], b["architecture"])] = pick.iloc[0].to_dict()
    return out


def _seed(record: dict):
    seed = record.get("seed")
    return int(seed) if isinstance(seed, (int, float, np.integer)) and seed == seed else None


def pairs(frame: pd.DataFrame, best: pd.DataFrame, order: list, cap: int = MAX_EXAMPLES) -> list[dict]:
    """One entry per (row, task) that has both an encoder and a decoder score, in ``order`` of
    (row, task): what the drill-down shows, or why it cannot (no per-example outputs kept)."""
    chosen = chosen_records(frame, best)
    out = []
    for row, task in order:
        enc_rec, dec_rec = chosen.get((row, task, "encoder")), chosen.get((row, task, "decoder"))
        if enc_rec is None or dec_rec is None:
            continue
        entry = {"row": row, "task": task, "task_name": display(task), "encoder": enc_rec.get("model_name"),
                 "decoder": dec_rec.get("model_name"), "seeds": [_seed(enc_rec), _seed(dec_rec)],
                 "missing": None}
        metric = str(enc_rec.get("headline_metric") or "")
        if any(word in metric for word in UNGRADED):
            entry["missing"] = f"{metric} is a per-document score, not right or wrong: there is no 2x2 table"
            out.append(entry)
            continue
        enc, dec = examples_of(enc_rec), examples_of(dec_rec)
        if enc is None or dec is None:
            who = " and ".join(a for a, e in (("encoder", enc), ("decoder", dec)) if e is None)
            entry["missing"] = (f"no per-example outputs kept for the {who} "
                                "(classification keeps them; generative tasks need --log-samples)")
        else:
            entry.update(compare(task, enc, dec, cap))
            if not entry["n"]:
                entry["missing"] = "the encoder's and decoder's samples share no example"
        out.append(entry)
    return out
