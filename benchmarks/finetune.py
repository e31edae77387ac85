"""Fine-tuning throughput: the harness's loop against transformers' ``Trainer``.

Both fine-tune the same Ettin-17m-shaped model (``harness.tiny.build_pair(shape="ettin-17m")``:
real ModernBERT classes, random weights, 7 layers, hidden 256, vocab 50368) on the same SST-2
rows with the same recipe and seed, for the encoder and for the decoder:

    AdamW (0.9, 0.98), eps 1e-6, weight decay off biases and norms, linear decay after 6% warmup,
    gradient norm clipped at 1.0, dynamic padding, batches of similar length
    (harness: its own grouped batches; Trainer: group_by_length + DataCollatorWithPadding)

and prints examples/s of the training alone (model loading, tokenization and evaluation are
timed apart), the ratio harness / Trainer and both dev accuracies. The models have random
weights, so they learn little of SST-2 in a short run: what matters is that both loops land
near the same accuracy, not the value itself.

    python benchmarks/finetune.py                                 # 2,000 rows x 1 epoch, CPU
    python benchmarks/finetune.py --train-rows 20000 --epochs 2 --device cuda --dtype bf16

Data: ``../shared/data/glue/sst2/{train,validation}.jsonl`` next to the repository when present
(or ``--sst2-dir``), else the project's demo data, which the output then says.
"""

from __future__ import annotations

import argparse
import inspect
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
    p.add_argument("--trainer-optim", default=None,
                   help="Trainer's optim (default: Trainer's own default, adamw_torch_fused on torch>=2.8)")
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


# -- the harness ----------------------------------------------------------------------------
def run_harness(args, model_path: str, arch: str, data_dir: Path, runner) -> dict:
    from harness import grids, tasks
    from harness.adapters import classification
    from harness.models import ModelSpec
    from harness.runner import Runner

    spec = tasks.load_tasks()["sst2"]
    model = ModelSpec(model_id=model_path, architecture=arch, name=f"ettin-17m-shape-{arch}", family="tiny")
    hp = grids.Hyper(lr=args.lr, weight_decay=args.weight_decay, batch_size=args.batch_size, epochs=args.epochs,
                     max_length=args.max_length)

    t0 = time.perf_counter()
    classification._ENCODED.clear()  # every run tokenizes, as Trainer's does
    runner = Runner(args.device, args.dtype)  # a fresh runner: nothing cached from an earlier run
    loaded = runner.load(model, "sequence-classification", num_labels=spec.num_labels,
                         problem_type="single_label_classification", training=True)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    for split in (spec.train_split, spec.primary_split):
        classification.encode(loaded.tokenizer, spec, split, str(data_dir), None, args.max_length)
    t_tok = time.perf_counter() - t0

    # finetune() trains, then scores: time its evaluate() apart so the training time stands alone
    eval_time = [0.0, 0.0]  # wall, CPU
    original = classification.evaluate

    def timed_evaluate(*a, **k):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*a, **k)
        finally:
            eval_time[0] += time.perf_counter() - start
            eval_time[1] += time.process_time() - cpu

    classification.evaluate = timed_evaluate
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    try:
        t0, cpu0 = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        result = classification.finetune(runner, loaded, spec, hp, args.seed, data_dir=str(data_dir), progress=False)
        if profiler:
            profiler.disable()
        total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        classification.evaluate = original
    if profiler:
        path = f"{args.profile}.{arch}"
        profiler.dump_stats(path)
        print(f"  cProfile of the harness's {arch} fine-tuning -> {path}")
    return {"train_s": total - eval_time[0], "train_cpu_s": cpu - eval_time[1], "eval_s": eval_time[0],
            "load_s": t_load, "tokenize_s": t_tok,
            "accuracy": result.metrics["accuracy"], "steps": result.steps, "train_loss": result.train_loss}


# -- transformers' Trainer ------------------------------------------------------------------
def training_arguments(args, out_dir: str, runner):
    import torch
    from transformers import TrainingArguments

    params = inspect.signature(TrainingArguments.__init__).parameters
    kw = dict(output_dir=out_dir, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
              learning_rate=args.lr, weight_decay=args.weight_decay, num_train_epochs=args.epochs,
              lr_scheduler_type="linear", adam_beta1=0.9, adam_beta2=0.98, adam_epsilon=1e-6, max_grad_norm=1.0,
              seed=args.seed, report_to=[], save_strategy="no", eval_strategy="no", logging_strategy="no",
              disable_tqdm=True, dataloader_num_workers=0, use_cpu=runner.device.type == "cpu",
              bf16=runner.dtype == torch.bfloat16, fp16=runner.dtype == torch.float16)
    # transformers 5 folded warmup_ratio into a float warmup_steps and group_by_length into
    # train_sampling_strategy; older releases take the old names
    if "warmup_ratio" in params:
        kw["warmup_ratio"] = 0.06
    else:
        kw["warmup_steps"] = 0.06
    if "group_by_length" in params:
        kw["group_by_length"] = True
    else:
        kw["train_sampling_strategy"] = "group_by_length"
    if args.trainer_optim:
        kw["optim"] = args.trainer_optim
    return TrainingArguments(**kw)


def run_trainer(args, model_path: str, arch: str, data_dir: Path, runner) -> dict:
    import datasets
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer, \
        set_seed

    datasets.disable_progress_bars()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    set_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=2, dtype=torch.float32, attn_implementation=runner.attn_implementation)
    model.config.pad_token_id = tok.pad_token_id
    t_load = time.perf_counter() - t0

    t0 = time.perf_counter()
    files = {s: str(data_dir / "sst2" / f"{s}.jsonl") for s in ("train", "validation")}
    raw = datasets.load_dataset("json", data_files=files)
    enc = raw.map(lambda b: tok(b["sentence"], truncation=True, max_length=args.max_length), batched=True,
                  remove_columns=[c for c in raw["train"].column_names if c != "label"])
    enc = enc.rename_column("label", "labels")
    t_tok = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model=model, args=training_arguments(args, out, runner), train_dataset=enc["train"],
                          data_collator=DataCollatorWithPadding(tok), processing_class=tok)
        t0, cpu0 = time.perf_counter(), time.process_time()
        state = trainer.train()
        t_train, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        t0 = time.perf_counter()
        pred = trainer.predict(enc["validation"])
        t_eval = time.perf_counter() - t0
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    acc = float((np.asarray(logits).argmax(-1) == np.asarray(pred.label_ids)).mean())
    return {"train_s": t_train, "train_cpu_s": cpu, "eval_s": t_eval, "load_s": t_load, "tokenize_s": t_tok,
            "accuracy": acc,
            "steps": state.global_step, "train_loss": state.training_loss}


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
        print(f"data: {note}; {n_train} train rows x {args.epochs} epoch(s), {n_dev} dev rows")
        print(f"models: Ettin-17m shape (random weights) in {Path(paths['encoder']).parent} (built in {build_s:.0f}s)")
        print(f"device: {runner.describe()}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
              f"transformers {transformers.__version__}; load average {load:.2f}")
        print(f"recipe: lr {args.lr:g}, weight decay {args.weight_decay:g}, batch {args.batch_size}, "
              f"max length {args.max_length}, seed {args.seed}, AdamW (0.9, 0.98) eps 1e-6, warmup 6%, clip 1.0\n")

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
                        res = run_harness(args, paths[arch], arch, data_dir, runner)
                    res["examples_per_s"] = n_train * args.epochs / res["train_s"]
                    res["examples_per_cpu_s"] = n_train * args.epochs / res["train_cpu_s"]
                    runs[who].append(res)
                    print(f"  {arch:7} {who:13} run {r + 1}: train {res['train_s']:6.1f}s "
                          f"({res['examples_per_s']:5.1f} ex/s; CPU {res['train_cpu_s']:6.1f}s), {res['steps']} steps, "
                          f"loss {res['train_loss']:.3f} (mean over steps); "
                          f"eval {res['eval_s']:.1f}s, load {res['load_s']:.1f}s, "
                          f"tokenize {res['tokenize_s']:.1f}s; dev acc {res['accuracy']:.4f}", flush=True)
            row = {"arch": arch, "runs": runs}
            for who in loops:
                row[who] = {"best_ex_s": max(x["examples_per_s"] for x in runs[who]),
                            "ex_s": statistics.median(x["examples_per_s"] for x in runs[who]),
                            "ex_cpu_s": max(x["examples_per_cpu_s"] for x in runs[who]),
                            "acc": statistics.median(x["accuracy"] for x in runs[who])}
            rows.append(row)

    print(f"\n{args.repeats} run(s) per loop; ex/s = train rows x epochs / training seconds (wall clock), best run "
          "(the least disturbed by other processes) and median; CPU ex/s counts this process's CPU seconds instead, "
          "best run.")
    print(f"{'arch':8} {'loop':14} {'best ex/s':>9} {'ratio':>6} {'median':>7} {'ratio':>6} {'CPU ex/s':>9} "
          f"{'ratio':>6} {'dev acc':>8}")
    for row in rows:
        base = row["trainer"]
        for who in loops:
            x = row[who]
            print(f"{row['arch']:8} {who:14} {x['best_ex_s']:9.1f} {x['best_ex_s'] / base['best_ex_s']:6.2f} "
                  f"{x['ex_s']:7.1f} {x['ex_s'] / base['ex_s']:6.2f} {x['ex_cpu_s']:9.1f} "
                  f"{x['ex_cpu_s'] / base['ex_cpu_s']:6.2f} {x['acc']:8.4f}")
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
                                               "results": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
