"""Speech a SIPp phone can send: espeak-ng text to G.711 RTP in a pcap file.

SIPp sends RTP only when a scenario plays it (``<exec play_pcap_audio=…/>``), and an
RTP-less leg gives Asterisk no jitter, loss or packet counts to report. The call-quality and
transcript tests, and ``bench/transcripts.py``, make their phones talk with this: text is
spoken by espeak-ng, resampled by sox to 8 kHz, 16-bit mono (telephone audio), encoded as
G.711 mu-law (PCMU, payload type 0, what ``dialplan/pjsip.conf`` offers) in 20 ms packets,
and written as an Ethernet/IPv4/UDP capture that SIPp replays at the packets' own pace.
espeak-ng and sox are Debian packages (``scripts/bootstrap`` installs them).
"""

from __future__ import annotations

import array
import struct
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

from engine.errors import SandboxError

__all__ = [
    "FRAME_SAMPLES",
    "RATE",
    "pcap_from_pcm",
    "read_wav_pcm",
    "silence_pcm",
    "speech_pcm",
    "ulaw_encode",
    "write_wav_pcm",
]

#: Telephone audio: 8 kHz.
RATE = 8000
#: Samples in one 20 ms RTP packet at :data:`RATE`.
FRAME_SAMPLES = 160

_BIAS = 0x84
_CLIP = 32635


def _ulaw_sample(sample: int) -> int:
    """One 16-bit linear sample as a G.711 mu-law byte (ITU-T G.711, with the usual bias)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sample < 0 else sample, _CLIP) + _BIAS
    exponent = max(magnitude.bit_length() - 8, 0)  # 0..7: the segment of the magnitude
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


_ULAW = bytes(_ulaw_sample(s) for s in range(-32768, 32768))


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit signed little-endian mono samples as mu-law bytes, one per sample."""
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return bytes(_ULAW[s + 32768] for s in samples)


def silence_pcm(seconds: float) -> bytes:
    """``seconds`` of digital silence at :data:`RATE` (16-bit mono)."""
    return bytes(2 * round(seconds * RATE))


def read_wav_pcm(path: Path) -> tuple[bytes, int]:
    """A 16-bit mono WAV file's samples and its sample rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise SandboxError(f"{path}: expected 16-bit mono WAV")
        return wav.readframes(wav.getnframes()), wav.getframerate()


def write_wav_pcm(path: Path, pcm: bytes, rate: int = RATE) -> Path:
    """Write 16-bit mono samples as a WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return path


def speech_pcm(text: str, *, voice: str = "en-us", words_per_minute: int = 150) -> bytes:
    """``text`` spoken by espeak-ng as telephone audio (8 kHz, 16-bit mono samples)."""
    with tempfile.TemporaryDirectory(prefix="ctc-speech-") as tmp:
        spoken, narrow = Path(tmp) / "spoken.wav", Path(tmp) / "narrow.wav"
        try:
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(spoken), text],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                ["sox", str(spoken), "-r", str(RATE), "-c", "1", "-b", "16", str(narrow)],
                check=True,
                capture_output=True,
            )
        except FileNotFoundError as exc:
            raise SandboxError(f"{exc.filename} is not installed (run scripts/bootstrap)") from None
        except subprocess.CalledProcessError as exc:
            detail = exc.stderr.decode(errors="replace")
            raise SandboxError(f"{exc.cmd[0]} failed: {detail}") from None
        pcm, rate = read_wav_pcm(narrow)
    if rate != RATE:
        raise SandboxError(f"sox gave {rate} Hz, not {RATE}")
    return pcm


def pcap_from_pcm(
    pcm: bytes,
    out: Path,
    *,
    ssrc: int = 0x43544331,
    src_port: int = 20000,
    dst_port: int = 10000,
) -> Path:
    """Write 8 kHz 16-bit mono samples as a pcap of PCMU RTP packets, 20 ms apart.

    SIPp's ``play_pcap_audio`` sends each packet's RTP part to the far end's media port at
    the capture's timing; the addresses and ports here are placeholders it replaces. The
    UDP checksum is 0 (none), as SIPp does not recompute it.
    """
    payload = ulaw_encode(pcm)
    payload += b"\xff" * (-len(payload) % FRAME_SAMPLES)  # pad the last packet with silence
    records = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for index, start in enumerate(range(0, len(payload), FRAME_SAMPLES)):
        rtp = (
            struct.pack(
                ">BBHII",
                0x80,  # version 2, no padding, extension or CSRCs
                0x80 if index == 0 else 0x00,  # marker on the first packet; payload type 0
                index & 0xFFFF,
                (index * FRAME_SAMPLES) & 0xFFFFFFFF,
                ssrc,
            )
            + payload[start : start + FRAME_SAMPLES]
        )
        udp = struct.pack(">HHHH", src_port, dst_port, 8 + len(rtp), 0) + rtp
        ip = struct.pack(
            ">BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            index & 0xFFFF,
            0,
            64,
            17,
            0,
            bytes((127, 0, 0, 1)),
            bytes((127, 0, 0, 1)),
        )
        ip = ip[:10] + struct.pack(">H", _ip_checksum(ip)) + ip[12:]
        frame = bytes(6) + bytes(6) + b"\x08\x00" + ip + udp
        micros = index * 20_000
        records.append(
            struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame))
        )
        records.append(frame)
    out.write_bytes(b"".join(records))
    return out


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
