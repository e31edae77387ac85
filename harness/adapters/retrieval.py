"""The retrieval adapter: an embedder (fine-tuned on the task's training pairs, or zero-shot) scored
by MTEB on the task's corpus, queries and judgements; nDCG@10 is the headline, every MTEB score is
kept, and each judged query's scores and top documents are the samples (for paired tests)."""

from __future__ import annotations

import time

import torch

from harness.adapters.base import CellResult, RunOptions
from harness.models import hub_dataset
from harness.retrieval import mteb_bridge
from harness.retrieval.beir import document_text, read_split
from harness.runner.embedder import EmbedSettings, embed, fresh_copy, token_lengths

SNIPPET = 200  # characters of a top document kept in the samples


def run(cell, runner, options: RunOptions) -> CellResult:
    spec, config, model_spec = cell.task, cell.config, cell.model
    if config.fine_tuned:
        runner.hardware.refuse_fp16_training()
    settings = EmbedSettings(**config.embed_settings())
    # the data is read and checked before any model work: a bad file costs no training
    split = read_split(spec.folder(cell.data.folder), spec.eval_split, cell.data.limit) if cell.data.folder else None
    task = mteb_bridge.local_task(spec.name, spec.eval_split, split, spec.mteb_task, spec.ignore_identical_ids) \
        if split else mteb_bridge.hub_task(spec.mteb_task or spec.name, spec.name)
    if not split and spec.ignore_identical_ids is not None:
        task.ignore_identical_ids = spec.ignore_identical_ids
    base = runner.embedder(model_spec, settings)
    details: dict = {}
    tokens_before = runner.tokens_processed
    if config.fine_tuned:
        from harness.retrieval.train import fine_tune, load_pairs

        rows = load_pairs(spec, cell.data.folder, cell.data.limit)
        embedder = fresh_copy(base)
        start = time.perf_counter()
        stats = fine_tune(embedder, rows, config.lr, config.batch_size, config.epochs, cell.seed,
                          bf16=runner.dtype == torch.bfloat16, progress=options.progress)
        seconds = time.perf_counter() - start
        texts = [t for column in rows.column_names for t in rows[column]]
        train_tokens = sum(token_lengths(embedder.model, texts)) * config.epochs
        details["training"] = {**stats, "data": spec.training_data, "train_tokens": train_tokens,
                               "train_time_s": round(seconds, 3), **flops(runner, embedder, 3 * train_tokens, seconds)}
        cache: dict = {}  # a model of its own: nothing to reuse
    else:
        embedder, cache = base, runner.embedding_cache(model_spec, settings)
    meta = mteb_bridge.model_meta(model_spec.model_id, model_spec.revision,
                                  embedder.model.get_embedding_dimension(), embedder.max_length)
    scored = {"seconds": 0.0, "tokens": 0}

    def embed_texts(texts: list[str], kind: str):
        start, before = time.perf_counter(), runner.tokens_processed
        out = embed(runner, embedder, texts, cache)
        scored["seconds"] += time.perf_counter() - start
        scored["tokens"] += runner.tokens_processed - before
        return out

    result = mteb_bridge.evaluate(task, spec.eval_split, mteb_bridge.Encoder(embed_texts, meta))
    details["retrieval"] = {
        "protocol": config.protocol, **embedder.describe(), "training_data": spec.training_data if config.fine_tuned
        else None, "mteb_task": None if split else (spec.mteb_task or spec.name), "split": spec.eval_split,
        "corpus": len(split.corpus) if split else None, "undefined_scores": result["undefined"],
        "mteb_settings": mteb_bridge.settings_of(task),
        "scoring_tokens": scored["tokens"],
        "scoring_time_s": round(scored["seconds"], 3),
        **flops(runner, embedder, scored["tokens"], scored["seconds"], prefix="scoring_")}
    if not split:
        details["dataset"] = hub_dataset(task.metadata.dataset["path"], task.metadata.dataset.get("revision"))
    state = None
    if options.keep_state:
        state = {k: v.detach().to("cpu", copy=True) for k, v in embedder.model.state_dict().items()}
    return CellResult(
        metrics=result["scores"], headline_metric=spec.headline_metric, split=spec.eval_split,
        n_examples=result["n_queries"], samples=samples(result, split, task, spec.eval_split), state=state,
        tokens_processed=runner.tokens_processed - tokens_before + details.get("training", {}).get("train_tokens", 0),
        parameters=backbone_parameters(embedder), loaded_id=runner.cache.resolved(model_spec).model_id,
        details=details)


def backbone_parameters(embedder) -> int:
    return sum(p.numel() for p in embedder.model[0].parameters())


def non_embedding_parameters(embedder) -> int:
    model = embedder.model.transformers_model
    embeddings = model.get_input_embeddings().weight.numel() if model.get_input_embeddings() is not None else 0
    return sum(p.numel() for p in model.parameters()) - embeddings


def flops(runner, embedder, tokens: int, seconds: float, prefix: str = "train_") -> dict:
    """2 x non-embedding parameters FLOPs per token forward (the caller passes 3 x tokens for
    training: forward and backward, the convention of every bill here; CachedMNRL's extra no-grad
    forward is not counted), and the share of the device's measured peak FLOP/s reached."""
    total = 2 * non_embedding_parameters(embedder) * tokens
    peak = runner.hardware.peak_flops()
    achieved = total / seconds if seconds > 0 else None
    return {f"{prefix}flops": total, "peak_flops": peak,
            f"{prefix}peak_fraction": None if achieved is None or not peak else round(achieved / peak, 5)}


def samples(result: dict, split, task, eval_split: str) -> list[dict]:
    """One row per judged query: its MTEB scores, the relevant documents and the top ten."""
    corpus, queries, qrels = _lookup(split, task, eval_split)
    out = []
    for qid, scores in result["per_query"].items():
        top = result["top"].get(qid, [])
        out.append({"query_id": qid, "input": queries.get(qid, ""), **{k: round(v, 6) for k, v in scores.items()},
                    "relevant": sorted(d for d, v in qrels.get(qid, {}).items() if v > 0),
                    "top": [{"id": d, "score": round(s, 6), "text": corpus(d)[:SNIPPET]} for d, s in top]})
    return out


def _lookup(split, task, eval_split: str):
    """(document id -> text, query id -> text, judgements) from the local split or the MTEB task."""
    if split is not None:
        return (lambda d: document_text(split.corpus[d]) if d in split.corpus else ""), split.queries, split.qrels
    data = next(iter(task.dataset.values()))[eval_split]
    ids = {d: i for i, d in enumerate(data["corpus"]["id"])}

    def doc(d):
        return "" if d not in ids else document_text({"title": data["corpus"][ids[d]].get("title") or "",
                                                      "text": data["corpus"][ids[d]]["text"]})

    return doc, dict(zip(data["queries"]["id"], data["queries"]["text"])), data["relevant_docs"]
