"""The bill before the run: cells, tokens, FLOPs and GPU-hours of a plan, without loading a model.

Everything here is arithmetic on the plan, the data and a few published constants, so the same
plan gives the same numbers on every machine (no hub, no GPU, no model weights):

- tokens: a local ``--data-dir`` split is counted row by row, with the model's own tokenizer and
  input template when the model is a local folder, else estimated as 1.3 tokens per
  whitespace-separated word plus the template's special tokens (2 for one text, 3 for a pair),
  capped at ``max_length``; a hub-only split is its published row count (``GLUE_HUB``) times the
  tokens per row in that table. Training tokens per cell = train tokens per epoch x epochs (every
  row once per epoch, nothing padded is counted); scoring tokens = the eval splits' tokens.
- N: non-embedding parameters (the backbone without the token embeddings; the task head is left
  out): from the Ettin shapes for registry models, counted on the meta device from config.json
  for any other model (no weights read).
- FLOPs: 6 N per training token, 2 N per scoring token.
- time on a GPU (``GPUS``: bf16 dense peak from the vendor's datasheet) at ``utilization`` of
  peak, plus 0.6 ms per layer per optimizer step (kernel launches of an eager forward and backward:
  small models are launch-bound) and 3 s per cell (load, tokenize); replaced by a measured
  tokens/s when the store holds fine-tuning records of the same model on the same kind of device.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass, field

from harness.configs import EmbeddingConfig, FinetuneConfig
from harness.estimates import TOKENS_PER_WORD, CellCost, estimate_row
from harness.models import PARAMETERS
from harness.plan import Cell
from harness.results import ResultStore
from harness.retrieval.cost import retrieval_cost

# name: (label, bf16 dense peak FLOP/s without sparsity, source)
GPUS = {
    "h100": ("NVIDIA H100 SXM", 989e12, "NVIDIA H100 datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity"),
    "h100-pcie": ("NVIDIA H100 PCIe", 756e12, "NVIDIA H100 datasheet: BF16 1,513 TFLOPS with sparsity"),
    "h200": ("NVIDIA H200 SXM", 989e12, "NVIDIA H200 datasheet: BF16 1,979 TFLOPS with sparsity"),
    "a100": ("NVIDIA A100", 312e12, "NVIDIA A100 datasheet: BF16 Tensor Core 312 TFLOPS (624 with sparsity)"),
    "l40s": ("NVIDIA L40S", 362e12, "NVIDIA L40S datasheet: BF16 733 TFLOPS with sparsity"),
    "l4": ("NVIDIA L4", 121e12, "NVIDIA L4 datasheet: BF16 Tensor Core 242 TFLOPS with sparsity"),
    "a10g": ("NVIDIA A10G", 125e12, "NVIDIA A10 datasheet (125 TFLOPS BF16 dense); AWS's A10G has no datasheet"),
    "a10": ("NVIDIA A10", 125e12, "NVIDIA A10 datasheet: BF16 Tensor Core 125 TFLOPS (250 with sparsity)"),
    "cpu": ("CPU", None, "no peak: a measured throughput (calibration records) is needed"),
}
# device names in records ("cuda (NVIDIA H100 80GB HBM3), bf16, ...") -> GPUS key; first match wins
DEVICE_PATTERNS = (("h100 pcie", "h100-pcie"), ("h100", "h100"), ("h200", "h200"), ("a100", "a100"),
                   ("l40s", "l40s"), ("a10g", "a10g"), ("a10", "a10"), ("l4", "l4"))
DEFAULT_GPU, DEFAULT_UTILIZATION = "h100", 0.4
LAUNCH_S_PER_LAYER_STEP = 0.6e-3
CELL_OVERHEAD_S = 3.0
SCORING_SPEEDUP = 3.0  # measured mode: scoring runs at 3x the training tokens/s (2N vs 6N FLOPs per token)

# GLUE on the hub (nyu-mll/glue, split sizes as its dataset card lists them): train rows, eval split
# rows, tokens per train row, tokens per eval row. Tokens per row: 1.3 x words + special tokens,
# averaged over the rows of ../shared/data/glue (CoLA, SST-2 and STS-B: their first 5,000 train
# rows); MNLI, QQP and QNLI have no local copy and take the README's assumed 46, 32 and 53.
GLUE_HUB = {
    "cola": (8_551, {"validation": 1_043}, 12.31, 12.30),
    "sst2": (67_349, {"validation": 872}, 14.23, 27.41),
    "mrpc": (3_668, {"validation": 408}, 52.25, 52.73),
    "stsb": (5_749, {"validation": 1_500}, 29.83, 32.59),
    "qqp": (363_846, {"validation": 40_430}, 32.0, 32.0),
    "mnli": (392_702, {"validation_matched": 9_815, "validation_mismatched": 9_832}, 46.0, 46.0),
    "qnli": (104_743, {"validation": 5_463}, 53.0, 53.0),
    "rte": (2_490, {"validation": 277}, 71.06, 69.02),
    "wnli": (635, {"validation": 71}, 39.15, 40.22),
}
# Ettin shapes (paper, Table 1): hidden size and layers; vocabulary 50,368 for every size
ETTIN_SHAPES = {"17m": (256, 7), "32m": (384, 10), "68m": (512, 19), "150m": (768, 22), "400m": (1024, 28),
                "1b": (1792, 28)}
ETTIN_VOCAB = 50_368


@dataclass(frozen=True)
class Size:
    non_embedding: int
    layers: int
    source: str


@dataclass(frozen=True)
class Split:
    rows: int
    tokens: float
    source: str


def model_size(spec) -> Size | None:
    """Non-embedding parameters and layers of a model, without reading its weights."""
    if spec.size in ETTIN_SHAPES and spec.family in ("ettin", "ettin-cross"):
        hidden, layers = ETTIN_SHAPES[spec.size]
        return Size(PARAMETERS[spec.size] - ETTIN_VOCAB * hidden, layers, "Ettin Table 1 shape")
    return _counted_size(spec.model_id, spec.revision)


@functools.lru_cache(maxsize=None)
def _counted_size(model_id: str, revision: str | None) -> Size | None:
    try:
        import torch
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(model_id, revision=revision)
        with torch.device("meta"):
            model = AutoModel.from_config(config)
    except Exception:  # not local and not cached, or no AutoModel class: the plan says n/a
        return None
    embeddings = model.get_input_embeddings()
    total = sum(p.numel() for p in model.parameters())
    layers = getattr(config, "num_hidden_layers", None) or 0
    return Size(total - (embeddings.weight.numel() if embeddings is not None else 0), layers,
                "counted from config.json (meta device)")


def _local_tokenizer(spec):
    """The model's tokenizer when the model is a local folder (a hub id may or may not be cached:
    using it would make the plan differ between machines)."""
    if not os.path.isdir(spec.model_id):
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(spec.model_id)
    except Exception:
        return None


@functools.lru_cache(maxsize=None)
def _local_split(spec, split: str, folder: str, limit: int | None, max_length: int, model) -> Split:
    from harness.tasks import load_split

    ds = load_split(spec, split, data_dir=folder, limit=limit)
    columns = [[str(t) for t in ds[c]] for c in spec.text_fields]
    tok = _local_tokenizer(model) if model is not None else None
    if tok is not None:
        from harness.adapters import inputs

        ids = inputs.encode(tok, model.architecture, columns, max_length)
        return Split(len(ds), float(sum(len(i) for i in ids)), "counted with the model's tokenizer")
    return Split(len(ds), sum(estimate_row(list(row), max_length) for row in zip(*columns)),
                 "estimated: 1.3 x words + special tokens")


def split_tokens(cell: Cell, split: str, train: bool) -> Split | None:
    """Rows and tokens of one split of a classification cell's data (after ``--limit``)."""
    task, data = cell.task, cell.data
    if data.folder:
        tokenizer_model = cell.model if os.path.isdir(cell.model.model_id) else None
        return _local_split(task, split, data.folder, data.limit, cell.config.max_length, tokenizer_model)
    if task.name not in GLUE_HUB:
        return None
    train_rows, evals, per_train, per_eval = GLUE_HUB[task.name]
    rows = train_rows if train else evals.get(split)
    if rows is None:
        return None
    rows = min(rows, data.limit) if data.limit else rows
    per_row = min(per_train if train else per_eval, cell.config.max_length)
    return Split(rows, rows * per_row, "hub row count x tokens per row (harness/cost.py GLUE_HUB)")


def cell_cost(cell: Cell) -> CellCost | None:
    """Training and scoring tokens and optimizer steps of one fine-tuning or retrieval cell (None for others)."""
    if isinstance(cell.config, EmbeddingConfig):
        return retrieval_cost(cell)
    if not isinstance(cell.config, FinetuneConfig):
        return None
    train = split_tokens(cell, cell.task.train_split, train=True)
    evals = [split_tokens(cell, e.split, train=False) for e in cell.task.eval_splits]
    if train is None or any(e is None for e in evals):
        return None
    config = cell.config
    return CellCost(train_tokens=train.tokens * config.epochs, score_tokens=sum(e.tokens for e in evals),
                    steps=math.ceil(train.rows / config.batch_size) * config.epochs, train_rows=train.rows,
                    sources=tuple(dict.fromkeys([train.source] + [e.source for e in evals])))


def device_kind(device: str) -> str | None:
    """The GPUS key of a record's device text ('cuda (NVIDIA H100 80GB HBM3), bf16, ...'), 'cpu', or None."""
    text = (device or "").lower()
    if text.startswith("cpu"):
        return "cpu"
    name = text.split("(", 1)[1] if "(" in text else text
    for pattern, kind in DEVICE_PATTERNS:
        if re.search(rf"\b{re.escape(pattern)}", name):
            return kind
    return None


def model_key(model: str, size: str | None, family: str | None, architecture: str) -> str:
    """Models that share a throughput: an Ettin size and architecture, or one model id."""
    if size in ETTIN_SHAPES and family in ("ettin", "ettin-cross"):
        return f"ettin-{size}-{architecture}"
    return model


def measured_throughput(roots) -> dict[tuple[str, str], tuple[float, int]]:
    """(model key, device kind) -> (training tokens/s, records) over the fine-tuning records of
    ``roots``: total train tokens / total training seconds."""
    sums: dict[tuple[str, str], list] = {}
    for root in roots:
        for r in ResultStore(root).records() if os.path.isdir(root) else []:
            tokens, seconds = r.get("train_tokens"), r.get("train_time_s")
            if not tokens or not seconds or (r.get("search") or {}).get("stopped_early"):
                continue
            kind = device_kind(r.get("device", ""))
            if kind is None:
                continue
            key = (model_key(r["model"], r.get("size"), r.get("family"), r.get("architecture")), kind)
            total = sums.setdefault(key, [0.0, 0.0, 0])
            total[0], total[1], total[2] = total[0] + tokens, total[1] + seconds, total[2] + 1
    return {k: (t / s, n) for k, (t, s, n) in sums.items() if s > 0}


@dataclass
class Line:
    """One model x task of the plan, summed over its configurations and seeds."""

    model: str
    task: str
    configs: set = field(default_factory=set)
    seeds: set = field(default_factory=set)
    cells: int = 0
    stored: int = 0
    todo_seconds: float = 0.0
    train_rows: int = 0
    train_tokens: float = 0.0
    score_tokens: float = 0.0
    flops: float = 0.0
    seconds: float | None = 0.0
    throughput: str = ""
    costed: bool = True


def stored_keys(roots) -> tuple[set, set]:
    """Finished cells of ``roots``: their keys, and (config key, seed) for warm-start cells whose
    key is known only once the checkpoint they start from is chosen. Stopped ASHA configurations
    are not finished."""
    keys, configs = set(), set()
    for root in roots:
        for r in ResultStore(root).records() if os.path.isdir(root) else []:
            if not (r.get("search") or {}).get("stopped_early"):
                keys.add(r["cell_key"])
                configs.add((r.get("config_key"), r.get("seed")))
    return keys, configs


def cell_seconds(cost: CellCost, size: Size, peak: float | None, utilization: float,
                 measured: float | None) -> float | None:
    """Device seconds of one cell: measured tokens/s when given, else FLOPs at ``utilization`` of
    ``peak`` plus the launch and per-cell overheads."""
    if measured:
        return cost.train_tokens / measured + cost.score_tokens / (SCORING_SPEEDUP * measured) + CELL_OVERHEAD_S
    if not peak:
        return None
    flops = 6 * size.non_embedding * cost.train_tokens + 2 * size.non_embedding * cost.score_tokens
    return flops / (peak * utilization) + cost.steps * size.layers * LAUNCH_S_PER_LAYER_STEP + CELL_OVERHEAD_S


def estimate(cells: list[Cell], roots=(), gpu: str = DEFAULT_GPU, utilization: float = DEFAULT_UTILIZATION,
             calibration=()) -> tuple[list[Line], list[str]]:
    """Per (model, task): cells, cells in the store, tokens, FLOPs, device seconds; and notes that
    say where each number came from."""
    peak = GPUS[gpu][1]
    keys, configs = stored_keys(roots)
    measured = measured_throughput(list(roots) + list(calibration))
    lines: dict[tuple, Line] = {}
    notes: dict[str, dict] = {}  # what a note says -> the tasks or models it is said of
    for cell in cells:
        name = (cell.model.name or cell.model.model_id) + (f"@{cell.model.revision}" if cell.model.revision else "")
        line = lines.setdefault((name, cell.task.name), Line(name, cell.task.name))
        line.cells += 1
        line.seeds.add(cell.seed)
        line.configs.add(cell.config)
        done = cell.key in keys or (cell.waiting and (cell.config_key, cell.seed) in configs)
        line.stored += done
        cost, size = cell_cost(cell), model_size(cell.model)
        if cost is None or size is None:
            line.costed, line.seconds = False, None
            why = "no row counts for the task" if cost is None else "parameter count unknown"
            notes.setdefault(f"not costed ({why})", {})[f"{name} {cell.task.name}"] = None
            continue
        line.train_rows = cost.train_rows
        line.train_tokens += cost.train_tokens
        line.score_tokens += cost.score_tokens
        line.flops += 6 * size.non_embedding * cost.train_tokens + 2 * size.non_embedding * cost.score_tokens
        for source in cost.sources:
            notes.setdefault(f"tokens ({source})", {})[cell.task.name] = None
        notes.setdefault(f"N, non-embedding parameters, and layers ({size.source})", {})[
            f"{name} {human(size.non_embedding)}/{size.layers}"] = None
        rate = measured.get((model_key(cell.model.model_id, cell.model.size, cell.model.family,
                                       cell.model.architecture), gpu))
        seconds = cell_seconds(cost, size, peak, utilization, rate[0] if rate else None)
        line.throughput = (f"measured {rate[0]:,.0f} tok/s ({rate[1]} records)" if rate
                           else "assumed" if peak else "n/a: no peak, no measured tok/s")
        if seconds is None or line.seconds is None:
            line.seconds = None
            continue
        line.seconds += seconds
        line.todo_seconds += 0 if done else seconds
    return list(lines.values()), [f"{what}: {', '.join(who)}" for what, who in notes.items()]


def human(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def render(lines: list[Line], notes: list[str], gpu: str = DEFAULT_GPU, utilization: float = DEFAULT_UTILIZATION,
           roots=(), asha=None, asha_share=None) -> str:
    """The printed plan: a header, one row per model x task, totals and where the numbers came from."""
    label, peak, source = GPUS[gpu]
    unit = "CPU" if gpu == "cpu" else "GPU"
    cells = sum(line.cells for line in lines)
    stored = sum(line.stored for line in lines)
    configs = max((len(line.configs) for line in lines), default=0)
    seeds = max((len(line.seeds) for line in lines), default=0)
    models = len({line.model for line in lines})
    tasks = len({line.task for line in lines})
    where = ", ".join(str(r) for r in roots) or "no results folder"
    out = [f"Plan: {models} models x {tasks} tasks x up to {configs} configurations x {seeds} seeds = "
           f"{cells:,} cells; {stored:,} already in the store ({where}), {cells - stored:,} to run",
           f"Device: {label}, " + (f"bf16 dense peak {peak / 1e12:,.0f} TFLOP/s ({source})" if peak else source),
           f"Time per cell, assumed: FLOPs at {utilization:.0%} of that peak (--utilization) + "
           f"{LAUNCH_S_PER_LAYER_STEP * 1e3:.1f} ms per layer per optimizer step (kernel launches) + "
           f"{CELL_OVERHEAD_S:.0f} s; measured (the store holds this model's records on this device): training "
           f"tokens / measured tokens/s + scoring tokens / ({SCORING_SPEEDUP:g} x that) + {CELL_OVERHEAD_S:.0f} s",
           "FLOPs = 6 N x training tokens + 2 N x scoring tokens, N = non-embedding parameters", ""]
    header = (f"{'model':28} {'task':6} {'configs':>7} {'seeds':>5} {'cells':>7} {'stored':>7} {'train rows':>10} "
              f"{'train tokens':>12} {'score tokens':>12} {'PFLOP':>10} {unit + '-h':>9} {unit + '-h to run':>12}  "
              "throughput")
    out += [header, "-" * len(header)]
    by_model: dict[str, list[Line]] = {}
    for line in lines:
        by_model.setdefault(line.model, []).append(line)
    for model, group in by_model.items():
        for line in group:
            out.append(_row(line.model[-28:], line.task, f"{len(line.configs):>7} {len(line.seeds):>5}", [line],
                            f"{line.train_rows:,}" if line.costed else "-",
                            line.throughput if line.costed else "not costed"))
        if len(group) > 1 and len(by_model) > 1:
            out.append(_row(f"  {model[-26:]}", "all", f"{'':>7} {'':>5}", group, "", ""))
    out += ["-" * len(header), _row("total", "", f"{'':>7} {'':>5}", lines, "", ""), ""]
    if asha is not None:  # harness.search.AshaSettings
        out.append(f"--search asha ({asha.describe()}): about {asha.nominal_fraction():.0%} of the training tokens "
                   "above when every rung keeps exactly the top 1/R and the survivors are average configurations; "
                   "the table counts the full grid")
        if asha_share is not None:  # harness.search.estimate.simulated_share
            share, sizes = asha_share
            out.append(f"  run one trial at a time, where the first trials to reach a rung always go on: about "
                       f"{share:.0%} ({'/'.join(map(str, sizes))} configurations per experiment; Ray Tune's ASHA "
                       "bracket simulated on random rung scores, configurations weighed by their epochs)")
    out += ["Where the numbers come from:"] + [f"  {n}" for n in notes]
    return "\n".join(out)


def _row(name: str, task: str, middle: str, lines: list[Line], rows: str, note: str) -> str:
    """One printed row: ``lines`` summed (their costed part; GPU-hours n/a if any is unknown)."""
    costed = [line for line in lines if line.costed]
    unknown = not costed or any(line.seconds is None for line in costed)
    hours = None if unknown else sum(line.seconds for line in costed) / 3600
    todo = None if unknown else sum(line.todo_seconds for line in costed) / 3600
    return (f"{name:28} {task:6} {middle} {sum(x.cells for x in lines):>7,} {sum(x.stored for x in lines):>7,} "
            f"{rows:>10} {human(sum(x.train_tokens for x in costed)) if costed else 'n/a':>12} "
            f"{human(sum(x.score_tokens for x in costed)) if costed else 'n/a':>12} "
            f"{sum(x.flops for x in costed) / 1e15:>10,.2f} {_hours(hours):>9} {_hours(todo):>12}  {note}").rstrip()


def _hours(h: float | None) -> str:
    if h is None:
        return "n/a"
    return f"{h:,.1f}" if h >= 1 else f"{h:.3f}"
