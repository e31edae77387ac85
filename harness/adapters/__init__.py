"""Adapters turn a cell into a result: ``classification`` (fine-tune and score), ``lm_eval``
(score with lm-eval's evaluator), ``retrieval`` (embed, optionally fine-tuned, scored by MTEB) and
``bias`` (Winogender gotcha preference).
A new task kind is a new module with ``run(cell, runner, options)``
and a line in ``adapter_for``."""

from __future__ import annotations

ADAPTERS = ("classification", "lm_eval", "retrieval", "bias")


def adapter_for(name: str):
    """The ``run`` function of adapter ``name`` (imported on first use: lm-eval is slow to import)."""
    if name == "classification":
        from harness.adapters.classification import run
    elif name == "lm_eval":
        from harness.adapters.lm_eval import run
    elif name == "retrieval":
        from harness.adapters.retrieval import run
    elif name == "bias":
        from harness.adapters.bias import run
    else:
        raise ValueError(f"unknown adapter {name}; known: {', '.join(ADAPTERS)}")
    return run
