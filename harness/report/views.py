"""The results page's content per protocol: the encoder-vs-decoder comparison, the leaderboard, the
figures and the drill-down pairs, as plain dicts for the template. Records of different protocols
are never pooled: where a model and task ran under several protocols, each protocol label gets a
view of its own, built from its records only."""

from __future__ import annotations

import pandas as pd

from harness.report import drilldown, plots
from harness.report.build import Report
from harness.report.facts import DASH, architectures_note, blank, human_params, missing_sides, num, protocol_series
from harness.report.frame import (
    GEN_AVG,
    GLUE_AVG,
    RET_AVG,
    average_notes,
    best_scores,
    comparison_table,
    display,
    follows_paper,
    task_order,
)
from harness.report.leaderboard import TEXT_COLUMNS, leaderboard_frame
from harness.report.reference import load_reference, versus_published
from harness.report.significance import significance_table
from harness.report.tables import DAGGER
from harness.report.trajectory import crossings, final_rows, trajectory_frame, uses_tokens
from harness.report.trajectory_plot import tokens_label, curves_figure, gap_heatmap_figure

AVERAGE_TASK = {GLUE_AVG: "glue_avg", GEN_AVG: "gen_avg", RET_AVG: "ret_avg"}
BOARD_LABELS = {"model_name": "model", "glue_avg": "GLUE avg", "gen_avg": "Gen avg", "ret_avg": "Ret avg",
                "harness_version": "harness"}


def protocol_views(report: Report, n_boot: int = 1000) -> list[tuple[str | None, Report]]:
    """(protocol label, report of its records only) per label where some model and task were run
    under several protocols; else one view of everything (label None unless there is just one)."""
    labels = protocol_series(report.frame)
    if labels is None or labels.nunique() <= 1:
        return [(None if labels is None else labels.iloc[0], report)]
    frame = report.frame.assign(_label=labels.to_numpy(), _rev=report.frame["revision"].fillna("").astype(str))
    if not (frame.groupby(["model", "_rev", "task"])["_label"].nunique() > 1).any():
        return [(None, report)]  # protocols of different tasks (fine-tuning vs scoring): nothing to keep apart
    views = []
    for label in sorted(labels.unique()):
        sub = report.frame[(labels == label).to_numpy()].reset_index(drop=True)
        best = best_scores(sub)
        sig = significance_table(sub, best, n_boot=n_boot) if report.significance is not None and n_boot else None
        notes = average_notes(best)
        if sig is not None and sig["p_value"].notna().any():
            notes.append(f"{DAGGER} gap not significant (paired bootstrap, {n_boot} resamples, 95%)")
        views.append((label, Report(sub, best, comparison_table(best), versus_published(best, load_reference()), sig,
                                    notes)))
    return views


def _ci(lo, hi) -> str:
    return DASH if blank(lo) or blank(hi) else f"[{lo:.1f}, {hi:.1f}]"


def _p(p) -> str:
    return DASH if blank(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _hyper(hp) -> str:
    if not isinstance(hp, dict):
        return ""
    shown = {k: v for k, v in hp.items() if v is not None and k not in ("init_from", "warm_start_from")}
    return ", ".join(f"{k} {v}" for k, v in sorted(shown.items()))


def _config_note(best: pd.DataFrame, frame: pd.DataFrame) -> dict:
    """(row, task, architecture) -> 'model: best of N configurations (lr 3e-05, ...), K seeds, std S'."""
    counts = frame.groupby(["model", "task"])["config"].nunique().to_dict()
    hyper = {} if "hyperparameters" not in frame else {
        (m, t, c): h for m, t, c, h in zip(frame["model"], frame["task"], frame["config"], frame["hyperparameters"])}
    notes = {}
    for r in best.to_dict("records"):
        n = counts.get((r["model"], r["task"]), 1)
        hp = _hyper(hyper.get((r["model"], r["task"], r["config"])))
        notes[(r["row"], r["task"], r["architecture"])] = (
            f"{r['model_name']}: best of {n} configuration{'s' if n != 1 else ''}" + (f" ({hp})" if hp else "")
            + f", {int(r['n_seeds'])} seed{'s' if r['n_seeds'] != 1 else ''}, std {100 * r['std']:.2f}")
    return notes


def comparison(report: Report, drill: dict) -> list[dict]:
    """Per comparison row (size): per task group, one line per task and average with both scores,
    their intervals, the gap and its paired test, and the published numbers with the deltas."""
    table = report.table
    if table.empty:
        return []
    sig = {} if report.significance is None else {(r["row"], r["task"]): r
                                                    for r in report.significance.to_dict("records")}
    paper = {(r["row"], r["architecture"], r["task"]): r for r in report.vs_paper.to_dict("records")}
    notes = _config_note(report.best, report.frame)
    names = {(r["row"], r["architecture"]): r["model_name"] for r in report.best.to_dict("records")}
    protocols = _group_protocols(report)
    sections = []
    for row in table.index:
        groups = []
        for title, tasks in report.groups.items():
            lines = [_line(table, row, t, sig.get((row, t), {}), paper, notes, drill) for t in tasks]
            if any(not blank(table.at[row, (t, a)]) for t in tasks for a in ("encoder", "decoder")):
                groups.append({"title": title, "lines": lines, "protocol": protocols.get((row, title), "")})
        sections.append({"row": row, "encoder": names.get((row, "encoder"), DASH),
                         "decoder": names.get((row, "decoder"), DASH), "groups": groups})
    return sections


def _group_protocols(report: Report) -> dict:
    """(row, group title) -> the protocol label(s) of its scores, e.g. 'paper'."""
    if "protocol" not in report.best:
        return {}
    title_of = {t: title for title, tasks in report.groups.items() for t in tasks}
    found: dict = {}
    for row, task, label in zip(report.best["row"], report.best["task"], report.best["protocol"]):
        if not blank(label) and task in title_of:
            found.setdefault((row, title_of[task]), set()).add(str(label))
    return {k: "; ".join(sorted(v)) for k, v in found.items()}


def _line(table, row, task, s: dict, paper: dict, notes: dict, drill: dict) -> dict:
    enc, dec, gap = (table.at[row, (task, part)] for part in ("encoder", "decoder", "gap"))
    ref_task = AVERAGE_TASK.get(task, task)
    line = {"task": task, "name": display(task), "average": task in AVERAGE_TASK,
            "enc": num(enc), "dec": num(dec), "gap": num(gap, signed=True),
            "enc_ci": _ci(s.get("encoder_lo"), s.get("encoder_hi")),
            "dec_ci": _ci(s.get("decoder_lo"), s.get("decoder_hi")),
            "gap_ci": _ci(s.get("gap_lo"), s.get("gap_hi")), "p": _p(s.get("p_value")),
            "significant": None if blank(s.get("p_value")) else bool(s.get("significant")),
            "enc_title": notes.get((row, task, "encoder"), "no encoder result" if blank(enc) else ""),
            "dec_title": notes.get((row, task, "decoder"), "no decoder result" if blank(dec) else ""),
            "drill": drill.get((row, task))}
    line["off_protocol"] = ""
    for arch, key in (("encoder", "enc"), ("decoder", "dec")):
        ref = paper.get((row, arch, ref_task))
        line[f"paper_{key}"] = DASH if ref is None else num(ref["published"]) + ("~" if ref["approximate"] else "")
        line[f"delta_{key}"] = DASH if ref is None else num(ref["delta"], signed=True)
        protocol = None if ref is None else ref.get("protocol")
        if not blank(protocol) and not follows_paper(protocol):  # measured another way: no delta against the paper
            line[f"delta_{key}"] = "n/c"
            line["off_protocol"] = f"measured under protocol '{protocol}', not the paper's: not comparable"
    return line


def leaderboard(report: Report) -> dict:
    """Columns (key, label, numeric) and rows (cells with display text and sort value, filter keys)."""
    board = leaderboard_frame(report.frame, report.best)
    scores = [c for c in board.columns if c not in TEXT_COLUMNS and c not in ("parameters", "seeds")]
    keep = [c for c in ("model_name", "architecture", "size", "parameters", "revision", "seeds") if c in board]
    keep += [c for c in scores if board[c].notna().any()] + ["date", "harness_version"]
    if not (board["revision"] != "").any():
        keep.remove("revision")
    if "protocol" in board and board["protocol"].nunique() > 1:
        keep.insert(keep.index("seeds"), "protocol")
    columns = [{"key": c, "label": BOARD_LABELS.get(c, display(c)), "numeric": c not in TEXT_COLUMNS} for c in keep]
    rows = []
    for r in board.to_dict("records"):
        cells = []
        for c in keep:
            v = r[c]
            if c == "parameters":
                text = human_params(v)
            elif c == "seeds":
                text = DASH if blank(v) else str(int(v))
            elif c in TEXT_COLUMNS:
                text = v or DASH
            else:
                text = num(v)
            cells.append({"text": text, "value": "" if blank(v) else str(v)})
        rows.append({"cells": cells, "architecture": r["architecture"], "size": r["size"] or "other"})
    return {"columns": columns, "rows": rows,
            "architectures": sorted({r["architecture"] for r in rows}),
            "sizes": list(dict.fromkeys(r["size"] for r in rows))}


def figures(report: Report, prefix: str) -> list[dict]:
    """The figures as inline SVG (the same drawings as the PNG/PDF files): scaling, Figure 1, the gap
    heatmap, and the bias picture where bias results exist."""
    out = [("scaling", "Scaling: score against parameters, per task and average",
            lambda: plots.scaling_figure(report.best)),
           ("figure1", "The paper's Figure 1 view: MNLI, MS MARCO retrieval and the generative average against "
                       "parameters, four families",
            lambda: plots.figure1_figure(report.best, load_reference())),
           ("gap", "Gap heatmap: encoder - decoder per size and task",
            lambda: plots.gap_heatmap_figure(report.table, report.significance))]
    from harness.report.bias_plot import occupation_figure, occupation_points

    bias = occupation_figure(occupation_points(report.frame, report.best))
    if bias is not None:
        out.append(("bias", "Bias: per occupation, gotcha sentences resolved female against the occupation's BLS "
                            "share of women", lambda: bias))
    return [{"key": key, "title": title, "svg": plots.svg_text(make(), f"{prefix}-{key}")} for key, title, make in out]


def _axis_text(c: dict) -> str:
    return f"{tokens_label(c['x'])} tokens" if not blank(c["tokens_seen"]) else f"order {c['x']:.1f}"


def trajectories(report: Report, prefix: str, anchors: dict) -> list[dict]:
    """Per trajectory (a pair's checkpoints): its curves and gap heatmap as inline SVG, the gap's
    sign changes with their uncertainty, and a link to the comparison of its last checkpoint."""
    traj = trajectory_frame(report)
    out = []
    for i, pair in enumerate(dict.fromkeys(traj["pair"])):
        part = traj[traj["pair"] == pair]
        final = final_rows(part)[pair]
        cross = [{"task": display(c["task"]), "between": f"{c['before']} and {c['after']}", "at": _axis_text(c),
                  "band": f"{_axis_text({**c, 'x': c['band_from']})} to {_axis_text({**c, 'x': c['band_to']})}",
                  "change": f"{c['from_leader']} ahead, then {c['to_leader']}", "certain": c["certain"]}
                 for c in crossings(part).to_dict("records")]
        key = f"{prefix}-traj{i}"
        out.append({"pair": pair, "id": key, "checkpoints": int(part["revision"].nunique()),
                    "axis": "tokens seen" if uses_tokens(part) else "training order (tokens seen unknown)",
                    "final": final, "final_anchor": anchors.get(final), "crossings": cross,
                    "figures": [{"key": "curves", "svg": plots.svg_text(curves_figure(traj, pair), f"{key}-curves"),
                                 "title": f"{pair}: score against {'tokens seen' if uses_tokens(part) else 'order'}"},
                                {"key": "gap", "svg": plots.svg_text(gap_heatmap_figure(traj, pair), f"{key}-gap"),
                                 "title": f"{pair}: gap over training (tasks x checkpoints)"}]})
    return out


def build_view(report: Report, index: int, label: str | None, cap: int) -> dict:
    """Everything one protocol's section of the page shows."""
    prefix = f"v{index}"
    order = [(row, task) for row in report.table.index for _, task in task_order(report.best)] \
        if not report.table.empty else []
    pairs = drilldown.pairs(report.frame, report.best, order, cap)
    for i, pair in enumerate(pairs):
        pair["id"] = f"{prefix}-d{i}"
    drill = {(p["row"], p["task"]): p["id"] for p in pairs if not p["missing"]}
    sections = comparison(report, drill)
    for i, section in enumerate(sections):
        section["anchor"] = f"{prefix}-row{i}"
    return {"index": index, "prefix": prefix, "label": label, "comparison": sections,
            "trajectories": trajectories(report, prefix, {s["row"]: s["anchor"] for s in sections}),
            "leaderboard": leaderboard(report), "figures": figures(report, prefix), "pairs": pairs,
            "notes": list(report.notes), "missing": missing_sides(report.table, report.groups),
            "arch_note": architectures_note(report.best)}
