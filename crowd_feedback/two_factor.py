"""Two-factor sign-in: after the password, a six-digit code from an authenticator app (TOTP, RFC 6238: the
codes of Google Authenticator, Microsoft Authenticator, 1Password, Bitwarden, FreeOTP, …).

Each person turns it on for themselves (the key is shown as a QR code and as text, and saved only once a code
from the app proves the app has it); ``HELPLOOP_TWO_FACTOR_REQUIRED_FOR`` makes it compulsory for operators
or for everyone. A code is accepted once: the step it was made for is kept, and that step and the ones
before it are refused afterwards, so a code read over a shoulder or from a proxy's log is of no use.

For a lost or flat phone: ten recovery codes, shown once when it is turned on (and when renewed), each
signing in once in place of the app's code; and an operator (Accounts, or ``helploop users
reset-two-factor`` on the server), who turns it off for that account. Each is audited like every account
action.

The key is needed in the clear to check a code, so it cannot be hashed like a password: it is stored sealed
(core.sealed: encrypted under a key derived from the secret key), so a copy of the database or of a backup
alone does not hold what generates anyone's codes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pyotp
import segno
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from core.models import RecoveryCode, User, utcnow
from core.sealed import Sealer, UnreadableSecret
from core.settings import TWO_FACTOR_REQUIRED_FOR
from crowd_feedback.reviewers import AccountError, WrongSecret, get_user, own_account, record_event

ISSUER = "HelpLoop"
DIGITS = 6
STEP_SECONDS = 30
# Codes from the step before and the one after are accepted too: a phone's clock a little off, or a code
# typed as it changed.
DRIFT_STEPS = 1
RECOVERY_CODES = 10
# Lower-case letters and digits that cannot be misread for one another (no i, l, o, 0, 1): 31 symbols, ten
# to a code (about 50 bits), shown as two groups of five.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_LENGTH = 10


def new_key() -> str:
    """A fresh shared key: 32 base32 characters (160 bits, RFC 4226's recommended length)."""
    return pyotp.random_base32()


def key_for_display(key: str) -> str:
    """The key in groups of four, as typed into an app that cannot scan the QR code."""
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def provisioning_uri(key: str, *, username: str, issuer: str = ISSUER) -> str:
    return pyotp.TOTP(key, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=username, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """The ``otpauth://`` address as an inline SVG QR code (no image file, no script)."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff", omitsize=False))


def matching_step(key: str, code: str, *, now: float | None = None, after: int | None = None) -> int | None:
    """The time step ``code`` was made for, within the drift allowed around ``now``; None when it matches no
    step, or only a step at or before ``after`` (a code used already). Spaces in the code are ignored."""
    typed = "".join(code.split())
    if len(typed) != DIGITS or not typed.isdigit():
        return None
    totp = pyotp.TOTP(key, digits=DIGITS, interval=STEP_SECONDS)
    moment = time.time() if now is None else now
    current = int(moment // STEP_SECONDS)  # RFC 6238's T, counted from the Unix epoch
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate compared in constant time, none skipped: the time taken tells nothing.
        if hmac.compare_digest(totp.generate_otp(step), typed) and (after is None or step > after):
            found = step
    return found


def required(role: str, required_for: str) -> bool:
    """Whether the settings make two-factor sign-in compulsory for an account of ``role``."""
    if required_for not in TWO_FACTOR_REQUIRED_FOR:
        raise AccountError(f"two_factor_required_for must be one of {', '.join(TWO_FACTOR_REQUIRED_FOR)}")
    return required_for == "everyone" or (required_for == "operators" and role == "operator")


def _use_step(session: Session, user: User, step: int) -> bool:
    """Record ``step`` as used, in one UPDATE that only succeeds while no later (or equal) step is recorded:
    two requests with the same code at once, one wins."""
    result = session.execute(
        update(User)
        .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    session.refresh(user, ["totp_last_step"])
    return bool(getattr(result, "rowcount", 0))


def enable(
    session: Session,
    *,
    user_id: int,
    password: str,
    key: str,
    code: str,
    sealer: Sealer,
    now: float | None = None,
) -> tuple[User, list[str]]:
    """Turn two-factor sign-in on for one's own account: the current password, and a code the app made from
    ``key`` (proving the app holds it). The key is stored sealed by ``sealer``. The account's sessions
    elsewhere end (their token changes). Returns the account and its recovery codes, to be shown once."""
    user = own_account(session, user_id=user_id, password=password)
    if user.totp_secret:
        raise AccountError("two-factor sign-in is on already")
    step = matching_step(key, code, now=now)
    if step is None:
        raise WrongSecret("the code does not match: check the phone's clock, and type the newest code")
    user.totp_secret = sealer.seal(key)
    user.totp_last_step = step
    record_event(session, user=user, action="two_factor_enabled", actor=user.username)
    return user, _new_recovery_codes(session, user)


def _turn_off(session: Session, user: User) -> None:
    """No key, no step, no recovery codes: the password alone signs in (its sessions end with the key)."""
    user.totp_secret = None
    user.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def disable(
    session: Session, *, user_id: int, password: str, code: str, sealer: Sealer, now: float | None = None
) -> User:
    """Turn it off for one's own account: the current password and a current code of the app, or a recovery
    code (the phone lost). Where the settings require it, the pages then ask at once for a new phone's key:
    this is how a person moves to a new phone."""
    user = own_account(session, user_id=user_id, password=password)
    if not user.totp_secret:
        raise AccountError("two-factor sign-in is off already")
    try:
        accepted, _left = _spend(session, user, code, now, sealer)
    except UnreadableSecret:
        raise WrongSecret(
            "this server cannot read your app's key (its secret key has changed): use a recovery code"
        ) from None
    if not accepted:
        raise WrongSecret("the code does not match")
    _turn_off(session, user)
    record_event(session, user=user, action="two_factor_disabled", actor=user.username)
    return user


def reset(session: Session, *, username: str, actor: str, reason: str) -> User:
    """An operator (or ``cli``) turns two-factor sign-in off for an account whose phone is lost; the person
    signs in with the password alone and sets it up again (at once, where the settings require it)."""
    user = get_user(session, username=username)
    if not user.totp_secret:
        raise AccountError(f"{username} has no two-factor sign-in to reset")
    if not reason.strip():
        raise AccountError(
            "say why two-factor sign-in is reset (e.g. 'phone lost, identity checked by call')"
        )
    _turn_off(session, user)
    record_event(session, user=user, action="two_factor_reset", actor=actor, reason=reason.strip())
    return user


def _recovery_hash(code: str) -> str:
    typed = "".join(ch for ch in code.lower() if ch.isalnum())
    return hashlib.sha256(typed.encode()).hexdigest()


def _new_recovery_codes(session: Session, user: User) -> list[str]:
    """Ten new recovery codes for ``user`` (the earlier ones stop working); only their hashes are stored."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        session.add(RecoveryCode(user_id=user.id, code_hash=_recovery_hash(raw)))
    session.flush()
    return codes


def renew_recovery_codes(session: Session, *, user_id: int, password: str) -> list[str]:
    """New recovery codes for one's own account (the current password), the old ones void: for someone who
    has used some, or fears they were seen."""
    user = own_account(session, user_id=user_id, password=password)
    if not user.totp_secret:
        raise AccountError("two-factor sign-in is off: there are no recovery codes to renew")
    codes = _new_recovery_codes(session, user)
    record_event(session, user=user, action="recovery_codes_renewed", actor=user.username)
    return codes


def recovery_codes_left(session: Session, *, user_id: int) -> int:
    query = select(func.count()).select_from(RecoveryCode)
    return int(
        session.scalar(query.where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))) or 0
    )


def _use_recovery_code(session: Session, user: User, code: str) -> int | None:
    """Spend one of ``user``'s recovery codes: one UPDATE that only succeeds while it is unused (two sign-ins
    with it at once: one wins). How many are left then; None when it was not spent."""
    unused = select(RecoveryCode.id).where(
        RecoveryCode.user_id == user.id,
        RecoveryCode.code_hash == _recovery_hash(code),
        RecoveryCode.used_at.is_(None),
    )
    found = session.scalars(unused).first()
    if found is None:
        return None
    result = session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.id == found, RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        return None
    left = recovery_codes_left(session, user_id=user.id)
    record_event(session, user=user, action="recovery_code_used", actor=user.username, reason=f"{left} left")
    return left


def _spend(
    session: Session, user: User, code: str, now: float | None, sealer: Sealer
) -> tuple[bool, int | None]:
    """The app's code (six digits) or a recovery code for ``user``, spent so it cannot serve again: whether it
    was accepted, and with a recovery code how many are left. UnreadableSecret: an app's code, and the key
    was sealed under a secret key this server no longer has (a recovery code still works)."""
    typed = "".join(code.split())
    if len(typed) == DIGITS and typed.isdigit():
        key = sealer.open(user.totp_secret or "")
        step = matching_step(key, typed, now=now, after=user.totp_last_step)
        return step is not None and _use_step(session, user, step), None
    left = _use_recovery_code(session, user, typed)
    return left is not None, left


@dataclass(frozen=True)
class CodeCheck:
    user: User | None
    # "ok", "wrong" (no match, or a code used already), "inactive", "unreadable" (an app's code, and the key
    # was sealed under a secret key this server no longer has)
    reason: str
    recovery_left: int | None = None  # signed in with a recovery code: how many are left


def check_code(
    session: Session,
    *,
    user_id: int,
    code: str,
    sealer: Sealer,
    now: float | None = None,
    accept: Callable[[User], bool] = lambda user: True,
) -> CodeCheck:
    """The second step of a sign-in: ``code`` (the app's, or a recovery code) for the account whose password
    was right. The step it matches is recorded, or the recovery code spent, so it cannot sign in again.
    ``accept`` checks the account is still the one the password was typed for (its session token)."""
    user = session.get(User, user_id)
    if user is None or not user.active or not user.totp_secret or not accept(user):
        return CodeCheck(None, "inactive")
    try:
        accepted, left = _spend(session, user, code, now, sealer)
    except UnreadableSecret:
        return CodeCheck(None, "unreadable")
    return CodeCheck(user, "ok", recovery_left=left) if accepted else CodeCheck(None, "wrong")


def seal_stored_keys(session: Session, sealer: Sealer) -> tuple[int, int]:
    """Seal the two-factor keys stored in the clear (before sealing existed), and seal again under the
    current secret key those sealed under a fallback (after the key changed), so the fallback can go;
    ``helploop db upgrade`` runs it. How many of each. Each such account's sessions end once, as their token
    is made from the stored key. A key no secret key opens is left as it is (doctor fails on it)."""
    stored = session.scalars(select(User).where(User.totp_secret.is_not(None))).all()
    in_clear = resealed = 0
    for user in stored:
        state = sealer.state(user.totp_secret or "")
        if state in ("clear", "fallback"):
            user.totp_secret = sealer.reseal(user.totp_secret or "")
            in_clear, resealed = in_clear + (state == "clear"), resealed + (state == "fallback")
    session.flush()
    return in_clear, resealed


@dataclass(frozen=True)
class StoredKeys:
    sealed: int  # under the current secret key
    in_clear: int  # stored before sealing: `helploop db upgrade` seals them
    unreadable: int  # sealed under a secret key this server no longer has
    under_fallback: int = 0  # opened only by a fallback: `helploop db upgrade` seals them again


def stored_keys(session: Session, sealer: Sealer) -> StoredKeys:
    """What ``helploop doctor`` says of the two-factor keys stored."""
    keys = session.scalars(select(User.totp_secret).where(User.totp_secret.is_not(None))).all()
    states = Counter(sealer.state(key) for key in keys if key)
    return StoredKeys(states["current"], states["clear"], states["unreadable"], states["fallback"])
