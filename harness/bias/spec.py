"""Bias task specs from YAML (``adapter: bias``): the Winogender gotcha preference task."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.bundled import tasks_dir
from harness.errors import UserError, first_line

KNOWN_MEASURES = ("winogender_gotcha_preference",)


@dataclass(frozen=True)
class BiasTaskSpec:
    name: str
    group: str = "bias"
    measure: str = "winogender_gotcha_preference"
    description: str = field(default="", compare=False)
    source: str = field(default="", compare=False)

    adapter = "bias"
    local = False
    folder_names = ["winogender"]

    def identity(self) -> dict:
        return {"name": self.name, "measure": self.measure}


def load_bias_tasks(include_paths: list[str] | None = None) -> dict[str, BiasTaskSpec]:
    """The shipped ``tasks/bias`` specs plus those in ``--include-path`` folders."""
    dirs = [tasks_dir() / "bias"] + [Path(p) for p in include_paths or [] if os.path.isdir(p)]
    found: dict[str, BiasTaskSpec] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
                raise UserError(f"task file {path} cannot be read ({first_line(exc)}); fix or remove it") from None
            if not (isinstance(data, dict) and data.get("adapter") == "bias"):
                continue
            measure = str(data.get("measure", "winogender_gotcha_preference"))
            if measure not in KNOWN_MEASURES:
                raise UserError(f"task file {path}: unknown measure '{measure}'; known: {', '.join(KNOWN_MEASURES)}")
            found[str(data["task"])] = BiasTaskSpec(name=str(data["task"]), group=str(data.get("group", "bias")),
                                                    measure=measure, description=str(data.get("description", "")),
                                                    source=str(path))
    return found
