"""Progress of a run: a bar in a terminal, one plain line per finished cell in a log file,
nothing with --quiet. Library bars (lm-eval, datasets) follow the same rule."""

from __future__ import annotations

import sys


def interactive(stream=None) -> bool:
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()


def quiet_library_bars(quiet: bool) -> None:
    """lm-eval's and datasets' tqdm bars off in this process when quiet or not in a terminal (tqdm
    reads TQDM_DISABLE only when it is imported, long before the flags are known)."""
    if not (quiet or not interactive()):
        return
    import tqdm.std

    tqdm_class = tqdm.std.tqdm
    if not getattr(tqdm_class.__init__, "_harness_quiet", False):
        original = tqdm_class.__init__

        def quiet_init(self, *args, **kwargs):
            kwargs["disable"] = True
            original(self, *args, **kwargs)

        quiet_init._harness_quiet = True
        tqdm_class.__init__ = quiet_init


class Progress:
    def __init__(self, total: int, quiet: bool = False, stream=None):
        self.total, self.quiet = total, quiet
        self.stream = stream or sys.stderr
        self.done = 0
        self.bar = None
        if not quiet and interactive(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="cells", file=self.stream)

    @property
    def inner_bars(self) -> bool:
        """Whether a cell may show bars of its own (only in a terminal)."""
        return self.bar is not None

    def started(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)

    def finished(self, settled: int, text: str) -> None:
        """``settled`` cells are now done (run, skipped or failed); ``text`` says what just ended."""
        step = settled - self.done
        self.done = settled
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(step)
        elif text:
            self.stream.write(f"[{settled}/{self.total}] {text}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
