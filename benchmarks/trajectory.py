"""A real training trajectory, made here: the Ettin-17m-shape encoder (masked LM, 30% masking as
Ettin's encoders) and decoder (causal LM) trained from scratch (the 17m body with embeddings sized to the local 8,192-token vocabulary) on
the same real text in the same
order, checkpoints saved at log-spaced token counts for both (transformers' Trainer, so each
``checkpoint-<step>/`` carries ``trainer_state.json`` with ``num_input_tokens_seen``), then the
harness over every checkpoint of both (``--revisions all``) on one fine-tuned classification task
and two multiple-choice tasks, and the report with its trajectory section.

    python benchmarks/trajectory.py --data-dir ../shared/data [--out /tmp/bench-trajectory]

Training text: the SciFact corpus and the GLUE training splits under --data-dir (no evaluation
split of any task scored here is trained on). Every stage resumes: a finished run's checkpoints are
kept, and the harness computes only what its store lacks. Prints the time per checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from common import ettin_eval


def training_texts(data: Path) -> list[str]:
    texts = []
    for line in (data / "retrieval" / "scifact" / "corpus.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            texts.append(f"{row.get('title', '')}. {row['text']}".strip())
    for path in sorted((data / "glue").glob("*/train.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                texts.append(" ".join(str(v) for k, v in row.items() if isinstance(v, str) and k != "idx"))
    return texts


def packed_blocks(tokenizer, texts: list[str], length: int) -> list[list[int]]:
    """One token stream (documents joined by [SEP]) cut into blocks of ``length``: no padding."""
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream += ids + [tokenizer.sep_token_id]
    body = length - 1
    return [[tokenizer.cls_token_id] + stream[i:i + body] for i in range(0, len(stream) - body + 1, body)]


def train(model_dir: str, run_dir: Path, blocks, mlm: bool, save_steps: list[int], batch: int, lr: float,
          schedule_steps: int | None = None) -> float:
    """Train the model in ``model_dir`` on ``blocks`` (the same order for both architectures: the
    Trainer's sampler is seeded), saving a checkpoint at each of ``save_steps`` and stopping at the
    last; the learning-rate schedule is laid out for ``schedule_steps`` (default: the last save)."""
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling,
                              Trainer, TrainerCallback, TrainingArguments)

    if all((run_dir / f"checkpoint-{s}" / "trainer_state.json").exists() for s in save_steps):
        return 0.0
    torch.set_num_threads(os.cpu_count() or 1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = (AutoModelForMaskedLM if mlm else AutoModelForCausalLM).from_pretrained(model_dir)
    steps = set(save_steps)

    class SaveAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_save = state.global_step in steps
            control.should_training_stop = state.global_step >= max(steps)
            return control

    args = TrainingArguments(
        output_dir=str(run_dir), max_steps=schedule_steps or max(save_steps), per_device_train_batch_size=batch,
        learning_rate=lr, warmup_steps=max(1, (schedule_steps or max(save_steps)) // 20), lr_scheduler_type="constant_with_warmup", weight_decay=0.01,
        save_strategy="no", logging_steps=25, report_to=[], seed=0, data_seed=0, dataloader_drop_last=True,
        include_num_input_tokens_seen=True, use_cpu=True, save_only_model=True, disable_tqdm=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=mlm, mlm_probability=0.3 if mlm else None)
    data = Dataset.from_dict({"input_ids": blocks})
    start = time.perf_counter()
    Trainer(model=model, args=args, train_dataset=data, data_collator=collator, processing_class=tokenizer,
            callbacks=[SaveAt()]).train()
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder with glue/, mc/ and retrieval/scifact/ (../shared/data)")
    p.add_argument("--out", default="/tmp/bench-trajectory")
    p.add_argument("--save-steps", default="50,200,800", help="checkpoint steps (log-spaced)")
    p.add_argument("--schedule-steps", type=int, help="steps the learning-rate schedule is laid out for (default: "
                   "the last save step; warmup is a 20th of it, then constant)")
    p.add_argument("--batch", type=int, default=16, help="sequences per step")
    p.add_argument("--length", type=int, default=128, help="tokens per sequence")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--classify", default="sst2", help="fine-tuned classification task(s)")
    p.add_argument("--classify-limit", default="3000", help="rows per split of the classification task")
    p.add_argument("--tasks", default="arc_easy_local,piqa_local", help="multiple-choice (lm-eval) tasks")
    p.add_argument("--limit", default="400", help="documents per multiple-choice task")
    p.add_argument("--train-only", action="store_true")
    args = p.parse_args(argv)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_EVALUATE_OFFLINE="1")
    from transformers import AutoTokenizer

    from harness.tiny import build_pair

    data, out = Path(args.data_dir), Path(args.out)
    init = out / "init"
    if not (init / "decoder" / "config.json").exists():
        build_pair(init, shape="ettin-17m", seed=0, extra_text_dirs=[data / "glue", data / "retrieval" / "scifact"],
                   own_vocab=True)
    tokenizer = AutoTokenizer.from_pretrained(init / "encoder")
    blocks = packed_blocks(tokenizer, training_texts(data), args.length)
    save_steps = sorted(int(s) for s in args.save_steps.split(","))
    print(f"training text: {len(blocks)} blocks of {args.length} tokens ({len(blocks) * args.length / 1e6:.2f} M "
          f"tokens); {max(save_steps)} steps of {args.batch * args.length} tokens", flush=True)
    runs = {}
    for arch, mlm in (("encoder", True), ("decoder", False)):
        runs[arch] = out / f"{arch}-run"
        took = train(str(init / arch), runs[arch], blocks, mlm, save_steps, args.batch, args.lr, args.schedule_steps)
        if took:
            print(f"{arch}: trained {max(save_steps)} steps in {took:.0f} s "
                  f"({max(save_steps) * args.batch * args.length / took:.0f} tokens/s)", flush=True)
    if args.train_only:
        return 0
    store = out / "results"
    start = time.perf_counter()
    models = ["--model", runs["encoder"], "--model", runs["decoder"], "--pair", "ettin-17m-shape (scratch)",
              "--revisions", "all", "--output-path", store, "--quiet"]
    ettin_eval("run", *models, "--tasks", args.classify, "--data-dir", data / "glue", "--limit", args.classify_limit,
               "--lr", "1e-4", "--epochs", "2")
    ettin_eval("run", *models, "--tasks", args.tasks, "--data-dir", data / "mc", "--limit", args.limit, "--log-samples")
    took = time.perf_counter() - start
    n = 2 * len(save_steps)
    tasks = len(args.classify.split(",")) + len(args.tasks.split(","))
    print(f"harness: {n} checkpoints x {tasks} tasks in {took:.0f} s ({took / n:.0f} s per checkpoint)", flush=True)
    ettin_eval("report", store, "--out", out / "report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
