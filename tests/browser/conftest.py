"""Real-browser tests: Playwright driving the system's Chromium (Debian's ``chromium``).

Marked ``browser`` (registered here), so a quick run can leave them out with
``-m "not browser"``. Without Chromium at ``/usr/bin/chromium`` (``BILLINGKIT_CHROMIUM``
to point elsewhere) or the ``playwright`` package they are skipped with the reason, unless
``BILLINGKIT_REQUIRE_SERVICES=1`` (CI: ``scripts/ci-browser.sh`` installs Chromium), which
turns the skip into a failure. Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("BILLINGKIT_CHROMIUM", "/usr/bin/chromium"))
#: Screenshots of each step, for a reviewer to look at.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "browser: drives Chromium through Playwright (skipped with a reason when absent, "
        "required in CI)",
    )


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or scripts/ci-browser.sh)"
    return None


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the step screenshots go (``build/browser/``), emptied of earlier runs' files."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    return SCREENSHOTS


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium browser (Playwright ``Browser``), shared by the module.

    Not by the session: while Playwright's sync API is open, an asyncio loop counts as
    running in the main thread, and Django (tests/examples) refuses database calls then.
    """
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("BILLINGKIT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}; BILLINGKIT_REQUIRE_SERVICES=1 requires it", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
