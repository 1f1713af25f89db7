"""The web console in headless chromium over an engine placing real calls through the
sandbox Asterisk to SIPp phones: a call appears on the live page, changes status and ends
there without a reload; the click-to-call form places a call that rings both phones; a
tenant's pages never show another tenant's call.

Screenshots of the pages with a real call go to /tmp/console-shots/ (``1x-…``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from engine.daemon import Engine
from engine.devtools.sandbox import Sandbox
from engine.ivr_yaml import load_menus
from engine.store.records import Tenant
from tests.e2e.engine_fixtures import (
    AGENT,
    AGENT_PORT,
    CUSTOMER,
    CUSTOMER_PORT,
    CallWatcher,
    initiate,
    running_engine,
)
from tests.e2e.helpers import SippPhone
from tests.e2e.test_dtmf_caller import dtmf_caller
from tests.support.browser import page_errors, screenshot, signed_in
from tests.support.net import free_port
from tests.support.tenants import new_tenant

pytestmark = pytest.mark.e2e

CALL_WAIT_MS = 30_000  # a status the phones bring about, seen on the page


@pytest.fixture
async def console_engine(
    migrated_db: str, sandbox: Sandbox, tmp_path: Path
) -> AsyncIterator[Engine]:
    """The click-to-call engine of the e2e tests, with its API on TCP for the browser."""
    async with running_engine(migrated_db, sandbox, tmp_path, tcp_port=free_port()) as engine:
        yield engine


async def _tenant_tab(engine: Engine, browser: Browser, name: str) -> tuple[Tenant, Page]:
    tenant = await new_tenant(engine.store, name=name)
    token = (await engine.store.tenants.issue_token(tenant.slug, "console")).token
    page = await signed_in(browser, f"http://127.0.0.1:{engine.api.tcp_port}", token)
    return tenant, page


async def test_a_sandbox_call_appears_changes_status_and_ends_on_the_live_page_without_reload(
    console_engine: Engine, browser: Browser, sipp_phone: Callable[..., SippPhone]
) -> None:
    tenant, page = await _tenant_tab(console_engine, browser, "Live Desk")
    await console_engine.store.recording.set_default(tenant.id, is_enabled=True, fmt="wav")
    await page.evaluate("window.notReloaded = true")
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT),
        sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=4000) as customer,
    ):
        watch = CallWatcher(console_engine)
        placed = await initiate(console_engine, tenant=tenant.slug)
        watch.session_id = uuid.UUID(placed["id"])
        row = page.locator(f"#live-calls tr[data-session-id='{placed['id']}']")
        await expect(row).to_be_visible()
        await expect(row).to_have_attribute("data-status", "connected", timeout=CALL_WAIT_MS)
        await expect(row.locator("[data-leg=agent]")).to_have_attribute("data-state", "up")
        await expect(row.locator("[data-leg=customer]")).to_have_attribute("data-state", "up")
        await expect(row).to_contain_text("agent ⇄ customer")
        await expect(row).to_contain_text("rec")
        await screenshot(page, "10-live-call-in-sandbox")
        ended = page.locator(f"#ended-calls tr[data-session-id='{placed['id']}']")
        await expect(ended).to_have_attribute("data-status", "completed", timeout=CALL_WAIT_MS)
        await expect(ended).to_contain_text("customer hung up")
        await expect(row).to_have_count(0)
        assert await customer.wait_async(30) == 0, customer.report()
    assert await page.evaluate("window.notReloaded") is True
    await screenshot(page, "11-live-call-ended")

    # its timeline, and its recording played in the page once Asterisk has finished it
    await watch.until_event("recording.finished")
    watch.close()
    await ended.click()
    await expect(page.locator("#call-detail")).to_have_attribute("data-status", "completed")
    await expect(page.locator("#timeline li[data-event-type='recording.finished']")).to_have_count(
        1
    )
    audio = page.locator("#recording-audio")
    await expect(audio).to_have_count(1)
    seconds = await audio.evaluate(
        "audio => audio.readyState >= 1 ? audio.duration : new Promise(resolve =>"
        " audio.addEventListener('loadedmetadata', () => resolve(audio.duration)))"
    )
    assert 2.0 <= seconds <= 7.0, seconds  # the customer talked 4 s
    await screenshot(page, "12-call-detail-with-recording")
    assert page_errors(page) == []
    await page.context.close()


async def test_the_form_places_a_call_that_rings_both_phones(
    console_engine: Engine, browser: Browser, sipp_phone: Callable[..., SippPhone]
) -> None:
    _, page = await _tenant_tab(console_engine, browser, "Form Desk")
    await page.click("nav a[data-view=place]")
    await page.fill("#f-agent_number", AGENT)
    await page.fill("#f-customer_number", CUSTOMER)
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=1000) as customer,
    ):
        watch = CallWatcher(console_engine)
        await page.click("#place-submit")
        placed = page.locator("#place-ok")
        await expect(placed).to_be_visible()
        session_id = await placed.get_attribute("data-session-id")
        assert session_id is not None
        watch.session_id = uuid.UUID(session_id)
        done = await watch.until("completed", "failed", "canceled", "busy", "no_answer")
        assert done.status_to == "completed", watch.trail()
        assert await agent.wait_async(30) == 0, agent.report()
        assert await customer.wait_async(30) == 0, customer.report()
    watch.close()
    # the tab followed the call while the form was open: the live page lists it as ended
    await page.click("nav a[data-view=live]")
    await expect(
        page.locator(f"#ended-calls tr[data-session-id='{session_id}']")
    ).to_have_attribute("data-status", "completed")
    await page.click("nav a[data-view=history]")
    await expect(
        page.locator(f"#history-list tr[data-session-id='{session_id}']")
    ).to_have_attribute("data-status", "completed")
    assert page_errors(page) == []
    await page.context.close()


async def test_a_tenants_pages_never_show_another_tenants_call(
    console_engine: Engine, browser: Browser, sipp_phone: Callable[..., SippPhone]
) -> None:
    ours, our_page = await _tenant_tab(console_engine, browser, "Ours")
    theirs, their_page = await _tenant_tab(console_engine, browser, "Theirs")
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT),
        sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=1000),
    ):
        placed = await initiate(console_engine, tenant=theirs.slug)
        their_row = their_page.locator(f"#ended-calls tr[data-session-id='{placed['id']}']")
        await expect(their_row).to_have_attribute("data-status", "completed", timeout=CALL_WAIT_MS)
    # the other tab was open, signed in and live all along
    await expect(our_page.locator("#stream-state")).to_have_text("live")
    assert await our_page.locator(f"[data-session-id='{placed['id']}']").count() == 0
    await our_page.click("nav a[data-view=history]")
    await expect(our_page.locator("#history-list td.empty")).to_be_visible()
    await our_page.click("nav a[data-view=agents]")
    await expect(our_page.locator("#agents td.empty")).to_be_visible()
    await our_page.goto(
        f"http://127.0.0.1:{console_engine.api.tcp_port}/console/#/calls/{placed['id']}"
    )
    await expect(our_page.locator("#view .error")).to_contain_text("not found")
    assert ours.id != theirs.id
    await our_page.context.close()
    await their_page.context.close()


IVR_MENUS = """\
menus:
  main:
    greeting: sound:hello-world
    timeout_ms: 8000
    options:
      1: {action: submenu, menu: sales}
  sales:
    greeting: sound:beep
    timeout_ms: 8000
    options:
      "#": {action: hangup}
"""


async def test_an_inbound_caller_shows_in_its_ivr_menu_with_the_keys_it_pressed(
    migrated_db: str,
    sandbox: Sandbox,
    tmp_path: Path,
    browser: Browser,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    async with running_engine(
        migrated_db, sandbox, tmp_path, app="ctc", agi=True, tcp_port=free_port()
    ) as engine:
        tenant = await engine.store.tenants.by_slug("default")  # the dialplan's callers
        await engine.store.ivr.save(tenant.id, load_menus(IVR_MENUS))
        token = (await engine.store.tenants.issue_token(tenant.slug, "console")).token
        page = await signed_in(browser, f"http://127.0.0.1:{engine.api.tcp_port}", token)
        # "1" at 3 s (the caller sits in main meanwhile), "#" 3 s later in sales: hangup
        caller = dtmf_caller(sipp_phone, tmp_path / "caller", "1#", wait_ms=3000, gap_ms=3000)
        watch = CallWatcher(engine)
        with caller:
            created = await watch.until_event("session.created", within=20)
            session_id = str(created.session_id)
            row = page.locator(f"#live-calls tr[data-session-id='{session_id}']")
            await expect(row).to_contain_text("caller in IVR “main”", timeout=CALL_WAIT_MS)
            await expect(row).to_contain_text("keys 1", timeout=CALL_WAIT_MS)
            await screenshot(page, "13-inbound-ivr-call-live")
            watch.session_id = created.session_id
            end = await watch.until("completed", "failed", "canceled", within=40)
            assert end.status_to == "completed", watch.trail()
            assert await caller.wait_async(30) == 0, caller.report()
        watch.close()
        ended = page.locator(f"#ended-calls tr[data-session-id='{session_id}']")
        await expect(ended).to_have_attribute("data-status", "completed")
        await page.goto(f"http://127.0.0.1:{engine.api.tcp_port}/console/#/calls/{session_id}")
        keys = page.locator("#timeline li[data-event-type='ivr.dtmf']")
        await expect(keys).to_have_count(2)
        await expect(keys.first).to_contain_text("menu=main")
        await expect(keys.last).to_contain_text("menu=sales")
        await screenshot(page, "14-inbound-ivr-call-detail")
        assert page_errors(page) == []
        await page.context.close()
