"""What the results page says about its results as a whole: folders, models, tasks, the protocol of
the runs, library versions, and what is missing (failed cells, unreadable records, absent tasks or
architectures). Plain dicts and strings for the template; nothing here renders HTML."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from harness.report.frame import SIZE_ORDER, display, task_order
from harness.results import ResultStore

VERSION_KEYS = (("harness", "harness"), ("transformers", "transformers"), ("torch", "torch"),
                ("lm_eval", "lm-eval"), ("python", "python"))
PAPER_GRID = 160  # configurations per model and task of --grid paper
SCORING_KEYS = ("num_fewshot", "num_masks", "score_sep", "add_bos_token")
DASH = "–"


def blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value == ""


def num(value, digits: int = 1, signed: bool = False) -> str:
    if blank(value):
        return DASH
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def human_params(n) -> str:
    if blank(n):
        return DASH
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))


def loaded_as(frame: pd.DataFrame | None) -> dict[tuple[str, str], str]:
    """(model, revision) -> the ids that loaded instead of the asked one (a registry alias), with the
    hub commit behind each score where the records name one: '' when every record loaded the asked id."""
    if frame is None or "loaded_id" not in frame:
        return {}
    out = {}
    rev = frame["revision"].fillna("").astype(str)
    for (model, r), g in frame.assign(_rev=rev).groupby(["model", "_rev"], sort=False):
        other = sorted({str(i) for i in g["loaded_id"] if not blank(i) and str(i) != model})
        out[(model, r)] = ", ".join(other)
    return out


def commits(frame: pd.DataFrame | None) -> dict[tuple[str, str], str]:
    """(model, revision) -> the short hub commit(s) its records loaded ('' when none is known)."""
    if frame is None or "loaded_commit" not in frame:
        return {}
    rev = frame["revision"].fillna("").astype(str)
    return {(model, r): ", ".join(sorted({str(c)[:10] for c in g["loaded_commit"] if not blank(c)}))
            for (model, r), g in frame.assign(_rev=rev).groupby(["model", "_rev"], sort=False)}


def models(best: pd.DataFrame, frame: pd.DataFrame | None = None) -> list[dict]:
    """One entry per (model, revision), smallest first; ``frame`` (the records) adds the ids that
    loaded when they differ from the asked one, and the hub commits."""
    loaded, commit = loaded_as(frame), commits(frame)
    rank = {s: i for i, s in enumerate(SIZE_ORDER)}
    seen = best.assign(_rev=best["revision"].fillna("").astype(str)).drop_duplicates(["model", "_rev"])
    out = [{"name": r["model_name"] or r["model"], "id": r["model"], "architecture": r["architecture"],
            "size": r["size"] or DASH, "variant": r["variant"] or DASH, "revision": r["_rev"] or DASH,
            "parameters": human_params(r["parameters"]), "loaded": loaded.get((r["model"], r["_rev"]), ""),
            "commit": commit.get((r["model"], r["_rev"]), ""),
            "parameters_exact": "" if blank(r["parameters"]) else f"{int(r['parameters']):,}",
            "_key": (rank.get(r["size"], 99), r["parameters"] if not blank(r["parameters"]) else 0, r["architecture"])}
           for r in seen.to_dict("records")]
    out.sort(key=lambda m: m["_key"])
    for m in out:
        del m["_key"]
    return out


def tasks(frame: pd.DataFrame, best: pd.DataFrame) -> list[dict]:
    """Each task with its group, headline metric, scored split and number of examples."""
    out = []
    for group, task in task_order(best):
        rows = frame[frame["task"] == task]
        out.append({"name": task, "display": display(task), "group": group,
                    "metric": ", ".join(sorted({str(m) for m in rows["headline_metric"].dropna()})) or DASH,
                    "split": ", ".join(sorted({str(s) for s in rows["split"].dropna()})) or DASH,
                    "examples": ", ".join(str(int(n)) for n in sorted(set(rows["n_examples"].dropna()))) or DASH})
    return out


def versions(frame: pd.DataFrame) -> list[dict]:
    """Library versions the records were computed with; several values for a library are flagged."""
    found: dict[str, set] = {}
    for v in frame.get("versions", pd.Series(dtype=object)):
        for key, value in (v.items() if isinstance(v, dict) else ()):
            found.setdefault(key, set()).add(str(value))
    return [{"name": label, "value": ", ".join(sorted(found[key])), "mixed": len(found[key]) > 1}
            for key, label in VERSION_KEYS if key in found]


def label_of(protocol) -> str | None:
    """A record's protocol label: the string itself, or the ``label`` of a protocol dict."""
    if isinstance(protocol, dict):
        protocol = protocol.get("label")
    return None if blank(protocol) else str(protocol)


NO_LABEL = "(no protocol label)"


def protocol_series(frame: pd.DataFrame) -> pd.Series | None:
    """Each record's protocol label (NO_LABEL where it has none); None when no record has one."""
    if "protocol" not in frame:
        return None
    labels = frame["protocol"].map(label_of)
    return None if labels.isna().all() else labels.fillna(NO_LABEL)


def protocol_labels(frame: pd.DataFrame) -> list[tuple[str, int]]:
    """(label, records) per protocol label the records carry; empty when none carries one."""
    labels = protocol_series(frame)
    if labels is None:
        return []
    return sorted(((k, int(v)) for k, v in labels.value_counts().items()), key=lambda kv: -kv[1])


def protocol_facts(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(what, value) read off the records: grid, seeds, limit, data, lm-eval scoring options."""
    facts = []
    cls = frame[frame["task_group"] != "generative"] if "task_group" in frame else frame
    if not cls.empty:
        per = cls.groupby(["model", "task"])["config"].nunique()
        lo, hi = int(per.min()), int(per.max())
        grid = f"{lo}" if lo == hi else f"{lo}-{hi}"
        kind = " (the paper grid)" if lo == hi == PAPER_GRID else ""
        plural = "" if hi == 1 else "s"
        facts.append(("fine-tuning grid", f"{grid} configuration{plural} per model and task{kind}"))
    seeds = sorted({str(s) for s in frame["seed"].dropna()}) if "seed" in frame else []
    if seeds:
        facts.append(("seeds", ", ".join(seeds[:10]) + (" ..." if len(seeds) > 10 else "")))
    limits = sorted({int(v) for v in frame.get("limit", pd.Series(dtype=object)) if not blank(v)})
    facts.append(("limit", ", ".join(f"first {v} rows per split" for v in limits) if limits else "none (full splits)"))
    dirs = sorted({str(v) for v in frame.get("data_dir", pd.Series(dtype=object)) if not blank(v)})
    facts.append(("data", "local: " + ", ".join(dirs) if dirs else "hub datasets (no --data-dir)"))
    gen = frame[frame.get("adapter", pd.Series(index=frame.index, dtype=object)) == "lm_eval"]
    for arch, g in gen.groupby("architecture"):
        opts: dict[str, set] = {}
        for hp in g["hyperparameters"]:
            for key in SCORING_KEYS:
                if isinstance(hp, dict) and key in hp:
                    opts.setdefault(key, set()).add(json.dumps(hp[key]))
        if opts:
            facts.append((f"{arch} scoring", "; ".join(f"{k} {', '.join(sorted(v))}" for k, v in opts.items())))
    return facts


def failed_and_unreadable(roots, finished=()) -> tuple[list[dict], list[str]]:
    """Failed cells (model, task, seed, error) and the record files the store could not read
    (truncated, foreign, another schema version) of the folders. ``finished``: (folder, cell key) of
    the records already read as finished, which are not read again."""
    failed, unreadable = [], []
    finished = set(finished)
    for root in roots:
        store = ResultStore(root)
        folder = Path(store.records_dir)
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            if (str(root), path.stem) in finished:
                continue
            record = store.get(path.stem)
            if record is None:
                unreadable.append(str(path))
            elif record.get("status") != "ok":
                error = str(record.get("error") or "no error recorded").strip().splitlines() or [""]
                failed.append({"model": record.get("model_name") or record.get("model"), "task": record.get("task"),
                               "seed": record.get("seed"), "folder": str(root), "error": error[-1][:300]})
    return failed, unreadable


def missing_sides(table: pd.DataFrame, groups: dict) -> list[str]:
    """Lines like '68m: no decoder result for MNLI, SST-2' for each row with one side missing."""
    lines = []
    if table.empty:
        return lines
    for row in table.index:
        for arch, other in (("encoder", "decoder"), ("decoder", "encoder")):
            gone = [display(t) for ts in groups.values() for t in ts
                    if not blank(table.at[row, (t, other)]) and blank(table.at[row, (t, arch)])
                    and not t.endswith("avg")]
            if gone:
                lines.append(f"{row}: no {arch} result for {', '.join(gone)}")
    return lines


def architectures_note(best: pd.DataFrame) -> str | None:
    archs = set(best["architecture"].dropna())
    if archs >= {"encoder", "decoder"}:
        return None
    only = ", ".join(sorted(archs)) or "no"
    other = "decoder" if "encoder" in archs else "encoder"
    return (f"Only {only} results in these folders: gaps, paired tests and the per-example drill-down need "
            f"an {other} of the same size too.")
