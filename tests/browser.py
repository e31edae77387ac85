"""Headless Chromium for the page tests and the page benchmark: finds the system browser (Debian's
``chromium``; nothing is downloaded) and opens pages in it through Playwright.

Without a browser (or without Playwright) the tests skip with the reason; with ``ETTIN_REQUIRE_BROWSER=1``
(set by .ci/run) that skip becomes a failure, so CI always runs them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

REQUIRE = "ETTIN_REQUIRE_BROWSER"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# root has no sandbox; the rest keeps Chromium from phoning home (updates, sync, field trials)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    """The system Chromium: $ETTIN_CHROMIUM, else the first of CANDIDATES on PATH."""
    given = os.environ.get("ETTIN_CHROMIUM")
    if given:
        return given if os.path.exists(given) else None
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def missing_reason() -> str | None:
    """Why the browser tests cannot run here; None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "no Chromium found (apt-get install -y chromium, or set ETTIN_CHROMIUM)"
    return None


def require_or_skip() -> None:
    """Skip the calling test (or fixture) when there is no browser; fail instead when $ETTIN_REQUIRE_BROWSER is set."""
    import pytest

    reason = missing_reason()
    if reason is None:
        return
    if os.environ.get(REQUIRE, "") not in ("", "0"):
        pytest.fail(f"browser tests required ({REQUIRE} is set) but cannot run: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


@contextmanager
def chromium():
    """A headless Chromium (Playwright Browser) with a fresh profile, closed on exit."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="ettin-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path=chromium_path(), args=ARGS,
                                                       headless=True, viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()


class Page:
    """A page opened from a file, with its console errors, page errors and network requests recorded."""

    def __init__(self, context, path: str):
        self.page = context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = "file://" + os.path.abspath(path)
        self.page.goto(self.url, wait_until="load")

    def close(self) -> None:
        self.page.close()
