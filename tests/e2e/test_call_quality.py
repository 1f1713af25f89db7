"""Call quality on the sandbox: a bridged click-to-call whose phones send real RTP gets a
quality row per leg (samples during the call, final figures from Asterisk's hangup) with
plausible figures and an E-model MOS; a leg under the MOS floor raises ``quality.low_mos``.
"""

from __future__ import annotations

from pathlib import Path

from engine.config.settings import QualitySettings
from engine.devtools.rtp_audio import pcap_from_pcm, silence_pcm, speech_pcm
from engine.devtools.sandbox import Sandbox
from engine.devtools.sipp import SippPhone
from engine.store.records import QualityMetric
from tests.e2e.engine_fixtures import (
    AGENT_PORT,
    CUSTOMER_PORT,
    CallWatcher,
    initiate,
    running_engine,
)
from tests.support.waiting import eventually

SPEECH = "please call me back tomorrow morning about my order"


def talking_phone(workdir: Path, scenario: str, port: int, pcm: bytes, **kwargs: int) -> SippPhone:
    """A SIPp phone that sends ``pcm`` as RTP once answered (``talk.pcap`` in its own
    working directory)."""
    workdir.mkdir(parents=True)
    pcap_from_pcm(pcm, workdir / "talk.pcap")
    return SippPhone(scenario, port=port, workdir=workdir, **kwargs)


async def test_a_bridged_call_gets_a_quality_row_per_leg(
    migrated_db: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    # A loopback call rates the clean maximum (MOS 4.41); a floor above it makes every
    # leg "low", so the alert path runs for real.
    quality = QualitySettings(sample_interval=1.0, mos_floor=4.45)
    async with running_engine(migrated_db, sandbox, tmp_path, quality=quality) as engine:
        speech = speech_pcm(SPEECH)
        agent = talking_phone(tmp_path / "agent", "uas_talk.xml", AGENT_PORT, silence_pcm(8))
        customer = talking_phone(
            tmp_path / "customer",
            "uas_talk_then_hangup.xml",
            CUSTOMER_PORT,
            speech,
            hold_ms=4000,
        )
        watch = CallWatcher(engine)
        with agent, customer:
            placed = await initiate(engine)
            watch.session_id = session_id = placed["id"]
            done = await watch.until("completed", "failed", "canceled", within=40)
            assert done.status_to == "completed", watch.trail()
            assert await customer.wait_async(30) == 0, customer.report()
        session = await watch.session()

        async def both_final() -> list[QualityMetric] | None:
            rows = await engine.store.quality.for_session(session.tenant_id, session.id)
            return rows if sum(row.is_final for row in rows) >= 2 else None

        rows = await eventually(both_final, within=15, what="both legs' final quality rows")
        by_leg = {row.leg: row for row in rows if row.is_final}
        assert set(by_leg) == {"agent", "customer"}, rows
        for leg, row in by_leg.items():
            assert row.channel_id == f"c2c-{session_id}-{leg}"
            # ~4 s of 20 ms packets from the customer, more from the agent (who is up longer)
            assert (row.rx_packets or 0) >= 100, row
            assert (row.tx_packets or 0) >= 100, row
            assert row.rx_lost_packets == 0, row  # loopback loses nothing
            assert row.jitter_ms is not None, row
            assert 0 <= row.jitter_ms < 20, row
            assert row.rtt_ms is None, row  # SIPp sends no RTCP reports
            assert row.tx_lost_packets is None, row
            assert row.mos is not None, row
            assert 4.3 <= row.mos <= 4.41, row
            assert {"rtpaudioqos", "rtpaudioqosjitter"} <= set(row.raw), row.raw
        samples = [row for row in rows if not row.is_final]
        assert samples, "no sample while the call was up"
        assert all(row.raw.get("rtcp_all") for row in samples)
        assert {row.leg for row in samples} <= {"agent", "customer"}

        alerts = await watch.until_event("quality.low_mos", count=2, within=15)
        low = [e for e in watch.events if e.event_type == "quality.low_mos"]
        assert alerts in low
        assert sorted(e.payload["leg"] for e in low) == ["agent", "customer"]
        assert all(e.payload["mos_floor"] == 4.45 for e in low)
        watch.close()
