"""The long-lived parts of engine/asterisk (and the loop watch) share the engine's lifecycle."""

from __future__ import annotations

import types
import uuid
from collections.abc import Callable
from typing import cast

import pytest

from engine.app.ivr_admission import IvrAdmission
from engine.asterisk.flows.ivr_agi import AgiIvr
from engine.asterisk.flows.ivr_ari import AriIvr
from engine.asterisk.flows.stasis import StasisApp
from engine.asterisk.links.agi_server import AgiChannel, AgiServer
from engine.asterisk.links.ami import AmiLink
from engine.asterisk.links.ari import AriClient, AriEventLink
from engine.config.settings import CallSettings, IvrSettings
from engine.domain.ivr import HttpLookup, LookupResult, MenuBook
from engine.domain.netpolicy import OutboundPolicy
from engine.errors import ClosedResourceError
from engine.lifecycle import Lifecycle, LifecycleState
from engine.loop_watch import LoopWatch
from engine.metrics import Metrics
from engine.store.repositories import Store

# a port nothing listens on: the links keep retrying in the background until closed
NOWHERE = "127.0.0.1"
STORE = cast(Store, types.SimpleNamespace())


async def _nothing(channel: AgiChannel) -> None:
    pass


async def _no_menus(tenant: uuid.UUID) -> MenuBook:
    raise AssertionError("not loaded")


class _NoErp:
    async def ask(self, lookup: HttpLookup, policy: OutboundPolicy) -> LookupResult:
        raise AssertionError("not asked")


def _admission() -> IvrAdmission:
    return IvrAdmission(IvrSettings(), lag=lambda: 0.0)


def _ari() -> AriClient:
    return AriClient(f"http://{NOWHERE}:9", "u", "p")


BUILDERS: dict[str, Callable[[], Lifecycle]] = {
    "AriClient": _ari,
    "AmiLink": lambda: AmiLink(NOWHERE, 9, "ctc", "x", backoff_initial=0.01, close_grace=1.0),
    "AgiServer": lambda: AgiServer(NOWHERE, 0, _nothing, close_grace=1.0),
    "AgiIvr": lambda: AgiIvr(
        STORE, _no_menus, CallSettings(), erp=_NoErp(), admission=_admission()
    ),
    "AriIvr": lambda: AriIvr(
        _ari(), STORE, _no_menus, CallSettings(), erp=_NoErp(), admission=_admission()
    ),
    "LoopWatch": lambda: LoopWatch(Metrics()),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
async def test_started_once_closed_once(name: str) -> None:
    component = BUILDERS[name]()
    assert component.lifecycle_state is LifecycleState.UNOPENED
    async with component as opened:
        assert opened is component
        assert component.is_open
        with pytest.raises(ClosedResourceError, match="started once"):
            await component.start()
    assert component.is_closed
    await component.close()  # twice is fine
    with pytest.raises(ClosedResourceError):
        await component.start()


async def test_the_stasis_app_opens_and_closes_its_link_and_flows() -> None:
    async with _ari() as ari:
        app = StasisApp(
            ari,
            STORE,
            CallSettings(),
            menus=_no_menus,
            erp=_NoErp(),
            admission=_admission(),
        )
        async with app:
            assert app.link.is_open
            assert app.click_to_call.is_open
            assert app.ivr is not None
            assert app.ivr.is_open
            assert not app.click_to_call.ready  # nothing answers on port 9
        assert app.link.is_closed
        assert app.click_to_call.is_closed
        assert app.ivr.is_closed


async def test_an_ari_client_is_used_only_while_open() -> None:
    ari = _ari()
    with pytest.raises(ClosedResourceError, match="start it first"):
        _ = ari.session
    async with ari:
        assert not ari.session.closed
    with pytest.raises(ClosedResourceError, match="it was closed"):
        _ = ari.session


async def test_an_event_link_needs_nothing_but_its_client() -> None:
    async with _ari() as ari:
        link = AriEventLink(ari, on_event=lambda event: None, backoff_initial=0.01)
        async with link:
            assert not link.connected.is_set()
        assert link.is_closed
