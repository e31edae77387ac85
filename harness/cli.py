"""``ettin-eval``: parse flags and hand over to the harness; nothing else happens here."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from harness import __version__
from harness.errors import UserError

DEFAULT_OUTPUT = os.path.join("results", "runs", "default")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2)."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}; see '{self.prog} --help'\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ettin-eval", description=(
        "Compare encoders and decoders of the same size, data and recipe (the Ettin suite) on the same "
        "fine-tuned GLUE tasks and lm-eval generative tasks."),
        epilog="Quick start: 'ettin-eval demo' (offline, tiny local models). Real models: "
               "'ettin-eval run --sizes 17m,150m --arch both --tasks glue --device cuda'.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    run = sub.add_parser("run", help="fine-tune / score models on tasks and store every finished cell",
                         description="Run models x tasks x hyperparameters x seeds. Each finished cell is written "
                                     "to --output-path at once; a rerun into the same folder skips finished cells.")
    what = run.add_argument_group("models")
    what.add_argument("--sizes", help="comma-separated Ettin sizes: 17m,32m,68m,150m,400m,1b")
    what.add_argument("--arch", default="both", help="with --sizes: encoder, decoder or both (default both)")
    what.add_argument("--model", action="append", default=[], metavar="PATH_OR_ID",
                      help="any hub id, registry name or local path; repeatable. Append @REV for a revision and "
                           ":encoder or :decoder to override the architecture read from the config")
    what.add_argument("--revision", help="checkpoint revision for every model, e.g. step599525, ext1000, decay100")
    what.add_argument("--revisions", metavar="LIST",
                      help="many checkpoints of every model, in training order: names, globs (step*, decay*), all, "
                           "every:K; the hub repository's tags, or a local run's DIR/<revision>/ folders")
    what.add_argument("--pair", metavar="NAME",
                      help="the --model models are one encoder/decoder pair called NAME: reports show them as one row "
                           "with the gap (give exactly one encoder and one decoder)")
    tasks = run.add_argument_group("tasks and data")
    tasks.add_argument("--tasks", required=True,
                       help="comma-separated task names and groups: glue, generative, GLUE tasks (sst2, mnli, ...), "
                            "any lm-eval task name, or tasks from --include-path")
    tasks.add_argument("--include-path", action="append", default=[], metavar="DIR",
                       help="extra folder of task YAML files (GLUE-style classification specs or lm-eval task "
                            "YAML); repeatable")
    tasks.add_argument("--data-dir", action="append", default=[], metavar="DIR",
                       help="read tasks from local files DIR/<task>/<split>.jsonl (or .csv/.parquet) instead of the "
                            "hub; repeatable: each task reads the first DIR that has a folder for it")
    tasks.add_argument("--limit", type=int, metavar="N", help="use only the first N rows of every split (quick runs)")
    gen = run.add_argument_group("generative (lm-eval) tasks")
    gen.add_argument("--num-fewshot", type=int, metavar="N", help="few-shot examples (default: the task's own, usually 0)")
    gen.add_argument("--num-masks", type=int, default=3, metavar="N",
                     help="encoders: [MASK] tokens appended when scoring a token by mask-append (default 3, as the "
                          "Ettin authors' lm-eval fork)")
    gen.add_argument("--gen-num-masks", type=int, default=2, metavar="N",
                     help="encoders: [MASK] tokens appended when generating a token (default 2, as the fork)")
    mntp = gen.add_mutually_exclusive_group()
    mntp.add_argument("--mntp", dest="mntp", action="store_const", const=True, default=None,
                      help="encoders: read token i's log-probability one position before the first [MASK] (MNTP); "
                           "default: on for the encoder-from-decoder models, off otherwise, as the fork scored them")
    mntp.add_argument("--no-mntp", dest="mntp", action="store_const", const=False, help="encoders: never use MNTP")
    gen.add_argument("--no-score-sep", action="store_true",
                     help="encoders: do not count log P([SEP]) after the continuation in its score")
    gen.add_argument("--no-add-bos-token", action="store_true",
                     help="decoders: do not prepend the BOS token (Ettin's lm-eval runs prepend it)")
    recipe = run.add_argument_group("fine-tuning recipe")
    recipe.add_argument("--grid", default="small",
                        help="small (default: learning-rate sweep, other values fixed) or paper (the full sweep)")
    recipe.add_argument("--lr", help="learning rates, e.g. 3e-5,5e-5 (replaces that axis of the grid)")
    recipe.add_argument("--weight-decay", help="weight decays, e.g. 1e-5")
    recipe.add_argument("--batch-size", help="batch sizes, e.g. 16,32")
    recipe.add_argument("--epochs", help="epoch counts, e.g. 2,3")
    recipe.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds 0..N-1 per configuration (default 1)")
    recipe.add_argument("--max-length", type=int, help="max tokens per example, special tokens included (default 512; "
                                                        "retrieval: a sentence-transformers folder's own, else 512)")
    recipe.add_argument("--no-mnli-warm-start", action="store_true",
                        help="do not start RTE, MRPC and STS-B from the best MNLI checkpoint")
    recipe.add_argument("--fresh-decoder-head", action="store_true",
                        help="decoders: start the classification head (dense + norm) fresh instead of from the "
                             "pretrained LM head, as encoders keep their MLM head")
    ret = run.add_argument_group("retrieval tasks")
    ret.add_argument("--zero-shot", action="store_true",
                     help="embed with the model as it is instead of fine-tuning it as an embedder first (the "
                          "default, the paper's protocol)")
    ret.add_argument("--pooling", choices=("mean", "lasttoken", "cls"),
                     help="default: a sentence-transformers folder's own; else mean for encoders, last token for "
                          "decoders (the Ettin authors')")
    ret.add_argument("--embed-eos", choices=("none", "append"), default="none",
                     help="last-token pooling: none (default, the Ettin authors': pool at the text's last token) "
                          "or append (pool at an EOS token appended to every text)")
    bias = run.add_argument_group("bias tasks (Winogender)")
    bias.add_argument("--winogender-swap", choices=("correct", "compat"), default="correct",
                      help="decoders' gender variants: correct (default: by the template's pronoun case) or compat "
                           "(the Ettin authors' rewrite, female accusative 'her' -> 'his'/'their')")
    hw = run.add_argument_group("hardware")
    hw.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:N")
    hw.add_argument("--dtype", default="auto", help="auto (bf16 on GPUs that support it, fp32 on CPU), bf16, fp16, fp32")
    hw.add_argument("--attn", default="auto", help="attention implementation: auto (flash_attention_2 when installed "
                                                   "on a GPU, else sdpa), sdpa, eager, flash_attention_2")
    hw.add_argument("--token-budget", type=int, metavar="N",
                    help="padded tokens per forward batch (default 65536 on GPU, 8192 on CPU); halved on OOM")
    execution = run.add_argument_group("execution")
    execution.add_argument("--executor", default="local",
                           help="local (default: this process, one cell after another) or ray (every cell a Ray "
                                "task on a Ray cluster; pip install 'ettin-harness[ray]')")
    execution.add_argument("--address",
                           help="ray: address of an existing Ray cluster (auto, HOST:PORT or ray://HOST:PORT); "
                                "default: start a local one on this machine")
    execution.add_argument("--gpus-per-cell", type=float, metavar="N",
                           help="ray: GPUs per cell (default 1 when the cluster has GPUs, else 0: CPU cells); "
                                "0.5 packs two cells on a GPU")
    execution.add_argument("--retries", type=int, default=2, metavar="N",
                           help="run a cell that raises (OOM after back-off, bad row, lost worker) up to N more "
                                "times before recording it as failed (default 2)")
    execution.add_argument("--shared-dir", metavar="DIR",
                           help="ray: folder every node reads and writes, for warm-start checkpoints "
                                "(default --output-path)")
    bill = run.add_argument_group("cost and search (see README, 'The bill before the run')")
    bill.add_argument("--dry-run", action="store_true",
                      help="print the plan and its bill (cells, cells in the store, tokens, FLOPs, GPU-hours) and "
                           "exit, without loading a model or reaching the hub; the same as 'ettin-eval plan'")
    bill.add_argument("--gpu", default="h100", help="the GPU the bill is priced on: h100 (default), h100-pcie, h200, "
                                                    "a100, l40s, l4, a10g, a10, cpu (measured throughput only)")
    bill.add_argument("--utilization", type=float, default=0.4, metavar="F",
                      help="fraction of the GPU's bf16 peak assumed when no measured throughput is in the store "
                           "(default 0.4)")
    bill.add_argument("--calibration", action="append", default=[], metavar="DIR",
                      help="results folder(s) whose fine-tuning records give measured tokens/s per model and GPU "
                           "(besides --output-path); repeatable")
    bill.add_argument("--search", default="grid",
                      help="grid (default: every configuration, the paper's protocol) or asha (successive halving "
                           "on Ray Tune's ASHA: the worst configurations are stopped at rungs)")
    bill.add_argument("--asha-reduction-factor", type=float, default=4.0, metavar="R",
                      help="asha: keep the top 1/R at each rung (default 4, Ray Tune's default)")
    bill.add_argument("--asha-rungs", type=int, default=3, metavar="K",
                      help="asha: rungs at R^(k-K+1) of each configuration's own steps, k = 0..K-1 (default 3: 1/16, "
                           "1/4, 1)")
    out = run.add_argument_group("output")
    out.add_argument("--output-path", default=DEFAULT_OUTPUT, help=f"results folder (default {DEFAULT_OUTPUT})")
    out.add_argument("--log-samples", action="store_true",
                     help="also write per-example outputs of generative tasks (classification always keeps them)")
    out.add_argument("--quiet", action="store_true", help="no progress output (the harness's and lm-eval's bars)")

    sub.add_parser("plan", parents=[run], add_help=False, help="print a run's plan and bill (cells, tokens, FLOPs, "
                                                                "GPU-hours) without running it (run --dry-run)",
                   description="The bill before the run: the cells of 'ettin-eval run' with the same flags, those "
                               "already in --output-path, training and scoring tokens, FLOPs and GPU-hours, without "
                               "loading a model or reaching the hub.")
    demo = sub.add_parser("demo", help="the whole pipeline offline on a tiny local encoder/decoder pair (CPU, ~1 min)")
    demo.add_argument("--output-path", default=os.path.join("results", "runs", "demo"), help="results folder")
    demo.add_argument("--quiet", action="store_true", help="no progress output")

    sub.add_parser("models", help="list the Ettin models in the registry")
    t = sub.add_parser("tasks", help="list the tasks and groups")
    t.add_argument("--include-path", action="append", default=[], metavar="DIR")

    from harness.exchange import EXPORT_FORMATS, IMPORT_FORMATS

    ex = sub.add_parser("export", help="export results as CSV (tidy, leaderboard) or in another tool's format",
                        description="Export results folder(s). --tidy: one row per record and metric. "
                                    "--leaderboard: one row per model (schema in README, 'Reports'); an existing "
                                    "file is updated, a model's row replaced, never duplicated. --format lm-eval, "
                                    "mteb or every-eval-ever --out DIR: the records as that tool writes its results "
                                    "(README, 'Working with other tools').")
    ex.add_argument("results", nargs="+", help="results folder(s)")
    ex.add_argument("--format", default="csv", choices=EXPORT_FORMATS,
                    help="csv (default: --tidy/--leaderboard, or DIR/leaderboard.csv with --out), lm-eval, mteb or "
                         "every-eval-ever (a folder, with --out)")
    ex.add_argument("--out", metavar="DIR", help="write the export into this folder")
    ex.add_argument("--tidy", metavar="CSV", help="write the tidy table here")
    ex.add_argument("--leaderboard", metavar="CSV", help="write or update the leaderboard here")

    imp = sub.add_parser("import", help="put lm-eval or MTEB output folders into a results store",
                         description="Read lm-eval output folders (results_*.json, samples_*.jsonl) and MTEB result "
                                     "folders into a results store, protocol 'imported', beside the harness's own "
                                     "cells in reports. A result the store already holds is kept as it is.")
    imp.add_argument("folders", nargs="+", metavar="DIR", help="lm-eval --output_path or MTEB results folder(s)")
    imp.add_argument("--output-path", required=True, metavar="RESULTS", help="the results store to import into")
    imp.add_argument("--format", default="auto", choices=IMPORT_FORMATS,
                     help="auto (default: told apart by their files), lm-eval or mteb")
    imp.add_argument("--arch", help="encoder or decoder: the architecture of the imported models (default: the "
                                    "registry's for an Ettin id; else, for lm-eval runs, a local model folder's "
                                    "config.json or decoder, for MTEB results 'unknown')")
    imp.add_argument("--pair", metavar="NAME", help="show the imported models in the report row of pair NAME")

    rep = sub.add_parser("report", help="print the encoder-vs-decoder comparison; --out writes tables, plots, "
                                         "leaderboard and significance",
                         description="Print the encoder-vs-decoder comparison of results folder(s), measured minus "
                                     "the Ettin paper's numbers, and mark gaps a paired bootstrap does not find "
                                     "significant. With --out DIR also write tables (md, tex, csv), plots (png, pdf), "
                                     "leaderboard.csv and significance tables there.")
    rep.add_argument("results", nargs="+", help="results folder(s); lm-eval and MTEB output folders are read too")
    rep.add_argument("--out", metavar="DIR", help="write the report files into DIR")
    rep.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                     help="bootstrap resamples for confidence intervals and paired tests (default 1000; 0: skip)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.WARNING, format="ettin-eval: %(levelname)s: %(message)s")
    try:
        from harness import commands

        return commands.COMMANDS[args.command](args) or 0
    except UserError as exc:
        sys.stderr.write(f"ettin-eval: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("ettin-eval: interrupted; finished cells are saved, run the same command to resume\n")
        return 130
    except BrokenPipeError:  # the reader went away (``ettin-eval models | head``): nothing more to say
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
