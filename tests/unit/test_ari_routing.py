"""The ARI event router and the table the Stasis app builds with it (no Asterisk, no database)."""

from __future__ import annotations

import types
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from engine.app.ivr_admission import IvrAdmission
from engine.asterisk.flows.click_to_call import ChannelFact, RawFact
from engine.asterisk.flows.stasis import StasisApp
from engine.asterisk.links.ari import AriClient
from engine.asterisk.links.ari_router import AriEvent, AriEventRouter, event_channel
from engine.asterisk.naming import leg_channel_id, recording_name, target_channel_id
from engine.config.settings import CallSettings, IvrSettings
from engine.domain.click_to_call import Leg, RecordingFinished
from engine.domain.ivr import HttpLookup, LookupResult, MenuBook
from engine.domain.netpolicy import OutboundPolicy
from engine.store.repositories import Store


def test_the_first_handler_that_takes_an_event_ends_its_routing() -> None:
    router = AriEventRouter()
    seen: list[str] = []

    def first(event: AriEvent) -> bool:
        seen.append("first")
        return event.get("mine") == "first"

    def second(event: AriEvent) -> bool:
        seen.append("second")
        return True

    router.on("StasisStart", first)
    router.on("StasisStart", second)
    assert router.route({"type": "StasisStart", "mine": "first"})
    assert seen == ["first"]
    seen.clear()
    assert router.route({"type": "StasisStart"})
    assert seen == ["first", "second"]
    seen.clear()
    assert not router.route({"type": "ChannelVarset"})  # nobody takes it
    assert not router.route({})
    assert seen == []


def test_the_channel_an_event_is_about() -> None:
    assert event_channel({"channel": {"id": "PJSIP/a-1"}}) == "PJSIP/a-1"
    assert event_channel({"playback": {"target_uri": "channel:PJSIP/a-1"}}) == "PJSIP/a-1"
    assert event_channel({"recording": {"target_uri": "channel:PJSIP/a-1"}}) == "PJSIP/a-1"
    assert event_channel({"recording": {"target_uri": "bridge:c2c-x"}}) == ""
    assert event_channel({"type": "ChannelDtmfReceived"}) == ""


class _Seen:
    """What the flows were handed, instead of running them."""

    def __init__(self, app: StasisApp, monkeypatch: pytest.MonkeyPatch) -> None:
        self.facts: list[tuple[uuid.UUID, RawFact]] = []
        self.ivr_calls: list[AriEvent] = []
        self.ivr_events: list[AriEvent] = []
        monkeypatch.setattr(
            app.click_to_call, "submit", lambda sid, fact: self.facts.append((sid, fact))
        )
        assert app.ivr is not None
        monkeypatch.setattr(app.ivr, "start_call", self.ivr_calls.append)


class _OwnedCall:
    def __init__(self, seen: _Seen) -> None:
        self._seen = seen

    def on_ari(self, event: AriEvent) -> None:
        self._seen.ivr_events.append(event)


async def _no_menus(tenant: uuid.UUID) -> MenuBook:
    raise AssertionError("not loaded in these tests")


class _NoErp:
    async def ask(self, lookup: HttpLookup, policy: OutboundPolicy) -> LookupResult:
        raise AssertionError("not asked in these tests")


@pytest.fixture
async def app() -> AsyncIterator[StasisApp]:
    async with AriClient("http://127.0.0.1:9", "u", "p") as ari:
        # the store is not touched while events are only routed
        store = cast(Store, types.SimpleNamespace())
        admission = IvrAdmission(IvrSettings(), lag=lambda: 0.0)
        yield StasisApp(
            ari, store, CallSettings(), menus=_no_menus, erp=_NoErp(), admission=admission
        )


def test_click_to_call_events_become_facts_of_their_session(
    app: StasisApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _Seen(app, monkeypatch)
    sid, tid = uuid.uuid4(), uuid.uuid4()
    agent = leg_channel_id(sid, Leg.AGENT)
    target = target_channel_id(sid, tid)
    assert app.router.route({"type": "StasisStart", "channel": {"id": agent}, "args": ["c2c"]})
    assert app.router.route(
        {"type": "ChannelDestroyed", "channel": {"id": target}, "cause": 17, "cause_txt": "Busy"}
    )
    recording = {"name": recording_name(sid), "duration": 4}
    assert app.router.route({"type": "RecordingFinished", "recording": recording})
    assert app.router.route({"type": "RecordingFailed", "recording": {"name": recording_name(sid)}})
    assert seen.facts == [
        (sid, ChannelFact(agent, up=True)),
        (sid, ChannelFact(target, up=False, cause=17, cause_text="Busy")),
        (sid, RecordingFinished(4000)),
        (sid, RecordingFinished(None, failure="failed")),
    ]
    assert seen.ivr_calls == seen.ivr_events == []


def test_ivr_calls_are_asked_first_and_take_their_channels_events(
    app: StasisApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _Seen(app, monkeypatch)
    assert app.ivr is not None
    entered = {"type": "StasisStart", "channel": {"id": "PJSIP/caller-1"}, "args": ["ivr", "main"]}
    assert app.router.route(entered)
    assert seen.ivr_calls == [entered]
    # the call's channel and a target it rings are the call's; so are its playbacks
    call = _OwnedCall(seen)
    app.ivr.calls_by_channel["PJSIP/caller-1"] = call  # type: ignore[assignment]
    app.ivr.calls_by_channel["ivr-x-target-1"] = call  # type: ignore[assignment]
    events: list[dict[str, Any]] = [
        {"type": "ChannelDtmfReceived", "channel": {"id": "PJSIP/caller-1"}, "digit": "1"},
        {"type": "PlaybackFinished", "playback": {"target_uri": "channel:PJSIP/caller-1"}},
        {"type": "StasisStart", "channel": {"id": "ivr-x-target-1"}, "args": ["ivr-transfer"]},
        {"type": "ChannelDestroyed", "channel": {"id": "ivr-x-target-1"}, "cause": 16},
        {"type": "StasisEnd", "channel": {"id": "PJSIP/caller-1"}},
    ]
    for event in events:
        assert app.router.route(event)
    assert seen.ivr_events == events
    assert seen.facts == []


def test_events_of_channels_that_are_not_ours_are_dropped(
    app: StasisApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _Seen(app, monkeypatch)
    for event in (
        {"type": "StasisStart", "channel": {"id": "PJSIP/other-1"}, "args": []},
        {"type": "ChannelDestroyed", "channel": {"id": "PJSIP/other-1"}},
        {"type": "ChannelDtmfReceived", "channel": {"id": "PJSIP/other-1"}, "digit": "1"},
        {"type": "RecordingFinished", "recording": {"name": "voicemail-1"}},
        {"type": "ChannelVarset", "channel": {"id": leg_channel_id(uuid.uuid4(), Leg.AGENT)}},
    ):
        assert not app.router.route(event)
    assert seen.facts == seen.ivr_calls == seen.ivr_events == []
