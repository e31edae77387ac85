"""Fine-tuning throughput: the harness's loop against transformers' ``Trainer``.

Both fine-tune the same Ettin-17m-shaped model (``harness.tiny.build_pair(shape="ettin-17m")``:
real ModernBERT classes, random weights, 7 layers, hidden 256, vocab 50368) on the same SST-2
rows with the same recipe and seed, for the encoder and for the decoder. The recipe is the
harness's (``harness/adapters/finetune.py``):

    DecoupledAdamW semantics: torch AdamW (0.9, 0.98), eps 1e-6, fused kernel, weight decay
    weight_decay / lr_peak on tensors with ndim > 1 that are not biases, none elsewhere;
    linear warmup over int(0.06 x steps) steps, then linear decay to 0, stepped per batch;
    NO gradient clipping; dynamic padding, batches of similar length
    (harness: its own grouped batches; Trainer: group_by_length + DataCollatorWithPadding)

The harness side is the adapter ``ettin-eval run`` calls (``adapters.classification.run`` on a
``Cell`` with a ``FinetuneConfig``, on a fresh ``Runner``). The Trainer side gets the same model
set-up (the encoder pools [CLS], the decoder's head starts from its LM head's dense/norm) and an
optimizer and scheduler built here to the recipe above, passed as ``Trainer(optimizers=...)``,
with ``max_grad_norm=0`` (no clipping).

Printed per run: examples/s and training tokens/s of the training alone (model loading,
tokenization and evaluation are timed apart), the achieved fraction of the machine's peak FLOP/s
(FLOPs = 6 x non-embedding parameters x training tokens, the harness's own ``throughput()``; the
peak is ``runner.hardware.peak_flops()``, the best of a few large matmuls), CPU seconds, steps,
loss and dev accuracy; then the ratio harness / Trainer. The models have random weights, so they
learn little of SST-2 in a short run: what matters is that both loops land near the same
accuracy, not the value itself.

    python benchmarks/finetune.py                                 # 2,000 rows x 1 epoch, CPU
    python benchmarks/finetune.py --repeats 2                     # best of 2 per loop (noisy machines)
    python benchmarks/finetune.py --train-rows 20000 --epochs 2 --device cuda --dtype bf16

Data: ``../shared/data/glue/sst2/{train,validation}.jsonl`` next to the repository when present
(or ``--sst2-dir``), else the project's demo data, which the output then says.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SHARED_SST2 = REPO.parent / "shared" / "data" / "glue" / "sst2"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-rows", type=int, default=2000, help="first N SST-2 train rows (default 2000)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4, help="default 1e-4, the top of the paper grid")
    p.add_argument("--weight-decay", type=float, default=8e-6, help="default 8e-6, the 'small' grid's value")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arch", default="encoder,decoder", help="encoder, decoder or both (comma-separated)")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per loop and architecture, order rotated; best and median are reported")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    p.add_argument("--dtype", default="fp32", help="fp32 (default), bf16, fp16 (mixed precision: fp32 weights)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--sst2-dir", help="folder with train.jsonl and validation.jsonl "
                                      "(default: ../shared/data/glue/sst2)")
    p.add_argument("--model-dir", help="reuse (or build once into) this folder for the Ettin-17m-shaped pair")
    p.add_argument("--profile", metavar="FILE", help="cProfile the harness's training and save the stats to FILE")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    return p.parse_args(argv)


# -- data and models ------------------------------------------------------------------------
def prepare_data(args, root: Path) -> tuple[Path, str]:
    """``root/sst2/{train,validation}.jsonl``: the first ``--train-rows`` train rows, full dev."""
    src = Path(args.sst2_dir) if args.sst2_dir else SHARED_SST2
    note = f"real SST-2 rows from {src}"
    if not (src / "train.jsonl").exists():
        from harness.demo_data import DEMO_DATA_DIR

        src = Path(DEMO_DATA_DIR) / "sst2"
        note = f"NO real SST-2 found; the project's demo data {src} (synthetic, small)"
    out = root / "sst2"
    out.mkdir(parents=True, exist_ok=True)
    lines = [ln for ln in (src / "train.jsonl").read_text().splitlines() if ln.strip()]
    if args.train_rows > len(lines):
        print(f"note: {src}/train.jsonl has only {len(lines)} rows; using all of them")
    (out / "train.jsonl").write_text("\n".join(lines[: args.train_rows]) + "\n")
    (out / "validation.jsonl").write_text((src / "validation.jsonl").read_text())
    return root, note


def build_models(args, data_root: Path) -> dict:
    from harness.tiny import build_pair

    target = Path(args.model_dir) if args.model_dir else data_root / "models"
    if (target / "decoder" / "config.json").exists():
        return {a: str(target / a) for a in ("encoder", "decoder")}
    # the shared tokenizer also learns from the train rows, so SST-2 words are not split into bytes
    return build_pair(target, shape="ettin-17m", seed=args.seed, extra_text_dirs=[data_root / "sst2"])


def count_rows(path: Path) -> int:
    return sum(1 for ln in path.read_text().splitlines() if ln.strip())


@contextlib.contextmanager
def timed(owner, name: str, clock: dict, profiler=None):
    """Replace ``owner.name`` by a wrapper that adds its wall and CPU seconds to ``clock``
    (and runs it under ``profiler``), so one stage of a larger call is timed on its own."""
    original = getattr(owner, name)

    def wrapper(*a, **k):
        start, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        try:
            return original(*a, **k)
        finally:
            if profiler:
                profiler.disable()
            clock["wall"] = clock.get("wall", 0.0) + time.perf_counter() - start
            clock["cpu"] = clock.get("cpu", 0.0) + time.process_time() - cpu

    setattr(owner, name, wrapper)
    try:
        yield clock
    finally:
        setattr(owner, name, original)


# -- the harness ----------------------------------------------------------------------------
def run_harness(args, model_path: str, arch: str, data_dir: Path) -> dict:
    """One cell through ``adapters.classification.run``, as ``ettin-eval run`` executes it."""
    from harness import tasks
    from harness.adapters import classification, finetune
    from harness.adapters.base import RunOptions
    from harness.configs import DataSource, FinetuneConfig
    from harness.models import ModelSpec
    from harness.plan import Cell
    from harness.runner import Runner

    spec = tasks.load_tasks()["sst2"]
    model = ModelSpec(model_id=model_path, architecture=arch, name=f"ettin-17m-shape-{arch}", family="tiny")
    config = FinetuneConfig(lr=args.lr, weight_decay=args.weight_decay, batch_size=args.batch_size,
                            epochs=args.epochs, max_length=args.max_length)
    cell = Cell(model=model, task=spec, config=config, data=DataSource(folder=str(data_dir)), seed=args.seed)

    classification._ENCODED.clear()  # every run tokenizes, as Trainer's does
    runner = Runner(args.device, args.dtype)  # a fresh runner: nothing cached from an earlier run
    runner.hardware.peak_flops()  # measured once per process (cached), outside every timed stage
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    train_clock, eval_clock = {}, {}
    t0 = time.perf_counter()
    # run() loads, tokenizes, trains (finetune.train), then scores (evaluate): time the stages apart
    with timed(finetune, "train", train_clock, profiler), timed(classification, "evaluate", eval_clock):
        result = classification.run(cell, runner, RunOptions())
    total = time.perf_counter() - t0
    if profiler:
        path = f"{args.profile}.{arch}"
        profiler.dump_stats(path)
        print(f"  cProfile of the harness's {arch} fine-tuning -> {path}")
    d = result.details
    return {"train_s": d["train_time_s"], "train_wall_s": train_clock["wall"], "train_cpu_s": train_clock["cpu"],
            "eval_s": eval_clock["wall"], "setup_s": total - train_clock["wall"] - eval_clock["wall"],
            "tokens": d["train_tokens"], "tokens_per_s": d["train_tokens_per_s"], "flops": d["train_flops"],
            "peak_flops": d["peak_flops"], "peak_fraction": d["peak_fraction"],
            "accuracy": result.metrics["accuracy"], "steps": d["train_steps"], "warmup_steps": d["warmup_steps"],
            "train_loss": d["train_loss"]}


# -- transformers' Trainer ------------------------------------------------------------------
def recipe_optimizer(model, args, total_steps: int):
    """The harness's recipe, built here for Trainer: DecoupledAdamW semantics through torch AdamW
    (decay weight_decay / lr on ndim > 1 non-bias tensors), linear warmup over int(0.06 x steps)
    steps then linear decay to 0."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 and not name.endswith(".bias") else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay / args.lr},
              {"params": no_decay, "weight_decay": 0.0}]
    # fused=True as Trainer's default optimizer (adamw_torch_fused) and the harness
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    warmup = int(0.06 * total_steps)
    return optimizer, get_linear_schedule_with_warmup(optimizer, warmup, total_steps), warmup


def training_arguments(args, out_dir: str, runner):
    import inspect

    import torch
    from transformers import TrainingArguments

    params = inspect.signature(TrainingArguments.__init__).parameters
    # optimizer and scheduler come from recipe_optimizer(); max_grad_norm=0 turns clipping off
    kw = dict(output_dir=out_dir, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
              learning_rate=args.lr, num_train_epochs=args.epochs, max_grad_norm=0.0,
              seed=args.seed, report_to=[], save_strategy="no", eval_strategy="no", logging_strategy="no",
              disable_tqdm=True, dataloader_num_workers=0, use_cpu=runner.device.type == "cpu",
              bf16=runner.dtype == torch.bfloat16, fp16=runner.dtype == torch.float16)
    # transformers 5 folded group_by_length into train_sampling_strategy; older releases take the old name
    if "group_by_length" in params:
        kw["group_by_length"] = True
    else:
        kw["train_sampling_strategy"] = "group_by_length"
    return TrainingArguments(**kw)


def run_trainer(args, model_path: str, arch: str, data_dir: Path, runner) -> dict:
    import math

    import datasets
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, \
        DataCollatorWithPadding, Trainer, set_seed

    from harness.adapters import classification, finetune, inputs
    from harness.runner.cache import PRETRAINED_HEAD_KEYS

    datasets.disable_progress_bars()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    set_seed(args.seed)
    # the harness's model set-up: encoders pool [CLS]; a decoder's head starts from its LM head
    model_type = AutoConfig.from_pretrained(model_path).model_type
    extra = dict(inputs.ENCODER_POOLING.get(model_type, {})) if arch == "encoder" else {}
    if arch == "decoder" and model_type in PRETRAINED_HEAD_KEYS:
        extra["key_mapping"] = PRETRAINED_HEAD_KEYS[model_type]
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=2, dtype=torch.float32, attn_implementation=runner.attn_implementation, **extra)
    model.config.pad_token_id = tok.pad_token_id
    model.to(runner.device)  # before the optimizer is built over its parameters
    t_load = time.perf_counter() - t0

    t0 = time.perf_counter()
    files = {s: str(data_dir / "sst2" / f"{s}.jsonl") for s in ("train", "validation")}
    raw = datasets.load_dataset("json", data_files=files)
    enc = raw.map(lambda b: tok(b["sentence"], truncation=True, max_length=args.max_length), batched=True,
                  remove_columns=[c for c in raw["train"].column_names if c != "label"])
    enc = enc.rename_column("label", "labels")
    t_tok = time.perf_counter() - t0

    pad = DataCollatorWithPadding(tok)
    seen = {"tokens": 0}

    def collate(features):  # counts the real (non-pad) tokens of every batch, as the harness's runner does
        batch = pad(features)
        seen["tokens"] += int(batch["attention_mask"].sum())
        return batch

    total_steps = math.ceil(len(enc["train"]) / args.batch_size) * args.epochs
    optimizer, scheduler, warmup = recipe_optimizer(model, args, total_steps)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model=model, args=training_arguments(args, out, runner), train_dataset=enc["train"],
                          data_collator=collate, processing_class=tok, optimizers=(optimizer, scheduler))
        t0, cpu0 = time.perf_counter(), time.process_time()
        state = trainer.train()
        t_train, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        tokens = seen["tokens"]
        t0 = time.perf_counter()
        pred = trainer.predict(enc["validation"])
        t_eval = time.perf_counter() - t0
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    acc = float((np.asarray(logits).argmax(-1) == np.asarray(pred.label_ids)).mean())
    # the same FLOPs and peak fraction the harness records (classification.throughput)
    work = classification.throughput(runner, model, finetune.Training(
        loss=state.training_loss, steps=state.global_step, warmup_steps=warmup, tokens=tokens, seconds=t_train))
    return {"train_s": t_train, "train_wall_s": t_train, "train_cpu_s": cpu, "eval_s": t_eval,
            "setup_s": t_load + t_tok, "tokens": tokens, "tokens_per_s": work["train_tokens_per_s"],
            "flops": work["train_flops"], "peak_flops": work["peak_flops"], "peak_fraction": work["peak_fraction"],
            "accuracy": acc, "steps": state.global_step, "warmup_steps": warmup, "train_loss": state.training_loss}


# -- main -----------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import transformers

    from harness.runner import Runner

    transformers.utils.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    archs = [a.strip() for a in args.arch.replace("both", "encoder,decoder").split(",") if a.strip()]
    runner = Runner(args.device, args.dtype)

    with tempfile.TemporaryDirectory(prefix="ettin-bench-") as tmp:
        data_dir, note = prepare_data(args, Path(tmp))
        n_train = count_rows(data_dir / "sst2" / "train.jsonl")
        n_dev = count_rows(data_dir / "sst2" / "validation.jsonl")
        t0 = time.perf_counter()
        paths = build_models(args, data_dir)
        build_s = time.perf_counter() - t0
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        peak = runner.hardware.peak_flops()
        print(f"data: {note}; {n_train} train rows x {args.epochs} epoch(s), {n_dev} dev rows")
        print(f"models: Ettin-17m shape (random weights) in {Path(paths['encoder']).parent} (built in {build_s:.0f}s)")
        print(f"device: {runner.describe()}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
              f"transformers {transformers.__version__}; load average {load:.2f}; measured peak "
              f"{peak / 1e9:.1f} GFLOP/s ({runner.dtype} matmul)")
        print(f"recipe: lr {args.lr:g}, weight decay {args.weight_decay:g} (DecoupledAdamW: torch AdamW with "
              f"{args.weight_decay / args.lr:g} on ndim>1 non-bias tensors), batch {args.batch_size}, max length "
              f"{args.max_length}, seed {args.seed}, betas (0.9, 0.98), eps 1e-6, warmup int(0.06 x steps) then "
              "linear decay to 0, no clipping\n")

        loops = ["harness", "trainer"]
        rows = []
        for arch in archs:
            runs = {who: [] for who in loops}
            for r in range(args.repeats):
                # rotate who goes first, so a warm cache or a noisy neighbour does not favour one loop
                for who in loops[r % len(loops):] + loops[: r % len(loops)]:
                    if who == "trainer":
                        res = run_trainer(args, paths[arch], arch, data_dir, runner)
                    else:
                        res = run_harness(args, paths[arch], arch, data_dir)
                    res["examples_per_s"] = n_train * args.epochs / res["train_s"]
                    res["examples_per_cpu_s"] = n_train * args.epochs / res["train_cpu_s"]
                    runs[who].append(res)
                    print(f"  {arch:7} {who:8} run {r + 1}: train {res['train_s']:6.1f}s "
                          f"({res['examples_per_s']:5.1f} ex/s, {res['tokens_per_s']:7.0f} tok/s, "
                          f"{100 * res['peak_fraction']:5.2f}% of peak; CPU {res['train_cpu_s']:6.1f}s), "
                          f"{res['tokens']} tokens, {res['steps']} steps ({res['warmup_steps']} warmup), "
                          f"loss {res['train_loss']:.3f} (mean over steps); eval {res['eval_s']:.1f}s, "
                          f"setup {res['setup_s']:.1f}s; dev acc {res['accuracy']:.4f}", flush=True)
            row = {"arch": arch, "runs": runs}
            for who in loops:
                row[who] = {"best_ex_s": max(x["examples_per_s"] for x in runs[who]),
                            "ex_s": statistics.median(x["examples_per_s"] for x in runs[who]),
                            "ex_cpu_s": max(x["examples_per_cpu_s"] for x in runs[who]),
                            "best_tok_s": max(x["tokens_per_s"] for x in runs[who]),
                            "best_peak": max(x["peak_fraction"] for x in runs[who]),
                            "acc": statistics.median(x["accuracy"] for x in runs[who])}
            rows.append(row)

    print(f"\n{args.repeats} run(s) per loop; ex/s = train rows x epochs / training seconds (wall clock), best run "
          "(the least disturbed by other processes) and median; tok/s = real (non-pad) training tokens / training "
          "seconds, best run; peak = 6 x non-embedding parameters x tokens / seconds / measured peak FLOP/s, best "
          "run; CPU ex/s counts this process's CPU seconds instead, best run.")
    print(f"{'arch':8} {'loop':8} {'best ex/s':>9} {'ratio':>6} {'median':>7} {'ratio':>6} {'tok/s':>7} "
          f"{'% peak':>7} {'CPU ex/s':>9} {'ratio':>6} {'dev acc':>8}")
    for row in rows:
        base = row["trainer"]
        for who in loops:
            x = row[who]
            print(f"{row['arch']:8} {who:8} {x['best_ex_s']:9.1f} {x['best_ex_s'] / base['best_ex_s']:6.2f} "
                  f"{x['ex_s']:7.1f} {x['ex_s'] / base['ex_s']:6.2f} {x['best_tok_s']:7.0f} "
                  f"{100 * x['best_peak']:7.2f} {x['ex_cpu_s']:9.1f} {x['ex_cpu_s'] / base['ex_cpu_s']:6.2f} "
                  f"{x['acc']:8.4f}")
    print("\nratio = loop / Trainer (> 1: faster than Trainer). The models have random weights: a short run learns "
          "little SST-2 (the majority class is ~0.51 of the dev set), so the dev accuracies show whether the loops "
          "agree, not how good an Ettin model is.")
    for row in rows:
        ratio = row["harness"]["best_ex_s"] / row["trainer"]["best_ex_s"]
        verdict = "not slower than Trainer" if ratio >= 0.95 else "SLOWER than Trainer"
        print(f"{row['arch']}: harness {verdict} (best-run ratio {ratio:.2f}, CPU ratio "
              f"{row['harness']['ex_cpu_s'] / row['trainer']['ex_cpu_s']:.2f}); dev accuracy harness "
              f"{row['harness']['acc']:.4f} vs Trainer {row['trainer']['acc']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "data": note, "device": runner.describe(),
                                               "peak_flops": peak, "results": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
