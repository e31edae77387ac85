"""The fine-tuning recipe, top to bottom: optimizer, schedule, training step, loop and prediction.

It follows the Ettin GLUE runs (orionw/bert24 yamls/finetuning/glue; ModernBERT's GLUE code):
- Composer's DecoupledAdamW, betas (0.9, 0.98), eps 1e-6: every decayed weight is multiplied by
  ``1 - weight_decay * lr_t / lr_peak`` per step, then the Adam update. torch's AdamW multiplies by
  ``1 - lr_t * wd``, so it runs here with ``wd = weight_decay / lr_peak``: the same update.
- weight decay on tensors with more than one dimension that are not biases (``filter_bias_norm_wd``:
  biases and norm weights are not decayed, embeddings and every other matrix are);
- linear warmup over ``int(0.06 x steps)`` steps from 0 to the peak, then linear decay to 0, stepped
  per batch (Composer's ``linear_decay_with_warmup``, ``t_warmup: 0.06dur``, ``alpha_f: 0``);
- no gradient clipping (the Ettin GLUE configs set no clipping algorithm);
- batches shuffled each epoch (grouped by length so that little is padded), mean loss per batch.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness.configs import FinetuneConfig
from harness.runner import Runner, length_batches, pad_batch


def decays(name: str, param: torch.Tensor) -> bool:
    """ModernBERT's ``param_groups_weight_decay``: no decay for ndim <= 1 tensors and biases."""
    return param.ndim > 1 and not name.endswith(".bias")


def optimizer_for(model: torch.nn.Module, config: FinetuneConfig) -> torch.optim.AdamW:
    recipe = config.recipe
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if decays(name, p) else no_decay).append(p)
    wd = config.weight_decay / config.lr  # DecoupledAdamW's lr_t / lr_peak scaling (module docstring)
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    # the fused kernel exists for CPU and CUDA; the per-tensor loop took 40% of a CPU training step
    return torch.optim.AdamW(groups, lr=config.lr, betas=recipe.betas, eps=recipe.eps, fused=True)


def warmup_steps(total_steps: int, ratio: float) -> int:
    """Composer turns ``t_warmup: 0.06dur`` into ``int(0.06 * batches)`` batches."""
    return int(ratio * total_steps)


def schedule_for(optimizer, total_steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def loss_function(regression: bool):
    if regression:
        return lambda logits, labels: F.mse_loss(logits.view(-1), labels.view(-1))
    return lambda logits, labels: F.cross_entropy(logits, labels)


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


def train_step(runner: Runner, model, optimizer, seqs, labels: torch.Tensor, pad_id: int, loss_fn,
               max_grad_norm: float | None = None) -> float:
    """One optimizer step over ``seqs``, split into token-budget micro-batches; the loss is the
    mean over all rows whatever the micro-batching, and an out-of-memory error redoes the step
    from scratch with half the budget."""
    n = len(seqs)

    def accumulate(budget: int) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=runner.device)  # read once per step: no sync per micro-batch
        for micro in length_batches([len(s) for s in seqs], budget):
            batch = pad_batch([seqs[i] for i in micro], pad_id, device=runner.device)
            with runner.autocast():
                logits = runner.forward_logits(model, batch)
                loss = loss_fn(logits.float(), labels[micro].to(runner.device)) * (len(micro) / n)
            loss.backward()
            total += loss.detach()
            runner.count(batch["attention_mask"])
        return total

    total = runner.batcher.retry(accumulate, rows=n)
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return float(total)


@dataclass
class Training:
    loss: float
    steps: int
    warmup_steps: int
    tokens: int  # real tokens through forward and backward
    seconds: float
    paused_tokens: int = 0  # through forward passes while paused (a search's dev scoring, other seeds)


def training_steps(runner: Runner, model, config: FinetuneConfig, ids: list[list[int]], labels: torch.Tensor,
                   pad_id: int, regression: bool, seed: int, desc: str = "", progress: bool = False, pause_at=None):
    """Fine-tune ``model`` in place on (ids, labels) with ``config``, as a generator that returns
    the ``Training``. ``pause_at(total_steps)``, when given, names the optimizer steps after which
    it yields ``(step, total_steps, train_tokens)`` (a search scores the dev split there, or trains
    another seed); tokens and time spent while paused are not counted as training."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    steps_per_epoch = math.ceil(len(ids) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    pauses = set(pause_at(total_steps)) if pause_at is not None else set()
    warmup = warmup_steps(total_steps, config.recipe.warmup_ratio)
    optimizer = optimizer_for(model, config)
    scheduler = schedule_for(optimizer, total_steps, warmup)
    loss_fn = loss_function(regression)
    lengths = [len(s) for s in ids]
    tokens_before, start = runner.tokens_processed, time.perf_counter()
    losses = []
    side_tokens, side_seconds = 0, 0.0  # spent while paused
    with tqdm(total=total_steps, desc=desc, leave=False, disable=not progress) as bar:
        for _ in range(config.epochs):
            for batch in grouped_batches(lengths, config.batch_size, rng):
                losses.append(train_step(runner, model, optimizer, [ids[i] for i in batch], labels[batch], pad_id,
                                         loss_fn, config.recipe.max_grad_norm))
                if not math.isfinite(losses[-1]):  # diverged: every later number would mean nothing
                    raise FloatingPointError(f"training diverged: loss {losses[-1]} at step {len(losses)} of "
                                             f"{total_steps} (lr {config.lr:g})")
                scheduler.step()
                bar.update(1)
                if len(losses) in pauses:
                    mark, clock = runner.tokens_processed, time.perf_counter()
                    yield len(losses), total_steps, mark - tokens_before - side_tokens
                    side_tokens += runner.tokens_processed - mark
                    side_seconds += time.perf_counter() - clock
    if runner.device.type == "cuda":
        torch.cuda.synchronize()
    return Training(loss=sum(losses) / len(losses) if losses else float("nan"), steps=total_steps,
                    warmup_steps=warmup, tokens=runner.tokens_processed - tokens_before - side_tokens,
                    seconds=time.perf_counter() - start - side_seconds, paused_tokens=side_tokens)


def drain(steps):
    """Run a generator that pauses (``training_steps``, ``classification.run_steps``) to its end; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def train(runner: Runner, model, config: FinetuneConfig, ids: list[list[int]], labels: torch.Tensor, pad_id: int,
          regression: bool, seed: int, desc: str = "", progress: bool = False) -> Training:
    """Fine-tune ``model`` in place on (ids, labels) with ``config``, without pausing."""
    return drain(training_steps(runner, model, config, ids, labels, pad_id, regression, seed, desc, progress))


@torch.no_grad()
def predict(runner: Runner, model, seqs, pad_id: int) -> torch.Tensor:
    """Logits of a sequence-classification model for each row, in input order."""
    was_training = model.training
    model.eval()

    def run(idx):
        batch = pad_batch([seqs[i] for i in idx], pad_id, device=runner.device)
        with runner.autocast():
            logits = runner.forward_logits(model, batch).float().cpu()
        runner.count(batch["attention_mask"])
        return list(logits)

    rows = runner.map_batches([len(s) for s in seqs], run)
    model.train(was_training)
    return torch.stack(rows) if rows else torch.empty(0)
