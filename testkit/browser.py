"""A real browser for tests: Debian's headless Chromium driven through its chromedriver
(selenium), with axe-core injected for the accessibility check. scripts/notice-tools.sh
installs all three when missing."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from testkit.rendering import axe_path, ensure_tools


@contextlib.contextmanager
def chromium(width: int, height: int = 900) -> Iterator[webdriver.Chrome]:
    ensure_tools()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--force-device-scale-factor=1",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        # The window size includes no browser chrome in headless mode; make the viewport exact.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
        yield driver
    finally:
        driver.quit()


def open_html(driver: webdriver.Chrome, html: str, tmp: Path | None = None,
              dark: bool = False) -> None:
    folder = Path(tmp or tempfile.mkdtemp())
    page = folder / "notice.html"
    page.write_text(html, encoding="utf-8")
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})
    driver.get(page.as_uri())


def run_axe(driver: webdriver.Chrome) -> dict:
    """axe-core's results for the open page (WCAG 2.x A/AA and best practices)."""
    driver.execute_script(axe_path().read_text(encoding="utf-8"))
    driver.set_script_timeout(60)
    raw = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        axe.run(document, {runOnly: {type: 'tag', values:
            ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']},
            resultTypes: ['violations']})
          .then(r => done(JSON.stringify({violations: r.violations, passes: r.passes.length,
                                          incomplete: r.incomplete.length})))
          .catch(e => done(JSON.stringify({error: String(e)})));
    """)
    result = json.loads(raw)
    if "error" in result:
        raise RuntimeError(f"axe-core failed: {result['error']}")
    return result
