"""The carriers' published signature test vectors (CARRIERS.md 1.4 and 3.4), and our own
RS256 JWT checked with the public key."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.providers.signatures import (
    JwtProblem,
    body_sha256,
    hs256_jwt,
    rs256_claims,
    rs256_jwt,
    twilio_signature,
    twilio_signature_valid,
    verify_hs256_jwt,
)

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}


def test_twilio_vector_and_its_port_variants() -> None:
    assert twilio_signature(TOKEN, URL, PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    with_443 = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    assert twilio_signature(TOKEN, with_443, PARAMS) == "kvajT1Ptam85bY51eRf/AJRuM3w="
    http_1234 = "http://mycompany.com:1234/myapp.php?foo=1&bar=2"
    assert twilio_signature(TOKEN, http_1234, PARAMS) == "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
    http_80 = "http://mycompany.com:80/myapp.php?foo=1&bar=2"
    assert twilio_signature(TOKEN, http_80, PARAMS) == "0ZXoZLH/DfblKGATFgpif+LLRf4="
    # the port Twilio signed may differ from the one we see, either way
    assert twilio_signature_valid(TOKEN, URL, PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=")
    assert twilio_signature_valid(TOKEN, with_443, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert twilio_signature_valid(
        TOKEN, "http://mycompany.com/myapp.php?foo=1&bar=2", PARAMS, "0ZXoZLH/DfblKGATFgpif+LLRf4="
    )
    assert not twilio_signature_valid(
        TOKEN, URL, {**PARAMS, "Digits": "1235"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    assert not twilio_signature_valid("54321", URL, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_twilio_older_docs_vector() -> None:
    params = {**PARAMS, "From": "+12349013030", "Caller": "+12349013030"}
    assert twilio_signature(TOKEN, URL, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_json_body_is_signed_through_body_sha256() -> None:
    body = b'{"property": "value", "boolean": true}'
    digest = body_sha256(body)
    assert digest == "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    url = f"{URL}&bodySHA256={digest}"
    assert twilio_signature(TOKEN, url) == "a9nBmqA0ju/hNViExpshrM61xv4="
    assert twilio_signature_valid(TOKEN, url, {}, "a9nBmqA0ju/hNViExpshrM61xv4=", body=body)
    # a body changed after signing: its hash no longer matches the signed URL
    assert not twilio_signature_valid(
        TOKEN, url, {}, "a9nBmqA0ju/hNViExpshrM61xv4=", body=body.replace(b"true", b"false")
    )


VONAGE_SECRET = "test-signature-secret"
VONAGE_BODY = (
    b'{"status":"answered","uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab",'
    b'"conversation_uuid":"CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab","direction":"outbound",'
    b'"timestamp":"2024-01-01T00:00:00.000Z"}'
)
VONAGE_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MDAwMDAwMDAsImp0aSI6InRlc3QtanRpLTEiLCJp"
    "c3MiOiJWb25hZ2UiLCJwYXlsb2FkX2hhc2giOiJmZTBkOTFhYWY1YmRmZjg1Mzg4MGFjOTQzOGE3OGZjNjUxMWIz"
    "MWI1OTMyNWU0MjBmMzE1MzFjMjc5YWY4Y2Y3IiwiYXBpX2tleSI6ImFiY2QxMjM0IiwiYXBwbGljYXRpb25faWQi"
    "OiIxMTExMTExMS0yMjIyLTMzMzMtNDQ0NC01NTU1NTU1NTU1NTUifQ.EYo8DmnHjX82gkVeFUtz-NZfUxSLTm8cAr"
    "kLejF_iaI"
)


def test_vonage_vector_verifies_with_its_payload_hash() -> None:
    assert body_sha256(VONAGE_BODY) == (
        "fe0d91aaf5bdff853880ac9438a78fc6511b31b59325e420f31531c279af8cf7"
    )
    claims = verify_hs256_jwt(VONAGE_TOKEN, VONAGE_SECRET, body=VONAGE_BODY, now=1700000010)
    assert claims["api_key"] == "abcd1234"
    # our own signer gives the same token for the same claims
    ordered = {
        "iat": 1700000000,
        "jti": "test-jti-1",
        "iss": "Vonage",
        "payload_hash": body_sha256(VONAGE_BODY),
        "api_key": "abcd1234",
        "application_id": "11111111-2222-3333-4444-555555555555",
    }
    assert hs256_jwt(ordered, VONAGE_SECRET) == VONAGE_TOKEN
    # the same body re-spaced still matches (compact JSON), a changed one does not
    spaced = json.dumps(json.loads(VONAGE_BODY), indent=1).encode()
    verify_hs256_jwt(VONAGE_TOKEN, VONAGE_SECRET, body=spaced, now=1700000010)


# the vector's claims and MAC under a header that says "alg": "none"
_NONE_ALG = ".".join(
    [
        base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode(),
        *VONAGE_TOKEN.split(".")[1:],
    ]
)


@pytest.mark.parametrize(
    ("token", "secret", "body", "now", "problem"),
    [
        (VONAGE_TOKEN, "wrong-secret", VONAGE_BODY, 1700000010, "signature"),
        (
            VONAGE_TOKEN,
            VONAGE_SECRET,
            VONAGE_BODY.replace(b"answered", b"completed"),
            1700000010,
            "payload_hash",
        ),
        (VONAGE_TOKEN, VONAGE_SECRET, VONAGE_BODY, 1700009999, "iat"),
        ("a.b", VONAGE_SECRET, VONAGE_BODY, 1700000010, "not a JWT"),
        (_NONE_ALG, VONAGE_SECRET, None, None, "HS256"),
    ],
)
def test_vonage_refusals_name_why(
    token: str, secret: str, body: bytes | None, now: float | None, problem: str
) -> None:
    with pytest.raises(JwtProblem, match=problem):
        verify_hs256_jwt(token, secret, body=body, now=now)


def test_our_rs256_jwt_verifies_with_the_public_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    token = rs256_jwt("app-1", pem, now=1700000000)
    claims = rs256_claims(token, public)
    assert claims["application_id"] == "app-1"
    assert claims["exp"] - claims["iat"] == 300
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    other_pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    with pytest.raises(JwtProblem):
        rs256_claims(token, other_pem)


def test_a_signature_with_characters_outside_ascii_is_refused_not_an_error() -> None:
    assert not twilio_signature_valid(TOKEN, URL, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=é")
    url = f"{URL}&bodySHA256=é"
    assert not twilio_signature_valid(TOKEN, url, {}, "x", body=b"{}")
