"""How good a call leg sounded: the ITU-T G.107 E-model, simplified for G.711.

Asterisk measures each RTP leg (packets, loss, jitter and, when the phone sends RTCP
reports, the round-trip time); this module turns those figures into a transmission rating
R and a mean opinion score (MOS, 1-5) per leg, and says whether a leg fell below the
configured floor. Pure: figures in, numbers out.

The simplification (the usual one for VoIP monitoring, with G.107's own formulas):

- ``R = Ro - Is - Id - Ie,eff + A``. With every other G.107 parameter at its default,
  ``Ro - Is`` and the default talker-echo term of ``Id`` give ``R = 93.2`` (G.107 §7.1:
  "the default values ... result in R = 93.2"); the advantage factor ``A`` is 0 (wired).
- Delay: only the pure-delay impairment ``Idd`` (G.107 §7.3) of the one-way mouth-to-ear
  delay ``Ta``, estimated as half the RTCP round-trip time (0 when the peer sends no RTCP
  reports) + a jitter buffer of twice the measured jitter + one 20 ms packet.
- Equipment: G.711 has ``Ie = 0``; packet loss adds ``Ie,eff = Ie + (95 - Ie) * Ppl /
  (Ppl / BurstR + Bpl)`` (G.107 §7.4) with random loss (``BurstR = 1``) and the packet-loss
  robustness ``Bpl`` of G.711 from G.113 Appendix I: 25.1 with packet loss concealment
  (G.711 Appendix I, what phones and Asterisk's ``genericplc`` do), 4.3 without.
- ``MOS = 1 + 0.035 R + R (R - 60) (100 - R) 7e-6`` for ``0 < R < 100`` (G.107 Annex B).
"""

from __future__ import annotations

import dataclasses
import math

__all__ = [
    "BPL_G711_NO_PLC",
    "BPL_G711_PLC",
    "DEFAULT_R",
    "LegFigures",
    "delay_impairment",
    "effective_equipment_impairment",
    "leg_mos",
    "loss_percent",
    "mos_from_r",
    "mouth_to_ear_ms",
    "r_factor",
]

#: R with every G.107 parameter at its default (no delay, no loss, G.711).
DEFAULT_R = 93.2
#: G.113 Appendix I packet-loss robustness of G.711 with packet loss concealment.
BPL_G711_PLC = 25.1
#: ... and without it.
BPL_G711_NO_PLC = 4.3
#: The packetisation delay assumed for one RTP packet (ms).
PACKET_MS = 20.0


@dataclasses.dataclass(frozen=True, slots=True)
class LegFigures:
    """What Asterisk knows of one leg's media. ``None``: not known (e.g. no RTCP reports
    from the phone gives no round-trip time; a leg that sent no RTP has no figures)."""

    rx_packets: int | None = None
    rx_lost_packets: int | None = None
    tx_packets: int | None = None
    tx_lost_packets: int | None = None
    jitter_ms: float | None = None
    rtt_ms: float | None = None


def delay_impairment(ta_ms: float) -> float:
    """G.107 ``Idd``: the impairment of a one-way delay of ``ta_ms`` (0 up to 100 ms)."""
    if ta_ms <= 100.0:
        return 0.0
    x = math.log2(ta_ms / 100.0)
    return 25.0 * (math.pow(1 + x**6, 1 / 6) - 3 * math.pow(1 + (x / 3) ** 6, 1 / 6) + 2)


def effective_equipment_impairment(
    loss_pct: float, *, ie: float = 0.0, bpl: float = BPL_G711_PLC, burst_r: float = 1.0
) -> float:
    """G.107 ``Ie,eff`` for ``loss_pct`` % of packets lost (G.711: ``ie`` 0)."""
    if loss_pct <= 0.0:
        return ie
    return ie + (95.0 - ie) * loss_pct / (loss_pct / burst_r + bpl)


def r_factor(ta_ms: float, loss_pct: float, *, bpl: float = BPL_G711_PLC) -> float:
    """The transmission rating of a G.711 leg with one-way delay ``ta_ms`` and
    ``loss_pct`` % random packet loss."""
    return DEFAULT_R - delay_impairment(ta_ms) - effective_equipment_impairment(loss_pct, bpl=bpl)


def mos_from_r(r: float) -> float:
    """G.107 Annex B: the estimated mean opinion score (1 to 4.5) of rating ``r``."""
    if r <= 0.0:
        return 1.0
    if r >= 100.0:
        return 4.5
    return 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6


def mouth_to_ear_ms(jitter_ms: float | None, rtt_ms: float | None) -> float:
    """The one-way delay estimate: half the round trip, a jitter buffer of twice the
    jitter, one packet."""
    return (rtt_ms or 0.0) / 2.0 + 2.0 * (jitter_ms or 0.0) + PACKET_MS


def loss_percent(lost: int | None, received: int | None) -> float | None:
    """Packets lost as a percentage of those sent (received + lost); None when unknown."""
    if lost is None or received is None or lost + received <= 0:
        return None
    return 100.0 * lost / (lost + received)


def leg_mos(figures: LegFigures, *, bpl: float = BPL_G711_PLC) -> float | None:
    """The leg's MOS, rounded to 2 places; None when it received no RTP (nothing to rate).

    Loss is the worse of the two directions that are known (what reached Asterisk, and
    what the phone's RTCP reports say reached it).
    """
    if not figures.rx_packets:
        return None
    losses = [
        pct
        for pct in (
            loss_percent(figures.rx_lost_packets, figures.rx_packets),
            loss_percent(figures.tx_lost_packets, figures.tx_packets),
        )
        if pct is not None
    ]
    ta = mouth_to_ear_ms(figures.jitter_ms, figures.rtt_ms)
    r = r_factor(ta, max(losses, default=0.0), bpl=bpl)
    return round(min(max(mos_from_r(r), 1.0), 5.0), 2)
