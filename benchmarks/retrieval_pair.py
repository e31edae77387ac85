"""The fine-tuned retrieval protocol on real data: the random-weight Ettin-17m-shape encoder/decoder
pair and the pretrained all-MiniLM-L6-v2, each fine-tuned on SciFact's 919 train judgements
(sentence-transformers, CachedMNRL) with several seeds and scored on SciFact test by MTEB; then the
report (tables, paired test by query, results page).

    python benchmarks/retrieval_pair.py --data-dir ../shared/data/retrieval [--out /tmp/bench-retrieval-pair]

Every run resumes (the same command computes only what its store lacks). Prints the report.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import ettin_eval, minilm_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder holding scifact/ in the BEIR layout")
    p.add_argument("--out", default="/tmp/bench-retrieval-pair")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--pair-lr", default="1e-3", help="learning rate of the random-weight pair")
    p.add_argument("--minilm-lr", default="5e-5", help="learning rate of the pretrained MiniLM")
    p.add_argument("--batch-size", default="64")
    p.add_argument("--epochs", default="1", help="the recipe's one epoch")
    p.add_argument("--max-length", default="256", help="max tokens per text (MiniLM's own limit: 256)")
    args = p.parse_args(argv)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_EVALUATE_OFFLINE="1")
    from harness.tiny import tiny_pair

    pair = tiny_pair(shape="ettin-17m")
    common = ["--tasks", "scifact", "--data-dir", args.data_dir, "--seeds", args.seeds, "--batch-size",
              args.batch_size, "--epochs", args.epochs, "--max-length", args.max_length, "--output-path", args.out,
              "--quiet"]
    start = time.perf_counter()
    ettin_eval("run", "--model", f"{pair['encoder']}", "--model", f"{pair['decoder']}", "--pair", "ettin-17m-shape",
               "--lr", args.pair_lr, *common)
    ettin_eval("run", "--model", minilm_path(), "--lr", args.minilm_lr, *common)
    print(f"runs: {time.perf_counter() - start:.0f} s")
    ettin_eval("report", args.out, "--out", os.path.join(args.out, "report"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
