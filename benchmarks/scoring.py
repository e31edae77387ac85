"""Scoring speed of the lm-eval backends (a script, not a timed test).

Random-weight encoder and decoder of the real Ettin-17m shape score real multiple-choice rows
from ../shared/data/mc (the tasks/generative fixtures when that folder is absent) and the script
prints, side by side:

  (a) EncoderLM (batched mask-append) vs the one-row-at-a-time computation Ettin's lm-eval fork
      ran (batch size 1, full logits, read at the first [MASK]): requests/s, ratio, max |delta|;
  (b) DecoderLM vs lm-eval's own ``hf`` model (``add_bos_token=True``) at batch size 8, as Ettin
      ran it, on every multiple-choice task lm-eval scores by log-likelihood (arc_challenge,
      arc_easy, boolq, hellaswag, openbookqa, piqa, social_iqa, winogrande), at several document
      counts per task so that growth with the amount of work shows: per task and overall
      requests/s, ratio, max |delta loglik| and whether every is_greedy flag agrees.

OpenBookQA has no shared file: its rows are OpenBookQA-style (question stem + 4 choices, lm-eval's
openbookqa prompt) built from the LAST ARC-Challenge rows, which the arc_challenge task (the
first rows) does not use.

    python benchmarks/scoring.py [--docs 150,400] [--tasks all] [--repeats 2] [--threads 1] [--skip-encoder]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_MC = REPO.parent / "shared" / "data" / "mc"


def hellaswag_requests(path: Path, docs: int) -> list[tuple[str, str]]:
    """HellaSwag's lm-eval prompt on the shared rows, which keep ``ctx`` but not the activity label."""
    from lm_eval.tasks.hellaswag.utils import preprocess

    pairs = []
    for line in path.read_text().splitlines()[:docs]:
        row = json.loads(line)
        pairs += [(preprocess(row["ctx"]), " " + preprocess(e)) for e in row["endings"]]
    return pairs


MC_TASKS = ("arc_challenge", "arc_easy", "boolq", "hellaswag", "openbookqa", "piqa", "social_iqa", "winogrande")


def write_openbookqa_style(folder: Path, docs: int) -> bool:
    """Write folder/openbookqa/test.jsonl: ``docs`` OpenBookQA-style rows (question stem + 4
    choices) made from the last 4-choice ARC-Challenge rows; False without the shared ARC file."""
    source = SHARED_MC / "arc_challenge" / "test.jsonl"
    if not source.exists():
        return False
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    rows = [r for r in reversed(rows) if len(r["choices"]["text"]) == 4][:docs]
    (folder / "openbookqa").mkdir()
    with open(folder / "openbookqa" / "test.jsonl", "w") as f:
        for k, r in enumerate(rows):
            f.write(json.dumps({"id": f"obqa-style-{k}", "question_stem": r["question"],
                                "choices": {"text": r["choices"]["text"], "label": ["A", "B", "C", "D"]},
                                "answerKey": "ABCD"[r["choices"]["label"].index(r["answerKey"])]}) + "\n")
    return True


def task_pairs(task: str, docs: int) -> tuple[list[tuple[str, str]], str]:
    """(context, continuation) pairs lm-eval builds for ``docs`` documents of a task, and where
    the rows came from."""
    from harness.lm.tasks import build_task, data_folder_names

    if task == "hellaswag" and (SHARED_MC / "hellaswag").is_dir():
        return hellaswag_requests(next((SHARED_MC / "hellaswag").glob("validation*.jsonl")), docs), "shared"
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, source = None, "fixture"
        if task == "openbookqa":
            if write_openbookqa_style(Path(tmp), docs):
                data_dir, source = tmp, "OpenBookQA-style, from ARC-Challenge"
        elif any((SHARED_MC / name).is_dir() for name in data_folder_names(task)):
            data_dir, source = str(SHARED_MC), "shared"
        _, obj = build_task(task if data_dir else task + "_local", data_dir=data_dir)
    obj.set_config(key="num_fewshot", value=0)
    obj.build_all_requests(limit=docs, rank=0, world_size=1)
    return [inst.args for inst in obj.instances], source


def instances(pairs) -> list:
    from lm_eval.api.instance import Instance

    return [Instance("loglikelihood", {}, p, 0) for p in pairs]


def requests_for(docs: int, tasks=("hellaswag", "arc_easy", "piqa")) -> tuple[list, dict]:
    pairs, sources = [], {}
    for task in tasks:
        got, sources[task] = task_pairs(task, docs)
        pairs += got
    return instances(pairs), sources


def timed(fn, repeats: int = 1):
    """(result, best wall time of ``repeats`` runs): the best run is the one least disturbed by
    other work on the machine."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def timed_both(fn) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds of this process) of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def parity(ours, theirs) -> tuple[float, float, int, bool]:
    """(max |delta loglik|, max |delta| in float32 ulps of lm-eval's sum, requests that differ at
    all, is_greedy equal everywhere). lm-eval adds a request's token log-probabilities in float32,
    so a sum past 1024 in magnitude moves in steps of 1.2e-4 (2.4e-4 past 2048)."""
    import numpy as np

    delta = np.array([abs(a[0] - b[0]) for a, b in zip(ours, theirs)])
    ulp = np.spacing(np.abs(np.array([b[0] for b in theirs], dtype=np.float32))).astype(np.float64)
    return (float(delta.max(initial=0.0)), float((delta / ulp).max(initial=0.0)), int((delta > 0).sum()),
            all(a[1] == b[1] for a, b in zip(ours, theirs)))


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


def encoder_comparison(runner, paths, args) -> None:
    from harness.lm.encoder import EncoderLM
    from harness.models import resolve

    enc_requests, sources = requests_for(args.encoder_docs)
    print(f"rows: {sources}")
    encoder = EncoderLM(runner=runner, spec=resolve(paths["encoder"]))
    encoder.loglikelihood(enc_requests[:4])  # warm-up
    ours, t_ours = timed(lambda: encoder.loglikelihood(enc_requests))
    n = len(enc_requests)
    stride = max(1, n // args.reference_requests)
    subset = list(range(0, n, stride))[: args.reference_requests]
    ref, t_ref = timed(lambda: one_row_reference(encoder, [enc_requests[i] for i in subset]))
    delta = max(abs(ours[i][0] - r) for i, r in zip(subset, ref))
    print(f"\n(a) encoder mask-append, {n} requests ({args.encoder_docs} docs x hellaswag/arc_easy/piqa)")
    print(f"    one-row reference : {len(subset) / t_ref:8.2f} req/s  ({t_ref:.1f} s on {len(subset)} of them)")
    print(f"    EncoderLM batched : {n / t_ours:8.2f} req/s  ({t_ours:.1f} s)   "
          f"speed-up {(n / t_ours) / (len(subset) / t_ref):.1f}x (goal >= 3x)"
          f"   max |delta| {delta:.2e}")


def load_before(path: str):
    """The DecoderLM class of another version of harness/lm/decoder.py, e.g. one written
    by ``git show COMMIT:harness/lm/decoder.py > FILE``, for before/after figures."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("decoder_lm_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DecoderLM


def decoder_comparison(runner, paths, args) -> None:
    """DecoderLM vs lm-eval hf at batch 8, per task and document count. Each task is timed on its
    own (one ``loglikelihood`` call), the models taking turns so that a burst of load hits all of
    them; each figure is the best of ``--repeats`` runs, in this process's CPU time (the steadier
    measure on a machine that other jobs share) and in wall time."""
    from lm_eval.models.huggingface import HFLM

    from harness.lm.decoder import DecoderLM
    from harness.models import resolve

    tasks = MC_TASKS if args.tasks == "all" else tuple(args.tasks.split(","))
    sizes = [int(d) for d in args.docs.split(",")]
    hf_device = "cuda" if runner.device.type == "cuda" else "cpu"
    models = {"hf": HFLM(pretrained=paths["decoder"], add_bos_token=True, device=hf_device, dtype="float32",
                         batch_size=args.hf_batch_size)}
    if args.before:
        models["before"] = load_before(args.before)(runner=runner, spec=resolve(paths["decoder"]))
    models["ours"] = DecoderLM(runner=runner, spec=resolve(paths["decoder"]))
    run = {name: (lambda reqs, m=m: m.loglikelihood(reqs, disable_tqdm=True)) for name, m in models.items()}
    warm = instances(task_pairs("arc_easy", 4)[0])
    for fn in run.values():
        fn(warm)
    print(f"\n(b) decoder loglikelihood: DecoderLM vs lm-eval hf at batch {args.hf_batch_size} "
          f"(add_bos_token=True), best of {args.repeats} runs per task; speed-up = hf time / DecoderLM time"
          + (f"; 'before' is {args.before}" if args.before else ""))
    before_cols = f" {'before/s':>8} {'before':>7}" if args.before else ""
    summary = []
    for docs in sizes:
        print(f"\n  {docs} documents per task")
        print(f"    {'task':<13} {'requests':>8} {'hf req/s':>8}{before_cols} {'ours/s':>8} {'speed-up':>8} "
              f"{'(wall)':>6} {'max |delta|':>11} {'ulps':>4} {'differ':>6} {'is_greedy':>9}  rows")
        totals = {(name, kind): 0.0 for name in run for kind in ("cpu", "wall")}
        total_n, worst, worst_ulps, differ, greedy_all = 0, 0.0, 0.0, 0, True
        for task in tasks:
            pairs, source = task_pairs(task, docs)
            reqs = instances(pairs)
            best = dict.fromkeys(totals, float("inf"))
            out = {}
            for _ in range(args.repeats):
                for name, fn in run.items():
                    out[name], wall, cpu = timed_both(lambda: fn(reqs))
                    best[name, "wall"], best[name, "cpu"] = min(best[name, "wall"], wall), min(best[name, "cpu"], cpu)
            delta, ulps, n_differ, greedy = parity(out["ours"], out["hf"])
            n = len(reqs)
            for key in totals:
                totals[key] += best[key]
            total_n, differ = total_n + n, differ + n_differ
            worst, worst_ulps, greedy_all = max(worst, delta), max(worst_ulps, ulps), greedy_all and greedy
            print(row(task, n, best, args.before) + f" {delta:>11.2e} {ulps:>4.1f} {n_differ:>6} {str(greedy):>9}  "
                  f"{source}", flush=True)
            if args.before and max(abs(a[0] - b[0]) for a, b in zip(out["before"], out["hf"])) > 1e-3:
                print(f"    {'':<13} (before: max |delta| vs hf above 1e-3)")
            if args.hf_floor_batch:
                models["hf"].batch_size_per_gpu = args.hf_floor_batch
                other = run["hf"](reqs)
                models["hf"].batch_size_per_gpu = args.hf_batch_size
                floor = parity(other, out["hf"])
                print(f"    {'':<13} hf batch {args.hf_floor_batch} vs hf batch {args.hf_batch_size}: "
                      f"max |delta| {floor[0]:.2e}, {floor[1]:.1f} ulps, {floor[2]} requests differ")
        print(row("all", total_n, totals, args.before)
              + f" {worst:>11.2e} {worst_ulps:>4.1f} {differ:>6} {str(greedy_all):>9}")
        summary.append((docs, totals["hf", "cpu"] / totals["ours", "cpu"], totals["hf", "wall"] / totals["ours", "wall"],
                        totals["hf", "cpu"] / totals["before", "cpu"] if args.before else None))
    print(f"\n    overall speed-up vs hf batch {args.hf_batch_size}: " + ", ".join(
        f"{r:.2f}x CPU time ({w:.2f}x wall{f'; before {b:.2f}x' if b else ''}) at {d} docs" for d, r, w, b in summary)
        + " (goal >= 2.5x at every size)")


def row(task: str, n: int, best: dict, before: bool) -> str:
    """One line of the decoder table: requests/s from CPU time, speed-ups over hf."""
    line = f"    {task:<13} {n:>8} {n / best['hf', 'cpu']:>8.1f}"
    if before:
        line += f" {n / best['before', 'cpu']:>8.1f} {best['hf', 'cpu'] / best['before', 'cpu']:>6.2f}x"
    return line + (f" {n / best['ours', 'cpu']:>8.1f} {best['hf', 'cpu'] / best['ours', 'cpu']:>7.2f}x"
                   f" {best['hf', 'wall'] / best['ours', 'wall']:>5.2f}x")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder-docs", type=int, default=4, help="documents per task for the encoder comparison")
    parser.add_argument("--reference-requests", type=int, default=12,
                        help="the one-row reference runs on this many of them (an even stride), as it is slow")
    parser.add_argument("--docs", default="150,400", help="documents per task for the decoder comparison, comma-separated")
    parser.add_argument("--tasks", default="all", help=f"decoder tasks, comma-separated, or all ({','.join(MC_TASKS)})")
    parser.add_argument("--hf-batch-size", type=int, default=8)
    parser.add_argument("--hf-floor-batch", type=int, default=0,
                        help="also run hf at this batch size and print how far hf moves from itself (float32 noise)")
    parser.add_argument("--before", default=None,
                        help="also time the DecoderLM of this file (another version of harness/lm/decoder.py)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (one is steadiest on a shared machine; 0 keeps torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="decoder timings are the best of this many runs")
    parser.add_argument("--skip-encoder", action="store_true", help="run the decoder comparison only")
    parser.add_argument("--skip-decoder", action="store_true", help="run the encoder comparison only")
    args = parser.parse_args(argv)

    import logging

    import transformers

    logging.disable(logging.WARNING)
    transformers.logging.set_verbosity_error()
    from harness.runner import Runner
    from harness.tiny import tiny_pair

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    paths = tiny_pair(shape="ettin-17m")
    runner = Runner(device=args.device, dtype="fp32")
    device_name = torch.cuda.get_device_name() if runner.device.type == "cuda" else (platform.processor() or platform.machine())
    print(f"machine: {device_name}, {os.cpu_count()} CPUs visible, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), transformers {transformers.__version__}; runner: {runner.describe()}")
    if not args.skip_encoder:
        encoder_comparison(runner, paths, args)
    if not args.skip_decoder:
        decoder_comparison(runner, paths, args)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
