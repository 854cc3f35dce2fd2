"""A real browser on the served dashboard: headless Debian Chromium driven by Selenium."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Slow (Chromium starts, the store is searched, the page is drawn: 30 s); the AppTest page tests
# (test_dashboard.py) are its fast twin in the default run, and CI's slow step runs it.
pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,2300",
)


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[test]')")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("needs Debian's chromium and chromium-driver; run .ci/browser_setup.sh")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    with tempfile.TemporaryDirectory(prefix="mpq-chromium-") as profile:
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        # An explicit driver path: Selenium Manager never looks for (or downloads) a browser.
        session = webdriver.Chrome(service=Service(driver), options=options)
        try:
            yield session
        finally:
            session.quit()


def _count(browser, selector: str) -> int:
    return browser.execute_script("return document.querySelectorAll(arguments[0]).length", selector)


def _chart_titles(browser) -> list[str]:
    # In one script call: Streamlit re-renders the charts while a test reads them.
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot .gtitle')).map(e => e.textContent)"
    )


def test_frontier_and_layer_charts_in_a_real_browser(store, served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    run = store.runs["fpga"]
    browser.get(f"{served.url}/frontier")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: any(t.startswith("Frontier of run") for t in _chart_titles(b)))

    # Pick the FPGA run in the sidebar, as a person would: open the select, type, press Enter.
    picker = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"] [data-testid="stSelectbox"] input')
    picker.click()
    picker.send_keys(f"#{run.id} digits-cnn on zcu104")
    picker.send_keys(Keys.ENTER)
    wait.until(lambda b: f"Frontier of run {run.id}: click a point" in _chart_titles(b))
    wait.until(lambda b: any(t.startswith("Bits per layer, point") for t in _chart_titles(b)))

    titles = _chart_titles(browser)
    assert f"Run {run.id}: digits-cnn on zcu104" in browser.find_element(By.TAG_NAME, "h1").text
    assert f"Frontier of run {run.id}: click a point" in titles
    assert f"Bits per layer, point {int(run.best().point)}" in titles
    # Plotly drew the points: one marker per frontier point and baseline in the top panel.
    assert _count(browser, ".js-plotly-plot .scatterlayer .trace .points path") >= 2 * len(run.frontier)

    shot = Path(os.environ.get("MPQ_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
