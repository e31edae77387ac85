"""Writes the results explorer: one self-contained ``index.html`` of a report, with all CSS, JS,
data and figures inline, that works from ``file://`` with no network.

The page is rendered with Jinja2 (templates/index.html.j2, autoescaped); tables are plain HTML, so
they show without any script. A small inline script (static/report.js, no library) sorts and
filters tables, switches protocol views and pages the drill-down, whose examples sit in one
``<script type="application/json">`` per pair and are parsed only when that pair is opened.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from harness.report import facts
from harness.report.build import N_BOOT, Report
from harness.report.drilldown import MAX_EXAMPLES
from harness.report.views import build_view, protocol_views

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _roots(report: Report, roots) -> list[str]:
    if roots:
        return [str(r) for r in (roots if isinstance(roots, (list, tuple)) else [roots])]
    return sorted({str(r) for r in report.frame.get("results_dir", []) if isinstance(r, str)})


def resamples(report: Report) -> int | None:
    """The bootstrap resamples behind the report's intervals, as its note states them; 0 when the
    report has no significance tests, None when it does not say."""
    if report.significance is None:
        return 0
    found = [re.search(r"(\d+) resamples", note) for note in report.notes]
    return next((int(m.group(1)) for m in found if m), None)


def page_context(report: Report, roots=None, n_boot: int | None = None, max_examples: int = MAX_EXAMPLES) -> dict:
    """Everything the template needs: the header facts, what is missing, and one view per protocol.
    ``n_boot``: the resamples of the report's tests (read off its notes when not given)."""
    roots = _roots(report, roots)
    n_boot = resamples(report) if n_boot is None else n_boot
    frame = report.frame
    finished = zip(frame["results_dir"], frame["cell_key"]) if {"results_dir", "cell_key"} <= set(frame) else ()
    failed, unreadable = facts.failed_and_unreadable(roots, finished)
    views = [build_view(r, i, label, max_examples)
             for i, (label, r) in enumerate(protocol_views(report, n_boot or N_BOOT))]
    return {
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "folders": roots,
        "models": facts.models(report.best, report.frame),
        "tasks": facts.tasks(report.frame, report.best),
        "versions": facts.versions(report.frame),
        "protocols": facts.protocol_labels(report.frame),
        "protocol_facts": facts.protocol_facts(report.frame),
        "failed": failed,
        "unreadable": unreadable,
        "views": views,
        "n_boot": n_boot if report.significance is not None else 0,
        "tested": report.significance is not None,
        "max_examples": max_examples,
        "css": (STATIC / "report.css").read_text(),
        "js": (STATIC / "report.js").read_text(),
    }


def render_page(report: Report, roots=None, n_boot: int | None = None, max_examples: int = MAX_EXAMPLES) -> str:
    """The page as one HTML string."""
    context = page_context(report, roots, n_boot, max_examples)
    return _environment().get_template("index.html.j2").render(**context)


def write_index(report: Report, out_dir: str | Path, roots=None, n_boot: int | None = None,
                max_examples: int = MAX_EXAMPLES) -> str:
    """Write ``out_dir/index.html``; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(render_page(report, roots, n_boot, max_examples), encoding="utf-8")
    return str(path)
