"""The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a live proxy.

Screenshots go to $DEJA_SCREENSHOT_DIR (default: the test's tmp_path); CI and the closing note look at them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from proxy.cli import ready_lines
from proxy.settings import Settings

from .conftest import LiveProxy

CHROMIUM = "/usr/bin/chromium"
TOKEN = "dashboard-admin-token"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (.ci/chromium.sh)")


@pytest.fixture
def live(tmp_path, upstream, monkeypatch):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", TOKEN)
    with LiveProxy(tmp_path / "data", upstream) as proxy:
        for text in ("How do I reset my password?", "what is the capital of france", "Tell me a joke",
                     "Explain TCP slow start"):
            assert proxy.chat(text).headers["x-cache-status"] == "MISS"
        proxy.wait_until_stored(TOKEN, 4)
        assert proxy.chat("How do I reset my password?").headers["x-cache-status"] == "HIT"
        assert proxy.chat("How do I reset my password?").headers["x-cache-status"] == "HIT"
        assert proxy.chat("What is the capital of France?").headers["x-cache-match"] == "semantic"
        proxy.chat("Tell me a joke", key="sk-b")  # another tenant: a miss
        proxy.wait_until_stored(TOKEN, 5)
        yield proxy


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("DEJA_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def value(page, testid: str) -> str:
    return page.get_attribute(f"[data-testid={testid}]", "data-value")


def test_dashboard_shows_the_stats_and_deleting_an_entry_makes_its_question_miss(live, browser, shots):
    from playwright.sync_api import expect  # the page's CSP forbids eval: wait with locators, not JS strings

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"{live.base}/dashboard#token={TOKEN}")
    page.wait_for_selector("body[data-loaded=true]")
    assert "token" not in page.url  # taken from the fragment, then removed from the address bar

    stats = live.admin("GET", "/admin/stats", TOKEN).json()
    assert value(page, "requests") == str(stats["requests"]["total"]) == "8"
    assert page.inner_text("[data-testid=requests]") == "8"
    assert value(page, "entries") == str(stats["entries"]) == "5"
    assert value(page, "tokens-saved") == str(stats["tokens_saved"]["total"]) == "45"
    assert float(value(page, "hit-rate")) == stats["hit_rate"]
    assert page.inner_text("[data-testid=hit-rate]") == f"{stats['hit_rate'] * 100:.1f}%"
    assert float(value(page, "cost-saved")) == pytest.approx(stats["cost_saved_usd"])
    assert float(value(page, "lookup-p50")) == pytest.approx(stats["latency_ms"]["lookup"]["p50"])

    recent = page.inner_text("#recent-table")
    assert "What is the capital of France?" in recent and "what is the capital of france" in recent
    assert "semantic 1.0000" in recent
    top = page.inner_text("#top-table")
    assert top.index("How do I reset my password?") < top.index("what is the capital of france")
    page.wait_for_selector("#chart canvas")
    page.wait_for_selector("#entries-table tbody tr[data-entry-id]")
    page.screenshot(path=str(shots / "deja-dashboard.png"), full_page=True)

    page.fill("#search-input", "password")
    page.click("#search-form button")
    row = page.locator("#entries-table tbody tr[data-entry-id]")
    expect(row).to_have_count(1)
    assert "How do I reset my password?" in row.inner_text()
    entry_id = row.get_attribute("data-entry-id")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=f"delete entry {entry_id}").click()
    page.wait_for_selector(f"tr[data-entry-id='{entry_id}']", state="detached")
    expect(page.locator("[data-testid=entries]")).to_have_attribute("data-value", "4")

    assert live.admin("GET", f"/admin/entries/{entry_id}", TOKEN).status_code == 404
    assert live.chat("How do I reset my password?").headers["x-cache-status"] == "MISS"


def test_dashboard_fits_a_phone_screen(live, browser, shots):
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    page.goto(f"{live.base}/dashboard#token={TOKEN}")
    page.wait_for_selector("body[data-loaded=true]")
    page.wait_for_selector("#entries-table tbody tr[data-entry-id]")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing scrolls sideways
    cards = page.locator(".card").all()
    assert all(card.bounding_box()["width"] <= 390 for card in cards)
    assert page.is_visible("#entries-table button.danger")
    page.screenshot(path=str(shots / "deja-dashboard-phone.png"), full_page=True)


def test_dashboard_with_a_wrong_token_asks_for_one_and_shows_no_data(live, browser):
    page = browser.new_page()
    page.goto(f"{live.base}/dashboard#token=not-the-token")
    page.wait_for_selector("#login:not(.hidden)")
    assert "refused" in page.inner_text("#error")
    assert page.get_attribute("[data-testid=entries]", "data-value") is None
    page.fill("#token-input", TOKEN)
    page.click("#login-form button")
    page.wait_for_selector("body[data-loaded=true]")
    assert value(page, "entries") == "5"


def test_the_printed_dashboard_link_signs_in_whatever_the_token_holds(tmp_path, upstream, browser, monkeypatch):
    token = "t%k n&x#1=/?"
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", token)
    with LiveProxy(tmp_path / "data", upstream) as proxy:
        port = int(proxy.base.rsplit(":", 1)[1])
        link = ready_lines(Settings(), "127.0.0.1", port).splitlines()[3].removeprefix("  dashboard  ")
        page = browser.new_page()
        page.goto(link)
        page.wait_for_selector("body[data-loaded=true]")
        assert value(page, "entries") == "0" and page.is_hidden("#login")


def test_chromium_is_debians(live):
    assert shutil.which("chromium") or Path(CHROMIUM).exists()
