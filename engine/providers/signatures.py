"""How carriers sign what they send us, and how we sign what we send Vonage: pure functions.

- Twilio ``X-Twilio-Signature``: base64(HMAC-SHA1(auth token, URL + each POST parameter's
  name and value, names sorted, each name's values sorted)). The URL is the one Twilio was
  given, query included; Twilio's own validator also accepts it with the port removed or
  with the scheme's default port added, "since signature generation on the back end is
  inconsistent" (twilio-python ``request_validator.py``), and so do we. A JSON body is
  signed through the URL: its query carries ``bodySHA256`` (hex SHA-256 of the raw body),
  checked against the body, and the URL is signed with no parameters.
- Vonage signed webhooks: ``Authorization: Bearer <JWT>``, HS256 under the account's
  signature secret, whose ``payload_hash`` claim is the hex SHA-256 of the body. The
  JWT is hand-rolled here (a few lines of ``hmac``), as is the RS256 JWT our API requests
  carry (``cryptography``), so no JWT library is needed.

Every comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "JwtProblem",
    "body_sha256",
    "hs256_jwt",
    "rs256_claims",
    "rs256_jwt",
    "twilio_signature",
    "twilio_signature_valid",
    "verify_hs256_jwt",
]

Params = Mapping[str, str | Iterable[str]]


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def twilio_signature(token: str, url: str, params: Params | None = None) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for ``url`` and POST ``params``."""
    data = url
    for name in sorted(set(params or {})):
        raw = (params or {})[name]
        values = [raw] if isinstance(raw, str) else list(raw)
        for value in sorted(set(values)):
            data += name + value
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _port_variants(url: str) -> list[str]:
    """``url`` as given, without its port, and with the scheme's default port added."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    default = 443 if parts.scheme == "https" else 80
    without = parts._replace(netloc=f"{prefix}{host}").geturl()
    port = parts.port if parts.port is not None else default
    with_port = parts._replace(netloc=f"{prefix}{host}:{port}").geturl()
    return list(dict.fromkeys([url, without, with_port]))


def twilio_signature_valid(
    token: str, url: str, params: Params | None, signature: str, *, body: bytes | None = None
) -> bool:
    """Whether ``signature`` is Twilio's for this request. With ``bodySHA256`` in the URL's
    query (a JSON body), ``body`` must hash to it and ``params`` are not signed."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    if "bodySHA256" in query:
        if body is None or not _same(body_sha256(body), query["bodySHA256"]):
            return False
        params = None
    valid = False
    for candidate in _port_variants(url):
        # every variant is computed: the time taken does not say which one matched
        valid |= _same(twilio_signature(token, candidate, params), signature)
    return valid


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _compact(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def hs256_jwt(claims: Mapping[str, Any], secret: str) -> str:
    """A JWT signed HS256 with ``secret`` (how Vonage signs webhooks; the fakes use it)."""
    signing = f"{_b64url(_compact({'alg': 'HS256', 'typ': 'JWT'}))}.{_b64url(_compact(claims))}"
    mac = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64url(mac)}"


class JwtProblem(Exception):
    """Why a JWT was refused (its message is logged, never the token)."""


def verify_hs256_jwt(
    token: str,
    secret: str,
    *,
    body: bytes | None = None,
    max_age_s: float | None = 300.0,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of ``token`` once its HS256 signature under ``secret`` holds, its
    ``payload_hash`` matches ``body`` (when given) and its ``iat`` is within ``max_age_s``
    of ``now`` (None: not checked). :class:`JwtProblem` otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtProblem("not a JWT")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        mac = _b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise JwtProblem("undecodable JWT") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise JwtProblem("JWT algorithm is not HS256")
    expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise JwtProblem("JWT signature does not match")
    if not isinstance(claims, dict):
        raise JwtProblem("JWT claims are not an object")
    if body is not None:
        claimed = claims.get("payload_hash")
        if not isinstance(claimed, str):
            raise JwtProblem("JWT has no payload_hash")
        if not _same(claimed, body_sha256(body)) and not _compact_hash_matches(claimed, body):
            raise JwtProblem("payload_hash does not match the body")
    if max_age_s is not None:
        issued = claims.get("iat")
        at = time.time() if now is None else now
        if not isinstance(issued, int | float) or abs(at - issued) > max_age_s:
            raise JwtProblem("JWT iat is missing or too far from now")
    return claims


def _compact_hash_matches(claimed: str, body: bytes) -> bool:
    """Vonage support describes the hash over the body's compact JSON: a body that arrived
    re-spaced is checked that way too."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return _same(claimed, body_sha256(compact))


def _same(given: str, expected: str) -> bool:
    """Constant-time equality of two texts, as UTF-8 bytes: ``hmac.compare_digest`` refuses
    ``str`` with characters outside ASCII (a TypeError, and a 500), and a caller's header or
    query is anything the caller sends."""
    return hmac.compare_digest(given.encode(), expected.encode())


def rs256_jwt(
    application_id: str, private_key_pem: str, *, now: float | None = None, ttl_s: int = 300
) -> str:
    """The bearer JWT of a Vonage API request: RS256 over ``application_id``, ``iat``,
    ``exp`` and a fresh ``jti``, signed with the application's private key."""
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the Vonage private key is not an RSA key")
    issued = int(time.time() if now is None else now)
    claims = {
        "application_id": application_id,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": str(uuid.uuid4()),
    }
    signing = f"{_b64url(_compact({'alg': 'RS256', 'typ': 'JWT'}))}.{_b64url(_compact(claims))}"
    signature = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing}.{_b64url(signature)}"


def rs256_claims(token: str, public_key_pem: str) -> dict[str, Any]:
    """The claims of an RS256 JWT once its signature holds (the fake Vonage checks ours)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtProblem("not a JWT")
    key = serialization.load_pem_public_key(public_key_pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise JwtProblem("not an RSA public key")
    try:
        key.verify(
            _b64url_decode(parts[2]),
            f"{parts[0]}.{parts[1]}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, ValueError):
        raise JwtProblem("RS256 signature does not verify") from None
    claims = json.loads(_b64url_decode(parts[1]))
    if not isinstance(claims, dict):
        raise JwtProblem("JWT claims are not an object")
    return claims
