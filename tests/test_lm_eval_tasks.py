"""The lm-eval task side: the local twins keep their hub tasks' prompts and metrics, groups
expand, unknown and offline hub tasks fail with one clear line, --data-dir and --include-path."""

from __future__ import annotations

import json

import pytest

from generative_fixtures import cpu_runner, spec_of, tiny_paths  # noqa: F401

from harness import lm
from harness.errors import UserError
from harness.lm import tasks as lm_tasks
from harness.lm.evaluate import evaluate_task
from harness.suite import TWIN_SUFFIX, suite

GENERATIVE = list(suite().expand("generative"))

PROMPT_FIELDS = ("output_type", "doc_to_text", "doc_to_target", "doc_to_choice", "target_delimiter", "process_docs",
                 "process_results", "generation_kwargs", "filter_list", "metric_list", "num_fewshot")


def resolved_config(path):
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path, resolve_func=True)


def same_value(a, b) -> bool:
    if callable(a) and callable(b):  # the same lm-eval function, possibly loaded twice
        return (a.__module__.rsplit(".", 1)[-1], a.__qualname__) == (b.__module__.rsplit(".", 1)[-1], b.__qualname__)
    return a == b


@pytest.mark.parametrize("task", GENERATIVE + ["arc_easy", "boolq", "wikitext"])
def test_twin_keeps_the_hub_prompt_and_metrics(task):
    manager = lm_tasks.task_manager()
    hub, twin = manager.task_index[task], manager.task_index[task + TWIN_SUFFIX]
    hub_cfg, twin_cfg = resolved_config(hub.yaml_path), resolved_config(twin.yaml_path)
    for field in PROMPT_FIELDS:
        if field == "metric_list":
            continue
        assert same_value(hub_cfg.get(field), twin_cfg.get(field)), field
    # the same metrics; the twin states aggregation and higher_is_better where the hub YAML leaves
    # them to lm-eval's defaults (which lm-eval warns about)
    import lm_eval.api.metrics  # noqa: F401  (fills lm-eval's aggregation registry)
    from lm_eval.api.registry import AGGREGATION_REGISTRY, get_metric_aggregation, is_higher_better

    names = {v: k for k, v in AGGREGATION_REGISTRY.items()}
    defaults = {"higher_is_better": is_higher_better, "aggregation": lambda m: names[get_metric_aggregation(m)]}
    hub_metrics = {m["metric"]: m for m in hub_cfg["metric_list"]}
    for metric in twin_cfg["metric_list"]:
        hub = hub_metrics.pop(metric["metric"])
        for key, value in metric.items():
            expected = hub.get(key, defaults[key](metric["metric"]) if key in defaults else None)
            assert same_value(value, expected), (metric["metric"], key)
        assert set(hub) <= set(metric) and {"aggregation", "higher_is_better"} <= set(metric)
    assert not hub_metrics
    assert twin_cfg["metadata"]["version"] == hub_cfg["metadata"]["version"]
    assert twin_cfg["metadata"]["twin_of"] == task
    eval_split = hub_cfg.get("test_split") or hub_cfg.get("validation_split")
    assert eval_split in twin_cfg["dataset_kwargs"]["data_files"]


def test_groups_expand_and_validate():
    assert lm_tasks.expand_tasks(["generative"]) == GENERATIVE
    assert lm_tasks.expand_tasks(["generative_local", "piqa_local"]) == [t + "_local" for t in GENERATIVE]
    assert lm_tasks.is_local("generative_demo") and lm_tasks.is_local("piqa_local")
    assert not lm_tasks.is_local("hellaswag")
    with pytest.raises(UserError, match="unknown task 'no_such_task_xyz'"):
        lm_tasks.expand_tasks(["piqa", "no_such_task_xyz"])


def test_unknown_task_is_a_user_error(tiny_paths, cpu_runner):
    with pytest.raises(UserError, match="unknown task 'no_such_task_xyz'") as err:
        evaluate_task(cpu_runner, spec_of(tiny_paths["decoder"]), "no_such_task_xyz")
    assert "\n" not in str(err.value)


def test_hub_task_offline_names_its_local_twin(tiny_paths, cpu_runner, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="hellaswag_local") as err:
        evaluate_task(cpu_runner, spec_of(tiny_paths["decoder"]), "hellaswag", limit=2)
    message = str(err.value)
    assert "\n" not in message and "Rowan/hellaswag" in message and "--data-dir" in message


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_data_dir_points_twins_at_other_files(tmp_path, tiny_paths, cpu_runner):
    piqa = [{"goal": f"How do I do thing {i}?", "sol1": "Do it well.", "sol2": "Do it badly.", "label": i % 2}
            for i in range(3)]
    write_jsonl(tmp_path / "piqa" / "validation.jsonl", piqa)
    arc = [{"id": None, "question": "Which is a colour?", "choices": {"text": ["red", "dog"], "label": ["A", "B"]},
            "answerKey": "A"}]
    write_jsonl(tmp_path / "arc_easy" / "validation.jsonl", arc)  # ARC is evaluated on test; validation is the fallback
    spec = spec_of(tiny_paths["decoder"])
    for task in ("piqa", "piqa_local"):  # the hub name runs its twin on the given files
        result = evaluate_task(cpu_runner, spec, task, data_dir=str(tmp_path))
        assert result["n_examples"] == 3 and result["split"] == "validation"
        assert result["data_files"] == {"validation": str((tmp_path / "piqa" / "validation.jsonl").resolve())}
    result = evaluate_task(cpu_runner, spec, "arc_easy", data_dir=str(tmp_path))
    assert result["n_examples"] == 1 and result["split"] == "validation"
    with pytest.raises(UserError, match="no data for task 'hellaswag'"):
        evaluate_task(cpu_runner, spec, "hellaswag", data_dir=str(tmp_path))


def test_include_path_task(tmp_path, tiny_paths, cpu_runner):
    rows = [{"q": "Two plus two is", "a": [" four", " five"], "gold": 0}, {"q": "The sky is", "a": [" blue", " loud"], "gold": 0}]
    write_jsonl(tmp_path / "data" / "test.jsonl", rows)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "my_task.yaml").write_text(
        "task: my_task\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'data' / 'test.jsonl'}\noutput_type: multiple_choice\ntest_split: test\n"
        "doc_to_text: '{{q}}'\ndoc_to_choice: '{{a}}'\ndoc_to_target: '{{gold}}'\ntarget_delimiter: ''\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    include = [str(tmp_path / "tasks")]
    assert lm_tasks.expand_tasks(["my_task"], include) == ["my_task"]
    result = evaluate_task(cpu_runner, spec_of(tiny_paths["encoder"]), "my_task", include_paths=include,
                                  log_samples=True)
    assert result["n_examples"] == 2 and result["headline_metric"] == "acc" and len(result["samples"]) == 2
    with pytest.raises(UserError, match="is not a folder"):
        lm_tasks.expand_tasks(["my_task"], [str(tmp_path / "missing")])


def test_backends_are_registered_by_an_explicit_call():
    from lm_eval.api.registry import get_model

    from harness.lm.evaluate import backend_class

    lm.register()
    lm.register()  # twice is harmless
    assert get_model("ettin-encoder") is backend_class("encoder")
    assert get_model("ettin-decoder") is backend_class("decoder")


def test_a_task_fingerprint_follows_its_yaml_and_files(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    yaml = ("task: fp_task\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: x.jsonl\n"
            "output_type: multiple_choice\ntest_split: test\ndoc_to_text: '{{q}}'\ndoc_to_choice: '{{a}}'\n"
            "doc_to_target: 0\n")
    (folder / "fp_task.yaml").write_text(yaml)
    first = lm_tasks.fingerprint("fp_task", [str(folder)])
    assert first and lm_tasks.fingerprint("fp_task", [str(folder)]) == first
    (folder / "fp_task.yaml").write_text(yaml.replace("{{q}}", "Q: {{q}}"))
    lm_tasks._manager.cache_clear()
    assert lm_tasks.fingerprint("fp_task", [str(folder)]) != first
