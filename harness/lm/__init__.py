"""lm-eval integration: the harness's two lm-eval backends, task lookup, and evaluation.

Nothing happens at import time. ``register()`` adds the backends to lm-eval's model registry as
``ettin-decoder`` (DecoderLM) and ``ettin-encoder`` (EncoderLM, mask-append) and quiets two
noises of lm-eval's; the harness calls it before it evaluates, and so can a user who wants
``lm_eval.simple_evaluate(model="ettin-encoder", model_args="pretrained=PATH")``.
"""

from __future__ import annotations

import logging
import subprocess

BACKENDS = {"ettin-encoder": ("harness.lm.encoder", "EncoderLM"),
            "ettin-decoder": ("harness.lm.decoder", "DecoderLM")}


class _NoCustomDatasetHint(logging.Filter):
    """lm-eval warns about --metadata whenever a task has a custom_dataset, as every twin has."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed to `--metadata`" not in record.getMessage()


def _quiet_git_hash() -> str | None:
    """lm-eval records the git commit of the working directory and lets git's "fatal: not a git
    repository" through to the terminal; the same lookup, without the noise."""
    try:
        return subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL).strip().decode()
    except (subprocess.CalledProcessError, OSError):
        return None


def register() -> None:
    """Register the backends with lm-eval (once) and quiet its git lookup and metadata hint."""
    import importlib

    import lm_eval.evaluator
    from lm_eval.api.registry import MODEL_REGISTRY, register_model

    for name, (module, cls) in BACKENDS.items():
        if name not in MODEL_REGISTRY:
            register_model(name)(getattr(importlib.import_module(module), cls))
    lm_eval.evaluator.get_git_commit_hash = _quiet_git_hash
    task_log = logging.getLogger("lm_eval.api.task")
    if not any(isinstance(f, _NoCustomDatasetHint) for f in task_log.filters):
        task_log.addFilter(_NoCustomDatasetHint())
