"""What each ``ettin-eval`` subcommand does, given its parsed flags: build typed settings and
configs, make the plan, hand it to the execution layer, print what happened."""

from __future__ import annotations

import os
from dataclasses import replace

from harness import commands_results, grids, models, plan, tasks
from harness.configs import BiasConfig, Recipe, ScoringConfig
from harness.errors import UserError
from harness.execution import ExecutionSettings, RunnerSettings, make_executor, run_cells
from harness.execution.progress import quiet_library_bars
from harness.execution.settings import quiet_libraries
from harness.results import ResultStore, writable_folder

DEMO_GENERATIVE_TASK = "generative_demo"


def say(text: str = "") -> None:
    print(text, flush=True)


def collect_models(args, check: bool = True) -> list[models.ModelSpec]:
    chosen: list[models.ModelSpec] = []
    if args.sizes:
        chosen += models.suite(models.parse_sizes(args.sizes), args.arch, args.revision)
    given = [models.resolve(text, args.revision) for text in args.model]
    if args.pair:
        given = models.with_pair(given, args.pair)
    chosen += given
    if not chosen:
        raise UserError("no model to run; pass --sizes (e.g. --sizes 17m --arch both) or --model PATH_OR_ID")
    if getattr(args, "revisions", None):
        from harness.revisions import expand

        chosen = expand(chosen, args.revisions, args.revision)
    for spec in chosen:
        if check and spec.family != "other":  # registry models were not read yet: fail now, before any work
            models.check_available(spec)
    return list(dict.fromkeys(chosen))


def check_flags(args) -> None:
    for flag, value, least in (("--limit", args.limit, 1), ("--seeds", args.seeds, 1), ("--num-masks", args.num_masks, 1),
                               ("--gen-num-masks", args.gen_num_masks, 1), ("--max-length", args.max_length, 8)):
        if value is not None and value < least:
            raise UserError(f"{flag} must be at least {least}, not {value}")
    for d in args.data_dir:
        if not os.path.isdir(d):
            raise UserError(f"--data-dir '{d}' is not a folder; give DIR holding DIR/<task>/<split>.jsonl")
    if args.grid not in grids.GRIDS:
        raise UserError(f"unknown --grid '{args.grid}'; use {' or '.join(grids.GRIDS)}")


def compute_of(args):
    """The dtype and attention this run resolves to (``auto`` settled for the device), before any
    model loads: part of every cell's key and the runner's settings alike."""
    from harness.runner.device import planned_compute

    return planned_compute(args.device, args.dtype, args.attn)


def settings_of(args) -> tuple[ExecutionSettings, RunnerSettings]:
    execution = ExecutionSettings(executor=args.executor, retries=args.retries, address=args.address,
                                  gpus_per_cell=args.gpus_per_cell, shared_dir=args.shared_dir,
                                  log_samples=args.log_samples, quiet=args.quiet)
    compute = compute_of(args)  # pinned: a Ray worker runs what the plan keyed its cells by
    return execution, RunnerSettings(args.device, compute.dtype, compute.attention, args.token_budget)


def grid_overrides(args) -> dict:
    overrides = {"lr": grids.parse_floats(args.lr, "--lr"),
                 "weight_decay": grids.parse_floats(args.weight_decay, "--weight-decay"),
                 "batch_size": grids.parse_ints(args.batch_size, "--batch-size"),
                 "epochs": grids.parse_ints(args.epochs, "--epochs")}
    if overrides["lr"] and 0 in overrides["lr"]:
        raise UserError("--lr values must be above 0")
    return overrides


def build_cells(args, check: bool = True) -> list[plan.Cell]:
    """The plan of a ``run``: fine-tuning cells of the classification tasks, embedder cells of the
    retrieval tasks, scoring cells of the lm-eval tasks, grouped by model (a stable sort keeps warm
    starts after their sources). Flags and tasks are checked before any model is looked up."""
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    specs, retrieval, bias, generative = split_tasks(names, args.include_path)
    overrides = grid_overrides(args)
    model_specs = collect_models(args, check)
    dirs = [os.path.abspath(d) for d in args.data_dir]
    # a GLUE task needs files (hub or DIR); an lm-eval task without a folder in any DIR reads its own data
    glue_dirs = plan.pick_data_dirs(dirs, {s.name: [s.name] for s in specs})
    recipe = Recipe(head_init="fresh" if args.fresh_decoder_head else "pretrained")
    cells = plan.classification_cells(model_specs, specs, args.grid, overrides, args.seeds, args.limit, glue_dirs,
                                      warm_start=not args.no_mnli_warm_start,
                                      max_length=args.max_length or grids.MAX_LENGTH, recipe=recipe)
    if retrieval:
        cells += retrieval_cells(args, model_specs, retrieval, dirs, overrides)
    if bias:
        chosen = plan.pick_data_dirs(dirs, {s.name: s.folder_names for s in bias}, fallback_first=False)
        sources = {s.name: plan.data_source(chosen[s.name], s.folder_names, args.limit) for s in bias}
        cells += plan.bias_cells(model_specs, bias, BiasConfig(swap=args.winogender_swap), sources)
    if generative:
        cells += lm_eval_cells(args, model_specs, generative, dirs)
    compute = compute_of(args)
    if compute.dtype == "fp16" and any(c.trains for c in cells):
        from harness.runner.device import FP16_TRAINING

        raise UserError(FP16_TRAINING)
    order = {spec: i for i, spec in enumerate(model_specs)}
    return sorted((replace(c, compute=compute) for c in cells), key=lambda c: order[c.model])


def retrieval_cells(args, model_specs, specs, dirs: list[str], overrides: dict) -> list[plan.Cell]:
    """A retrieval task reads DIR/<task>/ from the first --data-dir that has it, else MTEB's hub copy."""
    from harness.configs import EmbeddingConfig

    chosen = plan.pick_data_dirs(dirs, {s.name: s.folder_names for s in specs}, fallback_first=False)
    sources = {s.name: plan.data_source(chosen[s.name], s.folder_names, args.limit) for s in specs}
    base = EmbeddingConfig(protocol="zero-shot" if args.zero_shot else "fine-tuned", pooling=args.pooling,
                           max_length=args.max_length, eos=args.embed_eos)
    return plan.retrieval_cells(model_specs, specs, base, overrides, args.seeds, sources)


def lm_eval_cells(args, model_specs, names: list[str], dirs: list[str]) -> list[plan.Cell]:
    from harness.lm.tasks import data_folder_names, fingerprint, is_local

    folders = {t: data_folder_names(t) for t in names}
    chosen = plan.pick_data_dirs(dirs, folders, fallback_first=False)
    lm_tasks = [plan.LmEvalTask(t, group="bias" if t.startswith("winogender") else "generative",
                                include_paths=tuple(os.path.abspath(p) for p in args.include_path),
                                fingerprint=fingerprint(t, args.include_path), local=is_local(t, args.include_path))
                for t in names]
    sources = {t: plan.data_source(chosen[t], folders[t], args.limit) for t in names}
    scoring = ScoringConfig(num_fewshot=args.num_fewshot, num_masks=args.num_masks, gen_num_masks=args.gen_num_masks,
                            score_sep=not args.no_score_sep, mntp=args.mntp, add_bos_token=not args.no_add_bos_token)
    return plan.lm_eval_cells(model_specs, lm_tasks, scoring, sources)


def split_tasks(names: list[str], include_paths: list[str]) -> tuple[list, list, list, list[str]]:
    """Classification task specs (GLUE-style YAML), retrieval and bias task specs, and lm-eval task
    names, in the order asked. lm-eval's task index (seconds to build) is consulted only for names
    that are none of the others."""
    from harness.bias.spec import load_bias_tasks
    from harness.retrieval.spec import load_retrieval_tasks
    from harness.suite import suite

    known = tasks.load_tasks(include_paths)
    groups = tasks.groups(known)
    retrieval_known = load_retrieval_tasks(include_paths)
    retrieval_known.update({s.mteb_task: s for s in list(retrieval_known.values())  # MTEB's names work too
                            if s.mteb_task and s.mteb_task not in retrieval_known})
    retrieval_groups = tasks.groups(retrieval_known)
    retrieval_groups.update({g: list(suite().expand(g)) for g in retrieval_groups if g in suite().groups})
    bias_known = load_bias_tasks(include_paths)
    bias_groups = tasks.groups(bias_known)
    classification = [n for n in names if n in known or n in groups]
    retrieval = [s for n in names if n not in classification and (n in retrieval_known or n in retrieval_groups)
                 for s in ([retrieval_known[n]] if n in retrieval_known else
                           [retrieval_known[m] for m in retrieval_groups[n] if m in retrieval_known])]
    bias = [bias_known[m] for n in names if n not in classification
            for m in ([n] if n in bias_known else bias_groups.get(n, []))]
    rest = [n for n in names if n not in classification and n not in retrieval_known and n not in retrieval_groups
            and n not in bias_known and n not in bias_groups]
    generative: list[str] = []
    if rest:
        from harness.lm.tasks import expand_tasks

        generative = expand_tasks(rest, include_paths)
    return (tasks.select(classification, known) if classification else [], list(dict.fromkeys(retrieval)),
            list(dict.fromkeys(bias)), generative)


def run(args) -> int:
    quiet_libraries()
    quiet_library_bars(args.quiet)
    check_flags(args)
    if args.dry_run:
        return plan_cmd(args)
    execution, runner = settings_of(args)
    asha = search_settings(args)
    cells = build_cells(args)
    writable_folder(args.output_path)
    if asha is not None:  # --search asha: harness/search (Ray Tune's ASHA over the grid's configurations)
        from harness.search import asha_cells, run_asha

        code = run_asha(asha_cells(cells), execution, runner, args.output_path, asha)
        print_comparison(args.output_path)
        return code
    return execute(cells, execution, runner, args.output_path)


def search_settings(args):
    """None for --search grid (every configuration), the ASHA settings for --search asha."""
    if args.search not in ("grid", "asha"):
        raise UserError(f"unknown --search '{args.search}'; use grid (every configuration) or asha")
    if args.search == "grid":
        return None
    from harness.search import AshaSettings

    return AshaSettings(args.asha_reduction_factor, args.asha_rungs)


def plan_cmd(args) -> int:
    """``plan`` / ``run --dry-run``: the cells and their bill, no model loaded, no hub reached."""
    from harness import cost

    quiet_libraries()
    check_flags(args)
    if args.gpu not in cost.GPUS:
        raise UserError(f"unknown --gpu '{args.gpu}'; use one of {', '.join(cost.GPUS)}")
    if not 0 < args.utilization <= 1:
        raise UserError(f"--utilization must be above 0 and at most 1, not {args.utilization:g}")
    asha = search_settings(args)
    cells = build_cells(args, check=False)
    if asha is not None:
        from harness.search import asha_cells

        cells = asha_cells(cells)
    lines, notes = cost.estimate(cells, [args.output_path], args.gpu, args.utilization, args.calibration)
    share = None
    if asha is not None:
        from harness.search.estimate import simulated_share

        share = simulated_share(cells, asha)
    say(cost.render(lines, notes, args.gpu, args.utilization, [args.output_path], asha, share))
    return 0


def execute(cells, execution: ExecutionSettings, runner: RunnerSettings, output_path: str) -> int:
    store = ResultStore(output_path)
    executor = make_executor(execution, runner)
    try:
        say(f"ettin-eval: {len(cells)} cells -> {output_path} on {executor.describe()}")
        summary = run_cells(cells, store, execution, executor)
    finally:
        executor.close()
    say(f"ettin-eval: {summary.line()}; {summary.loads} model loads")
    for key in summary.failed[:10]:
        say(f"  failed: {key}: {summary.errors.get(key)}")
    if summary.failed:
        say(f"ettin-eval: {len(summary.failed)} cells failed; they show as missing in the report, and the same "
            "command runs them again")
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
    from harness.report import write_report
    from harness.tiny import tiny_pair

    import torch

    quiet_libraries()
    quiet_library_bars(args.quiet)
    # the tiny models' matrices are too small for threads to pay off; on a busy CPU extra
    # OpenMP threads only spin against each other
    torch.set_num_threads(1)
    writable_folder(args.output_path)
    say("ettin-eval demo: building (or reusing) a tiny local encoder/decoder pair: real ModernBERT classes, "
        "random weights, a tokenizer trained here")
    pair = tiny_pair()
    pair_specs = [models.ModelSpec(model_id=pair[a], architecture=a, name=f"tiny-{a}", size="tiny", variant=a,
                                   family="tiny", pair="tiny") for a in ("encoder", "decoder")]
    specs = tasks.select(["sst2", "mnli", "rte", "stsb"], tasks.load_tasks())
    # random-weight tiny models need a far larger learning rate and more epochs than the recipe's
    overrides = {"lr": (2e-3,), "batch_size": (32,), "epochs": (12,), "weight_decay": (1e-5,)}
    cells = plan.classification_cells(pair_specs, specs, "small", overrides, seeds=1, data_dir=str(DEMO_DATA_DIR),
                                      max_length=128)
    # a small multiple-choice task read by lm-eval from tasks/generative: the encoder by mask-append
    from harness.lm.tasks import fingerprint

    demo_task = plan.LmEvalTask(DEMO_GENERATIVE_TASK, fingerprint=fingerprint(DEMO_GENERATIVE_TASK), local=True)
    cells += plan.lm_eval_cells(pair_specs, [demo_task])
    # a small retrieval task: each tiny model fine-tuned as an embedder (sentence-transformers), scored by MTEB
    from harness.configs import EmbeddingConfig
    from harness.demo_data import DEMO_RETRIEVAL_DIR
    from harness.retrieval.spec import load_retrieval_tasks

    retrieval = load_retrieval_tasks()["retrieval_demo"]
    source = plan.data_source(str(DEMO_RETRIEVAL_DIR), [retrieval.name], None)
    cells += plan.retrieval_cells(pair_specs, [retrieval], EmbeddingConfig(), {"lr": (3e-3,), "batch_size": (16,),
                                  "epochs": (10,)}, sources={retrieval.name: source})
    # the Winogender gotcha preference on the lm-eval twins' six sample sentences
    from harness.bias.spec import load_bias_tasks
    from harness.bundled import tasks_dir

    bias = load_bias_tasks()["winogender_gotcha_preference"]
    samples = str(tasks_dir() / "generative" / "data")
    cells += plan.bias_cells(pair_specs, [bias], sources={bias.name: plan.data_source(samples, bias.folder_names, None)})
    execution = ExecutionSettings(log_samples=True, quiet=args.quiet)
    code = execute(cells, execution, RunnerSettings("cpu", "fp32"), args.output_path)
    report_dir = os.path.join(args.output_path, "report")
    paths = write_report([args.output_path], report_dir)
    say("\nThese are tiny random-weight stand-ins fine-tuned on small synthetic GLUE-format data "
        f"({DEMO_DATA_DIR}), scored on a small multiple-choice fixture and fine-tuned as embedders on a small "
        f"synthetic retrieval set ({DEMO_RETRIEVAL_DIR}), and measured on six Winogender sentences; the numbers "
        "check the pipeline, not the Ettin models.")
    say("To run the real models (needs Hugging Face hub access, ideally a GPU):\n"
        "  ettin-eval run --sizes 17m,150m --arch both --tasks glue,generative,msmarco --device cuda "
        "--output-path results/runs/ettin")
    say(f"Results: {args.output_path}; report (tables, plots, leaderboard): {report_dir}")
    if "index.html" in paths:
        say(f"Open the results page: {os.path.abspath(paths['index.html'])}")
    return code


def models_cmd(args) -> int:
    say(f"{'name':34} {'hub id (aliases tried after it)':44} {'architecture':12} {'parameters':>12}")
    for r in models.describe_registry():
        say(f"{r['name']:34} {r['hub id']:44} {r['architecture']:12} {r['parameters']:>12,}")
        if r["aliases"]:
            say(f"{'':34}   aliases: {r['aliases']}")
    say(f"\nRevisions (--revision or NAME@REV), e.g. {', '.join(models.KNOWN_REVISIONS)}. "
        "Any other hub id or local path works with --model.")
    return 0


def tasks_cmd(args) -> int:
    from harness.lm.tasks import local_tasks
    from harness.suite import suite

    specs = tasks.load_tasks(args.include_path)
    for group, names in tasks.groups(specs).items():
        say(f"{group}: {', '.join(names)}")
    say("")
    for spec in specs.values():
        splits = ", ".join(e.split for e in spec.eval_splits)
        say(f"{spec.name:8} {spec.dataset_path}/{spec.dataset_name or '':8} metrics {', '.join(spec.metrics):28} "
            f"eval on {splits}")
    from harness.retrieval.spec import load_retrieval_tasks

    retrieval = load_retrieval_tasks(args.include_path)
    say(f"\nretrieval (MTEB; --data-dir DIR/<task>/ in the BEIR layout, else MTEB's hub copy): "
        f"{', '.join(f'{n} ({s.mteb_task})' if s.mteb_task else n for n, s in retrieval.items())}")
    say(f"  --tasks retrieval runs the MTEB(eng, v2) retrieval tasks: {', '.join(suite().expand('retrieval'))}")
    from harness.bias.spec import load_bias_tasks

    say(f"bias (Winogender; --data-dir DIR/winogender/, else the hub): {', '.join(load_bias_tasks(args.include_path))}")
    say(f"\ngenerative (lm-eval, the Ettin paper's suite): {', '.join(suite().expand('generative'))}")
    say(f"local lm-eval tasks (offline twins, fixtures, --include-path): {', '.join(local_tasks(args.include_path))}")
    say("Any other lm-eval task name works too ('lm-eval ls tasks' lists them).")
    return 0


COMMANDS = {"run": run, "plan": plan_cmd,  # plan: run --dry-run (harness/cost.py)
            "demo": demo, "models": models_cmd, "tasks": tasks_cmd,
            # the subcommands that read results folders: harness/commands_results.py
            "export": commands_results.export, "import": commands_results.import_cmd,
            "report": commands_results.report}
