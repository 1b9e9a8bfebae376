"""The page of `dlcli serve` in a real browser: Debian's Chromium, headless, driven by
Playwright's Python API (its own browser download cannot work offline, so it is pointed at
the installed executable; `.ci/run` installs the `chromium` package when it is missing).

At a phone's width, a 7 is drawn on the canvas with pointer events, as a finger or the mouse
would; the page must show 7 as the predicted label with its bar, from the MNIST network that
the end-to-end tier trains (`first_model`). A screenshot is saved beside the test's files, and
into $DLCLI_SCREENSHOT_DIR when that is set.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import dlcli_command

CHROMIUM = next(
    (
        path
        for path in ("/usr/lib/chromium/chromium", shutil.which("chromium"))
        if path and Path(path).is_file()
    ),
    None,
)
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def mnist_server(first_model: Path, user_env: dict[str, str], workspace: Path) -> object:
    import re

    process = subprocess.Popen(
        [*dlcli_command(), "serve", "mnist", "--port", "0"],
        env=user_env,
        cwd=workspace,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    said = []
    while line := process.stderr.readline():
        said.append(line)
        if found := re.search(r"Page: (http://127\.0\.0\.1:\d+/)", line):
            break
    else:
        pytest.fail(f"dlcli serve exited {process.wait()}: {''.join(said)}")
    yield found[1]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def draw(page: object, points: list[tuple[float, float]]) -> None:
    """One stroke through `points` (fractions of the canvas), in small pointer moves."""
    box = page.locator("#canvas").bounding_box()  # type: ignore[attr-defined]
    mouse = page.mouse  # type: ignore[attr-defined]
    at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    mouse.move(*at[0])
    mouse.down()
    for point in at[1:]:
        mouse.move(*point, steps=12)
    mouse.up()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: apt-get install chromium")
def test_a_drawn_seven_is_predicted_on_the_page(mnist_server: str, tmp_path: Path) -> None:
    """Draw a 7 at a phone's width: the page shows 7, with the top classes as bars."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport=PHONE, has_touch=True)
        page.goto(mnist_server)
        page.wait_for_selector("#image-input:not([hidden])")
        assert page.locator("#model").input_value() == "mnist"
        draw(page, [(0.25, 0.22), (0.75, 0.22)])  # the top bar
        draw(page, [(0.75, 0.22), (0.62, 0.5), (0.5, 0.82)])  # the stem
        deadline = time.monotonic() + 30
        while page.locator("#bars li").count() < 3 and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        page.wait_for_timeout(500)  # the last stroke's answer
        label = page.locator("#label").inner_text()
        bars = page.locator("#bars li .name").all_inner_texts()
        width = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(tmp_path / "serve-page.png"), full_page=True)
        browser.close()
    if os.environ.get("DLCLI_SCREENSHOT_DIR"):
        shutil.copy(tmp_path / "serve-page.png", os.environ["DLCLI_SCREENSHOT_DIR"])
    assert page.locator is not None
    assert label == "7", f"the page shows {label!r}; bars {bars}"
    assert bars[0] == "7" and len(bars) == 10
    assert width <= PHONE["width"], "the page fits a phone's width without scrolling sideways"
