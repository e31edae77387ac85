"""Small synthetic GLUE-format data sets for the demo and the tests.

They use the hub datasets' column names and label conventions (sst2: 0 negative / 1 positive;
mnli: 0 entailment / 1 neutral / 2 contradiction; rte: 0 entailment / 1 not_entailment; stsb:
a float in [0, 5]), so the same task YAML reads them through ``--data-dir``. The labels follow
simple rules a tiny model can learn in seconds: they check the pipeline, not language skill.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

POSITIVE = ["good", "great", "wonderful", "charming", "moving", "brilliant", "delightful", "funny", "warm", "superb"]
NEGATIVE = ["bad", "dull", "awful", "boring", "tedious", "clumsy", "painful", "weak", "stale", "lifeless"]
FILLER = ["the", "film", "story", "acting", "plot", "is", "was", "quite", "really", "and", "its", "cast",
          "director", "script", "ending", "a", "with", "very", "at", "times", "this", "movie"]
THINGS = ["cat", "dog", "car", "house", "bird", "boat", "tree", "lamp", "chair", "cup", "book", "door"]
COLOURS = ["red", "blue", "green", "yellow", "black", "white", "brown", "pink"]
WORDS = THINGS + COLOURS + FILLER


def _sentence(rng: random.Random, polarity: list[str]) -> str:
    words = rng.sample(FILLER, rng.randint(3, 9)) + rng.sample(polarity, 2)
    rng.shuffle(words)
    return " ".join(words) + " "


def sst2(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.randint(0, 1)
        rows.append({"sentence": _sentence(rng, POSITIVE if label else NEGATIVE), "label": label, "idx": i})
    return rows


def _nli_pair(rng: random.Random, label: int) -> tuple[str, str]:
    """label 0 entailment, 1 neutral (a thing not in the premise), 2 contradiction (a colour)."""
    things = rng.sample(THINGS, 3)
    colours = rng.sample(COLOURS, 3)
    premise = f"the {things[0]} is {colours[0]} and the {things[1]} is {colours[1]} ."
    pick = rng.randint(0, 1)
    if label == 0:
        hypothesis = f"the {things[pick]} is {colours[pick]} ."
    elif label == 1:
        hypothesis = f"the {things[2]} is {colours[pick]} ."
    else:
        hypothesis = f"the {things[pick]} is {colours[2]} ."
    return premise, hypothesis


def mnli(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.randint(0, 2)
        premise, hypothesis = _nli_pair(rng, label)
        rows.append({"premise": premise, "hypothesis": hypothesis, "label": label, "idx": i})
    return rows


def rte(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.randint(0, 1)
        s1, s2 = _nli_pair(rng, 0 if label == 0 else rng.choice([1, 2]))
        rows.append({"sentence1": s1, "sentence2": s2, "label": label, "idx": i})
    return rows


def stsb(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.sample(WORDS, 5)
        shared = rng.randint(0, 5)
        others = rng.sample([w for w in WORDS if w not in words], 5 - shared)
        second = words[:shared] + others
        rng.shuffle(second)
        rows.append({"sentence1": " ".join(words), "sentence2": " ".join(second),
                     "label": float(shared), "idx": i})
    return rows


BUILDERS = {"sst2": sst2, "mnli": mnli, "rte": rte, "stsb": stsb}
SPLITS = {
    "sst2": {"train": 800, "validation": 200},
    "mnli": {"train": 1200, "validation_matched": 200, "validation_mismatched": 200},
    "rte": {"train": 400, "validation": 200},
    "stsb": {"train": 800, "validation": 200},
}


def write(out_dir: str | Path, sizes: dict[str, dict[str, int]] | None = None, seed: int = 0) -> Path:
    """Write ``<out_dir>/<task>/<split>.jsonl`` for every demo task."""
    out = Path(out_dir)
    for t, (task, splits) in enumerate((sizes or SPLITS).items()):
        for s, (split, n) in enumerate(splits.items()):
            rows = BUILDERS[task](n, seed * 1000 + t * 10 + s)
            path = out / task / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def retrieval(seed: int = 0) -> dict:
    """A BEIR-layout retrieval set: one document per (colour, thing) with filler words, a query
    naming the pair; half of the pairs judge training queries, the other half test queries, so a
    fine-tuned embedder must learn to match both words of pairs it never trained on."""
    rng = random.Random(seed)
    pairs = [(c, t) for c in COLOURS for t in THINGS]
    rng.shuffle(pairs)
    corpus, queries, qrels = [], [], {"train": [], "test": []}
    for i, (colour, thing) in enumerate(pairs):
        words = rng.sample(FILLER, 6) + [colour, thing]
        rng.shuffle(words)
        corpus.append({"_id": f"d{i}", "title": "", "text": " ".join(words)})
        split = "train" if i % 2 == 0 else "test"
        queries.append({"_id": f"q{i}", "text": f"which {thing} is {colour}"})
        qrels[split].append((f"q{i}", f"d{i}", 1))
    return {"corpus": corpus, "queries": queries, "qrels": qrels}


def write_retrieval(out_dir: str | Path, name: str = "retrieval_demo", seed: int = 0) -> Path:
    """``out_dir/name/`` in the BEIR layout (corpus.jsonl, queries.jsonl, qrels/{train,test}.tsv)."""
    data = retrieval(seed)
    folder = Path(out_dir) / name
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    for file, rows in (("corpus.jsonl", data["corpus"]), ("queries.jsonl", data["queries"])):
        (folder / file).write_text("".join(json.dumps(r) + "\n" for r in rows))
    for split, rows in data["qrels"].items():
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                                       + "".join(f"{q}\t{d}\t{v}\n" for q, d, v in rows))
    return Path(out_dir)


DEMO_DATA_DIR = Path(__file__).resolve().parent / "data" / "demo"
# kept apart from DEMO_DATA_DIR, whose text the tiny tokenizer is trained on
DEMO_RETRIEVAL_DIR = Path(__file__).resolve().parent / "data" / "demo_retrieval"

if __name__ == "__main__":
    write(DEMO_DATA_DIR)
    write_retrieval(DEMO_RETRIEVAL_DIR)
