"""Headless Chromium for the offline pages: screenshots for the docs, and the browser the
viewer's tests drive (Debian's `chromium` and `chromium-driver`, through selenium).

    python -m evals.viewer.screenshot PAGE.html OUT.png [--width 1400] [--height 1000]
        [--click NODE_ID]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def have_chromium() -> bool:
    return bool(shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER))


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium (a selenium driver) that keeps its console log for inspection."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    if not have_chromium():
        raise FileNotFoundError(
            f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver"
        )
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(
    page: str | Path,
    out: str | Path,
    *,
    width: int = 1400,
    height: int = 1000,
    click: str | None = None,
) -> Path:
    """A PNG of `page` (a local HTML file), after clicking the tree node `click` if given."""
    from selenium.webdriver.common.by import By

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with chromium(width, height) as driver:
        driver.get(Path(page).resolve().as_uri())
        if click is not None:
            driver.find_element(By.CSS_SELECTOR, f'[data-id="{click}"]').click()
        time.sleep(0.3)  # let the page draw
        driver.save_screenshot(str(out))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m evals.viewer.screenshot",
        description="Save a PNG of a local HTML page (a leaderboard or a trace viewer page) "
        "rendered by headless Chromium.",
    )
    parser.add_argument("page", help="the HTML file")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--click", help="a tree node id to click first (viewer pages)")
    args = parser.parse_args(argv)
    path = screenshot(args.page, args.out, width=args.width, height=args.height, click=args.click)
    print(path)


if __name__ == "__main__":
    main()
