"""The bill of a retrieval cell (``harness.cost`` prices every cell; this is the retrieval part):
training tokens of the pairs or triplets, scoring tokens of the corpus and the judged queries."""

from __future__ import annotations

import math

from harness.estimates import TOKENS_PER_WORD, CellCost, estimate_row
from harness.plan import Cell

# Retrieval tasks on the hub: corpus documents, evaluation queries, words per document and per query
# (BEIR, Thakur et al. 2021, Table 1); the MS MARCO training triplets of the Ettin authors' recipe
# are 1.25 M (query, positive, negative) rows of MS MARCO passages.
RETRIEVAL_HUB = {"msmarco": (8_841_823, 6_980, 56.0, 5.96), "scifact": (5_183, 300, 213.63, 12.37)}
MSMARCO_WORDS = (5.96, 56.0)  # query, passage


def retrieval_cost(cell: Cell) -> CellCost | None:
    """Training tokens (each pair or triplet once per epoch) and scoring tokens (the corpus and the
    judged queries, each embedded once) of a retrieval cell; 1.3 tokens per word where not counted."""
    from harness.retrieval.beir import document_text, read_split, training_pairs

    task, config, data = cell.task, cell.config, cell.data
    cap = config.max_length or 512
    sources = []
    if data.folder:
        split = read_split(task.folder(data.folder), task.eval_split, data.limit)
        score = sum(estimate_row([document_text(d)], cap) for d in split.corpus.values()) + \
            sum(estimate_row([q], cap) for q in split.queries.values())
        sources.append("estimated from the local BEIR folder: 1.3 x words + special tokens")
    elif task.name in RETRIEVAL_HUB:
        docs, queries, doc_words, query_words = RETRIEVAL_HUB[task.name]
        score = docs * min(cap, TOKENS_PER_WORD * doc_words + 2) + queries * min(cap, TOKENS_PER_WORD * query_words + 2)
        sources.append("BEIR Table 1 sizes x tokens per word (harness/cost.py RETRIEVAL_HUB)")
    else:
        return None
    rows, train = 0, 0.0
    if config.fine_tuned:
        if task.training:
            rows = min(task.training.get("rows") or 0, data.limit or 10**12)
            query, passage = MSMARCO_WORDS
            train = rows * (min(cap, TOKENS_PER_WORD * query + 2) + 2 * min(cap, TOKENS_PER_WORD * passage + 2))
            sources.append("MS MARCO triplets: rows x (query + 2 passages) tokens")
        elif task.train_split and data.folder:
            pairs = training_pairs(task.folder(data.folder), task.train_split)[:data.limit]
            rows = len(pairs)
            train = sum(estimate_row([q], cap) + estimate_row([d], cap) for q, d in pairs)
        else:
            return None
    return CellCost(train_tokens=train * (config.epochs if config.fine_tuned else 0), score_tokens=score,
                    steps=math.ceil(rows / config.batch_size) * config.epochs if rows else 0, train_rows=rows,
                    sources=tuple(sources))
