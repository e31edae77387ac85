"""The harness's records as lm-eval output: ``<out>/<model>/results_<date>.json`` per model and
revision and ``samples_<task>_<date>.jsonl`` per task, as lm-eval's EvaluationTracker lays them out.

Generative cells carry lm-eval's own numbers and stderr; GLUE, retrieval and bias cells are written in
the same schema with the harness as their producer: the best configuration's mean over seeds,
its stderr from the harness's bootstrap over the per-example outputs, seeds and protocol in
``config``. Each task's ``configs`` entry keeps the records behind it (``metadata.ettin_eval``),
so an export read back by ``ettin-eval import`` gives the same report.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from harness.errors import UserError
from harness.report.frame import is_test_split
from harness.results import atomic_write_text, writable_folder

EXPORTABLE = ("lm_eval", "classification", "retrieval", "bias")
PRODUCER = "ettin-eval"
FILTER = "none"
N_BOOT = 1000
MEAN_METRICS = ("accuracy",)  # classification metrics that are a mean over examples


def export(records: list[dict], store, out: Path) -> list[Path]:
    """The generative, GLUE, retrieval and bias records among ``records`` as lm-eval results and samples
    files under ``out``; the paths written (a new date each time, so nothing is overwritten)."""
    chosen = [r for r in records if r.get("status") == "ok" and r.get("adapter") in EXPORTABLE]
    if not chosen:
        raise UserError("nothing to export as lm-eval results: no generative, GLUE, retrieval or bias records; pass the "
                        "--output-path of a run with such cells")
    out = writable_folder(out, "--out")
    written: list[Path] = []
    start = datetime.now()
    for n, (model, rounds) in enumerate(sorted(by_model(chosen).items())):
        for i, cells in enumerate(rounds):  # one file per revision, and per protocol where a task has several
            date = start + timedelta(microseconds=100 * n + i)
            written += write_file(model, cells, store, out, date)
    return written


def best_cells(records: list[dict]) -> list[list[dict]]:
    """The records of each exported score: per (model, revision, task, protocol) the configuration
    with the best mean headline score over seeds (the report's choice), its seeds' records. On a
    test split nothing is chosen (as in the report): each configuration is a score of its own."""
    configs: dict[tuple, dict[str, list[dict]]] = {}
    for r in records:
        choice = r.get("config_key") if is_test_split(r.get("split")) else r.get("protocol_key") or r.get("config_key")
        key = (r["model"], r.get("revision") or "", r["task"], choice)
        configs.setdefault(key, {}).setdefault(r.get("config_key") or r["cell_key"], []).append(r)
    cells = []
    for options in configs.values():
        def mean(rs):
            return sum(float(x["metrics"].get(x["headline_metric"], float("-inf"))) for x in rs) / len(rs)
        cells.append(sorted(max(options.values(), key=mean), key=lambda x: x.get("seed") or 0))
    return cells


def by_model(records: list[dict]) -> dict[str, list[list[list[dict]]]]:
    """model id -> files, each a list of cells with one cell per task: a file per revision, and a
    further one wherever a task of that revision has scores under several protocols."""
    out: dict[str, dict[str, list[dict[str, list[dict]]]]] = {}
    for cell in best_cells(records):
        first = cell[0]
        rounds = out.setdefault(first["model"], {}).setdefault(str(first.get("revision") or ""), [])
        slot = next((r for r in rounds if first["task"] not in r), None)
        if slot is None:
            slot = {}
            rounds.append(slot)
        slot[first["task"]] = cell
    return {model: [list(r.values()) for rev in sorted(revs) for r in revs[rev]] for model, revs in out.items()}


def write_file(model: str, cells: list[list[dict]], store, out: Path, date: datetime) -> list[Path]:
    from lm_eval.utils import hash_string, sanitize_model_name

    date_id = date.isoformat(timespec="microseconds").replace(":", "-")
    folder = out / sanitize_model_name(model)
    body = {key: {} for key in ("results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
                                "n-samples", "task_hashes")}
    written = []
    for cell in cells:
        task = cell[0]["task"]
        rows = [row for r in cell for row in lm_eval_rows(r, store.read_samples(r))]
        body["results"][task] = task_result(cell, store if rows else None)
        body["configs"][task] = task_config(cell)
        lm = cell[0].get("lm_eval") or {}
        body["versions"][task] = lm.get("task_version", (cell[0].get("protocol") or {}).get("version"))
        body["n-shot"][task] = lm.get("num_fewshot") or 0
        body["higher_is_better"][task] = lm.get("higher_is_better") or {m: True for m in scores(cell)}
        n = int(cell[0].get("n_examples") or 0)
        body["n-samples"][task] = {"original": n, "effective": n}
        if rows:
            if all("doc_hash" in s for s in rows):
                body["task_hashes"][task] = hash_string("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"]
                                                                for s in rows))
            path = folder / f"samples_{task}_{date_id}.jsonl"
            atomic_write_text(path, "".join(json.dumps(s, ensure_ascii=False, default=str) + "\n" for s in rows))
            written.append(path)
    body.update(run_config(model, cells, date))
    path = folder / f"results_{date_id}.json"
    atomic_write_text(path, json.dumps(body, indent=2, ensure_ascii=False, default=str))
    return [path, *written]


def scores(cell: list[dict]) -> list[str]:
    return [m for m in cell[0]["metrics"] if not m.endswith("_stderr")]


def task_result(cell: list[dict], store) -> dict:
    """lm-eval's per-task entry: ``"<metric>,<filter>"`` (mean over seeds) and its stderr: lm-eval's
    own for a single generative record, else the harness's bootstrap (``"N/A"`` without samples)."""
    task = cell[0]["task"]
    entry: dict = {"name": task, "alias": task, "sample_len": int(cell[0].get("n_examples") or 0)}
    for metric in scores(cell):
        values = [float(r["metrics"][metric]) for r in cell if metric in r["metrics"]]
        entry[f"{metric},{FILTER}"] = sum(values) / len(values)
        own = cell[0]["metrics"].get(f"{metric}_stderr")
        if len(cell) == 1 and own is not None:
            entry[f"{metric}_stderr,{FILTER}"] = float(own)
        else:
            entry[f"{metric}_stderr,{FILTER}"] = bootstrap_stderr(cell, metric, store)
    return entry


def bootstrap_stderr(cell: list[dict], metric: str, store) -> float | str:
    from harness.report.significance import bootstrap_stderr as stderr
    from harness.report.significance import outputs_of

    if not store:
        return "N/A"
    outputs = outputs_of([{**r, "headline_metric": metric} for r in cell], read=store.read_samples)
    return "N/A" if outputs is None or len(outputs.ids) < 2 else stderr(outputs, N_BOOT, seed=0)


def output_type(cell: list[dict]) -> str:
    """lm-eval's output_type of a generative record, from its metrics; the harness's kind otherwise."""
    adapter, metrics = cell[0]["adapter"], set(cell[0]["metrics"])
    if adapter != "lm_eval":
        return f"{PRODUCER}:{adapter}"
    if "word_perplexity" in metrics:
        return "loglikelihood_rolling"
    if "perplexity" in metrics:
        return "loglikelihood"
    if "exact_match" in metrics:
        return "generate_until"
    return "multiple_choice"


def task_config(cell: list[dict]) -> dict:
    """The task's ``configs`` entry: what the record knows of the task (lm-eval's YAML for
    generative tasks is not kept in records), and the records themselves in ``metadata``."""
    first = cell[0]
    lm = first.get("lm_eval") or {}
    split_key = "test_split" if "test" in str(first.get("split") or "") else "validation_split"
    config = {"task": first["task"], "output_type": output_type(cell), split_key: first.get("split"),
              "num_fewshot": lm.get("num_fewshot") or 0,
              "metric_list": [{"metric": m, "aggregation": aggregation(first["adapter"], m, first["headline_metric"]),
                               "higher_is_better": True} for m in scores(cell)],
              "metadata": {"version": lm.get("task_version"), "producer": PRODUCER,
                           "ettin_eval": {"records": [{k: v for k, v in r.items() if k not in ("samples", "results_dir")}
                                                      for r in cell]}}}
    if (first.get("dataset") or {}).get("id"):
        config["dataset_path"] = first["dataset"]["id"]
    if lm.get("data_files"):
        config["dataset_kwargs"] = {"data_files": lm["data_files"]}
    return config


def run_config(model: str, cells: list[list[dict]], date: datetime) -> dict:
    """The run-level keys: ``config`` (model, model_args, revision, dtype, batch size, seeds, the
    harness as producer), ``git_hash``, library versions and ``date``."""
    from lm_eval.utils import sanitize_model_name

    records = [r for cell in cells for r in cell]
    first = records[0]
    protocol = first.get("protocol") or {}
    versions = first.get("versions") or {}
    seeds = sorted({int(r.get("seed") or 0) for r in records})
    batch = sorted({r["hyperparameters"]["batch_size"] for r in records if "batch_size" in (r.get("hyperparameters") or {})})
    args = {"pretrained": model, "revision": first.get("revision"), "dtype": protocol.get("dtype")}
    config = {"model": f"{PRODUCER}-{first.get('architecture')}", "model_args": {k: v for k, v in args.items() if v},
              "model_num_parameters": first.get("parameters"), "model_dtype": protocol.get("dtype"),
              "model_revision": first.get("revision") or "main", "model_sha": first.get("loaded_commit") or "",
              "batch_size": batch[0] if len(batch) == 1 else (batch or "token budget"), "batch_sizes": batch,
              "device": first.get("device"), "limit": first.get("limit"), "bootstrap_iters": N_BOOT,
              "random_seed": seeds[0], "seeds": seeds, "producer": PRODUCER,
              "architecture": first.get("architecture"),
              "protocols": sorted({str((r.get("protocol") or {}).get("label")) for r in records}),
              "versions": versions}
    return {"config": config, "git_hash": git_hash(), "date": date.timestamp(),
            "lm_eval_version": versions.get("lm_eval"), "transformers_version": versions.get("transformers"),
            "ettin_eval_version": versions.get("harness"), "model_source": config["model"], "model_name": model,
            "model_name_sanitized": sanitize_model_name(model),
            "total_evaluation_time_seconds": str(sum(float(r.get("wall_time_s") or 0) for r in records))}


def git_hash() -> str | None:
    """The harness checkout's commit, as lm-eval records its own (None outside a git checkout)."""
    package = Path(__file__).resolve().parents[1]
    try:  # only the harness's own checkout: an installed copy may sit inside someone else's repository
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=package, capture_output=True, text=True,
                             timeout=10)
        if top.returncode != 0 or (Path(top.stdout.strip()) / "harness").resolve() != package:
            return None
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=package, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def lm_eval_rows(record: dict, rows: list[dict]) -> list[dict]:
    """A record's samples as lm-eval's samples file holds them. Generative rows are lm-eval's own
    (sanitised as its tracker writes them); a GLUE or retrieval row becomes one with the metric's
    per-example value (a mean metric's 0/1 or score, else lm-eval's ``[gold, pred]`` pair) and keeps
    the harness's row under ``ettin_eval``."""
    if record["adapter"] == "lm_eval":
        return [lm_eval_row(row, record) for row in rows]
    metrics = [m for m in record["metrics"] if not m.endswith("_stderr")]
    out = []
    for i, row in enumerate(rows):
        if record["adapter"] == "classification":
            if row.get("split", record.get("split")) != record.get("split"):
                continue
            values = {m: float(row["pred"] == row["label"]) if m in MEAN_METRICS else [row["label"], row["pred"]]
                      for m in metrics}
            doc_id, doc, target, resp = row.get("idx", i), {"input": row.get("input")}, row.get("label"), row.get("pred")
        elif record["adapter"] == "bias":  # a Winogender sentence: the gender the model preferred
            values = {m: bias_value(m, row, record) for m in metrics}
            doc_id, doc, target = i, {"sentid": row.get("sentid"), "input": row.get("input")}, row.get("gender")
            resp = row.get("pred")
        else:
            values = {m: row[m] for m in metrics if m in row}
            doc_id, doc, target = i, {"query_id": row.get("query_id"), "input": row.get("input")}, row.get("relevant")
            resp = [hit.get("id") for hit in row.get("top") or []]
        out.append({"doc_id": doc_id, "doc": doc, "target": str(target),
                    "arguments": {"gen_args_0": {"arg_0": str(row.get("input") or ""), "arg_1": ""}},
                    "resps": [[str(resp)]], "filtered_resps": [str(resp)], "filter": FILTER, "metrics": metrics,
                    **values, "seed": record.get("seed"), "ettin_eval": row})
    return out


def bias_value(metric: str, row: dict, record: dict):
    """A bias metric's per-sentence value: the sentence's own (preference), 0/1 for a predicted
    gender, the dataset's constant for a baseline, and a ``[gender, preference]`` pair for a
    per-gender preference (its aggregation keeps the sentences of that gender)."""
    if metric in row:
        return row[metric]
    if metric.startswith("predicted_"):
        return float(row.get("pred") == metric.removeprefix("predicted_"))
    if metric.startswith("baseline_"):
        return record["metrics"][metric]
    return [row.get("gender"), row.get(record["headline_metric"])]


def aggregation(adapter: str, metric: str, headline: str) -> str:
    """lm-eval's ``aggregation`` of an exported metric: the mean, or the harness's own where a
    metric is not a mean over all examples (F1, MCC, correlations; a per-gender preference)."""
    if adapter == "classification":
        return "mean" if metric in MEAN_METRICS else metric
    if adapter == "bias" and metric.startswith(headline + "_"):
        return f"{PRODUCER}:mean_where_gender_is_{metric.removeprefix(headline + '_')}"
    return "mean"


def lm_eval_row(row: dict, record: dict) -> dict:
    from lm_eval.utils import sanitize_list

    row = dict(row)
    args = row.get("arguments")
    if isinstance(args, list):
        row["arguments"] = {f"gen_args_{i}": {f"arg_{j}": a for j, a in enumerate(arg)} for i, arg in enumerate(args)}
    for key in ("resps", "filtered_resps"):
        if key in row:
            row[key] = sanitize_list(row[key])
    row["target"] = str(row.get("target"))
    row["seed"] = record.get("seed")
    return row
