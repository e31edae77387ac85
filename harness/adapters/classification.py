"""The classification adapter: fine-tune a model on a GLUE-style task and score its eval splits.

Identical for encoders and decoders but for the places ``inputs.py`` names (template, pooled
position, head); the recipe itself is ``finetune.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness import metrics
from harness.adapters import finetune, inputs
from harness.adapters.base import CellResult, RunOptions
from harness.configs import digest
from harness.models import hub_dataset
from harness.runner import LoadedModel, Runner, label_keys
from harness.tasks import TaskSpec, load_split

_ENCODED: dict[tuple, "Encoded"] = {}


@dataclass
class Encoded:
    ids: list[list[int]]
    labels: torch.Tensor
    idx: list


def encode(tokenizer, architecture: str, spec: TaskSpec, split: str, data_dir: str | None, limit: int | None,
           max_length: int) -> Encoded:
    """Token ids of one split, cached per (tokenizer, template, task, split, data, max length) for
    the process, so a grid of cells tokenizes each split once."""
    key = (tokenizer.name_or_path, len(tokenizer), architecture, digest(spec.identity()), split, data_dir, limit,
           max_length)
    if key not in _ENCODED:
        ds = load_split(spec, split, data_dir=data_dir, limit=limit)
        columns = [[str(t) for t in ds[c]] for c in spec.text_fields]
        ids = inputs.encode(tokenizer, architecture, columns, max_length)
        raw = ds[spec.label_field]
        labels = (torch.tensor([float(x) for x in raw], dtype=torch.float32) if spec.is_regression
                  else torch.tensor([int(x) for x in raw], dtype=torch.long))
        idx = ds["idx"] if "idx" in ds.column_names else list(range(len(ds)))
        _ENCODED[key] = Encoded(ids=ids, labels=labels, idx=list(idx))
    return _ENCODED[key]


def run(cell, runner: Runner, options: RunOptions) -> CellResult:
    """Fine-tune from the pretrained weights (or the warm-start state) and score every eval split."""
    return finetune.drain(run_steps(cell, runner, options))


def run_steps(cell, runner: Runner, options: RunOptions, pause_at=None):
    """``run`` as a generator that pauses after the training steps ``pause_at(total_steps)`` names,
    yielding ``(step, total_steps, train_tokens, model)``, and returns the ``CellResult``. While it
    is paused the caller may score ``model`` or run another cell on the same loaded model, provided
    it puts back this cell's weights and random state before resuming (``harness.search.trial``)."""
    runner.hardware.refuse_fp16_training()
    spec: TaskSpec = cell.task
    config = cell.config
    arch = cell.model.architecture
    pretrained_head = config.recipe.head_init == "pretrained"
    overrides = inputs.ENCODER_POOLING.get(runner.cache.model_type(cell.model), {}) if arch == "encoder" else {}
    tokens_before = runner.tokens_processed
    loaded = runner.load(cell.model, "sequence-classification", num_labels=spec.num_labels,
                         problem_type="regression" if spec.is_regression else "single_label_classification",
                         training=True, pretrained_head=pretrained_head, config=overrides)
    tok = loaded.tokenizer
    data_dir = cell.data.folder
    train = encode(tok, arch, spec, spec.train_split, data_dir, cell.data.limit, config.max_length)
    model = runner.fresh(loaded, cell.seed, options.init_state)
    steps = finetune.training_steps(runner, model, config, train.ids, train.labels, tok.pad_token_id,
                                    spec.is_regression, cell.seed,
                                    desc=f"{loaded.spec.name} {spec.name} lr={config.lr:g} seed={cell.seed}",
                                    progress=options.progress, pause_at=pause_at)
    while True:
        try:
            step, total_steps, train_tokens = next(steps)
        except StopIteration as done:
            training = done.value
            break
        yield step, total_steps, train_tokens, model
    scores, samples, n_eval = evaluate(runner, model, tok, arch, spec, data_dir, cell.data.limit, config.max_length)
    fmt = inputs.describe(tok, arch, len(spec.text_fields) == 2, pretrained_head, loaded.head_from)
    return CellResult(
        metrics=scores, headline_metric=spec.headline_metric, split=spec.primary_split, n_examples=n_eval,
        samples=samples, state=backbone_state(loaded) if options.keep_state else None,
        tokens_processed=runner.tokens_processed - tokens_before - training.paused_tokens, parameters=loaded.parameters,
        loaded_id=loaded.loaded_id,
        details={"train_loss": training.loss, "train_steps": training.steps, "warmup_steps": training.warmup_steps,
                 "input_format": {**fmt.to_dict(), **overrides}, **throughput(runner, model, training),
                 **({} if data_dir else {"dataset": hub_dataset(spec.dataset_path)})})


def throughput(runner: Runner, model, training: finetune.Training) -> dict:
    """Training tokens/s, FLOPs (6 x non-embedding parameters x tokens) and the fraction of the
    device's measured peak FLOP/s they reached."""
    embeddings = model.get_input_embeddings().weight.numel() if model.get_input_embeddings() is not None else 0
    non_embedding = sum(p.numel() for p in model.parameters()) - embeddings
    flops = 6 * non_embedding * training.tokens
    per_s = training.tokens / training.seconds if training.seconds > 0 else None
    peak = runner.hardware.peak_flops()
    achieved = flops / training.seconds if training.seconds > 0 else None
    return {"train_tokens": training.tokens, "train_time_s": round(training.seconds, 3),
            "train_tokens_per_s": None if per_s is None else round(per_s, 1), "train_flops": flops,
            "peak_flops": peak, "peak_fraction": None if achieved is None or not peak else round(achieved / peak, 5)}


def predictions(spec: TaskSpec, logits: torch.Tensor) -> tuple[list, list]:
    """(prediction, model output) per row: the class and its probabilities, or the score."""
    if spec.is_regression:
        scores = logits.view(-1).tolist()
        return scores, scores
    return logits.argmax(-1).tolist(), torch.softmax(logits, -1).tolist()


def evaluate(runner: Runner, model, tok, arch: str, spec: TaskSpec, data_dir, limit, max_length):
    """(metrics, per-example samples, rows of the primary split) for every eval split."""
    scores: dict[str, float] = {}
    samples: list[dict] = []
    n_primary = 0
    for i, ev in enumerate(spec.eval_splits):
        data = encode(tok, arch, spec, ev.split, data_dir, limit, max_length)
        logits = finetune.predict(runner, model, data.ids, tok.pad_token_id)
        broken = int((~torch.isfinite(logits)).any(-1).sum()) if logits.numel() else 0
        if broken:  # argmax of NaN is 0: a plausible accuracy from a broken model
            raise FloatingPointError(f"the model's outputs are not finite on {broken} of {len(logits)} rows of "
                                     f"{ev.split}")
        preds, outputs = predictions(spec, logits)
        refs = data.labels.tolist()
        for name, value in metrics.compute(list(spec.metrics), preds, refs).items():
            scores[name + ev.metric_suffix] = value
        texts = tok.batch_decode(data.ids, skip_special_tokens=False)
        output_key = "score" if spec.is_regression else "probs"
        samples.extend({"split": ev.split, "idx": j, "input": text, "label": r, "pred": p,
                        output_key: [round(x, 6) for x in o] if isinstance(o, list) else o}
                       for j, text, p, o, r in zip(data.idx, texts, preds, outputs, refs))
        if i == 0:
            n_primary = len(refs)
    return scores, samples, n_primary


def backbone_state(loaded: LoadedModel) -> dict:
    """The fine-tuned weights but the label layer, for warm-starting tasks with other labels."""
    labels = set(label_keys(loaded))
    return {k: v.detach().to("cpu", copy=True) for k, v in loaded.model.state_dict().items() if k not in labels}
