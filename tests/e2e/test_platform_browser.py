"""End to end in real Chromium: sign up, approval, login, spawn, Data panel query, pyvo cell via pachon.client.

Chromium is the system's (/usr/bin/chromium, never downloaded); Playwright drives it headless.
The screenshots are kept under ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from fixtures.platform import ADMIN, ADMIN_PASSWORD, RunningPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser(require):  # type: ignore[no-untyped-def]
    chromium = require.binary(
        "chromium", "install Debian's chromium (scripts/system-deps)", paths=("/usr/bin/chromium",)
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require.missing(
            "the Python package playwright", "pip install playwright (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1)"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def _login(page, platform: RunningPlatform, name: str, password: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")


def test_signup_approval_login_data_panel_and_notebook(browser, running_platform: RunningPlatform) -> None:  # type: ignore[no-untyped-def]
    running_platform.require_tap()
    ARTIFACTS.mkdir(exist_ok=True)
    name = "astro" + uuid.uuid4().hex[:5]
    password = "Pw-" + uuid.uuid4().hex[:12]

    # 1. Sign up on the hub's sign-up page.
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{running_platform.url}/hub/signup")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.fill("#password_confirmation_input", password)
    page.click("#signup_submit")
    page.wait_for_selector("text=information has been sent to the admin", timeout=30_000)
    # Not approved yet: the login page says so.
    _login(page, running_platform, name, password)
    page.wait_for_selector("text=has not been authorized", timeout=30_000)
    context.close()

    # 2. The admin approves the account on /hub/authorize.
    admin = browser.new_context()
    admin_page = admin.new_page()
    _login(admin_page, running_platform, ADMIN, ADMIN_PASSWORD)
    admin_page.wait_for_url("**/user/**", timeout=90_000)  # the admin's own server starts too
    admin_page.goto(f"{running_platform.url}/hub/authorize")
    row = admin_page.locator("tr", has_text=name)
    row.locator("a", has_text="Authorize").click()
    admin_page.wait_for_selector(f"tr:has-text('{name}') >> text=Unauthorize", timeout=30_000)
    admin.close()

    # 3. The user logs in; the hub spawns their server and JupyterLab opens with our extension.
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    started = time.monotonic()
    _login(page, running_platform, name, password)
    page.wait_for_url(f"**/user/{name}/lab**", timeout=90_000)
    page.wait_for_selector(".pachon-version", timeout=60_000)
    spawn_s = time.monotonic() - started
    assert page.inner_text(".pachon-version").startswith("Pachón ")
    # JupyterLab's news prompt and update check are off on the platform (settings defaults).
    notification = context.request.get(
        f"{running_platform.url}/user/{name}/lab/api/settings/@jupyterlab/apputils-extension:notification"
    )
    assert notification.ok, notification.status
    defaults = notification.json()["schema"]["properties"]
    assert defaults["fetchNews"]["default"] == "false" and defaults["checkForUpdates"]["default"] is False

    # 4. The Data panel browses TAP_SCHEMA and runs a query with a preview.
    page.click('li[data-id="pachon-data-panel"]')
    page.wait_for_selector(".pachon-schema", timeout=60_000)
    schemas = page.locator(".pachon-schema > summary").all_inner_texts()
    assert "tap_schema" in [s.lower() for s in schemas]
    page.fill(".pachon-adql", "SELECT TOP 4 schema_name, table_name FROM TAP_SCHEMA.tables")
    page.click(".pachon-run")
    page.wait_for_selector(".pachon-preview tr:nth-child(5)", timeout=60_000)
    assert page.inner_text(".pachon-status").startswith("4 rows")
    page.wait_for_selector(".pachon-history-item a", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "platform-data-panel.png"))

    # 5. One click on the history opens a notebook cell that rebuilds the query with pachon.client.tap().
    page.locator(".pachon-history-item a").first.click()
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    source = page.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor", has_text="pachon.client.tap()").first
    source.wait_for(timeout=30_000)
    page.wait_for_selector(".jp-StatusBar-TextItem >> text=Idle", timeout=120_000)
    # A freshly started kernel can drop the very first request; run again until the cell has output.
    for _attempt in range(4):
        source.click()
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_selector(".jp-OutputArea-output >> text=Table length=4", timeout=30_000)
            break
        except Exception:
            continue
    else:
        page.screenshot(path=str(ARTIFACTS / "platform-notebook-failure.png"))
        pytest.fail(
            "the pyvo cell never produced its table; see test-artifacts/platform-notebook-failure.png"
        )
    page.screenshot(path=str(ARTIFACTS / "platform-notebook-pyvo.png"))
    # Minutes into the session, JupyterLab has not asked about Jupyter news.
    assert page.locator("text=notified about official Jupyter news").count() == 0

    # 6. The Tutorials menu copies the tutorial notebooks into the user's home.
    page.click("li.lm-MenuBar-item:has-text('Tutorials')")
    page.click("li.lm-Menu-item:has-text('Copy the tutorials into my home')")
    page.wait_for_selector(".jp-Dialog >> text=Copied into ~/tutorials", timeout=30_000)
    page.click(".jp-Dialog button.jp-mod-accept")
    home = running_platform.repo / "state" / "hub" / "homes" / name / "tutorials"
    assert (home / "01-tap-basics.ipynb").is_file() and (home / "02-butler-images.ipynb").is_file()
    context.close()

    assert spawn_s < 60, f"login + spawn + lab took {spawn_s:.1f} s"
    assert (ARTIFACTS / "platform-data-panel.png").stat().st_size > 10_000
    assert password not in running_platform.logs()
