"""The pages in a real browser (issue 21): ``ubi demo --serve`` fills a tenant through the
real pipeline on the embedded default and keeps its web server running; headless Chromium
(Debian's ``chromium`` and ``chromium-driver``, which ``./dev test`` installs) signs in with
the link it prints, reads the overview and a team page, marks a signal false positive, keeps
screenshots, makes no request to any other host, and passes axe-core's accessibility check."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import ServedDemo

VENDOR = Path(__file__).resolve().parents[1] / "support" / "vendor" / "axe-core"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="no headless browser: install Debian's chromium and "
                              "chromium-driver (./dev test does when it can)"),
]


def until(driver: Any, condition: Callable[[Any], Any], timeout: float = 20.0) -> Any:
    """Wait for what a form post's navigation brings (a click may return before the browser
    has followed the POST and its redirect, more so on a loaded machine)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


@pytest.fixture(scope="module")
def browser(served_demo: ServedDemo) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,1600", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--disable-sync"):
        options.add_argument(arg)
    # Every request the pages make, for the check that none goes to another host.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots are kept: ``UBI_TEST_ARTIFACTS`` (CI), else a pytest temp dir."""
    given = os.environ.get("UBI_TEST_ARTIFACTS")
    path = Path(given) if given else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def requested_urls(driver: Any) -> list[str]:
    """URLs of the requests the browser sent since the last call (its performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def serious_violations(driver: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the current page."""
    driver.execute_script((VENDOR / "axe.min.js").read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations)).catch(e => done({error: String(e)}));")
    assert isinstance(result, list), result
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result if v["impact"] in ("serious", "critical")]


def stored(database: Path, sql: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())
    finally:
        engine.dispose()


def test_a_tech_lead_reads_the_pages_and_marks_a_false_positive(
        served_demo: ServedDemo, browser: Any, artifacts: Path) -> None:
    demo = served_demo
    from selenium.webdriver.common.by import By

    driver = browser
    seen: list[str] = []
    problems: dict[str, list[dict[str, Any]]] = {}

    # The sign-in link keeps the token in the cookie and opens the tenant's overview.
    driver.get(demo.link)
    tenant = urlsplit(driver.current_url).path.removeprefix("/ui/tenants/")
    assert tenant.startswith("demo"), driver.current_url  # demo-<id> on a fresh database
    assert "token=" not in driver.current_url
    assert driver.find_element(By.TAG_NAME, "h1").text == tenant
    teams = driver.find_elements(By.CSS_SELECTOR, "table.scores tbody th a")
    assert len(teams) >= 3
    scores = [int(e.text) for e in driver.find_elements(By.CSS_SELECTOR, "table.scores .score")]
    assert scores and all(0 <= s <= 100 for s in scores)
    problems["overview"] = serious_violations(driver)
    seen += requested_urls(driver)

    # The team page with the most signals: its timeline, and a signal with its reason.
    pages = [a.get_attribute("href") for a in teams]
    best, most = pages[0], -1
    for url in pages:
        driver.get(url)
        n = len(driver.find_elements(By.CSS_SELECTOR, "article.signal"))
        if n > most:
            best, most = url, n
    assert most > 0, "no team page shows a signal"
    driver.get(best)
    team_id = best.rsplit("/", 1)[1]
    assert driver.find_element(By.TAG_NAME, "h1").text == f"Team {team_id}"
    svg = driver.find_element(By.CSS_SELECTOR, "figure.timeline svg")
    assert len(svg.find_elements(By.TAG_NAME, "polyline")) == 4
    assert svg.find_elements(By.CSS_SELECTOR, "circle.mark")
    driver.save_screenshot(str(artifacts / "team-page.png"))
    card = driver.find_element(By.CSS_SELECTOR, "article.signal")
    signal_id = card.get_attribute("id").removeprefix("signal-")
    [(reason,)] = stored(demo.database, "SELECT reason FROM signals WHERE signal_id = :id",
                         id=signal_id)
    assert card.find_element(By.CSS_SELECTOR, ".reason").text == reason
    problems["team page"] = serious_violations(driver)
    seen += requested_urls(driver)

    # False positive, in one click, without JavaScript: stored and shown at once.
    card.find_element(By.CSS_SELECTOR, "button[value=false_positive]").click()
    notice = until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "p.notice"))[0]
    assert notice.text.startswith("Feedback stored: false positive")
    card = driver.find_element(By.ID, f"signal-{signal_id}")
    assert "Your verdict: False positive" in card.find_element(By.CSS_SELECTOR,
                                                               ".verdict").text
    assert stored(demo.database, "SELECT verdict, submitted_by FROM signal_feedback WHERE "
                  "signal_id = :id", id=signal_id) == [("false_positive", "demo-lead")]
    driver.save_screenshot(str(artifacts / "team-page-after-feedback.png"))
    seen += requested_urls(driver)

    # The sign-in form (after signing out) is checked too.
    driver.find_element(By.CSS_SELECTOR, "header form button").click()
    until(driver, lambda d: urlsplit(d.current_url).path == "/ui/sign-in")
    problems["sign-in"] = serious_violations(driver)
    seen += requested_urls(driver)
    time.sleep(0.2)
    seen += requested_urls(driver)

    assert seen and any(u.endswith("/ui/static/ubi.css") for u in seen)
    elsewhere = [u for u in seen
                 if not u.startswith(demo.origin + "/") and not u.startswith("data:")]
    assert elsewhere == [], elsewhere
    assert problems == {"overview": [], "team page": [], "sign-in": []}, problems
