"""A real headless browser for the web console's tests: Debian's chromium driven by
Playwright.

Playwright is told where the browser is (``/usr/bin/chromium``, from ``scripts/bootstrap``)
and never downloads one. It starts chromium with ``--headless`` and a new empty profile of
its own (``--user-data-dir`` in a fresh temporary folder); the flags below are the rest of
what chromium needs as root in a sandbox-less container with no network of its own. Where
the browser is missing the tests skip on a developer machine and fail in CI
(:func:`tests.support.ci.unavailable`).
"""

from __future__ import annotations

import contextlib
import shutil
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support.ci import unavailable

__all__ = ["CHROMIUM", "SCREENSHOTS", "chromium", "page_errors", "screenshot", "signed_in"]

CHROMIUM: Final = Path("/usr/bin/chromium")
FLAGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
# Where the tests leave a picture of each page, for a person to look at.
SCREENSHOTS: Final = Path("/tmp/console-shots")
# what went wrong in each signed-in tab's scripts (and what its CSP refused)
_ERRORS: weakref.WeakKeyDictionary[Page, list[str]] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless chromium, closed at the end."""
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        unavailable("chromium", f"{CHROMIUM} is not installed (scripts/bootstrap installs it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(FLAGS)
        )
        try:
            yield browser
        finally:
            await browser.close()


async def signed_in(browser: Browser, base_url: str, token: str) -> Page:
    """A new tab (its own sessionStorage) signed in to the console at ``base_url``."""
    context = await browser.new_context(
        base_url=base_url, viewport={"width": 1360, "height": 860}, locale="en-GB"
    )
    page = await context.new_page()
    errors = _ERRORS[page] = []
    # an API answer of 4xx is logged by chromium too ("Failed to load resource"): that is
    # the page working; a script error or a CSP refusal is not
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load")
            else None
        ),
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto("/console/")
    await page.fill("#token", token)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#stream-state")).to_have_text("live")
    return page


def page_errors(page: Page) -> list[str]:
    """The script errors and CSP refusals of a tab :func:`signed_in` opened, so far."""
    return list(_ERRORS.get(page, []))


async def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG of ``page`` as ``SCREENSHOTS/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
