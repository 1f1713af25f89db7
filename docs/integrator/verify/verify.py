"""Verify a CTC Engine callback's X-CTC-Signature (Python 3, standard library only).

    verify(secret, raw_body, header) -> bool

raw_body: the request body's bytes exactly as received (before any JSON parsing).
Run as a program (what the engine's tests do): python3 verify.py SECRET HEADER NOW < body
"""

import hashlib
import hmac
import sys
import time

TOLERANCE = 300  # seconds: refuse a signature older or newer than this (replays)


def verify(secret: str, raw_body: bytes, header: str, now: float | None = None) -> bool:
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE:
        return False
    message = str(timestamp).encode() + b"." + raw_body
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    # several v1 values during a secret rotation: accept when any matches
    return any(hmac.compare_digest(expected, s) for s in signatures)


if __name__ == "__main__":
    ok = verify(sys.argv[1], sys.stdin.buffer.read(), sys.argv[2], float(sys.argv[3]))
    print("valid" if ok else "invalid")
    sys.exit(0 if ok else 1)
