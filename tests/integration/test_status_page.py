"""The operators' status page in a real browser (Debian's Chromium driven by Playwright) against
the whole monitored stack: it shows what the admin endpoints say, follows a Redis outage and its
end by itself, asks for a token the monitor refuses, and keeps the last data, greyed, when the
monitor stops answering.

Screenshots go to a folder the test prints; with ``TRIPLINE_UPDATE_SCREENSHOT=1`` the one taken
during the outage also replaces ``docs/ops-status-page.png`` (the README's picture).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Response,
    async_playwright,
    expect,
)

from tripline.common.auth import Role, mint_token
from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.common.tasks import stop_task
from tripline.devstack.harness import scaled, start_together, stop_together
from tripline.devstack.platform import MONITOR_ENV, PlatformStack
from tripline.devstack.stack import url
from tripline.monitor.settings import MonitorSettings

pytestmark = pytest.mark.integration

CHROMIUM = Path(os.environ.get("TRIPLINE_CHROMIUM", "/usr/bin/chromium"))
REPOSITORY = Path(__file__).parents[2]
README_SCREENSHOT = REPOSITORY / "docs" / "ops-status-page.png"
# The page refreshes every 5 s and the monitor checks health every 2 s.
STATE_CHANGE_S = 30
STALE = re.compile(r"\bstale\b")
# How long a condition must hold before the platform's monitor raises its alert.
ALERT_FOR_S = float(
    MONITOR_ENV.get("ALERT_FOR_S", MonitorSettings.model_fields["alert_for_s"].default)
)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: apt-get install chromium, or set TRIPLINE_CHROMIUM"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    # Dark, as an operator's screen at night; large enough for every panel.
    context = await browser.new_context(
        viewport={"width": 1400, "height": 1000}, color_scheme="dark"
    )
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        # Chromium reports there what the Content-Security-Policy blocked; the script, a panel
        # it could not draw.
        if "Content Security" in message.text or "could not draw" in message.text:
            errors.append(message.text)

    opened.on("console", on_console)
    try:
        yield opened
    finally:
        await context.close()
    assert not errors, f"the page's script failed or broke its policy: {errors}"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ops-screenshots")
    print(f"status page screenshots: {folder}")
    return folder


async def open_page(page: Page, monitor_url: str, token: str) -> None:
    response = await page.goto(f"{monitor_url}/ops#token={token}")
    assert response is not None
    assert response.ok
    assert "default-src 'self'" in response.headers["content-security-policy"]
    # The token is moved into session storage at once, out of the address bar and history.
    assert "token" not in page.url


async def dom_rows(page: Page, selector: str, *attributes: str) -> list[dict[str, str]]:
    """The ``data-*`` attributes of every row matching ``selector``, as the page shows them."""
    rows: list[dict[str, str]] = await page.eval_on_selector_all(
        selector,
        "(rows, names) => rows.map(row => Object.fromEntries("
        "names.map(name => [name, row.dataset[name]])))",
        list(attributes),
    )
    return rows


async def page_shows(page: Page, health: dict[str, Any], alerts: dict[str, Any]) -> bool:
    """Whether the page's status, dependency, replica and alert rows are exactly those of
    ``health`` and ``alerts``."""
    status = await page.text_content("#platform-status")
    dependencies = await dom_rows(page, "#dependencies tr[data-dependency]", "dependency", "state")
    replicas = await dom_rows(
        page, "#replicas tr[data-url]", "service", "serviceState", "url", "state"
    )
    shown_alerts = await dom_rows(page, "#alerts li[data-alert]", "alert", "severity")
    return (
        status == health["status"]
        and {row["dependency"]: row["state"] for row in dependencies}
        == {name: dep["state"] for name, dep in health["dependencies"].items()}
        and sorted(tuple(row.values()) for row in replicas)
        == sorted(
            (service, info["state"], replica["url"], replica["state"])
            for service, info in health["services"].items()
            for replica in info["replicas"]
        )
        and sorted(tuple(row.values()) for row in shown_alerts)
        == sorted((alert["id"], alert["severity"]) for alert in alerts["active"])
    )


async def next_refresh(page: Page) -> tuple[dict[str, Any], dict[str, Any]]:
    """The admin health and alerts JSON of the page's next refresh, once the page shows them."""

    def answer_to(path: str) -> Callable[[Response], bool]:
        return lambda response: urlsplit(response.url).path.endswith(path)

    timeout_ms = scaled(15) * 1000
    async with (
        page.expect_response(answer_to("/api/admin/health"), timeout=timeout_ms) as health_answer,
        page.expect_response(answer_to("/api/admin/alerts"), timeout=timeout_ms) as alerts_answer,
    ):
        pass
    health: dict[str, Any] = await (await health_answer.value).json()
    alerts: dict[str, Any] = await (await alerts_answer.value).json()
    deadline = asyncio.get_running_loop().time() + scaled(5)
    while not await page_shows(page, health, alerts):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"the page does not show what it was given: {health} {alerts}")
        await asyncio.sleep(0.1)
    return health, alerts


async def refresh_until_alert(page: Page, subject: str) -> None:
    """Follow the page's refreshes (each checked against the JSON it drew) until it shows an
    active alert about ``subject``."""
    deadline = asyncio.get_running_loop().time() + scaled(STATE_CHANGE_S) + ALERT_FOR_S
    while True:
        _health, alerts = await next_refresh(page)
        if any(alert["subject"] == subject for alert in alerts["active"]):
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"no alert about {subject} on the page: {alerts}")


@asynccontextmanager
async def traffic(gateway_url: str) -> AsyncIterator[None]:
    """Riders' requests through the gateway to core and tracking while the block runs, so the
    charts draw real lines (four riders, each well under the rate limits)."""
    riders = [mint_token(LOCAL_JWT_SECRET, sub=f"ops-rider-{n}", role=Role.RIDER) for n in range(4)]

    async def send() -> None:
        async with httpx.AsyncClient(base_url=gateway_url, timeout=scaled(5)) as client:
            for n in itertools.count():
                headers = {"Authorization": f"Bearer {riders[n % len(riders)]}"}
                # Answers do not matter (404s, 503s during the outage): only that they are counted.
                with contextlib.suppress(httpx.HTTPError):
                    await client.get("/api/users/me", headers=headers)
                    await client.get("/api/tracking/trips/ops-trip/location", headers=headers)
                await asyncio.sleep(0.25)

    task = asyncio.create_task(send())
    try:
        yield
    finally:
        await stop_task(task)


async def test_the_page_follows_a_redis_outage_and_its_end(
    page: Page, platform_stack: PlatformStack, screenshots: Path
) -> None:
    async with traffic(platform_stack.gateway_url):
        await follow_a_redis_outage(page, platform_stack, screenshots)


async def follow_a_redis_outage(page: Page, stack: PlatformStack, screenshots: Path) -> None:
    await open_page(page, stack.monitor_url, stack.admin_token)
    status = page.locator("#platform-status")
    await expect(status).to_have_text("ok", timeout=scaled(STATE_CHANGE_S) * 1000)

    health, alerts = await next_refresh(page)
    assert health["status"] == "ok"
    assert {"redis", "mongodb"} <= set(health["dependencies"])
    assert all(dep["state"] == "ok" for dep in health["dependencies"].values()), health
    # The replicas are the stack's own processes, every one ready.
    assert sorted(
        (service, replica["url"], replica["state"])
        for service, info in health["services"].items()
        for replica in info["replicas"]
    ) == sorted(
        (service, url(port), "ready")
        for service, port in (
            ("gateway", stack.ports.gateway),
            ("core", stack.ports.core),
            ("upload", stack.ports.upload),
            ("tracking", stack.ports.tracking),
        )
    )
    if not alerts["active"]:
        await expect(page.locator("#alerts")).to_have_text("No active alerts")
    for service in ("gateway", "core", "tracking"):
        line = page.locator(
            f'#charts article[data-service="{service}"] [data-series="rps"] polyline'
        )
        await expect(line.first).to_be_attached(timeout=scaled(STATE_CHANGE_S) * 1000)
    await page.screenshot(path=screenshots / "ops-ok.png", full_page=True)

    redis_row = page.locator('#dependencies tr[data-dependency="redis"]')
    await stop_together([stack.redis])
    try:
        await expect(status).to_have_text("degraded", timeout=scaled(STATE_CHANGE_S) * 1000)
        await expect(redis_row).to_have_attribute("data-state", "down")
        await expect(redis_row).to_contain_text("down")
        await refresh_until_alert(page, "redis")
        await page.screenshot(path=screenshots / "ops-degraded.png", full_page=True)
    finally:
        await start_together([stack.redis])

    await expect(status).to_have_text("ok", timeout=scaled(STATE_CHANGE_S * 2) * 1000)
    await expect(redis_row).to_have_attribute("data-state", "ok")
    await page.screenshot(path=screenshots / "ops-recovered.png", full_page=True)
    if os.environ.get("TRIPLINE_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshots / "ops-degraded.png", README_SCREENSHOT)
        print(f"updated {README_SCREENSHOT}")


async def test_a_refused_token_is_asked_for_again(
    page: Page, platform_stack: PlatformStack
) -> None:
    await open_page(page, platform_stack.monitor_url, "not-a-token")

    sign_in = page.locator("#sign-in")
    await expect(sign_in).to_be_visible(timeout=scaled(10) * 1000)
    await expect(page.locator("#sign-in-reason")).to_contain_text("HTTP 401")

    await page.fill("#token-input", platform_stack.admin_token)
    await page.click("#token-form button[type=submit]")
    await expect(sign_in).to_be_hidden()
    await expect(page.locator("#platform-status")).to_have_text(
        "ok", timeout=scaled(STATE_CHANGE_S) * 1000
    )


async def test_an_unreachable_monitor_leaves_the_last_data_greyed(
    page: Page, platform_stack: PlatformStack, screenshots: Path
) -> None:
    await open_page(page, platform_stack.monitor_url, platform_stack.admin_token)
    status = page.locator("#platform-status")
    await expect(status).to_have_text("ok", timeout=scaled(STATE_CHANGE_S) * 1000)
    shown = await dom_rows(page, "#dependencies tr[data-dependency]", "dependency", "state")

    await page.route("**/api/admin/**", lambda route: route.abort("connectionrefused"))
    banner = page.locator("#connection")
    await expect(banner).to_contain_text("Monitor unreachable", timeout=scaled(15) * 1000)
    await expect(status).to_have_text("ok")
    await expect(status).to_have_class(STALE)
    assert await dom_rows(page, "#dependencies tr[data-dependency]", "dependency", "state") == shown
    await page.screenshot(path=screenshots / "ops-unreachable.png", full_page=True)

    await page.unroute("**/api/admin/**")
    await expect(banner).to_be_hidden(timeout=scaled(15) * 1000)
    await expect(status).not_to_have_class(STALE)
