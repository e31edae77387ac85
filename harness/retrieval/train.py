"""The fine-tuned retrieval protocol: an embedder trained on (query, relevant document) pairs with
sentence-transformers' own trainer, as the Ettin authors trained theirs
(``retrieval_eval/train_st.py`` in JHU-CLSP/ettin-encoder-vs-decoder):

- ``CachedMultipleNegativesRankingLoss`` with scale 20 (in-batch negatives; the cache splits a
  batch into mini-batches for memory without changing the loss);
- ``BatchSamplers.NO_DUPLICATES`` (no text twice in a batch, so no false in-batch negative);
- linear schedule with warmup ratio 0.05, one epoch by default, learning rate from the grid;
- bf16 where the runner computes in bf16 (the authors' ``--bf16``), fp32 otherwise.
"""

from __future__ import annotations

import logging
import math
import tempfile

from harness.errors import UserError, first_line

log = logging.getLogger(__name__)

SCALE = 20.0
WARMUP_RATIO = 0.05
MINI_BATCH = 64  # CachedMNRL's mini-batch: memory only (the authors: 256 on their GPUs)


def load_pairs(spec, folder: str | None, limit: int | None = None):
    """The training rows as a ``datasets.Dataset``: (anchor, positive) from the task's train
    judgements, or (query, positive, negative) from the named triplet dataset."""
    import datasets

    if spec.training:
        cfg = spec.training
        try:
            ds = datasets.load_dataset(cfg["dataset"], cfg.get("name"), split=cfg.get("split", "train"))
        except Exception as exc:
            raise UserError(f"training data {spec.training_data} for task '{spec.name}' could not be loaded "
                            f"({first_line(exc)}); it needs hub access, or use --zero-shot") from None
        if cfg.get("held_out"):
            ds = ds.train_test_split(test_size=cfg["held_out"], seed=cfg.get("seed", 12))["train"]
        rows = min(len(ds), cfg.get("rows") or len(ds), limit or len(ds))
        return ds.select(range(rows))
    if not spec.train_split:
        raise UserError(f"task '{spec.name}' names no training data (train_split or training_data) for the "
                        "fine-tuned protocol; add one to its YAML or use --zero-shot")
    if folder is None:
        raise UserError(f"task '{spec.name}' trains on its '{spec.train_split}' judgements, read from a local "
                        f"folder: pass --data-dir DIR with DIR/{spec.name}/qrels/{spec.train_split}.tsv")
    from harness.retrieval.beir import training_pairs

    pairs = training_pairs(spec.folder(folder), spec.train_split)
    if limit is not None:
        pairs = pairs[:limit]
    return datasets.Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [d for _, d in pairs]})


def fine_tune(embedder, train_rows, lr: float, batch_size: int, epochs: int, seed: int, bf16: bool,
              progress: bool = False) -> dict:
    """Train ``embedder.model`` in place; returns what the record keeps (steps, loss, rows)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers.trainer_callback import PrinterCallback

    if len(train_rows) < 2:
        raise UserError(f"{len(train_rows)} training pair(s): in-batch negatives need at least 2")
    model = embedder.model
    loss = CachedMultipleNegativesRankingLoss(model, scale=SCALE, mini_batch_size=min(MINI_BATCH, batch_size),
                                              show_progress_bar=False)
    with tempfile.TemporaryDirectory(prefix="ettin-embedder-") as out:
        args = SentenceTransformerTrainingArguments(
            output_dir=out, num_train_epochs=epochs, per_device_train_batch_size=batch_size, learning_rate=lr,
            # a float warmup_steps is a ratio of the steps (transformers 5's spelling of warmup_ratio)
            warmup_steps=WARMUP_RATIO, lr_scheduler_type="linear", batch_sampler=BatchSamplers.NO_DUPLICATES,
            bf16=bf16, seed=seed, data_seed=seed, save_strategy="no", eval_strategy="no", report_to="none",
            logging_strategy="no", disable_tqdm=not progress, dataloader_num_workers=0, use_cpu=str(model.device) == "cpu")
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_rows, loss=loss)
        trainer.remove_callback(PrinterCallback)  # the harness prints its own line per cell
        output = trainer.train()
    train_loss = float(output.training_loss)
    if not math.isfinite(train_loss):
        raise FloatingPointError(f"training loss is {train_loss}: the fine-tune diverged (lower the learning rate)")
    return {"train_loss": train_loss, "steps": int(output.global_step), "train_rows": len(train_rows),
            "mini_batch_size": min(MINI_BATCH, batch_size)}
