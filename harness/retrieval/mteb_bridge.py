"""Retrieval scored by ``mteb``: a local BEIR folder as an MTEB retrieval task (a subclass of
``AbsTaskRetrieval`` whose ``load_data`` fills the split, as MTEB's docs describe for custom
tasks), hub tasks by their MTEB name, and the harness's embedder as an MTEB encoder. nDCG and the
other scores are MTEB's (pytrec_eval underneath); the harness adds only the per-query scores and
each query's top documents, taken from the same evaluation through ``task_specific_scores``.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Callable

import numpy as np

from harness.errors import UserError, first_line
from harness.retrieval.beir import BeirSplit

log = logging.getLogger(__name__)

HEADLINE = "ndcg_at_10"
TOP_DOCUMENTS = 10  # kept per query in the samples, for the drill-down


def local_task(name: str, split: str, data: BeirSplit, like: str | None = None,
               ignore_identical_ids: bool | None = None):
    """An MTEB retrieval task over ``data`` (already read and checked). ``like`` names the MTEB
    task the folder is a copy of: its evaluation settings (``ignore_identical_ids``, e.g. ArguAna,
    MS MARCO, FiQA, FEVER drop a document whose id is the query's; ``skip_first_result``;
    ``k_values``) carry over, so a local copy scores as MTEB scores the hub one."""
    import datasets
    from mteb.abstasks import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    metadata = TaskMetadata(
        name=f"harness-{name}", description=f"local BEIR folder of task {name}", type="Retrieval",
        category="t2t", modalities=["text"], eval_splits=[split], eval_langs=["eng-Latn"], main_score=HEADLINE,
        dataset={"path": f"local/{name}", "revision": "local"}, reference=None, date=None, domains=None,
        task_subtypes=None, license=None, annotations_creators=None, dialect=None, sample_creation=None,
        bibtex_citation="")

    class LocalRetrieval(AbsTaskRetrieval):
        def load_data(self, *args, **kwargs) -> None:
            corpus = datasets.Dataset.from_list([{"id": k, "title": v["title"], "text": v["text"]}
                                                 for k, v in data.corpus.items()])
            queries = datasets.Dataset.from_list([{"id": k, "text": v} for k, v in data.queries.items()])
            self.dataset = {"default": {split: {"corpus": corpus, "queries": queries,
                                                "relevant_docs": data.qrels, "top_ranked": None}}}
            self.data_loaded = True

    LocalRetrieval.metadata = metadata
    if like:
        import mteb

        try:  # a local task of the user's own may name no MTEB task: MTEB's defaults then
            model = type(mteb.get_task(like))
        except Exception:
            model = AbsTaskRetrieval
        for attr in EVALUATION_SETTINGS:
            setattr(LocalRetrieval, attr, getattr(model, attr))
    if ignore_identical_ids is not None:
        LocalRetrieval.ignore_identical_ids = bool(ignore_identical_ids)
    return LocalRetrieval()


EVALUATION_SETTINGS = ("ignore_identical_ids", "skip_first_result", "k_values")


def settings_of(task) -> dict:
    """The task's evaluation settings, for the record."""
    return {attr: list(v) if isinstance(v := getattr(task, attr), tuple) else v for attr in EVALUATION_SETTINGS}


def hub_task(mteb_name: str, task: str | None = None):
    """MTEB's task ``mteb_name``; with ``task`` (the harness's name for it) its data is loaded from
    the hub now, so that a task that cannot be had stops the run before any model is loaded."""
    import mteb

    try:
        found = mteb.get_task(mteb_name)
    except Exception as exc:
        raise UserError(f"MTEB has no task '{mteb_name}' ({first_line(exc)}); give an MTEB task name "
                        "(mteb.get_tasks(task_types=['Retrieval']) lists them)") from None
    if task is not None:
        try:
            found.load_data()
        except Exception as exc:
            offline = any(os.environ.get(v, "0").lower() in ("1", "true", "yes")
                          for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
            reason = "hub access is off (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)" if offline else first_line(exc)
            raise UserError(f"MTEB task {mteb_name} ({found.metadata.dataset['path']}) for task '{task}' could not "
                            f"be loaded: {reason}; pass --data-dir DIR with DIR/{task}/ in the BEIR layout "
                            "(corpus.jsonl, queries.jsonl, qrels/<split>.tsv)") from None
    return found


class Encoder:
    """The harness's embedder as MTEB sees it: ``encode`` gets MTEB's batches of texts (queries, or
    documents with their titles joined) and hands them all to ``embed`` at once, so the runner can
    sort and batch them by tokens; similarity is cosine, as sentence-transformers' default."""

    def __init__(self, embed: Callable[[list[str], str], np.ndarray], meta):
        self.embed = embed
        self.mteb_model_meta = meta

    def encode(self, inputs, *, task_metadata=None, hf_split=None, hf_subset=None, prompt_type=None, **kwargs):
        texts = [text for batch in inputs for text in batch["text"]]
        kind = getattr(prompt_type, "value", prompt_type) or "text"
        return self.embed(texts, str(kind))

    @staticmethod
    def similarity(a, b):
        from sentence_transformers.util import cos_sim

        return cos_sim(a, b)

    @staticmethod
    def similarity_pairwise(a, b):
        from sentence_transformers.util import pairwise_cos_sim

        return pairwise_cos_sim(a, b)


def model_meta(name: str, revision: str | None, dim: int | None, max_tokens: int | None):
    from mteb.models.model_meta import ModelMeta

    return ModelMeta(loader=None, name=name if "/" in name else f"local/{name}", revision=revision or "local",
                     release_date=None, languages=None, n_parameters=None, memory_usage_mb=None, max_tokens=max_tokens,
                     embed_dim=dim, license=None, open_weights=True, public_training_code=None,
                     public_training_data=None, framework=["PyTorch"], similarity_fn_name="cosine",
                     use_instructions=False, training_datasets=None)


def evaluate(task, split: str, encoder: Encoder) -> dict:
    """Score ``encoder`` on ``task``'s ``split`` with MTEB: ``{"scores": MTEB's scores (the
    "default" subset, or the mean over subsets), "per_query": {query id: {"ndcg_at_10", ...}},
    "top": {query id: [(document id, score), ...]}, "n_queries"}``."""
    captured: dict = {}
    original = task.task_specific_scores

    def capture(scores, qrels, results, hf_split, hf_subset):
        captured.setdefault(hf_subset, (scores, results))
        return original(scores, qrels, results, hf_split=hf_split, hf_subset=hf_subset)

    task.task_specific_scores = capture
    try:
        by_subset = task.evaluate(encoder, split, encode_kwargs={"batch_size": 32})
    finally:
        del task.task_specific_scores
    subsets = sorted(by_subset)
    scores = by_subset[subsets[0]] if len(subsets) == 1 else {
        k: float(np.mean([by_subset[s][k] for s in subsets])) for k, v in by_subset[subsets[0]].items()
        if isinstance(v, (int, float))}
    per_query, top = {}, {}
    for subset, (raw, results) in captured.items():
        prefix = "" if len(captured) == 1 else f"{subset}/"
        for qid, values in raw.items():
            per_query[prefix + qid] = {mteb_metric_name(k): float(v) for k, v in values.items()}
        for qid, docs in results.items():
            ranked = sorted(docs.items(), key=lambda kv: -kv[1])[:TOP_DOCUMENTS]
            top[prefix + qid] = [(d, float(s)) for d, s in ranked]
    numbers = {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}
    # MTEB's abstention scores (nauc_*) are correlations: undefined (NaN) when a cut-off's scores
    # do not vary over the queries. They are named, not stored as numbers.
    undefined = sorted(k for k, v in numbers.items() if not math.isfinite(v))
    return {"scores": {k: v for k, v in numbers.items() if k not in undefined}, "undefined": undefined,
            "per_query": per_query, "top": top, "n_queries": len(per_query)}


def mteb_metric_name(pytrec_name: str) -> str:
    """pytrec_eval's per-query names (``ndcg_cut_10``, ``recall_10``, ``P_10``) in MTEB's spelling."""
    for prefix, name in (("ndcg_cut_", "ndcg_at_"), ("map_cut_", "map_at_"), ("recall_", "recall_at_"),
                         ("P_", "precision_at_"), ("success_", "hit_rate_at_")):
        if pytrec_name.startswith(prefix):
            return name + pytrec_name[len(prefix):]
    return pytrec_name
