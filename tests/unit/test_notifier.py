"""The callback notifier's signature scheme and retry backoff (no I/O)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from engine.notifier import retry_delay, sign, verify_signature


def test_signature_scheme() -> None:
    body = b'{"event_id":1}'
    header = sign("s3cret", body, 1_700_000_000)
    t, v1 = header.split(",")
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert (t, v1) == ("t=1700000000", f"v1={expected}")

    assert verify_signature("s3cret", body, header, now=1_700_000_100)
    assert not verify_signature("other", body, header, now=1_700_000_100)
    assert not verify_signature("s3cret", body + b" ", header, now=1_700_000_100)
    assert not verify_signature("s3cret", body, header, now=1_700_000_000 + 301)  # replayed
    assert not verify_signature("s3cret", body, "v1=" + expected, now=1_700_000_000)
    assert not verify_signature("s3cret", body, "garbage", now=1_700_000_000)


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 0.9, 1.1), (2, 1.8, 2.2), (4, 7.2, 8.8), (10, 27.0, 30.0), (10_000, 27.0, 30.0)],
)
def test_retry_delay_doubles_up_to_the_cap(attempts: int, low: float, high: float) -> None:
    for jitter in (0.0, 0.5, 1.0):
        delay = retry_delay(attempts, initial=1.0, maximum=30.0, jitter=lambda j=jitter: j)
        assert low <= delay <= high
