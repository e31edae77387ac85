"""The evaluation suite, read from tasks/suite.yaml: each task's group, headline metric, average
membership and display name. Every other module asks here instead of keeping its own list."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import yaml

from harness.bundled import tasks_dir


@dataclass(frozen=True)
class SuiteTask:
    name: str
    group: str
    headline: str
    average: bool
    display: str


@dataclass(frozen=True)
class Group:
    name: str
    title: str
    average: str  # the average's display name, e.g. "GLUE avg"
    average_column: str  # its column name in CSV files, e.g. "glue_avg"
    expand: str  # "all" or "averaged": the tasks --tasks <group> runs


@dataclass(frozen=True)
class Suite:
    tasks: dict[str, SuiteTask]
    groups: dict[str, Group]

    def members(self, group: str) -> tuple[str, ...]:
        """The tasks of ``group`` in suite order."""
        return tuple(t.name for t in self.tasks.values() if t.group == group)

    def averaged(self, group: str) -> tuple[str, ...]:
        """The tasks whose headline scores make ``group``'s average."""
        return tuple(t.name for t in self.tasks.values() if t.group == group and t.average)

    def expand(self, group: str) -> tuple[str, ...]:
        """The tasks ``--tasks <group>`` runs."""
        g = self.groups[group]
        return self.averaged(group) if g.expand == "averaged" else self.members(group)

    def display(self, name: str) -> str:
        if name in self.tasks:
            return self.tasks[name].display
        for g in self.groups.values():
            if name in (g.average, g.average_column):
                return g.average
        return name

    def headline(self, task: str) -> str | None:
        base = task.removesuffix(TWIN_SUFFIX)
        return self.tasks[base].headline if base in self.tasks else None

    def group_of(self, task: str) -> str | None:
        base = task.removesuffix(TWIN_SUFFIX)
        return self.tasks[base].group if base in self.tasks else None

    def average(self, group: str, scores: dict) -> float | None:
        """Mean of ``group``'s averaged tasks; None unless every one has a number."""
        names = self.averaged(group)
        values = [scores.get(t) for t in names]
        if not names or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            return None
        return float(sum(values) / len(values))


TWIN_SUFFIX = "_local"  # a local twin of a suite task (tasks/generative/<task>_local.yaml)


@functools.lru_cache(maxsize=1)
def suite() -> Suite:
    with open(tasks_dir() / "suite.yaml", encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    groups = {name: Group(name, g["title"], g["average"], g["average_column"], g.get("expand", "all"))
              for name, g in raw["groups"].items()}
    tasks = {name: SuiteTask(name, t["group"], t["headline"], bool(t["average"]), t["display"])
             for name, t in raw["tasks"].items()}
    return Suite(tasks, groups)
