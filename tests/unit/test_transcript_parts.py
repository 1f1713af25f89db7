"""The pure parts of transcripts and call quality: word error rate, retry delays, audio
resampling, Asterisk's RTCP strings, and the speech a SIPp phone sends (mu-law, pcap)."""

from __future__ import annotations

import array
import struct
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.asterisk.flows.call_quality import figures_of, parse_rtcp
from engine.config.settings import TranscriptSettings
from engine.devtools.rtp_audio import pcap_from_pcm, silence_pcm, ulaw_encode, write_wav_pcm
from engine.domain.transcripts import normalize_words, retry_delay, word_error_rate
from engine.errors import TranscriptionError
from engine.transcription.audio import read_recording, to_16k

# what Asterisk 22.10 gave for a SIPp leg (CHANNEL(rtcp,all) and RTPAUDIOQOSJITTER)
ALL = (
    "ssrc=655906146;themssrc=1129595697;lp=0;rxjitter=0.000000;rxcount=172;"
    "txjitter=0.000125;txcount=0;rlp=0;rtt=0.000000;rxmes=0.000000;txmes=0.000000"
)
JITTER = (
    "minrxjitter=000.000000;maxrxjitter=000.001375;avgrxjitter=000.000336;"
    "stdevrxjitter=000.000365;mintxjitter=000.000000;"
)


def test_word_error_rate() -> None:
    assert word_error_rate("call me back", "call me back") == 0.0
    assert word_error_rate("Call me, back!", "call me back") == 0.0
    assert word_error_rate("call me back", "call back") == pytest.approx(1 / 3)  # a deletion
    assert word_error_rate("call me back", "call me me back") == pytest.approx(1 / 3)
    assert word_error_rate("call me back", "fall he back") == pytest.approx(2 / 3)
    assert word_error_rate("a b", "c d e f") == 2.0  # insertions count: WER may exceed 1
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("", "noise") == 1.0
    assert normalize_words("It's 9 o'clock.") == ["it's", "9", "o'clock"]


def test_retry_delay_doubles_up_to_the_cap() -> None:
    assert [retry_delay(n, 30.0) for n in (1, 2, 3)] == [30.0, 60.0, 120.0]
    assert retry_delay(20, 30.0) == 3600.0


def test_to_16k_doubles_the_samples_by_interpolation() -> None:
    samples = array.array("h", [0, 100, -100, 32767])
    if sys.byteorder == "big":
        samples.byteswap()
    wide = array.array("h")
    wide.frombytes(to_16k(samples.tobytes(), 8000))
    if sys.byteorder == "big":
        wide.byteswap()
    assert list(wide) == [0, 50, 100, 0, -100, 16333, 32767, 32767]
    assert to_16k(b"\x01\x00", 16000) == b"\x01\x00"
    with pytest.raises(TranscriptionError, match="44100"):
        to_16k(b"", 44100)


def test_read_recording(tmp_path: Path) -> None:
    wav = write_wav_pcm(tmp_path / "r.wav", silence_pcm(0.5))
    pcm, rate = read_recording(wav)
    assert (len(pcm), rate) == (8000, 8000)
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(TranscriptionError, match=r"bad\.wav"):
        read_recording(tmp_path / "bad.wav")
    with pytest.raises(TranscriptionError, match=r"missing\.wav"):
        read_recording(tmp_path / "missing.wav")


def test_parse_rtcp_reads_both_forms() -> None:
    figures = parse_rtcp(ALL)
    assert figures["rxcount"] == 172
    assert figures["txjitter"] == 0.000125
    assert parse_rtcp(JITTER)["maxrxjitter"] == 0.001375
    assert parse_rtcp("garbage;x=;y=abc") == {}


def test_figures_without_rtcp_reports_leave_rtt_and_far_loss_unknown() -> None:
    figures = figures_of(parse_rtcp(ALL))
    assert figures.rx_packets == 172
    assert figures.rx_lost_packets == 0
    assert figures.tx_packets == 0
    assert figures.jitter_ms == 0.125  # Asterisk's own receive jitter, in ms
    assert figures.rtt_ms is None
    assert figures.tx_lost_packets is None


def test_figures_with_rtcp_reports() -> None:
    figures = figures_of(parse_rtcp("rxcount=500;lp=5;txcount=490;rlp=10;txjitter=0.02;rtt=0.08"))
    assert figures.rtt_ms == 80.0
    assert figures.tx_lost_packets == 10
    assert figures.jitter_ms == 20.0


def test_ulaw_encoding_matches_g711() -> None:
    samples = array.array("h", [0, -1, 32767, -32768, 1000])
    if sys.byteorder == "big":
        samples.byteswap()
    assert ulaw_encode(samples.tobytes()) == bytes([0xFF, 0x7F, 0x80, 0x00, 0xCE])


def test_pcap_holds_20ms_pcmu_packets(tmp_path: Path) -> None:
    out = pcap_from_pcm(silence_pcm(0.05), tmp_path / "talk.pcap")  # 400 samples: 3 packets
    data = out.read_bytes()
    assert struct.unpack_from("<IHHiIII", data, 0)[0] == 0xA1B2C3D4
    offset, stamps = 24, []
    while offset < len(data):
        seconds, micros, length, _ = struct.unpack_from("<IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + length]
        rtp = frame[14 + 20 + 8 :]
        assert rtp[0] == 0x80
        assert rtp[1] & 0x7F == 0  # PCMU
        assert len(rtp) == 12 + 160
        stamps.append((seconds * 1_000_000 + micros, struct.unpack_from(">HI", rtp, 2)))
        offset += 16 + length
    assert stamps == [(0, (0, 0)), (20_000, (1, 160)), (40_000, (2, 320))]


def test_whisper_needs_a_model_dir() -> None:
    with pytest.raises(ValidationError, match="model_dir"):
        TranscriptSettings(backend="whisper")
    assert TranscriptSettings(backend="whisper", enabled=False).model_dir is None
    assert TranscriptSettings(backend="whisper", model_dir=Path("/m")).model_dir == Path("/m")
