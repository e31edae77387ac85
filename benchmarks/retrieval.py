"""Zero-shot all-MiniLM-L6-v2 on SciFact test: the harness's whole evaluation against
``mteb.evaluate(SentenceTransformer(path), task)`` at its defaults, same machine, same data.

    python benchmarks/retrieval.py --data-dir ../shared/data/retrieval [--out /tmp/bench-retrieval]

Prints both nDCG@10 (they must agree to 1e-4), both wall times and their ratio, the harness's
scoring tokens and the fraction of the machine's peak FLOP/s it reached (from the record). The
published figure for all-MiniLM-L6-v2 on SciFact is 64.5 (MTEB leaderboard).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import minilm_path

PUBLISHED = 0.645


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder holding scifact/ in the BEIR layout")
    p.add_argument("--out", default="/tmp/bench-retrieval")
    p.add_argument("--task", default="scifact")
    p.add_argument("--split", default="test")
    args = p.parse_args(argv)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_EVALUATE_OFFLINE="1")
    model = minilm_path("pass another model")
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", "run", "--model", model, "--tasks", args.task, "--zero-shot",
                    "--data-dir", args.data_dir, "--output-path", str(out / "harness"), "--quiet"], check=True)
    harness_s = time.perf_counter() - start
    [record] = [json.loads(p.read_text()) for p in (out / "harness" / "records").glob("*.json")]

    import mteb
    from sentence_transformers import SentenceTransformer

    from harness.retrieval.beir import read_split
    from harness.retrieval.mteb_bridge import local_task

    start = time.perf_counter()
    task = local_task(args.task, args.split, read_split(Path(args.data_dir) / args.task, args.split))
    result = mteb.evaluate(SentenceTransformer(model, device="cpu"), task, cache=None, co2_tracker=False)
    mteb_s = time.perf_counter() - start
    direct = result.task_results[0].scores[args.split][0]["ndcg_at_10"]
    ours = record["metrics"]["ndcg_at_10"]
    info = record["retrieval"]
    print(f"harness: nDCG@10 {ours:.5f} in {harness_s:.1f} s (process start, model load and scoring; "
          f"{info['scoring_tokens']:,} tokens embedded in {info['scoring_time_s']:.1f} s, "
          f"{info['scoring_peak_fraction']:.3f} of the measured peak FLOP/s)")
    print(f"mteb.evaluate(SentenceTransformer): nDCG@10 {direct:.5f} in {mteb_s:.1f} s (data read included)")
    print(f"same nDCG@10: {abs(ours - direct) <= 1e-4} (|diff| {abs(ours - direct):.2e}); published {PUBLISHED:.3f}, "
          f"|harness - published| = {abs(ours - PUBLISHED) * 100:.2f} points")
    print(f"speed-up: {mteb_s / harness_s:.2f}x (goal >= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
