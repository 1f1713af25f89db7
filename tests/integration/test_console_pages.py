"""The web console in a real headless browser (chromium), over an engine without
Asterisk: calls are driven through the API (``PATCH …/status``) as a carrier's would be,
and the pages must show what the API holds for the signed-in tenant only. The e2e tests
(tests/e2e/test_console.py) do the same with calls placed through the sandbox Asterisk.

Each test leaves a screenshot of the page it checked in /tmp/console-shots/.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Page, expect

from engine.daemon import Engine
from engine.store.records import Tenant
from tests.support.browser import page_errors, screenshot, signed_in
from tests.support.calls import C2C, CONNECT, initiate_body, move_call, place_call
from tests.support.http import Api
from tests.support.tenants import new_tenant, tenant_headers

MAIN = {
    "description": "Front desk",
    "greeting": "sound:main-menu",
    "options": {
        "1": {"action": "submenu", "menu": "sales"},
        "2": {"action": "transfer", "target_type": "agent", "target": "1001"},
    },
    "fallback": {"action": "hangup", "prompt": "sound:bye"},
}
SALES = {"options": {"9": {"action": "back"}, "0": {"action": "hangup"}}}


async def _tenant_page(engine: Engine, browser: Browser, name: str) -> tuple[Tenant, Page]:
    tenant = await new_tenant(engine.store, name=name)
    token = (await engine.store.tenants.issue_token(tenant.slug, "console")).token
    page = await signed_in(browser, f"http://127.0.0.1:{engine.api.tcp_port}", token)
    return tenant, page


async def _call(api: Api, slug: str, *statuses: str, **body: Any) -> str:
    status, placed, _ = await api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(**body), headers=tenant_headers(slug)
    )
    assert status == 202, placed
    await move_call(api, slug, placed["id"], *statuses)
    return str(placed["id"])


async def test_signing_in_takes_a_valid_token_and_keeps_it_in_that_tab_only(
    api_engine: Engine, browser: Browser
) -> None:
    _, page = await _tenant_page(api_engine, browser, "Acme Sales")
    await expect(page.locator("#tenant")).to_contain_text("Acme Sales")
    assert await page.evaluate("sessionStorage.getItem('ctc.token')")
    assert await page.evaluate("localStorage.length") == 0
    assert "ctc" not in str(await page.context.cookies())

    other_tab = await (await browser.new_context()).new_page()  # another tab: no token
    await other_tab.goto(f"http://127.0.0.1:{api_engine.api.tcp_port}/")
    await expect(other_tab.locator("#login-form")).to_be_visible()
    await other_tab.fill("#token", "not-a-token")
    await other_tab.click("#login-form button[type=submit]")
    await expect(other_tab.locator("#login-error")).to_contain_text("not valid")
    await screenshot(other_tab, "00-sign-in")

    await page.click("#logout")
    await expect(page.locator("#login-form")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('ctc.token')") is None
    assert page_errors(page) == []
    await page.context.close()
    await other_tab.context.close()


async def test_the_live_page_follows_a_call_to_its_end_without_a_reload_and_only_the_tenants(
    api_engine: Engine, browser: Browser, unix_api: Api
) -> None:
    tenant, page = await _tenant_page(api_engine, browser, "Live Desk")
    other = await new_tenant(api_engine.store)
    await page.evaluate("window.notReloaded = true")
    sid = await _call(unix_api, tenant.slug, agent_id="ana")
    theirs = await _call(unix_api, other.slug, agent_id="eve")
    row = page.locator(f"#live-calls tr[data-session-id='{sid}']")
    await expect(row).to_have_attribute("data-status", "queued")
    await move_call(unix_api, tenant.slug, sid, *CONNECT)
    await expect(row).to_have_attribute("data-status", "connected")
    await expect(row.locator("[data-leg=customer]")).to_have_attribute("data-state", "up")
    await expect(row).to_contain_text("agent ⇄ customer")
    await screenshot(page, "01-live-calls")
    await move_call(unix_api, tenant.slug, sid, "completed")
    await expect(page.locator(f"#ended-calls tr[data-session-id='{sid}']")).to_have_attribute(
        "data-status", "completed"
    )
    await expect(row).to_have_count(0)
    assert await page.evaluate("window.notReloaded") is True
    assert await page.locator(f"[data-session-id='{theirs}']").count() == 0

    # the admin ends a call from its row: a first click asks, the second ends it
    stuck = await _call(unix_api, tenant.slug, *CONNECT, agent_id="bo")
    end = page.locator(f"#live-calls tr[data-session-id='{stuck}'] button.end-call")
    await end.click()
    await expect(end).to_have_text("End call?")
    await end.click()
    gone = page.locator(f"#ended-calls tr[data-session-id='{stuck}']")
    await expect(gone).to_have_attribute("data-status", "completed")
    await expect(gone).to_contain_text("ended from the console")
    assert page_errors(page) == []
    await page.context.close()


async def test_history_filters_calls_and_opens_one_calls_timeline(
    api_engine: Engine, browser: Browser, unix_api: Api
) -> None:
    tenant, page = await _tenant_page(api_engine, browser, "History Desk")
    answered = await _call(unix_api, tenant.slug, *CONNECT, "completed", external_ref="T-1")
    missed = await _call(unix_api, tenant.slug, "dialing_agent", "no_answer")
    theirs = await place_call(unix_api, (await new_tenant(api_engine.store)).slug, "canceled")
    await page.click("nav a[data-view=history]")
    rows = page.locator("#history-list tbody tr[data-session-id]")
    await expect(rows).to_have_count(2)
    assert await page.locator(f"[data-session-id='{theirs}']").count() == 0
    await page.click("#status-chips .chip[data-status=no_answer]")
    await page.click("#history-filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-session-id", missed)
    await page.click("#history-filters button[type=reset]")
    await page.fill("#h-external_ref", "T-1")
    await page.click("#history-filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-session-id", answered)
    await page.fill("#h-external_ref", "")
    await page.click("#history-filters button[type=submit]")
    await expect(rows).to_have_count(2)
    await screenshot(page, "02-history")

    await rows.first.click()  # newest first: the missed call
    await rows.nth(0).wait_for(state="detached")
    await page.goto(f"http://127.0.0.1:{api_engine.api.tcp_port}/console/#/calls/{answered}")
    await expect(page.locator("#call-detail")).to_have_attribute("data-status", "completed")
    events = page.locator("#timeline li")
    await expect(events).to_have_count(6)  # created, the four of CONNECT, completed
    await expect(events.last).to_contain_text("status.changed")
    await expect(page.locator("#recording")).to_contain_text("not recorded")
    await screenshot(page, "03-call-detail")
    assert page_errors(page) == []
    await page.context.close()


async def test_the_form_places_a_call_with_an_idempotency_key_and_names_a_bad_field(
    api_engine: Engine, browser: Browser
) -> None:
    tenant, page = await _tenant_page(api_engine, browser, "Form Desk")
    await page.click("nav a[data-view=place]")
    await page.fill("#f-agent_number", "1001")
    await page.fill("#f-customer_number", "12")
    await page.click("#place-submit")
    await expect(page.locator("#place-error")).to_be_visible()
    await expect(page.locator("#f-customer_number")).to_have_class("invalid")

    await page.fill("#f-customer_number", "+14155550100")
    await page.fill("#f-external_ref", "LEAD-7")
    async with page.expect_request(f"**{C2C}/initiate") as sent:
        await page.click("#place-submit")
    assert (await sent.value).headers.get("idempotency-key")
    placed = page.locator("#place-ok")
    await expect(placed).to_be_visible()
    session_id = await placed.get_attribute("data-session-id")
    assert session_id is not None
    page_of_calls = await api_engine.store.sessions.find(
        tenant.id, filters=_by_ref("LEAD-7"), limit=10
    )
    assert [str(s.id) for s in page_of_calls.items] == [session_id]
    await screenshot(page, "04-place-call")
    assert page_errors(page) == []
    await page.context.close()


def _by_ref(ref: str) -> Any:
    from engine.store.records import SessionFilter

    return SessionFilter(external_ref=ref)


async def test_agents_ivr_menus_and_statistics_pages_show_the_tenants_own(
    api_engine: Engine, browser: Browser, unix_api: Api
) -> None:
    tenant, page = await _tenant_page(api_engine, browser, "Ops Desk")
    headers = tenant_headers(tenant.slug)
    for name, menu in (("sales", SALES), ("main", MAIN)):
        status, body, _ = await unix_api.call(
            "PUT", f"/api/v1/ivr-menus/{name}", json=menu, headers=headers
        )
        assert status == 201, body
    status, body, _ = await unix_api.call(
        "POST",
        "/api/v1/agent-activity",
        json={"agent_id": "ana", "activity": "break"},
        headers=headers,
    )
    assert status == 201, body
    await _call(unix_api, tenant.slug, *CONNECT, agent_id="bo")
    for _ in range(3):
        await _call(unix_api, tenant.slug, *CONNECT, "completed", agent_id="cy")
    await _call(unix_api, tenant.slug, "dialing_agent", "no_answer", agent_id="cy")

    await page.click("nav a[data-view=agents]")
    board = page.locator("#agents tbody tr[data-agent]")
    await expect(board).to_have_count(3)
    await expect(page.locator("#agents tr[data-agent=ana]")).to_have_attribute(
        "data-state", "break"
    )
    await expect(page.locator("#agents tr[data-agent=bo]")).to_have_attribute(
        "data-state", "on_call"
    )
    await expect(page.locator("#agents tr[data-agent=cy]")).to_have_attribute(
        "data-state", "available"
    )
    await screenshot(page, "05-agents")

    await page.click("nav a[data-view=ivr]")
    main = page.locator("#ivr-menus li[data-menu=main]")
    await expect(main).to_contain_text("Front desk")
    await expect(main.locator("li[data-key='1'] li[data-menu=sales]")).to_contain_text("hangup")
    await expect(main.locator("li[data-key='2']")).to_contain_text("transfer to agent 1001")
    await expect(page.locator("#ivr-menus .card")).to_have_count(1)  # sales hangs under main
    await screenshot(page, "06-ivr-menus")

    await page.click("nav a[data-view=stats]")
    await expect(page.locator("#kpi-placed .value")).to_have_text("5")
    await expect(page.locator("#kpi-rate .value")).to_have_text(
        "80%"
    )  # 4 answered (one still talking) of 5
    bars = page.locator("#stats rect[data-series=placed]")
    await expect(bars.first).to_be_visible()
    # the five calls fall in one minute, or in two when their creation crossed a minute
    values = [await bar.get_attribute("data-value") for bar in await bars.all()]
    assert len(values) in (1, 2), values
    assert sum(int(v or 0) for v in values) == 5, values
    await screenshot(page, "07-statistics")
    assert page_errors(page) == []
    await page.context.close()
