"""What each ``ettin-eval`` subcommand does, given its parsed flags."""

from __future__ import annotations

import os
import sys

from harness import grids, models, plan, tasks
from harness.errors import UserError
from harness.results import ResultStore

DEMO_GENERATIVE_TASK = "generative_demo"


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def say(text: str = "") -> None:
    print(text, flush=True)


def collect_models(args) -> list[models.ModelSpec]:
    chosen: list[models.ModelSpec] = []
    if args.sizes:
        chosen += models.suite(models.parse_sizes(args.sizes), args.arch, args.revision)
    for text in args.model:
        chosen.append(models.resolve(text, args.revision))
    if not chosen:
        raise UserError("no model to run; pass --sizes (e.g. --sizes 17m --arch both) or --model PATH_OR_ID")
    for spec in chosen:
        if spec.family != "other":  # registry models were not read yet: fail now, before any work
            models.load_config(spec.model_id, spec.revision)
    unique = list(dict.fromkeys(chosen))
    return unique


def _check_common(args) -> None:
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, not {args.limit}")
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, not {args.seeds}")
    for d in args.data_dir:
        if not os.path.isdir(d):
            raise UserError(f"--data-dir '{d}' is not a folder; give DIR holding DIR/<task>/<split>.jsonl")


def run(args) -> int:
    quiet_libraries()
    _check_common(args)
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    specs, generative = split_tasks(names, args.include_path)
    overrides = {
        "lr": grids.parse_floats(args.lr, "--lr"),
        "weight_decay": grids.parse_floats(args.weight_decay, "--weight-decay"),
        "batch_size": grids.parse_ints(args.batch_size, "--batch-size"),
        "epochs": grids.parse_ints(args.epochs, "--epochs"),
    }
    if args.grid not in grids.GRIDS:
        raise UserError(f"unknown --grid '{args.grid}'; use {' or '.join(grids.GRIDS)}")
    if args.num_masks < 1:
        raise UserError(f"--num-masks must be at least 1, not {args.num_masks}")
    model_specs = collect_models(args)
    dirs = [os.path.abspath(d) for d in args.data_dir]
    # a GLUE task needs files (hub or DIR); an lm-eval task without a folder in any DIR reads
    # its own data: a local twin's fixture files, or the hub
    data_dir = {**plan.pick_data_dirs(dirs, {s.name: [s.name] for s in specs}),
                **plan.pick_data_dirs(dirs, data_dir_names(generative), fallback_first=False)}
    cells = plan.classification_cells(model_specs, specs, args.grid, overrides, args.seeds, args.limit, data_dir,
                                      warm_start=not args.no_mnli_warm_start, max_length=args.max_length)
    for spec in model_specs:
        cells += plan.lm_eval_cells([spec], generative, args.limit, data_dir, args.num_fewshot,
                                    lm_eval_options(spec.architecture, args), args.include_path)
    # all cells of a model together (a stable sort keeps warm starts after their sources)
    order = {spec: i for i, spec in enumerate(model_specs)}
    cells.sort(key=lambda c: order[c.model])
    return execute(cells, specs, args, args.output_path)


def split_tasks(names: list[str], include_paths: list[str]) -> tuple[list, list[str]]:
    """Classification task specs (GLUE-style YAML) and lm-eval task names, in the order asked.

    lm-eval's task index (seconds to build) is consulted only for names that are not
    classification tasks or groups."""
    known = tasks.load_tasks(include_paths)
    groups = tasks.groups(known)
    classification = [n for n in names if n in known or n in groups]
    rest = [n for n in names if n not in classification]
    generative: list[str] = []
    if rest:
        from harness.adapters import lm_eval_bridge

        generative = lm_eval_bridge.expand_tasks(rest, include_paths)
    return tasks.select(classification, known) if classification else [], generative


def data_dir_names(generative: list[str]) -> dict[str, list[str]]:
    """Folder names under --data-dir that hold an lm-eval task's files."""
    if not generative:
        return {}
    from harness.adapters.lm_eval_bridge import data_folder_names

    return {task: data_folder_names(task) for task in generative}


def lm_eval_options(architecture: str, args) -> dict:
    if architecture == "encoder":
        return {"num_masks": args.num_masks, "score_sep": not args.no_score_sep}
    return {"add_bos_token": not args.no_add_bos_token}


def execute(cells, specs, args, output_path: str) -> int:
    from harness.executors import make_executor

    store = ResultStore(output_path)
    executor = make_executor(args, store, {s.name: s for s in specs})
    try:
        say(f"ettin-eval: {len(cells)} cells -> {output_path} on {executor.describe()}")
        summary = executor.run(cells)
    finally:
        executor.close()
    say(f"ettin-eval: {summary.line()}; {summary.loads} model loads")
    for key in summary.failed[:10]:
        say(f"  failed: {key}: {(store.get(key) or {}).get('error')}")
    if summary.failed:
        say(f"ettin-eval: {len(summary.failed)} cells failed after {getattr(args, 'retries', 2)} retries; they show "
            "as missing in the report, and the same command runs them again")
    print_comparison(output_path)
    return 1 if summary.failed or summary.blocked else 0


def print_comparison(*roots) -> None:
    from harness.report import build_report, headline_frame

    if headline_frame(*roots).empty:
        say("no finished results yet")
        return
    say("\n" + build_report(list(roots), n_boot=0).text())


def demo(args) -> int:
    from harness.demo_data import DEMO_DATA_DIR
    from harness.tiny import tiny_pair

    quiet_libraries()
    import torch

    # the tiny models' matrices are too small for threads to pay off; on a busy CPU extra
    # OpenMP threads only spin against each other
    torch.set_num_threads(1)
    say("ettin-eval demo: building (or reusing) a tiny local encoder/decoder pair: real ModernBERT classes, "
        "random weights, a tokenizer trained here")
    pair = tiny_pair()
    pair_specs = [
        models.ModelSpec(model_id=pair[a], architecture=a, name=f"tiny-{a}", size="tiny", variant=a, family="tiny")
        for a in ("encoder", "decoder")
    ]
    specs = tasks.select(["sst2", "mnli", "rte", "stsb"], tasks.load_tasks())
    # random-weight tiny models need a far larger learning rate and more epochs than the recipe's
    overrides = {"lr": (2e-3,), "batch_size": (32,), "epochs": (12,), "weight_decay": (1e-5,)}
    cells = plan.classification_cells(pair_specs, specs, "small", overrides, seeds=1, data_dir=str(DEMO_DATA_DIR),
                                      max_length=128)
    # a small multiple-choice task read by lm-eval from tasks/generative: encoder by mask-append
    args.num_masks, args.no_score_sep, args.no_add_bos_token = 3, False, False
    for spec in pair_specs:
        cells += plan.lm_eval_cells([spec], [DEMO_GENERATIVE_TASK], options=lm_eval_options(spec.architecture, args))
    args.device, args.dtype, args.attn, args.token_budget, args.log_samples = "cpu", "fp32", "auto", None, True
    code = execute(cells, specs, args, args.output_path)

    from harness.report import write_report

    report_dir = os.path.join(args.output_path, "report")
    paths = write_report([args.output_path], report_dir)
    say("\nThese are tiny random-weight stand-ins fine-tuned on small synthetic GLUE-format data "
        f"({DEMO_DATA_DIR}) and scored on a small multiple-choice fixture; the numbers check the pipeline, "
        "not the Ettin models.")
    say("To run the real models (needs Hugging Face hub access, ideally a GPU):\n"
        "  ettin-eval run --sizes 17m,150m --arch both --tasks glue,generative --device cuda "
        "--output-path results/runs/ettin")
    say(f"Results of this demo: {args.output_path}; report (tables, leaderboard): {report_dir}; "
        f"plots: {os.path.dirname(paths['plots/scaling.png'])}")
    return code


def models_cmd(args) -> int:
    rows = models.describe_registry()
    say(f"{'name':34} {'hub id':44} {'architecture':12} {'parameters':>12}")
    for r in rows:
        say(f"{r['name']:34} {r['hub id']:44} {r['architecture']:12} {r['parameters']:>12,}")
    say(f"\nRevisions (--revision or NAME@REV), e.g. {', '.join(models.KNOWN_REVISIONS)}. "
        "Any other hub id or local path works with --model.")
    return 0


def tasks_cmd(args) -> int:
    specs = tasks.load_tasks(args.include_path)
    for group, names in tasks.groups(specs).items():
        say(f"{group}: {', '.join(names)}")
    say("")
    for spec in specs.values():
        splits = ", ".join(e.split for e in spec.eval_splits)
        say(f"{spec.name:8} {spec.dataset_path}/{spec.dataset_name or '':8} metrics {', '.join(spec.metrics):28} "
            f"eval on {splits}")
    from harness.adapters import lm_eval_bridge

    local = lm_eval_bridge.local_tasks(args.include_path)
    say(f"\ngenerative (lm-eval, the Ettin paper's suite): {', '.join(lm_eval_bridge.GENERATIVE_GROUP)}")
    say(f"local lm-eval tasks (offline twins, fixtures, --include-path): {', '.join(local)}")
    say("Any other lm-eval task name works too ('lm-eval ls tasks' lists them).")
    return 0


def export(args) -> int:
    from harness.report import write_leaderboard
    from harness.report.frame import check_roots
    from harness.results import tidy_frame

    check_roots(args.results)
    if not args.tidy and not args.leaderboard:
        raise UserError("nothing to export; add --tidy OUT.csv and/or --leaderboard OUT.csv")
    if args.tidy:
        frame = tidy_frame(*args.results)
        os.makedirs(os.path.dirname(os.path.abspath(args.tidy)), exist_ok=True)
        frame.to_csv(args.tidy, index=False)
        say(f"wrote {len(frame)} rows to {args.tidy}")
    if args.leaderboard:
        board = write_leaderboard(args.results, args.leaderboard)
        say(f"leaderboard {args.leaderboard}: {len(board)} models")
    return 0


def report(args) -> int:
    from harness.report import build_report, write_report

    if args.bootstrap < 0:
        raise UserError(f"--bootstrap must be 0 or more, not {args.bootstrap}")
    rep = build_report(args.results, n_boot=args.bootstrap)
    say(rep.text())
    if args.out:
        paths = write_report(args.results, args.out, report=rep)
        say(f"\nwrote {len(paths)} files to {args.out}: tables comparison.md/.tex/.csv, leaderboard.csv"
            + (", significance.csv" if "significance.csv" in paths else "")
            + f"; plots in {os.path.join(args.out, 'plots')}")
    return 0


COMMANDS = {"run": run, "demo": demo, "models": models_cmd, "tasks": tasks_cmd, "export": export, "report": report}
