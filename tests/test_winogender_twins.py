"""lm-eval's Winogender tasks for both architectures: local twins reading DIR/winogender/, with
lm-eval 0.4.13's prompts, choices, targets, metrics and gender filters."""

import glob
import json
from pathlib import Path

import pytest
import yaml

from conftest import run_cli

COMPARED = ("doc_to_text", "doc_to_target", "doc_to_choice", "output_type", "metric_list", "should_decontaminate",
            "doc_to_decontamination_query", "test_split")


class Tolerant(yaml.SafeLoader):
    """Reads lm-eval's YAML, whose ``!function`` tags name Python: kept as their text."""


Tolerant.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def lm_eval_yaml(name: str) -> dict:
    import lm_eval

    folder = Path(lm_eval.__file__).parent / "tasks" / "winogender"
    data = yaml.load((folder / name).read_text(), Loader=Tolerant)
    if "include" in data:
        data = {**lm_eval_yaml(data.pop("include")), **data}
    return data


def twin_yaml(name: str) -> dict:
    from harness.bundled import tasks_dir

    data = yaml.load((tasks_dir() / "generative" / name).read_text(), Loader=Tolerant)
    if "include" in data:
        data = {**twin_yaml(data.pop("include")), **data}
    return data


@pytest.mark.parametrize("task", ["winogender_all", "winogender_gotcha", "winogender_male", "winogender_female",
                                  "winogender_neutral", "winogender_gotcha_male", "winogender_gotcha_female"])
def test_twins_prompt_as_lm_eval_does(task):
    theirs = lm_eval_yaml("winogender.yaml" if task == "winogender_all" else f"{task}.yaml")
    ours = twin_yaml(f"{task}_local.yaml")
    assert {k: ours.get(k) for k in COMPARED} == {k: theirs.get(k) for k in COMPARED}
    assert ours["metadata"]["twin_of"] == theirs["task"] == task
    gender = task.rsplit("_", 1)[-1]
    if gender in ("male", "female", "neutral"):  # the same filter, by name
        assert theirs["process_docs"] == f"!function utils.filter_{gender}"
        assert ours["process_docs"] == f"!function twins.filter_{gender}"


def test_the_filters_and_the_rendered_prompt_equal_lm_eval(tmp_path):
    import datasets
    from jinja2 import Template
    from lm_eval.tasks.winogender import utils

    from harness.bundled import tasks_dir
    from harness.lm.tasks import build_task

    import importlib.util
    spec = importlib.util.spec_from_file_location("twins", tasks_dir() / "generative" / "twins.py")
    twins = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(twins)
    rows = twins.load_winogender({"test": str(tasks_dir() / "generative" / "data" / "winogender" / "winogender_all.tsv")})
    for gender in ("male", "female", "neutral"):
        assert getattr(twins, f"filter_{gender}")(rows["test"])["sentid"] == \
            getattr(utils, f"filter_{gender}")(rows["test"])["sentid"]
    _, task = build_task("winogender_all_local")
    doc = next(iter(task.test_docs()))
    theirs = lm_eval_yaml("winogender.yaml")
    assert task.doc_to_text(doc) == Template(theirs["doc_to_text"]).render(**doc)
    assert task.doc_to_choice(doc) == [doc["occupation"], doc["participant"]]
    assert task.doc_to_text(doc).endswith(f"‘{doc['pronoun'].capitalize()}’ refers to the")


def test_both_architectures_run_the_gotcha_twins_from_a_data_dir(tiny_pair, tmp_path):
    from harness.bundled import tasks_dir

    data = tmp_path / "data" / "winogender"
    data.mkdir(parents=True)
    source = tasks_dir() / "generative" / "data" / "winogender" / "winogender_gotcha.jsonl"
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    rows = rows + [{**r, "sentid": r["sentid"].replace(".txt", ".x.txt")} for r in rows[:2]]  # not the shipped file
    (data / "winogender_gotcha.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert run_cli("run", "--model", tiny_pair["encoder"], "--model", tiny_pair["decoder"], "--pair", "tiny",
                   "--tasks", "winogender_gotcha,winogender_gotcha_female", "--data-dir", tmp_path / "data",
                   "--log-samples", "--output-path", out, "--quiet") == 0
    records = [json.loads(Path(p).read_text()) for p in glob.glob(f"{out}/records/*.json")]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    females = sum(r["gender"] == "female" for r in rows)
    for r in records:
        assert r["n_examples"] == (len(rows) if r["task"] == "winogender_gotcha" else females)
        assert 0 <= r["metrics"]["acc"] <= 1 and r["headline_metric"] == "acc"
        sample = json.loads((out / r["samples"]).read_text().splitlines()[0])
        assert "refers to the" in json.dumps(sample["arguments"])
