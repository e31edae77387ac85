"""The shape of the code: no import cycle among the harness's modules (imports inside functions
count), small modules and classes, each module saying its job, and the README's map matching."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "harness"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 150


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "_bundled" in path.parts:
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The harness modules ``path`` imports anywhere in its body (functions included)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # "from package import submodule" imports the submodule; anything else imports the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known}
    found.discard(name)
    return found


def test_no_import_cycle():
    mods = modules()
    graph = {name: imported(path, name, set(mods)) for name, path in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_cycle_check_finds_a_cycle(tmp_path):
    """The check above can fail: two modules that import each other inside functions are caught."""
    (tmp_path / "a.py").write_text("def f():\n    from harness.b import g\n")
    (tmp_path / "b.py").write_text("def g():\n    import harness.a\n")
    known = {"harness.a", "harness.b"}
    assert imported(tmp_path / "a.py", "harness.a", known) == {"harness.b"}
    assert imported(tmp_path / "b.py", "harness.b", known) == {"harness.a"}


def test_modules_and_classes_stay_small_and_say_their_job():
    too_long, no_doc = [], []
    for name, path in modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        tree = ast.parse(text)
        doc = ast.get_docstring(tree)
        if not doc or not doc.strip().splitlines()[0].strip():
            no_doc.append(name)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long
    assert not no_doc, no_doc


def test_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- section: layout -->", 1)[1].split("<!-- section:", 1)[0]
    named = set(re.findall(r"`(harness/[\w/]+(?:\.py|/))`", section))
    files = {str(p.relative_to(ROOT)) for p in modules().values()}
    listed_files = {n for n in named if n.endswith(".py")}
    listed_packages = {n for n in named if n.endswith("/")}
    covered = {f for f in files if f in listed_files or any(f.startswith(p) for p in listed_packages)}
    assert covered == files, sorted(files - covered)
    assert all((ROOT / n).exists() for n in named), sorted(n for n in named if not (ROOT / n).exists())
