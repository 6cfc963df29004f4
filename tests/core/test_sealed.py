"""Secrets sealed at rest (core.sealed): only the secret key, or a fallback, opens them."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.sealed import PREFIX, Sealer, UnreadableSecret, is_sealed
from core.settings import load_settings

KEY = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_a_sealed_key_opens_with_its_secret_key_or_a_fallback_only() -> None:
    sealer = Sealer("the secret key")
    sealed = sealer.seal(KEY)
    assert is_sealed(sealed) and sealed.startswith(PREFIX) and KEY not in sealed
    assert len(sealed) <= 255  # the column (migration 0057)
    assert sealer.open(sealed) == KEY and sealer.readable(sealed)
    assert sealer.seal(KEY) != sealed  # a fresh IV each time: equal keys do not look equal
    other = Sealer("another secret key")
    with pytest.raises(UnreadableSecret, match="HELPLOOP_SECRET_KEY_FALLBACKS"):
        other.open(sealed)
    assert not other.readable(sealed)
    # The key changed, the old one kept as a fallback: the old seal opens; new seals use the new key.
    rotated = Sealer("another secret key", ["the secret key"])
    assert rotated.open(sealed) == KEY and not rotated.current(sealed) and sealer.current(sealed)
    assert other.open(rotated.seal(KEY)) == KEY
    resealed = rotated.reseal(sealed)
    assert rotated.current(resealed) and other.open(resealed) == KEY and not sealer.readable(resealed)
    assert rotated.current(rotated.reseal(KEY)) and not rotated.current(KEY)  # from the clear too
    # Altered in the database: refused, not read as something else.
    tampered = sealed[:-5] + ("A" if sealed[-5] != "A" else "B") + sealed[-4:]
    assert not sealer.readable(tampered)
    # Stored before sealing: read as it is.
    assert sealer.open(KEY) == KEY and not is_sealed(KEY)
    with pytest.raises(ValueError, match="a secret key is needed"):
        Sealer("")


def test_the_settings_seal_with_the_secret_key_and_open_with_the_fallbacks(tmp_path: Path) -> None:
    base = {"environment": "testing", "instance_path": str(tmp_path)}
    old = load_settings(base | {"secret_key": "old-key"}, environ={})
    env = {"HELPLOOP_SECRET_KEY": "new-key", "HELPLOOP_SECRET_KEY_FALLBACKS": "older-key, old-key"}
    new = load_settings(base, environ=env)
    assert new.secret_key_fallback_list == ["older-key", "old-key"]
    assert new.sealer().open(old.sealer().seal(KEY)) == KEY
    assert (
        not load_settings(base | {"secret_key": "new-key"}, environ={})
        .sealer()
        .readable(old.sealer().seal(KEY))
    )
