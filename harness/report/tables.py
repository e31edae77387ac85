"""Rendering of the comparison table and the small long tables: terminal, Markdown, LaTeX
(booktabs) and CSV. Numbers are points (x100) with one decimal; a blank cell is '-'.

A gap the paired bootstrap finds not significant carries a dagger."""

from __future__ import annotations

import math

import pandas as pd

from harness.report.frame import GEN_AVG, GLUE_AVG, display

DAGGER = "†"
PARTS = {"encoder": "enc", "decoder": "dec", "gap": "gap"}


def _num(value, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def not_significant(sig: pd.DataFrame | None) -> set:
    """(row, task) pairs whose encoder-decoder gap the paired bootstrap does not find significant."""
    if sig is None or sig.empty:
        return set()
    tested = sig[sig["p_value"].notna()]
    return {(r, t) for r, t, s in zip(tested["row"], tested["task"], tested["significant"]) if not s}


def formatted(table: pd.DataFrame, tasks: list[str], sig: pd.DataFrame | None = None, dagger: str = DAGGER):
    """The table's columns of ``tasks`` as strings, columns (display name, enc|dec|gap); rows with
    no score among them are left out."""
    marks = not_significant(sig)
    out = {}
    for task in tasks:
        for part in ("encoder", "decoder", "gap"):
            values = [_num(v) for v in table[(task, part)]]
            if part == "gap":
                values = [v + dagger if (row, task) in marks and v != "-" else v for v, row in zip(values, table.index)]
            out[(display(task), PARTS[part])] = values
    frame = pd.DataFrame(out, index=table.index)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame[(frame != "-").any(axis=1)]  # a row without any score in this group is left out


def terminal(table: pd.DataFrame, groups: dict, sig=None) -> str:
    parts = []
    for title, tasks in groups.items():
        parts.append(f"{title}\n{formatted(table, tasks, sig).to_string()}")
    return "\n\n".join(parts)


def markdown(table: pd.DataFrame, groups: dict, sig=None) -> str:
    parts = []
    for title, tasks in groups.items():
        frame = formatted(table, tasks, sig)
        header = [table.index.name or ""] + [f"{t} {p}" for t, p in frame.columns]
        rows = [[str(i)] + list(r) for i, r in zip(frame.index, frame.itertuples(index=False))]
        parts.append(f"### {title}\n\n" + _md(header, rows))
    return "\n\n".join(parts) + "\n"


def latex(table: pd.DataFrame, groups: dict, sig=None, caption: str = "") -> str:
    """One booktabs tabular per task group: a task row spanning enc/dec/gap, then those parts."""
    parts = []
    for title, tasks in groups.items():
        frame = formatted(table, tasks, sig, dagger=r"$^\dagger$")
        spec = "l" + "rrr" * len(tasks)
        task_row = " & ".join(rf"\multicolumn{{3}}{{c}}{{{_tex(display(t))}}}" for t in tasks)
        rules = " ".join(rf"\cmidrule(lr){{{2 + 3 * i}-{4 + 3 * i}}}" for i in range(len(tasks)))
        part_row = " & ".join(["Enc", "Dec", r"$\Delta$"] * len(tasks))
        body = [" & ".join([_tex(str(i))] + ["--" if c == "-" else c for c in r]) + r" \\"
                for i, r in zip(frame.index, frame.itertuples(index=False))]
        parts.append("\n".join([
            rf"% {title}" + (f": {caption}" if caption else ""),
            rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
            rf"& {task_row} \\", rules, rf"{_tex(table.index.name or 'size')} & {part_row} \\", r"\midrule",
            *body, r"\bottomrule", r"\end{tabular}"]))
    return "\n\n".join(parts) + "\n"


def flat_csv_frame(table: pd.DataFrame, protocols: dict | None = None) -> pd.DataFrame:
    """The comparison table with flat columns '<task>_<encoder|decoder|gap>' (points x100, two
    decimals) and each row's protocol."""
    flat = table.copy().round(2)
    flat.columns = [f"{t.replace(' ', '_').lower() if t in (GLUE_AVG, GEN_AVG) else t}_{p}" for t, p in table.columns]
    flat = flat.reset_index()
    if protocols is not None:
        flat.insert(1, "protocol", [protocols.get(r, "") for r in flat[flat.columns[0]]])
    return flat


def long_markdown(df: pd.DataFrame, digits: int = 1) -> str:
    header = list(df.columns)
    rows = [[_cell(v, digits) for v in r] for r in df.itertuples(index=False)]
    return _md(header, rows) + "\n"


def long_latex(df: pd.DataFrame, digits: int = 1) -> str:
    spec = "".join("r" if pd.api.types.is_numeric_dtype(df[c]) and df[c].dtype != bool else "l" for c in df.columns)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(_tex(str(c)) for c in df.columns) + r" \\",
             r"\midrule"]
    lines += [" & ".join(_tex(_cell(v, digits)) for v in r) + r" \\" for r in df.itertuples(index=False)]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"


def _cell(value, digits: int) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _num(value, digits)
    return "-" if value is None else str(value)


def _md(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


TEX_SPECIALS = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "%": r"\%", "#": r"\#",
                "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}"}


def _tex(text: str) -> str:
    """``text`` as literal TeX: each of TeX's special characters escaped (one pass, so an
    escape's own braces are not escaped again)."""
    return "".join(TEX_SPECIALS.get(ch, ch) for ch in str(text))
