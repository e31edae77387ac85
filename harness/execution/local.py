"""The local executor: cells run in this process, one after another, on one runner (so a model
stays loaded for every cell that uses it)."""

from __future__ import annotations

from harness.execution.work import Job, Outcome, execute
from harness.runner import Runner


class LocalExecutor:
    def __init__(self, runner: Runner):
        self.runner = runner
        self.pending: list[Job] = []

    def describe(self) -> str:
        return self.runner.describe()

    def has_room(self) -> bool:
        return not self.pending

    def idle(self) -> bool:
        return not self.pending

    def submit(self, job: Job) -> None:
        self.pending.append(job)

    def next_outcome(self) -> tuple[Job, Outcome]:
        job = self.pending.pop(0)
        return job, execute(job, self.runner)

    def cancel_all(self) -> None:
        self.pending.clear()

    def close(self) -> None:
        pass
