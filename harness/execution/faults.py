"""The one retry policy: retry what can pass (out of memory, a lost worker or node, a dropped
connection), fail at once what will recur (bad data, a bug, a bad value), stop on what the user
must fix (UserError)."""

from __future__ import annotations

from harness.errors import UserError, one_line
from harness.runner import is_oom

# Ray's errors for a worker, node or object lost under a task; named, so that Ray stays optional.
PASSING_RAY_ERRORS = {"WorkerCrashedError", "NodeDiedError", "ObjectLostError", "ObjectFetchTimedOutError",
                      "OwnerDiedError", "ReferenceCountingAssertionError", "LocalRayletDiedError", "RaySystemError",
                      "ActorDiedError", "RayActorError", "OutOfMemoryError", "ActorUnavailableError",
                      "NodeAffinitySchedulingFailed"}


def can_pass(exc: BaseException) -> bool:
    """True for faults that running the cell again may not meet."""
    if isinstance(exc, UserError):
        return False
    if is_oom(exc) or isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return any(cls.__name__ in PASSING_RAY_ERRORS for cls in type(exc).__mro__)


describe = one_line
