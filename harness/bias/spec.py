"""Bias task specs from YAML (``adapter: bias``): the Winogender gotcha preference task."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import UserError
from harness.tasks import adapter_yaml, check_task_name

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
    found: dict[str, BiasTaskSpec] = {}
    for path, data, _ in adapter_yaml("bias", include_paths, "bias"):
        measure = str(data.get("measure", "winogender_gotcha_preference"))
        if measure not in KNOWN_MEASURES or "task" not in data:
            raise UserError(f"task file {path}: needs 'task' and a known measure ({', '.join(KNOWN_MEASURES)}), not "
                            f"'{measure}'; see tasks/bias/winogender_gotcha_preference.yaml")
        name = check_task_name(str(data["task"]), f"task file {path}")
        found[name] = BiasTaskSpec(name=name, group=str(data.get("group", "bias")),
                                                measure=measure, description=str(data.get("description", "")),
                                                source=str(path))
    return found
