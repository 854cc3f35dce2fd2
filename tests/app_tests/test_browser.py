"""A real browser on the served dashboard: headless Debian Chromium driven by Selenium; every page
at a desktop's and a laptop's window size, laid out without clipped tables, covered titles or
exceptions."""

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


# One script call reads the whole layout (Streamlit redraws while a test reads it): the script's
# state, each table's right edge and overflow (a scrolling box inside it wider than the box: columns
# cut off on the right), each chart's toolbar and title boxes, the text labels drawn on charts,
# and any exception Streamlit shows.
LAYOUT_JS = """
const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
return {
  state: document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state'),
  width: window.innerWidth,
  tables: Array.from(document.querySelectorAll('[data-testid=stDataFrame]')).map(t => ({
    right: t.getBoundingClientRect().right,
    overflow: Math.max(0, ...Array.from(t.querySelectorAll('*'))
      .filter(e => getComputedStyle(e).overflowX !== 'visible')
      .map(e => e.scrollWidth - e.clientWidth)),
  })),
  charts: Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => ({
    title: p.querySelector('.gtitle')?.textContent ?? '',
    titleBox: p.querySelector('.gtitle') && box(p.querySelector('.gtitle')),
    toolbarBox: p.querySelector('.modebar') && box(p.querySelector('.modebar')),
    labels: Array.from(p.querySelectorAll('.textpoint text')).map(box),
  })),
  exceptions: Array.from(document.querySelectorAll('[data-testid=stException]')).map(e => e.innerText),
  text: document.body.innerText,
};
"""


def _overlap(a, b) -> bool:
    """Whether two boxes (left, top, right, bottom) share more than an edge."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _settled_layout(browser, ready) -> dict:
    """The page's layout once its script finished, ``ready(layout)`` holds and two reads a
    moment apart agree (tables size their columns after they are drawn)."""
    from selenium.webdriver.support.ui import WebDriverWait

    reads = []

    def settled(b) -> bool:
        reads.append(b.execute_script(LAYOUT_JS))
        now = reads[-1]
        return now["state"] == "notRunning" and ready(now) and len(reads) > 1 and reads[-2] == now

    WebDriverWait(browser, 60, poll_frequency=0.5).until(settled)
    return reads[-1]


@pytest.mark.parametrize("window", [(1400, 1000), (1024, 768)], ids=["1400x1000", "1024x768"])
def test_every_page_fits_the_window(store, served, browser, window):
    browser.set_window_size(*window)
    fpga, gpu = store.ids["fpga"], store.ids["gpu"]
    pages = {  # path -> (tables, charts) the page draws
        f"?run={fpga}": (1, 0),
        f"frontier?run={fpga}": (1, 2),
        f"frontier?run={gpu}": (1, 2),  # two objectives: the widest layer table
        f"frontier?run={store.ids['running']}": (1, 0),  # the layer table of a run in progress
        f"calibration?run={fpga}": (1, 1),
        f"compare?run={fpga}": (1, 2),
    }
    for path, (tables, charts) in pages.items():
        browser.get(f"{served.url}/{path}")
        layout = _settled_layout(
            browser,
            lambda now, t=tables, c=charts: (
                len(now["tables"]) == t
                and len(now["charts"]) == c
                and all(chart["title"] and chart["toolbarBox"] for chart in now["charts"])
            ),
        )
        where = f"{path} at {window[0]}x{window[1]}"
        assert layout["width"] == window[0], where
        assert not layout["exceptions"] and "Traceback" not in layout["text"], (where, layout["exceptions"])
        for table in layout["tables"]:
            assert table["overflow"] <= 1 and table["right"] <= layout["width"], (where, table)
        for chart in layout["charts"]:
            toolbar, title = chart["toolbarBox"], chart["titleBox"]
            assert toolbar[2] > toolbar[0] and title[2] > title[0], (where, chart)  # both drawn
            assert not _overlap(toolbar, title), (where, chart["title"], toolbar, title)
            labels = chart["labels"]
            assert not [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :] if _overlap(a, b)], where


# The charts' axes as drawn: Plotly's own layout (the range it draws) and the boxes of the x tick
# labels and axis titles, with the window's height (what shows without scrolling).
AXES_JS = """
const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
return {
  state: document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state'),
  height: window.innerHeight,
  charts: Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => ({
    title: p.querySelector('.gtitle')?.textContent ?? '',
    metricRange: p._fullLayout?.yaxis2?.range ?? null,
    xTicks: Array.from(p.querySelectorAll('.xaxislayer-above [class$=tick] text')).map(box),
    yTitles: Array.from(p.querySelectorAll('.ytitle, .y2title')).map(e => e.textContent),
  })),
};
"""


def _settled_axes(browser, title: str) -> dict:
    """The chart titled ``title...`` once the page's script finished and two reads agree."""
    from selenium.webdriver.support.ui import WebDriverWait

    reads = []

    def settled(b) -> bool:
        reads.append(b.execute_script(AXES_JS))
        now = reads[-1]
        found = [c for c in now["charts"] if c["title"].startswith(title) and c["xTicks"]]
        return now["state"] == "notRunning" and len(found) == 1 and len(reads) > 1 and reads[-2] == now

    WebDriverWait(browser, 60, poll_frequency=0.5).until(settled)
    now = reads[-1]
    (chart,) = [c for c in now["charts"] if c["title"].startswith(title)]
    return chart | {"height": now["height"]}


def test_frontier_and_compare_at_1400x1000_zoom_the_metric_show_the_ticks_and_name_the_metric(
    store, served, browser, tmp_path
):
    """docs/dashboard.md's screenshots: MPQ_DASHBOARD_SCREENSHOTS=docs saves them there."""
    from app_support import app_module

    charts = app_module("charts")
    shots = Path(os.environ.get("MPQ_DASHBOARD_SCREENSHOTS") or tmp_path)
    browser.set_window_size(1400, 1000)
    run = store.runs["fpga"]
    browser.get(f"{served.url}/frontier?run={run.id}")
    frontier = _settled_axes(browser, f"Frontier of run {run.id}")
    # The metric panel spans the measured values (not 0 to 1), points far below them off its edge.
    low, high, _ = charts.metric_range(run.frontier["measured_metric"], run.record["float_metric"])
    assert frontier["metricRange"] == pytest.approx([low, high]) and high - low < 0.5, frontier["metricRange"]
    assert browser.save_screenshot(str(shots / "dashboard_frontier.png"))
    # The cost axis' tick labels show without scrolling.
    ticks = frontier["xTicks"]
    assert all(0 <= tick[1] and tick[3] <= frontier["height"] for tick in ticks), (frontier["height"], ticks)
    assert "accuracy" in frontier["yTitles"], frontier["yTitles"]

    browser.get(f"{served.url}/compare?run={run.id}")
    compare = _settled_axes(browser, "3 runs:")
    assert browser.save_screenshot(str(shots / "dashboard_compare.png"))
    assert compare["title"] == "3 runs: accuracy against latency_s (s)"
    assert compare["yTitles"] == ["accuracy"], compare["yTitles"]
    ticks = compare["xTicks"]
    assert all(0 <= tick[1] and tick[3] <= compare["height"] for tick in ticks), (compare["height"], ticks)
    for name in ("dashboard_frontier.png", "dashboard_compare.png"):
        assert (shots / name).stat().st_size > 50_000, name  # a rendered page, not a blank one
