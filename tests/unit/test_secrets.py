"""engine.secrets: sealing stored secrets, several keys, rotation, no key."""

from __future__ import annotations

import pytest

from engine.errors import SecretsError
from engine.secrets import PREFIX, Keyring, is_sealed

OLD = Keyring.generate_key()
NEW = Keyring.generate_key()


def test_a_sealed_value_hides_the_plaintext_and_opens_back() -> None:
    ring = Keyring((NEW,))
    sealed = ring.seal("whsec-123456", what="w")
    assert "whsec" not in sealed
    assert is_sealed(sealed)
    assert sealed.startswith(f"{PREFIX}{ring.primary_id}:")
    assert ring.unseal(sealed, what="w") == "whsec-123456"


def test_sealing_twice_gives_different_ciphertexts() -> None:
    ring = Keyring((NEW,))
    assert ring.seal("x", what="w") != ring.seal("x", what="w")


def test_new_values_use_the_first_key_and_any_listed_key_opens() -> None:
    old_ring = Keyring((OLD,))
    both = Keyring((NEW, OLD))
    under_old = old_ring.seal("s3cret", what="w")
    assert both.unseal(under_old, what="w") == "s3cret"
    assert not under_old.startswith(both.current_prefix())  # rotate re-seals it
    under_new = both.seal("s3cret", what="w")
    assert under_new.startswith(both.current_prefix())
    assert both.primary_id == Keyring((NEW,)).primary_id
    assert Keyring((NEW,)).unseal(under_new, what="w") == "s3cret"


def test_a_value_under_a_key_no_longer_configured_names_its_key_id() -> None:
    sealed = Keyring((OLD,)).seal("s3cret", what="w")
    old_id = Keyring((OLD,)).primary_id
    with pytest.raises(SecretsError, match=f"encrypted with key {old_id}, which is not"):
        Keyring((NEW,)).unseal(sealed, what="webhook_secret of provider 1")


def test_a_tampered_value_does_not_open() -> None:
    ring = Keyring((NEW,))
    sealed = ring.seal("s3cret", what="w")
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(SecretsError, match="does not verify"):
        ring.unseal(tampered, what="w")


def test_legacy_plaintext_is_read_as_is_and_is_not_current() -> None:
    ring = Keyring((NEW,))
    assert ring.unseal("0123abcd", what="w") == "0123abcd"
    assert not "0123abcd".startswith(ring.current_prefix())
    assert Keyring().unseal("0123abcd", what="w") == "0123abcd"


def test_current_values_are_those_sealed_under_the_primary_key() -> None:
    ring = Keyring((NEW, OLD))
    assert ring.current_prefix() == f"{PREFIX}{ring.primary_id}:"


def test_without_a_key_any_sealed_value_is_current_and_only_plaintext_is_not() -> None:
    """Nothing to re-seal under: doctor reports only what is still plaintext."""
    ring = Keyring()
    assert Keyring((OLD,)).seal("s3cret", what="w").startswith(ring.current_prefix())
    assert not "0123abcd".startswith(ring.current_prefix())


def test_without_a_key_sealing_is_refused_with_the_fix() -> None:
    ring = Keyring()
    assert not ring.configured
    with pytest.raises(SecretsError, match=r"cannot store provider credentials: .*CTC_SECRET_KEY"):
        ring.seal("{}", what="provider credentials")
    assert ring.seal_if_configured("abc") == "abc"
    sealed = Keyring((NEW,)).seal("abc", what="w")
    with pytest.raises(SecretsError, match="not configured"):
        ring.unseal(sealed, what="w")


def test_parse_takes_commas_lines_and_comments_primary_first() -> None:
    ring = Keyring.parse(f"# rotated 2026-11\n{NEW}\n{OLD}, \n")
    assert ring.key_ids == (Keyring((NEW,)).primary_id, Keyring((OLD,)).primary_id)
    assert Keyring.parse(f"{NEW},{OLD}").key_ids == ring.key_ids
    assert not Keyring.parse("# nothing\n").configured


def test_a_malformed_key_is_refused_by_position_without_echoing_it() -> None:
    with pytest.raises(SecretsError, match="secrets key #2 is not a Fernet key") as info:
        Keyring.parse(f"{NEW},not-a-key-s3cret")
    assert "s3cret" not in str(info.value)
