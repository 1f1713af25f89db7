"""The E-model (engine/domain/quality.py) against ITU-T's published figures.

Published values checked: R = 93.2 and MOS 4.41 with every G.107 parameter at its default
(G.107 §7.1); the R-to-MOS points of G.107 Annex B as G.109 Table 1 lists them for its
satisfaction categories (R 90/80/70/60/50: MOS 4.34/4.03/3.60/3.10/2.58); no delay
impairment up to 100 ms one way (G.107 §7.3); G.711's packet-loss robustness from G.113
Appendix I (Bpl 25.1 with concealment, 4.3 without) in G.107's Ie,eff formula.
"""

from __future__ import annotations

import pytest

from engine.domain.quality import (
    BPL_G711_NO_PLC,
    DEFAULT_R,
    LegFigures,
    delay_impairment,
    effective_equipment_impairment,
    leg_mos,
    loss_percent,
    mos_from_r,
    mouth_to_ear_ms,
    r_factor,
)


def test_default_parameters_give_the_published_r_and_mos() -> None:
    assert r_factor(0.0, 0.0) == DEFAULT_R == 93.2
    assert round(mos_from_r(DEFAULT_R), 2) == 4.41


@pytest.mark.parametrize(("r", "mos"), [(90, 4.34), (80, 4.03), (70, 3.60), (60, 3.10), (50, 2.58)])
def test_r_to_mos_matches_g109_categories(r: float, mos: float) -> None:
    # G.109 prints two decimals (4.024 as 4.03): within a hundredth
    assert mos_from_r(r) == pytest.approx(mos, abs=0.01)


def test_mos_is_bounded() -> None:
    assert mos_from_r(-5) == 1.0
    assert mos_from_r(0) == 1.0
    assert mos_from_r(100) == 4.5
    assert mos_from_r(120) == 4.5


def test_no_delay_impairment_up_to_100_ms() -> None:
    assert delay_impairment(0) == 0.0
    assert delay_impairment(100) == 0.0
    # G.107 §7.3's formula beyond: grows with delay (X = 1 at 200 ms, X = 2 at 400 ms)
    assert delay_impairment(200) == pytest.approx(3.05, abs=0.01)
    assert delay_impairment(400) == pytest.approx(24.08, abs=0.01)
    assert delay_impairment(150) < delay_impairment(200) < delay_impairment(400)


def test_g711_loss_impairment_with_g113_robustness() -> None:
    assert effective_equipment_impairment(0.0) == 0.0
    # G.711 with PLC (Bpl 25.1): 1 % and 2 % random loss
    assert effective_equipment_impairment(1.0) == pytest.approx(95 / 26.1, abs=1e-9)
    assert effective_equipment_impairment(1.0) == pytest.approx(3.64, abs=0.005)
    assert effective_equipment_impairment(2.0) == pytest.approx(7.01, abs=0.005)
    # without concealment loss hurts far more: 1 % costs ~18 points of R
    no_plc = effective_equipment_impairment(1.0, bpl=BPL_G711_NO_PLC)
    assert no_plc == pytest.approx(17.92, abs=0.01)
    # all packets lost: Ie,eff reaches 95 (R near 0)
    assert effective_equipment_impairment(100.0) == pytest.approx(95 * 100 / 125.1)


def test_loss_percent() -> None:
    assert loss_percent(1, 99) == 1.0
    assert loss_percent(0, 0) is None
    assert loss_percent(None, 10) is None


def test_mouth_to_ear_delay() -> None:
    assert mouth_to_ear_ms(None, None) == 20.0
    assert mouth_to_ear_ms(5.0, 100.0) == 50 + 10 + 20


def test_a_clean_leg_rates_the_default() -> None:
    clean = LegFigures(rx_packets=500, rx_lost_packets=0, jitter_ms=1.0, rtt_ms=None)
    assert leg_mos(clean) == 4.41


def test_a_lossy_slow_leg_rates_lower() -> None:
    lossy = LegFigures(rx_packets=950, rx_lost_packets=50, jitter_ms=40.0, rtt_ms=300.0)
    # Ta = 150 + 80 + 20 = 250 ms; 5 % loss
    expected = mos_from_r(93.2 - delay_impairment(250) - effective_equipment_impairment(5.0))
    assert leg_mos(lossy) == round(expected, 2)
    assert leg_mos(lossy) < 4.0


def test_the_worse_direction_counts() -> None:
    figures = LegFigures(rx_packets=100, rx_lost_packets=0, tx_packets=90, tx_lost_packets=10)
    assert leg_mos(figures) == round(mos_from_r(93.2 - effective_equipment_impairment(10.0)), 2)


def test_a_leg_without_rtp_has_no_mos() -> None:
    assert leg_mos(LegFigures()) is None
    assert leg_mos(LegFigures(rx_packets=0, jitter_ms=0.0)) is None
