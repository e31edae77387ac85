"""Size and load time of the results page for a results folder the size of the paper's sweep (a
script, not a timed test).

Builds a synthetic results folder: 12 models (Ettin encoders and decoders, 6 sizes), 20 tasks (the
9 GLUE tasks fine-tuned over the 160 configurations of ``--grid paper`` x ``--seeds`` seeds; the 10
generative tasks of Table 4 and ARC-Easy scored once), with per-example outputs (inputs,
predictions, probabilities; lm-eval's logged samples) for every seed of each model's best
configuration, at the real dev-set sizes (QQP 40,430 rows, MNLI 9,815 + 9,832, ...). Encoder and
decoder answers are correlated through a shared per-example difficulty, so they disagree on
10-30% of examples as real pairs do. Then it runs ``write_report`` (as ``ettin-eval report --out``)
and opens ``index.html`` in headless Chromium ``--loads`` times, reporting the page size, the
Navigation Timing marks (DOMContentLoaded, load), first contentful paint, and the time to open
the drill-down pair with the largest data block and to search it.

    python benchmarks/report_page.py [--out /tmp/ettin-sweep] [--seeds 3] [--configs 160] [--bootstrap 1000]

Record files are written directly (one JSON file each, no fsync): this measures the page, not the store.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the browser helper the page tests use

from harness.metrics import matthews_correlation, spearman  # noqa: E402
from harness.models import PARAMETERS  # noqa: E402
from harness.results import SCHEMA_VERSION, ResultStore  # noqa: E402

SIZES = ("17m", "32m", "68m", "150m", "400m", "1b")
GLUE = {"cola": 1043, "sst2": 872, "mrpc": 408, "stsb": 1500, "qqp": 40430, "mnli": 9815, "qnli": 5463,
        "rte": 277, "wnli": 71}
SPLITS = {"mnli": "validation_matched"}
LABELS = {"mnli": 3, "stsb": 0}
HEADLINE = {"cola": "matthews_correlation", "stsb": "spearmanr"}
GEN = {"arc_challenge": (1172, "acc_norm"), "hellaswag": (10042, "acc_norm"), "lambada_openai": (5153, "acc"),
       "openbookqa": (500, "acc_norm"), "piqa": (1838, "acc_norm"), "sciq": (1000, "acc_norm"),
       "social_iqa": (1954, "acc"), "triviaqa": (17944, "exact_match"), "winogrande": (1267, "acc"),
       "wsc273": (273, "acc"), "arc_easy": (2376, "acc_norm")}
WORDS = ("the model reads a sentence about a cat that sat on a mat while the rain fell over the quiet town "
         "and a premise with a hypothesis that may or may not follow from it").split()


def text(rng, n_words: int) -> str:
    return " ".join(rng.choice(WORDS, n_words))


def skill(size: str, arch: str, task: str) -> float:
    base = 0.55 + 0.05 * SIZES.index(size)
    return min(0.95, base + (0.04 if (arch == "encoder") == (task in GLUE) else -0.02))


def record(size: str, arch: str, task: str, group: str, config: int, seed: int, metric: str, score: float,
           n: int, samples: str | None) -> dict:
    name = f"ettin-{arch}-{size}"
    hp = {"lr": [1e-5, 3e-5, 5e-5, 8e-5, 1e-4][config % 5], "weight_decay": [1e-6, 5e-6, 8e-6, 1e-5][config // 5 % 4],
          "batch_size": [16, 32][config // 20 % 2], "epochs": [1, 2, 3, 4][config // 40 % 4]} if group == "glue" else {}
    key = f"{name}__{task}__c{config}__s{seed}"
    return {"schema_version": SCHEMA_VERSION, "cell_key": key, "config_key": f"{name}__{task}__c{config}",
            "protocol_key": f"paper-{group}", "protocol": {"label": "paper", "grid": "paper"}, "status": "ok",
            "model": f"jhu-clsp/{name}", "model_name": name, "revision": None, "architecture": arch, "size": size,
            "variant": arch, "family": "ettin", "pair": size, "parameters": PARAMETERS[size], "task": task,
            "task_group": group, "adapter": "classification" if group == "glue" else "lm_eval",
            "split": SPLITS.get(task, "validation" if group == "glue" else "test"), "metrics": {metric: score},
            "headline_metric": metric, "n_examples": n, "seed": seed, "hyperparameters": hp, "limit": None,
            "data_dir": None, "wall_time_s": 60.0, "tokens_processed": 10**8, "samples": samples, "error": None,
            "versions": {"harness": "0.1.0", "transformers": "5.24.0", "torch": "2.13.0", "lm_eval": "0.4.13"},
            "timestamp": "2025-07-01T12:00:00+00:00"}


def glue_samples(rng, task: str, right: np.ndarray, labels: np.ndarray) -> tuple[list[dict], float]:
    rows, preds = [], []
    k = LABELS.get(task, 2)
    for i, (ok, label) in enumerate(zip(right, labels)):
        if k == 0:  # STS-B: a score near the gold one when "right"
            pred = float(np.clip(label + rng.normal(0, 0.4 if ok else 1.5), 0, 5))
            row = {"split": "validation", "idx": i, "pred": pred, "label": float(label), "score": pred}
        else:
            pred = int(label if ok else (label + 1 + rng.integers(0, k - 1)) % k)
            probs = np.full(k, 0.3 / (k - 1))
            probs[pred] = 0.7
            row = {"split": SPLITS.get(task, "validation"), "idx": i, "pred": pred, "label": int(label),
                   "probs": probs.round(3).tolist()}
        row["input"] = f"[CLS] {text(rng, 18)} [SEP] {text(rng, 12)} [SEP]"
        rows.append(row)
        preds.append(row["pred"])
    if task == "mnli":  # the mismatched split is kept too, as a run keeps it
        rows += [{**r, "split": "validation_mismatched"} for r in rows[:len(rows)]]
    preds, labels = np.asarray(preds), np.asarray(labels)
    metric = {"cola": matthews_correlation, "stsb": spearman}.get(task)
    return rows, float(metric(preds, labels) if metric else (preds == labels).mean())


def gen_samples(rng, task: str, right: np.ndarray, metric: str) -> list[dict]:
    rows = []
    for d, ok in enumerate(right):
        question = text(rng, 14)
        if task == "triviaqa":
            answer = text(rng, 2)
            rows.append({"doc_id": d, "doc": {"question": question}, "target": [answer],
                         "arguments": [[f"Question: {question}?\nAnswer:", {"until": ["\n"]}]],
                         "filtered_resps": [answer if ok else text(rng, 2)], "exact_match": float(ok)})
            continue
        choices = [text(rng, 4) for _ in range(4)]
        target = int(rng.integers(0, 4))
        lls = rng.normal(-12, 2, 4)
        lls[target if ok else (target + 1) % 4] = -4.0
        rows.append({"doc_id": d, "doc": {"question": question}, "target": target,
                     "arguments": [[f"Question: {question}?\nAnswer:", f" {c}"] for c in choices],
                     "filtered_resps": [[float(v), False] for v in lls], metric: float(ok), "acc": float(ok)})
    return rows


def build(root: Path, seeds: int, configs: int) -> dict:
    """Write the synthetic sweep into ``root``; returns counts."""
    store = ResultStore(root)
    store.records_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n_records = n_samples = 0
    tasks = [(t, "glue", n, HEADLINE.get(t, "accuracy")) for t, n in GLUE.items()]
    tasks += [(t, "generative", n, m) for t, (n, m) in GEN.items()]
    for task, group, n, metric in tasks:
        difficulty = rng.random(n)  # shared by every model: encoder and decoder err on the same hard examples
        labels = rng.uniform(0, 5, n).round(1) if task == "stsb" else rng.integers(0, LABELS.get(task, 2), n)
        for size in SIZES:
            for arch in ("encoder", "decoder"):
                p = skill(size, arch, task)
                for seed in range(seeds if group == "glue" else 1):
                    right = difficulty + rng.normal(0, 0.15, n) < p
                    if group == "glue":
                        rows, best = glue_samples(rng, task, right, labels)
                    else:
                        rows, best = gen_samples(rng, task, right, metric), float(right.mean())
                    key = f"ettin-{arch}-{size}__{task}__c0__s{seed}"
                    rel = store.write_samples(key, rows)
                    n_samples += len(rows)
                    for config in range(configs if group == "glue" else 1):
                        score = best if config == 0 else best - 0.002 - 0.05 * rng.random()
                        rec = record(size, arch, task, group, config, seed, metric, score, n,
                                     rel if config == 0 else None)
                        (store.records_dir / f"{rec['cell_key']}.json").write_text(json.dumps(rec))
                        n_records += 1
    return {"records": n_records, "sample_rows": n_samples}


def measure(index: str, loads: int) -> dict:
    from browser import Page, chromium

    marks = []
    with chromium() as context:
        for _ in range(loads):
            page = Page(context, index)
            t = page.page.evaluate("""() => {
                const nav = performance.getEntriesByType('navigation')[0];
                const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                return {dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
                        fcp: fcp ? fcp.startTime : null, nodes: document.getElementsByTagName('*').length};
            }""")
            biggest = page.page.evaluate("""() => {
                const ids = Array.from(document.querySelectorAll('script[type="application/json"]'))
                    .map(s => [s.id.slice(5), s.textContent.length]).sort((a, b) => b[1] - a[1]);
                const t0 = performance.now();
                window.ettinReport.openPair(ids[0][0]);
                const t1 = performance.now();
                const box = document.querySelector('.drill-panel:not([hidden]) input.search');
                box.value = 'cat'; box.dispatchEvent(new Event('input'));
                const t2 = performance.now();
                return {pair: ids[0][0], open_ms: t1 - t0, search_ms: t2 - t1,
                        rows: document.querySelectorAll('.drill-panel:not([hidden]) table.examples tbody tr').length};
            }""")
            assert not page.errors, page.errors
            marks.append({**t, **biggest})
            page.close()
    return {k: statistics.median(m[k] for m in marks) if isinstance(marks[0][k], (int, float)) else marks[0][k]
            for k in marks[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/ettin-sweep")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--configs", type=int, default=160)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="keep an existing synthetic folder")
    args = parser.parse_args()
    root = Path(args.out) / "results"
    if not (args.reuse and root.exists()):
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        t = time.perf_counter()
        counts = build(root, args.seeds, args.configs)
        print(f"built {counts['records']:,} records, {counts['sample_rows']:,} sample rows "
              f"in {time.perf_counter() - t:.0f} s")
    from harness.report import build_report, write_report
    from harness.report.html import write_index

    t = time.perf_counter()
    report = build_report([root], n_boot=args.bootstrap)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    paths = write_report([root], Path(args.out) / "report", report=report)
    t_write = time.perf_counter() - t
    t = time.perf_counter()
    write_index(report, Path(args.out) / "page-only", roots=[root])
    t_page = time.perf_counter() - t
    index = paths["index.html"]
    size = os.path.getsize(index)
    print(f"build_report (load records, best configs, bootstrap {args.bootstrap}): {t_build:.1f} s; "
          f"write_report (tables, plots, index.html): {t_write:.1f} s; index.html again on its own "
          f"(write_index): {t_page:.1f} s")
    print(f"index.html: {size / 2**20:.2f} MiB ({index})")
    m = measure(index, args.loads)
    print(f"Chromium, median of {args.loads} loads: DOMContentLoaded {m['dcl']:.0f} ms, load {m['load']:.0f} ms, "
          f"first contentful paint {m['fcp']:.0f} ms, {m['nodes']:,} DOM elements")
    print(f"drill-down pair with the largest data block ({m['pair']}): open {m['open_ms']:.0f} ms "
          f"({m['rows']} rows shown after search), search {m['search_ms']:.0f} ms")


if __name__ == "__main__":
    main()
