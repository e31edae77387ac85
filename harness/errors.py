"""Errors a user can fix: the CLI prints their one-line message and exits with code 2."""


class UserError(Exception):
    """A problem in the user's input (unknown model, bad YAML, missing column, no hub access).

    The message names the problem and the fix in one line.
    """

    exit_code = 2
