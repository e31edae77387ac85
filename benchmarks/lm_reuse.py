"""What a trajectory saves by building an lm-eval task, its requests and their token ids once per
task rather than once per checkpoint (harness/lm/reuse.py): the Ettin-17m-shape decoder and
encoder, a second checkpoint of each (perturbed weights, the same tokenizer), scored on local
multiple-choice tasks cold (caches cleared) and warm (after the first checkpoint).

    python benchmarks/lm_reuse.py --data-dir ../shared/data/mc [--tasks arc_easy_local,piqa_local --limit 1000]

Prints, per architecture and task, the strings tokenised and the wall time of the second
checkpoint cold and warm, and checks that both give the same scores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time


def perturbed_copy(path: str, out: str, arch: str) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    shutil.copytree(path, out)
    model = (AutoModelForMaskedLM if arch == "encoder" else AutoModelForCausalLM).from_pretrained(out)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder with the tasks' local data (../shared/data/mc)")
    p.add_argument("--tasks", default="arc_easy_local,piqa_local")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--archs", default="decoder,encoder")
    args = p.parse_args(argv)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_EVALUATE_OFFLINE="1")
    from harness.lm import reuse
    from harness.lm.evaluate import evaluate_task
    from harness.models import resolve
    from harness.runner import Runner
    from harness.tiny import tiny_pair

    pair = tiny_pair(shape="ettin-17m")
    runner = Runner(device="cpu", dtype="fp32")
    tmp = tempfile.mkdtemp(prefix="lm-reuse-")
    print("arch     task              strings tokenised (cold -> warm)  second checkpoint s (cold -> warm)  saved")
    try:
        for arch in args.archs.split(","):
            first, second = resolve(pair[arch]), resolve(perturbed_copy(pair[arch], f"{tmp}/{arch}-step2", arch))
            for task in args.tasks.split(","):
                def score(spec):
                    start, before = time.perf_counter(), reuse.STATS["encoded"]
                    out = evaluate_task(runner, spec, task, data_dir=args.data_dir, limit=args.limit)
                    return out["metrics"], time.perf_counter() - start, reuse.STATS["encoded"] - before

                reuse.clear()
                score(second)  # warm the model cache (weights loaded once either way)
                reuse.clear()
                cold_metrics, cold_s, cold_n = score(second)
                reuse.clear()
                score(first)
                warm_metrics, warm_s, warm_n = score(second)
                assert warm_metrics == cold_metrics, (warm_metrics, cold_metrics)
                print(f"{arch:8} {task:17} {cold_n:>14,} -> {warm_n:<14,}  {cold_s:>15.1f} -> {warm_s:<15.1f} "
                      f"{cold_s - warm_s:5.1f} s ({(cold_s - warm_s) / cold_s:.0%})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
