"""Encryption at rest of the secrets the engine stores: provider credentials, webhook secrets
and each tenant's callback (HMAC) secret. The one place that encrypts and decrypts them;
repositories call :class:`Keyring` and never look inside a stored value themselves.

Why: a dump or backup of the database must not hand out the keys to the carriers' accounts
or let someone forge signed callbacks to the ERP.

Keys are Fernet keys (``Keyring.generate_key()``, 44 characters of url-safe base64; Fernet
is AES-128-CBC + HMAC-SHA256 from ``cryptography``). Several keys may be configured, primary
first: new values are sealed under the primary, values sealed under any configured key can
be opened, and ``ctc secrets rotate`` re-seals every stored value under the primary.

A sealed value is text: ``ctc-enc:v1:<key id>:<Fernet token>``. The key id (first 8 hex
digits of the key's SHA-256) says which key opens it, so a value under a key that is no
longer configured fails with a message naming that id instead of a vague "invalid token".
Anything without the ``ctc-enc:`` prefix is plaintext stored before encryption existed (or
a tenant callback secret generated while no key was configured); :meth:`Keyring.unseal`
returns it unchanged, and it does not start with :meth:`Keyring.current_prefix`, so
``ctc secrets rotate`` re-seals it.
"""

from __future__ import annotations

import hashlib

from cryptography.fernet import Fernet, InvalidToken

from engine.errors import SecretsError

__all__ = ["NO_KEY_HINT", "PREFIX", "Keyring", "is_sealed"]

PREFIX = "ctc-enc:v1:"

NO_KEY_HINT = (
    "no secrets key is configured: set CTC_SECRET_KEY or secrets.key_file "
    "(make a key with `ctc secrets generate-key`)"
)


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def is_sealed(stored: str) -> bool:
    """Whether a stored value is ciphertext (else it is legacy plaintext)."""
    return stored.startswith(PREFIX)


class Keyring:
    """The configured keys, primary first; empty when none is configured."""

    def __init__(self, keys: tuple[str, ...] = ()) -> None:
        self._keys: dict[str, Fernet] = {}
        self._primary: str | None = None
        for number, key in enumerate(keys, start=1):
            raw = key.strip().encode("ascii", errors="replace")
            try:
                fernet = Fernet(raw)
            except ValueError:
                raise SecretsError(
                    f"secrets key #{number} is not a Fernet key (44 characters of url-safe "
                    "base64; make one with `ctc secrets generate-key`)"
                ) from None
            kid = _key_id(raw)
            self._keys.setdefault(kid, fernet)
            if self._primary is None:
                self._primary = kid

    @classmethod
    def parse(cls, text: str | None) -> Keyring:
        """Keys separated by commas or newlines, primary first; ``#`` starts a comment."""
        if text is None:
            return cls()
        keys: list[str] = []
        for line in text.splitlines():
            content = line.split("#", 1)[0]
            keys += [k.strip() for k in content.split(",") if k.strip()]
        return cls(tuple(keys))

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode("ascii")

    @property
    def configured(self) -> bool:
        return self._primary is not None

    @property
    def primary_id(self) -> str | None:
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def seal(self, plaintext: str, *, what: str) -> str:
        """``plaintext`` encrypted under the primary key; :class:`SecretsError` without one."""
        if self._primary is None:
            raise SecretsError(f"cannot store {what}: {NO_KEY_HINT}")
        token = self._keys[self._primary].encrypt(plaintext.encode("utf-8")).decode("ascii")
        return f"{PREFIX}{self._primary}:{token}"

    def seal_if_configured(self, plaintext: str) -> str:
        """Sealed when a key is configured, else the plaintext itself (see the README: only
        generated tenant callback secrets are stored this way)."""
        return self.seal(plaintext, what="a secret") if self.configured else plaintext

    def unseal(self, stored: str, *, what: str) -> str:
        """The plaintext of a stored value (legacy plaintext is returned unchanged)."""
        if not is_sealed(stored):
            return stored
        kid, sep, token = stored[len(PREFIX) :].partition(":")
        if not sep:
            raise SecretsError(f"{what}: stored value is damaged (no key id)")
        fernet = self._keys.get(kid)
        if fernet is None:
            known = ", ".join(self._keys) or "none"
            raise SecretsError(
                f"{what} is encrypted with key {kid}, which is not configured "
                f"(configured: {known}); add that key back to CTC_SECRET_KEY or "
                "secrets.key_file (after the primary)"
            )
        try:
            return fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretsError(f"{what}: stored value does not verify under key {kid}") from None

    def current_prefix(self) -> str:
        """How a stored value that is current begins: sealed under the primary key. The one
        rule of what ``ctc secrets rotate`` re-seals (every value not starting with this).
        Without a key it is :data:`PREFIX`: any sealed value counts as current (there is no
        key to re-seal it under) and only plaintext does not."""
        return PREFIX if self._primary is None else f"{PREFIX}{self._primary}:"
