"""Secrets the app must read back, sealed at rest: a two-factor key (TOTP) is needed in the clear to check a
code, so unlike a password it cannot be hashed. It is stored encrypted (Fernet: AES-128-CBC with an
HMAC-SHA256 tag) under a key derived from ``HELPLOOP_SECRET_KEY``, so a copy of the database or of a backup
alone does not hold what generates anyone's codes.

The secret key can change: the old one goes into ``HELPLOOP_SECRET_KEY_FALLBACKS``, and what was sealed
under it still opens (new seals use the current key); ``helploop db upgrade`` seals it again under the current
key (``reseal``), after which the fallback can go. A value stored before sealing existed has no prefix and
is read as it is (the same upgrade seals it: crowd_feedback.two_factor.seal_stored_keys)."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "sealed:v1:"
PURPOSE = b"helploop: two-factor keys at rest"


class UnreadableSecret(ValueError):
    """Sealed under a secret key this installation no longer has (neither the current one nor a fallback)."""


def _fernet(secret: str) -> Fernet:
    # HKDF: the secret key (any length, any alphabet) as a 256-bit key for this purpose only, so the Fernet
    # key is not the key that signs sessions.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


class Sealer:
    """Seals with the current secret key; opens with it or any fallback."""

    def __init__(self, secret: str, fallbacks: Sequence[str] = ()) -> None:
        if not secret:
            raise ValueError("a secret key is needed to seal secrets")
        self._current = _fernet(secret)
        self._keys = MultiFernet([self._current, *(_fernet(key) for key in fallbacks if key)])

    def seal(self, plain: str) -> str:
        return PREFIX + self._keys.encrypt(plain.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret; a value without the prefix (stored before sealing) as it is."""
        if not is_sealed(stored):
            return stored
        try:
            return self._keys.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise UnreadableSecret(
                "sealed under another secret key: put the key it was sealed with in "
                "HELPLOOP_SECRET_KEY_FALLBACKS"
            ) from None

    def state(self, stored: str) -> str:
        """``clear`` (stored before sealing), ``current`` (sealed under the current secret key), ``fallback``
        (only a fallback opens it) or ``unreadable`` (no key here does)."""
        if not is_sealed(stored):
            return "clear"
        token = stored[len(PREFIX) :].encode()
        try:
            self._current.decrypt(token)
            return "current"
        except InvalidToken:
            pass
        try:
            self._keys.decrypt(token)
        except InvalidToken:
            return "unreadable"
        return "fallback"

    def current(self, stored: str) -> bool:
        """Sealed under the current secret key (not only a fallback's)."""
        return self.state(stored) == "current"

    def reseal(self, stored: str) -> str:
        """Sealed again under the current secret key (from a fallback's, or from the clear)."""
        return self.seal(self.open(stored))

    def readable(self, stored: str) -> bool:
        return self.state(stored) != "unreadable"


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)
