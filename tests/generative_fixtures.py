"""Shared fixtures and helpers of the lm-eval tests: one tiny encoder/decoder pair per session,
and the requests lm-eval builds for a task (so tests score what lm-eval would ask for)."""

from __future__ import annotations

import os

import pytest

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory) -> dict:
    from harness.tiny import tiny_pair

    return tiny_pair(root=tmp_path_factory.mktemp("tiny-generative"))


@pytest.fixture(scope="session")
def cpu_runner():
    from harness.runner import Runner

    return Runner(device="cpu", dtype="fp32")


def spec_of(path: str):
    from harness.models import resolve

    return resolve(path)


def task_requests(task_name: str, limit: int | None = None) -> list:
    """The lm-eval Instances of a local task (all of one request type), as the evaluator builds them."""
    from harness.lm.tasks import build_task

    _, task = build_task(task_name)
    if task.get_config("num_fewshot") is None:
        task.set_config(key="num_fewshot", value=0)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return list(task.instances)


def instance(kind: str, args: tuple):
    from lm_eval.api.instance import Instance

    return Instance(request_type=kind, doc={}, arguments=args, idx=0)
