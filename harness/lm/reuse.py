"""What does not depend on a checkpoint's weights, built once per process and reused by every
checkpoint scored after it (a trajectory scores the same tasks on many checkpoints of one model):

- the lm-eval task (documents read and processed), per task, data source and the settings that
  change it (few-shot count, generation arguments);
- its requests (prompts with their few-shot examples), per limit, few-shot seed and the rest of
  ``build_all_requests``' arguments: lm-eval rebuilds them for every model otherwise. lm-eval's own
  ``cache_requests`` is not used: its disk key leaves out the data files, so a task read from
  another ``--data-dir`` would get the old requests;
- the token ids of each request string, per tokenizer *content* (a checkpoint folder carries its
  own copy of the same tokenizer, so the key is a fingerprint of the vocabulary and rules, not the
  path).

Each cached request is handed out as a fresh copy without responses, so nothing of one model's
scoring reaches the next.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

TASKS: dict = {}
REQUESTS: dict = {}
ENCODED: dict = {}
MAX_ENCODED = 2_000_000  # token lists kept; beyond, the oldest half is dropped
STATS = {"requests_built": 0, "requests_reused": 0, "encoded": 0, "encode_reused": 0}


def clear() -> None:
    TASKS.clear(), REQUESTS.clear(), ENCODED.clear()
    STATS.update(dict.fromkeys(STATS, 0))


def task(key: tuple, build):
    """The (manager, task) for ``key``, built by ``build()`` the first time."""
    if key not in TASKS:
        manager, task_obj = build()
        _reuse_requests(task_obj, key)
        TASKS[key] = (manager, task_obj)
    return TASKS[key]


def _fresh(instances) -> list:
    return [replace(i, resps=[], filtered_resps={}) for i in instances]


def _reuse_requests(task_obj, key: tuple) -> None:
    original = task_obj.build_all_requests

    def build_all_requests(**kwargs):
        settings = tuple(sorted((k, repr(v)) for k, v in kwargs.items() if k not in ("cache_requests",
                                                                                   "rewrite_requests_cache")))
        seeds = [getattr(task_obj, "fewshot_rnd", None), getattr(getattr(task_obj, "sampler", None), "rnd", None)]
        where = (key, settings, task_obj.config.num_fewshot, tuple(hash(r.getstate()) if r else None for r in seeds))
        if where in REQUESTS:
            task_obj._instances = _fresh(REQUESTS[where])
            STATS["requests_reused"] += 1
            return None
        original(**kwargs)
        REQUESTS[where] = _fresh(task_obj._instances)
        STATS["requests_built"] += 1
        return None

    task_obj.build_all_requests = build_all_requests


def fingerprint(tokenizer) -> str:
    """The identity of a tokenizer's behaviour: its serialised rules and vocabulary (fast
    tokenizers), else its vocabulary and special tokens."""
    cached = getattr(tokenizer, "_harness_fingerprint", None)
    if cached:
        return cached
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(
        [sorted(tokenizer.get_vocab().items()), tokenizer.all_special_tokens, type(tokenizer).__name__])
    value = hashlib.sha256(text.encode()).hexdigest()
    try:
        tokenizer._harness_fingerprint = value
    except AttributeError:
        pass
    return value


def encode(tokenizer, string: str, add_special_tokens: bool = False) -> list[int]:
    """``tokenizer.encode(string)``, computed once per tokenizer content and string."""
    key = (fingerprint(tokenizer), add_special_tokens, string)
    ids = ENCODED.get(key)
    if ids is None:
        if len(ENCODED) >= MAX_ENCODED:
            for old in list(ENCODED)[: MAX_ENCODED // 2]:
                del ENCODED[old]
        ids = ENCODED[key] = tuple(tokenizer.encode(string, add_special_tokens=add_special_tokens))
        STATS["encoded"] += 1
    else:
        STATS["encode_reused"] += 1
    return list(ids)
