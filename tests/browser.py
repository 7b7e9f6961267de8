"""Headless Chromium helpers for tests that check what a person would see."""

from __future__ import annotations

from pathlib import Path

from data_engine.textrender.chromium import CHROMIUM_ARGS as _ARGS
from data_engine.textrender.chromium import CHROMIUM_PATH

CHROMIUM = Path(CHROMIUM_PATH)
CHROMIUM_ARGS = list(_ARGS)  # one definition of how Chromium runs in a closed network: the text renderer's


def open_page(browser, path: Path):
    """Load a local page; returns (page, problems, dialogs): console errors, page errors and any request
    that leaves the file (a self-contained report makes none), and the texts of any dialogs it opened."""
    page = browser.new_page()
    problems: list[str] = []
    dialogs: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: request.url.startswith(("file:", "data:")) or problems.append(request.url))
    page.goto(path.as_uri(), wait_until="load")
    return page, problems, dialogs
