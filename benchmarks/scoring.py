"""Scoring speed of the lm-eval backends (a script, not a timed test).

Random-weight encoder and decoder of the real Ettin-17m shape score real multiple-choice rows
(hellaswag, arc_easy, piqa from ../shared/data/mc when present, the tasks/generative fixtures
otherwise) and the script prints, side by side:

  (a) EncoderLM (batched mask-append) vs the one-row-at-a-time computation Ettin's lm-eval fork
      ran (batch size 1, full logits, read at the first [MASK]): requests/s, ratio, max |delta|;
  (b) DecoderLM vs lm-eval's own ``hf`` model at batch size 8 (as Ettin ran it) and at hf's best
      batch size: requests/s, ratio, max |delta loglik|.

    python benchmarks/scoring.py [--docs 8] [--decoder-docs 40] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_MC = REPO.parent / "shared" / "data" / "mc"


def hellaswag_requests(path: Path, docs: int) -> list[tuple[str, str]]:
    """HellaSwag's lm-eval prompt on the shared rows, which keep ``ctx`` but not the activity label."""
    import json

    from lm_eval.tasks.hellaswag.utils import preprocess

    pairs = []
    for line in path.read_text().splitlines()[:docs]:
        row = json.loads(line)
        pairs += [(preprocess(row["ctx"]), " " + preprocess(e)) for e in row["endings"]]
    return pairs


def task_pairs(task: str, docs: int) -> tuple[list[tuple[str, str]], str]:
    """(context, continuation) pairs lm-eval builds for ``docs`` documents of a task."""
    from harness.adapters.lm_eval_bridge import build_task

    if task == "hellaswag" and (SHARED_MC / "hellaswag").is_dir():
        return hellaswag_requests(next((SHARED_MC / "hellaswag").glob("validation*.jsonl")), docs), "shared"
    data_dir = str(SHARED_MC) if (SHARED_MC / task).is_dir() else None
    _, obj = build_task(task if data_dir else task + "_local", data_dir=data_dir)
    obj.set_config(key="num_fewshot", value=0)
    obj.build_all_requests(limit=docs, rank=0, world_size=1)
    return [inst.args for inst in obj.instances], "shared" if data_dir else "fixture"


def requests_for(docs: int) -> tuple[list, dict]:
    from lm_eval.api.instance import Instance

    pairs, sources = [], {}
    for task in ("hellaswag", "arc_easy", "piqa"):
        got, sources[task] = task_pairs(task, docs)
        pairs += got
    return [Instance("loglikelihood", {}, p, 0) for p in pairs], sources


def timed(fn, repeats: int = 1):
    """(result, best wall time of ``repeats`` runs): the best run is the one least disturbed by
    other work on the machine."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


@torch.no_grad()
def one_row_reference(lm, requests) -> list[float]:
    """Mask-append as Ettin's fork ran it: one row per forward pass, full logits."""
    out = []
    for req in requests:
        prefix, cont = lm.encode_pair(*req.args)
        total = 0.0
        for i, target in enumerate(cont):
            ids = prefix + cont[:i] + [lm.mask_id] * lm.num_masks + [lm.sep_id]
            logits = lm.model(input_ids=torch.tensor([ids], device=lm.runner.device)).logits[0, len(prefix) + i]
            total += float(torch.log_softmax(logits.float(), -1)[target])
        out.append(total)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4, help="documents per task for the encoder comparison")
    parser.add_argument("--reference-requests", type=int, default=12,
                        help="the one-row reference runs on this many of them (an even stride), as it is slow")
    parser.add_argument("--decoder-docs", type=int, default=20, help="documents per task for the decoder comparison")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hf-batch-sizes", default="8,16,32,64")
    parser.add_argument("--repeats", type=int, default=2, help="decoder timings are the best of this many runs")
    args = parser.parse_args(argv)

    import logging

    import transformers

    logging.disable(logging.WARNING)
    transformers.logging.set_verbosity_error()
    from lm_eval.models.huggingface import HFLM

    from harness.adapters.decoder_lm import DecoderLM
    from harness.adapters.mask_append import EncoderLM
    from harness.models import resolve
    from harness.runner import Runner
    from harness.tiny import tiny_pair

    torch.manual_seed(0)
    paths = tiny_pair(shape="ettin-17m")
    runner = Runner(device=args.device, dtype="fp32")
    device_name = torch.cuda.get_device_name() if runner.device.type == "cuda" else (platform.processor() or platform.machine())
    print(f"machine: {device_name}, {os.cpu_count()} CPUs visible, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), transformers {transformers.__version__}; runner: {runner.describe()}")

    # (a) encoder -----------------------------------------------------------------------------
    enc_requests, sources = requests_for(args.docs)
    print(f"rows: {sources}")
    encoder = EncoderLM(runner=runner, spec=resolve(paths["encoder"]))
    encoder.loglikelihood(enc_requests[:4])  # warm-up
    ours, t_ours = timed(lambda: encoder.loglikelihood(enc_requests))
    n = len(enc_requests)
    stride = max(1, n // args.reference_requests)
    subset = list(range(0, n, stride))[: args.reference_requests]
    ref, t_ref = timed(lambda: one_row_reference(encoder, [enc_requests[i] for i in subset]))
    delta = max(abs(ours[i][0] - r) for i, r in zip(subset, ref))
    print(f"\n(a) encoder mask-append, {n} requests ({args.docs} docs x hellaswag/arc_easy/piqa)")
    print(f"    one-row reference : {len(subset) / t_ref:8.2f} req/s  ({t_ref:.1f} s on {len(subset)} of them)")
    print(f"    EncoderLM batched : {n / t_ours:8.2f} req/s  ({t_ours:.1f} s)   "
          f"speed-up {(n / t_ours) / (len(subset) / t_ref):.1f}x (goal >= 3x)"
          f"   max |delta| {delta:.2e}")

    # (b) decoder -----------------------------------------------------------------------------
    dec_requests, _ = requests_for(args.decoder_docs)
    n = len(dec_requests)
    decoder = DecoderLM(runner=runner, spec=resolve(paths["decoder"]))
    decoder.loglikelihood(dec_requests[:8])  # warm-up
    ours, t_ours = timed(lambda: decoder.loglikelihood(dec_requests), args.repeats)
    print(f"\n(b) decoder loglikelihood, {n} requests ({args.decoder_docs} docs x hellaswag/arc_easy/piqa), "
          f"best of {args.repeats} runs")
    hf_device = "cuda" if runner.device.type == "cuda" else "cpu"
    hf = HFLM(pretrained=paths["decoder"], add_bos_token=True, device=hf_device, dtype="float32", batch_size=8)
    hf.loglikelihood(dec_requests[:8], disable_tqdm=True)  # warm-up
    timings = {}
    for bs in [int(b) for b in args.hf_batch_sizes.split(",")]:
        hf.batch_size_per_gpu = bs
        theirs, timings[bs] = timed(lambda: hf.loglikelihood(dec_requests, disable_tqdm=True), args.repeats)
        delta = max(abs(a[0] - b[0]) for a, b in zip(ours, theirs))
        greedy_same = all(a[1] == b[1] for a, b in zip(ours, theirs))
        print(f"    lm-eval hf, batch {bs:3d}: {n / timings[bs]:8.1f} req/s  ({timings[bs]:.1f} s)   "
              f"max |delta loglik| {delta:.2e}, is_greedy equal: {greedy_same}")
    best = min(timings, key=timings.get)
    print(f"    DecoderLM          : {n / t_ours:8.1f} req/s  ({t_ours:.1f} s)   "
          f"speed-up {timings[8] / t_ours:.1f}x vs hf batch 8, {timings[best] / t_ours:.1f}x vs hf's best "
          f"(batch {best}) (goal >= 1.5x)")
    decoder.prefix_sharing = False
    _, t_plain = timed(lambda: decoder.loglikelihood(dec_requests), args.repeats)
    print(f"    DecoderLM without prefix sharing: {n / t_plain:8.1f} req/s  ({t_plain:.1f} s)")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
