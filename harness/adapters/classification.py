"""GLUE-style fine-tuning and scoring, identical for encoders and decoders.

The training loop is deliberately plain (read it top to bottom): AdamW (0.9, 0.98), eps 1e-6,
linear decay after 6% warmup, weight decay on everything but biases and norms, gradient norm
clipped at 1.0, mixed precision on GPU. What differs between the architectures lives in
transformers' head classes (``AutoModelForSequenceClassification`` picks
``ModernBertForSequenceClassification`` or ``ModernBertDecoderForSequenceClassification``) and
in the pooling rule the runner keeps consistent through ``pad_token_id``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness import grids, metrics
from harness.runner import LoadedModel, Runner, label_keys
from harness.tasks import TaskSpec, load_split

_ENCODED: dict[tuple, "Encoded"] = {}


@dataclass
class Encoded:
    ids: list[list[int]]
    labels: torch.Tensor
    idx: list


def encode(tokenizer, spec: TaskSpec, split: str, data_dir: str | None, limit: int | None, max_length: int) -> Encoded:
    """Token ids of one split, cached per (tokenizer, task, split, data, max length) for the process,
    so a grid of cells tokenizes each split once."""
    key = (tokenizer.name_or_path, len(tokenizer), spec.name, spec.source, split, data_dir, limit, max_length)
    if key not in _ENCODED:
        ds = load_split(spec, split, data_dir=data_dir, limit=limit)
        columns = [ds[c] for c in spec.text_fields]
        texts = [[("" if t is None else str(t)) for t in col] for col in columns]
        enc = tokenizer(*texts, truncation=True, max_length=max_length)
        raw = ds[spec.label_field]
        dtype = torch.float32 if spec.is_regression else torch.long
        labels = torch.tensor([float(x) if spec.is_regression else int(x) for x in raw], dtype=dtype)
        idx = ds["idx"] if "idx" in ds.column_names else list(range(len(ds)))
        _ENCODED[key] = Encoded(ids=enc["input_ids"], labels=labels, idx=list(idx))
    return _ENCODED[key]


def grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Random batches of rows of similar length (as Trainer's ``group_by_length``): shuffle,
    cut into mega-batches of 50 batches, sort each by length, cut into batches, shuffle them."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = 50 * batch_size
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start:start + mega], key=lambda i: -lengths[i])
        batches.extend(chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def loss_function(spec: TaskSpec):
    if spec.is_regression:
        return lambda logits, labels: F.mse_loss(logits.view(-1), labels.view(-1))
    return lambda logits, labels: F.cross_entropy(logits, labels)


def optimizer_for(model, hp: grids.Hyper) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # the fused kernel exists for CPU and CUDA; the per-tensor loop it replaces took 40% of a
    # CPU training step
    return torch.optim.AdamW(groups, lr=hp.lr, betas=grids.BETAS, eps=grids.EPS, fused=True)


@dataclass
class FinetuneResult:
    metrics: dict
    n_examples: int
    samples: list[dict] = field(default_factory=list)
    train_loss: float = float("nan")
    steps: int = 0


def finetune(runner: Runner, loaded: LoadedModel, spec: TaskSpec, hp: grids.Hyper, seed: int,
             data_dir: str | None = None, limit: int | None = None, init_state: dict | None = None,
             progress: bool = True) -> FinetuneResult:
    """Fine-tune from the pretrained weights (or ``init_state``) and score every eval split."""
    tok = loaded.tokenizer
    pad_id = tok.pad_token_id
    train = encode(tok, spec, spec.train_split, data_dir, limit, hp.max_length)
    model = runner.fresh(loaded, seed, init_state)
    torch.manual_seed(seed)
    rng = random.Random(seed)

    steps_per_epoch = math.ceil(len(train.ids) / hp.batch_size)
    total_steps = steps_per_epoch * hp.epochs
    optimizer = optimizer_for(model, hp)
    warmup = math.ceil(hp.warmup_ratio * total_steps)  # as transformers' Trainer rounds it
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: step / max(1, warmup) if step < warmup else
        max(0.0, (total_steps - step) / max(1, total_steps - warmup)))
    loss_fn = loss_function(spec)
    lengths = [len(s) for s in train.ids]

    bar = tqdm(total=total_steps, desc=f"{loaded.spec.name} {spec.name} lr={hp.lr:g} seed={seed}",
               leave=False, disable=not progress)
    losses = []
    for _ in range(hp.epochs):
        for batch in grouped_batches(lengths, hp.batch_size, rng):
            loss = runner.train_step(model, optimizer, [train.ids[i] for i in batch], train.labels[batch], pad_id,
                                     loss_fn, scheduler=schedule, max_grad_norm=grids.MAX_GRAD_NORM)
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
    bar.close()

    scores, samples, n_eval = evaluate(runner, model, tok, spec, data_dir, limit, hp.max_length)
    mean_loss = sum(losses) / len(losses) if losses else float("nan")
    return FinetuneResult(metrics=scores, n_examples=n_eval, samples=samples, train_loss=mean_loss, steps=total_steps)


def predictions(spec: TaskSpec, logits: torch.Tensor) -> list:
    if spec.is_regression:
        return logits.view(-1).tolist()
    return logits.argmax(-1).tolist()


def evaluate(runner: Runner, model, tok, spec: TaskSpec, data_dir, limit, max_length):
    scores: dict[str, float] = {}
    samples: list[dict] = []
    n_primary = 0
    for i, ev in enumerate(spec.eval_splits):
        data = encode(tok, spec, ev.split, data_dir, limit, max_length)
        logits = runner.predict(model, data.ids, tok.pad_token_id)
        preds = predictions(spec, logits)
        refs = data.labels.tolist()
        for name, value in metrics.compute(list(spec.metrics), preds, refs).items():
            scores[name + ev.metric_suffix] = value
        samples.extend({"split": ev.split, "idx": j, "pred": p, "label": r}
                       for j, p, r in zip(data.idx, preds, refs))
        if i == 0:
            n_primary = len(refs)
    return scores, samples, n_primary


def backbone_state(loaded: LoadedModel) -> dict:
    """The fine-tuned weights but the label layer, for warm-starting tasks with other labels."""
    labels = set(label_keys(loaded))
    return {k: v.detach().to("cpu", copy=True) for k, v in loaded.model.state_dict().items() if k not in labels}
