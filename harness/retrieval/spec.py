"""Retrieval task specs from YAML (``adapter: retrieval``): which corpus, queries and judgements
to score on, and which training pairs the fine-tuned protocol uses.

Data comes from ``DIR/<task>/`` under ``--data-dir DIR`` (the BEIR layout, ``harness.retrieval.beir``)
or, with hub access, from MTEB's own copy of the task (``mteb_task``, loaded by ``mteb.get_task``).
A task of your own is one YAML in an ``--include-path`` folder; ``tasks/retrieval/scifact.yaml``
shows the format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from harness.configs import digest
from harness.errors import UserError
from harness.suite import suite
from harness.tasks import adapter_yaml, check_task_name, replacing

EXAMPLE = "see tasks/retrieval/scifact.yaml for the format"
# The Ettin authors' training data (retrieval_eval/train_st.py): MS MARCO hard-negative triplets,
# 1,000 rows held out with seed 12, the first 1,250,000 of the rest.
MSMARCO_TRIPLETS = {"dataset": "sentence-transformers/msmarco-co-condenser-margin-mse-sym-mnrl-mean-v1",
                    "name": "triplet-hard", "split": "train", "rows": 1_250_000, "held_out": 1000, "seed": 12}
TRAINING_KINDS = ("judgements", "triplets")


@dataclass(frozen=True)
class RetrievalTaskSpec:
    name: str
    group: str
    eval_split: str
    mteb_task: str | None = None  # the MTEB task name, for hub runs
    train_split: str | None = None  # judgements split whose (query, relevant document) pairs train
    training: dict = field(default_factory=dict, hash=False)  # or a named triplet dataset
    headline_metric: str = "ndcg_at_10"
    ignore_identical_ids: bool | None = None  # None: as the MTEB task named by mteb_task (else False)
    description: str = field(default="", compare=False)
    source: str = field(default="", compare=False)
    custom: bool = field(default=False, compare=False)  # replaces a shipped task with other content

    adapter = "retrieval"
    local = False

    @property
    def training_data(self) -> str:
        """The fine-tuned protocol's training pairs, in words (records and protocol labels)."""
        if self.training:
            return f"{self.training['dataset']}:{self.training.get('name') or ''}"
        return f"{self.name} {self.train_split} judgements" if self.train_split else "none"

    @property
    def folder_names(self) -> list[str]:
        """The folder names this task's BEIR data may have under a --data-dir: its own, then its MTEB name."""
        return list(dict.fromkeys([self.name] + ([self.mteb_task] if self.mteb_task else [])))

    def folder(self, data_dir: str) -> str:
        """``data_dir/<name>``, or ``data_dir/<MTEB name>`` when only that one exists."""
        for name in self.folder_names:
            if os.path.isdir(os.path.join(data_dir, name)):
                return os.path.join(data_dir, name)
        return os.path.join(data_dir, self.name)

    def identity(self) -> dict:
        return {"name": self.name, "eval": self.eval_split, "mteb": self.mteb_task, "train": self.train_split,
                "training": digest(self.training), "headline": self.headline_metric,
                "ignore_identical_ids": self.ignore_identical_ids}


def parse_retrieval_task(data: dict, source: str = "<dict>") -> RetrievalTaskSpec:
    missing = [f for f in ("task", "eval_split") if f not in data]
    if missing:
        raise UserError(f"task file {source} lacks field(s) {', '.join(missing)}; add them ({EXAMPLE})")
    training = data.get("training_data")
    if training == "msmarco-triplets":
        training = dict(MSMARCO_TRIPLETS)
    if training is not None and not (isinstance(training, dict) and "dataset" in training):
        raise UserError(f"task file {source}: training_data must be msmarco-triplets or a mapping with 'dataset' "
                        f"(and name, split, rows); {EXAMPLE}")
    train_split = data.get("train_split")
    name = check_task_name(str(data["task"]), f"task file {source}")
    known = suite().tasks.get(name)
    return RetrievalTaskSpec(
        name=name, group=str(data.get("group") or (known.group if known else "custom")),
        eval_split=str(data["eval_split"]), mteb_task=data.get("mteb_task"),
        train_split=str(train_split) if train_split else None, training=dict(training or {}),
        headline_metric=str(data.get("headline_metric") or (known.headline if known else "ndcg_at_10")),
        ignore_identical_ids=None if data.get("ignore_identical_ids") is None else bool(data["ignore_identical_ids"]),
        description=str(data.get("description", "")), source=source)


def load_retrieval_tasks(include_paths: list[str] | None = None) -> dict[str, RetrievalTaskSpec]:
    """The shipped ``tasks/retrieval`` specs plus those in ``--include-path`` folders."""
    found: dict[str, RetrievalTaskSpec] = {}
    shipped: dict[str, RetrievalTaskSpec] = {}
    for path, data, is_shipped in adapter_yaml("retrieval", include_paths, "retrieval"):
        spec = parse_retrieval_task(data, str(path))
        found[spec.name] = shipped.setdefault(spec.name, spec) if is_shipped else replacing(spec, shipped)
    order = {name: i for i, name in enumerate(suite().tasks)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
