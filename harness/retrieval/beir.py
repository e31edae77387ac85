"""A retrieval task's data in the BEIR layout, read and checked before any model sees it:

    DIR/<task>/corpus.jsonl        {"_id": ..., "title": ..., "text": ...} per line
    DIR/<task>/queries.jsonl       {"_id": ..., "text": ...} per line
    DIR/<task>/qrels/<split>.tsv   query-id <TAB> corpus-id <TAB> score, with that header

Every problem (a judgement naming a query or document that is not there, a repeated id, an empty
corpus, a split with no judged query, a line that is not JSON) is one line naming the file, the
line and the fix.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from harness.tasks import json_lines

LAYOUT = "corpus.jsonl, queries.jsonl and qrels/<split>.tsv (the BEIR layout)"


@dataclass
class BeirSplit:
    corpus: dict[str, dict]  # id -> {"title", "text"}
    queries: dict[str, str]  # id -> text, only the judged queries of the split
    qrels: dict[str, dict[str, int]]  # query id -> {document id: relevance}

    @property
    def judged(self) -> int:
        return len(self.qrels)


def _jsonl(path: Path, text_field: str = "text"):
    """(line number, id, row) for each row of a BEIR JSON-lines file; one line on a bad row."""
    seen: set[str] = set()
    if not path.exists():
        raise UserError(f"{path} is missing; a retrieval task folder holds {LAYOUT}")
    for number, row in json_lines(path):
        if "_id" not in row:
            raise UserError(f"{path} line {number} has no '_id'; every row needs \"_id\" and \"{text_field}\"")
        if not isinstance(row.get(text_field), str):
            raise UserError(f"{path} line {number} (id {row['_id']}) has no text in '{text_field}'; "
                            "fill it or drop the row")
        key = str(row["_id"])
        if key in seen:
            raise UserError(f"{path} line {number}: id {key} appears twice; ids must be unique, drop or "
                            "rename the repeat")
        seen.add(key)
        yield number, key, row


def read_corpus(folder: Path) -> dict[str, dict]:
    path = folder / "corpus.jsonl"
    corpus = {key: {"title": str(row.get("title") or ""), "text": row["text"]} for _, key, row in _jsonl(path)}
    if not corpus:
        raise UserError(f"{path} holds no documents; a retrieval task needs a corpus")
    return corpus


def read_queries(folder: Path) -> dict[str, str]:
    return {key: row["text"] for _, key, row in _jsonl(folder / "queries.jsonl")}


def read_qrels(folder: Path, split: str, corpus: dict, queries: dict) -> dict[str, dict[str, int]]:
    """Judgements of ``split``, every id checked against the corpus and the queries."""
    path = folder / "qrels" / f"{split}.tsv"
    if not path.exists():
        have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise UserError(f"{path} is missing (judgements of split '{split}'); the folder has "
                        f"{', '.join(have) or 'no qrels/*.tsv'}: add it or change the task's split")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        header = next(rows, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise UserError(f"{path} line 1 must be the header 'query-id<TAB>corpus-id<TAB>score', not {header!r}")
        for number, row in enumerate(rows, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise UserError(f"{path} line {number} has {len(row)} column(s), not 3 (query-id, corpus-id, score)")
            qid, did, score = row[0].strip(), row[1].strip(), row[2].strip()
            if qid not in queries:
                raise UserError(f"{path} line {number}: query {qid} is not in queries.jsonl; add the query or "
                                "drop the judgement")
            if did not in corpus:
                raise UserError(f"{path} line {number}: document {did} is not in corpus.jsonl; add the document or "
                                "drop the judgement")
            try:
                value = int(float(score))
            except ValueError:
                raise UserError(f"{path} line {number}: score {score!r} is not a number; give a whole relevance "
                                "grade (0, 1, 2, ...)") from None
            if qrels.get(qid, {}).get(did) is not None:
                raise UserError(f"{path} line {number}: query {qid} and document {did} are judged twice; keep one line")
            qrels.setdefault(qid, {})[did] = value
    if not any(v > 0 for docs in qrels.values() for v in docs.values()):
        raise UserError(f"{path} judges no document relevant (score > 0) for any query; nothing can be scored")
    return qrels


def read_split(folder: str | Path, split: str, limit: int | None = None) -> BeirSplit:
    """The corpus, the judged queries and the judgements of ``split``; ``limit`` keeps the first
    ``limit`` judged queries (in the judgements' order) and the whole corpus."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"no folder {folder} for this retrieval task; give --data-dir DIR with DIR/{folder.name}/ "
                        f"holding {LAYOUT}")
    corpus = read_corpus(folder)
    queries = read_queries(folder)
    qrels = read_qrels(folder, split, corpus, queries)
    if limit is not None:
        qrels = dict(list(qrels.items())[:limit])
    return BeirSplit(corpus=corpus, queries={q: queries[q] for q in qrels}, qrels=qrels)


def training_pairs(folder: str | Path, split: str) -> list[tuple[str, str]]:
    """(query text, relevant document text) for every positive judgement of ``split``, in file
    order: the fine-tuned protocol's training pairs when a task has its own train judgements."""
    data = read_split(folder, split)
    return [(data.queries[q], document_text(data.corpus[d])) for q, docs in data.qrels.items()
            for d, v in docs.items() if v > 0]


def document_text(doc: dict) -> str:
    """A document as an embedder reads it: title and text joined by a space, as MTEB joins them
    (``mteb._create_dataloaders``) so training and scoring see documents alike."""
    return f"{doc['title']} {doc['text']}".strip() if doc.get("title") else doc["text"]
