"""What the browser tests of the web demo share: Debian's chromium driven by Playwright (never a
browser Playwright downloads), the page opened on a running demo, and where screenshots go.

Screenshots go to $TRIALBOT_ARTIFACTS_DIR when it is set (.ci/run sets it), else to
<repo>/artifacts/screenshots (gitignored).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# 07:00 in New York on a plain Tuesday: the staff digest (07:30) and the first reminder (08:00) are next.
DEMO_START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def artifacts_dir() -> Path:
    """Where the browser tests save their screenshots (made if missing)."""
    configured = os.environ.get("TRIALBOT_ARTIFACTS_DIR")
    directory = Path(configured) if configured else REPO / "artifacts" / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def chromium() -> str:
    """The Debian chromium binary. Locally a machine without it skips the browser tests; in CI
    (CI set) a missing browser fails, so the end-to-end tests cannot silently stop running."""
    path = os.environ.get("TRIALBOT_CHROMIUM") or shutil.which("chromium") or (
        str(DEBIAN_CHROMIUM) if DEBIAN_CHROMIUM.exists() else None)
    problem = None
    if path is None:
        problem = "no chromium (apt-get install -y chromium)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem:
        if in_ci():
            pytest.fail(f"CI is set but the browser test cannot run: {problem}")
        pytest.skip(problem)
    return path


@contextlib.asynccontextmanager
async def opened_page(url: str, *, width: int, height: int) -> AsyncIterator[Any]:
    """A page of headless Debian chromium at `url`, `width` x `height` CSS pixels. On leaving, the
    page must have asked nothing of any other address and thrown no script error."""
    from playwright.async_api import async_playwright

    executable = chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height}, locale="en-GB")
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.set_default_timeout(10_000)
            await page.goto(url)
            yield page
            assert all(address.startswith(url) for address in requests), [
                address for address in requests if not address.startswith(url)]
            assert errors == []
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def screenshot_on_failure(page, name: str) -> AsyncIterator[None]:
    try:
        yield
    except BaseException:
        await page.screenshot(path=artifacts_dir() / f"{name}-failure.png", full_page=True)
        raise
