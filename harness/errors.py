"""Errors a user can fix, and the one place an exception becomes a one-line message."""


class UserError(Exception):
    """A problem in the user's input (unknown model, bad YAML, bad data, missing column, no hub access).

    The message names the problem and the fix in one line; the CLI prints it and exits with code 2.
    """

    exit_code = 2


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The exception's first message line (its type name when it has no message)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines and lines[0].strip() else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception, for logs and failed records."""
    text = first_line(exc)
    return text if text == type(exc).__name__ else f"{type(exc).__name__}: {text}"
