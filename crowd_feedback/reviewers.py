"""Accounts for reviewers and operators: creation, password checks (hashed, never stored in clear) and the
operator's actions on accounts (reset a password, deactivate, reactivate, reinstate a suspended reviewer),
each recorded in ``account_events`` with who did it and why."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.orm import Session, selectinload
from werkzeug.security import check_password_hash, generate_password_hash

from core.events import emit
from core.mail import email_address
from core.models import AccountEvent, ApiToken, Claim, SignIn, User, as_utc, utcnow

ROLES = ("reviewer", "operator")
USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,80}$")
MIN_PASSWORD = 10


class AccountError(ValueError):
    pass


class WrongSecret(AccountError):
    """A wrong current password or two-factor code typed on the account's own pages: counted per account as
    a refused sign-in is, so a session left open cannot be used to guess them from many addresses."""


def create_user(session: Session, *, username: str, password: str, role: str, actor: str = "cli") -> User:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if not USERNAME.match(username):
        raise AccountError("username: 3-80 letters, digits, '.', '_' or '-'")
    _check_password(password)
    if session.scalars(select(User).where(User.username == username)).first() is not None:
        raise AccountError(f"user {username!r} already exists")
    user = User(username=username, password_hash=generate_password_hash(password), role=role)
    session.add(user)
    session.flush()
    record_event(session, user=user, action="created", actor=actor, reason=f"role {role}")
    return user


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None or not user.active or not check_password_hash(user.password_hash, password):
        return None
    return user


SIGN_INS_KEPT = 20  # per account: the newest, for its owner to look through


def record_login(
    session: Session,
    *,
    user: User,
    now: datetime | None = None,
    address: str = "",
    user_agent: str = "",
    method: str = "password",
) -> None:
    """A sign-in through the login page (API tokens keep their own ``last_used_at``): the account's last
    sign-in, and a row of its sign-in history (the oldest beyond ``SIGN_INS_KEPT`` dropped)."""
    when = now or utcnow()
    user.last_login_at = when
    session.add(
        SignIn(
            user_id=user.id, at=when, address=address[:64], user_agent=user_agent[:200], method=method[:20]
        )
    )
    session.flush()
    kept = select(SignIn.id).where(SignIn.user_id == user.id).order_by(SignIn.id.desc()).limit(SIGN_INS_KEPT)
    session.execute(
        delete(SignIn)
        .where(SignIn.user_id == user.id, SignIn.id.not_in(kept.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )


def recent_sign_ins(session: Session, *, user_id: int, limit: int = SIGN_INS_KEPT) -> list[SignIn]:
    query = select(SignIn).where(SignIn.user_id == user_id).order_by(SignIn.id.desc()).limit(limit)
    return list(session.scalars(query))


def end_other_sessions(session: Session, *, user_id: int) -> User:
    """Sign the account out of every browser (its session token changes); the caller signs this one in
    again. For a laptop left signed in somewhere, or a sign-in its owner does not recognise."""
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise AccountError("this account is not active")
    end_sessions(session, user=user, actor=user.username)
    return user


def end_sessions(session: Session, *, user: User, actor: str, reason: str = "") -> None:
    """Every session of ``user`` ends (``session_token`` changes), audited as ``sessions_ended``."""
    user.session_epoch = (user.session_epoch or 0) + 1
    record_event(session, user=user, action="sessions_ended", actor=actor, reason=reason)


# Each action the audit trail keeps, with the words the Accounts page and `helploop users list` show for it.
ACTION_LABELS = {
    "created": "created",
    "password_reset": "new password set",
    "password_changed": "password changed",
    "locked": "sign-ins locked",
    "deactivated": "deactivated",
    "reactivated": "reactivated",
    "suspended": "suspended",
    "reinstated": "reinstated",
    "token_created": "API token created",
    "token_revoked": "API token revoked",
    "two_factor_enabled": "two-factor sign-in on",
    "two_factor_disabled": "two-factor sign-in off",
    "two_factor_reset": "two-factor sign-in reset",
    "recovery_code_used": "signed in with a recovery code",
    "recovery_codes_renewed": "recovery codes renewed",
    "sessions_ended": "signed out of other browsers",
    "role_changed": "role changed",
    "sso_linked": "linked to single sign-on",
    "sso_unlinked": "unlinked from single sign-on",
    "email_changed": "e-mail address changed",
    "reset_link_sent": "link to set a new password e-mailed",
    "password_reset_by_link": "new password set through the e-mailed link",
}
ACTIONS = tuple(ACTION_LABELS)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password must have at least {MIN_PASSWORD} characters")


def session_token(user: User) -> str:
    """What a login session carries besides the user id: it changes with the password, with two-factor
    sign-in turned on, off or reset, and with "sign out of every other browser", so each of these ends every
    session opened before it."""
    material = user.password_hash
    if user.totp_secret:
        material += f"\n{user.totp_secret}"
    if user.session_epoch:  # "sign out of every other browser"
        material += f"\n{user.session_epoch}"
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def record_event(session: Session, *, user: User, action: str, actor: str, reason: str = "") -> None:
    if action not in ACTIONS:
        raise AccountError(f"unknown account action {action!r}")
    session.add(AccountEvent(user_id=user.id, action=action, actor=actor[:100], reason=reason[:500]))
    session.flush()


def get_user(session: Session, *, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise AccountError(f"no user {username!r}")
    return user


def set_password(session: Session, *, username: str, password: str, actor: str) -> User:
    _check_password(password)
    user = get_user(session, username=username)
    user.password_hash = generate_password_hash(password)
    record_event(session, user=user, action="password_reset", actor=actor)
    return user


def own_account(session: Session, *, user_id: int, password: str) -> User:
    """The signed-in user's account, for a change to it that asks for the current password first (a wrong
    one is a ``WrongSecret``, counted as a refused sign-in)."""
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise AccountError("this account is not active")
    if not check_password_hash(user.password_hash, password):
        raise WrongSecret("the current password is wrong")
    return user


def change_own_password(session: Session, *, user_id: int, current: str, new: str) -> User:
    """A signed-in user's new password, given the current one (audited as done by themselves). The sessions
    opened with the old password end (``session_token`` changes); the caller signs this one in again."""
    user = own_account(session, user_id=user_id, password=current)
    _check_password(new)
    if new == current:
        raise AccountError("the new password is the current one")
    user.password_hash = generate_password_hash(new)
    record_event(session, user=user, action="password_changed", actor=user.username)
    return user


def set_own_email(session: Session, *, user_id: int, password: str, email: str) -> User:
    """The signed-in person's e-mail address (where a link to set a new password goes), given their current
    password (a session left open must not be enough to take the account over); empty removes it."""
    user = own_account(session, user_id=user_id, password=password)
    return _set_email(session, user, email, actor=user.username)


def set_email(session: Session, *, username: str, email: str, actor: str) -> User:
    """An operator sets (or, empty, removes) an account's e-mail address (``helploop users set-email``)."""
    return _set_email(session, get_user(session, username=username), email, actor=actor)


def _set_email(session: Session, user: User, email: str, *, actor: str) -> User:
    """Kept in lower case, one account per address; audited with the address."""
    email = email.strip().lower()
    if email and email_address(email) is None:
        raise AccountError(f"{email!r} is no e-mail address")
    if len(email) > 254:
        raise AccountError("the address is longer than 254 characters")
    if email and session.scalar(select(User.id).where(User.email == email, User.id != user.id)) is not None:
        raise AccountError("another account has this address")
    user.email = email or None
    record_event(session, user=user, action="email_changed", actor=actor, reason=email or "removed")
    return user


def account_to_reset(session: Session, *, who: str) -> User | None:
    """The account a "forgot your password" form names, by username or e-mail address, when a link can be
    e-mailed to it: active, with an address (None otherwise; the page says the same either way)."""
    who = who.strip()
    if not who:
        return None
    found = session.scalars(
        select(User).where(or_(User.username == who, User.email == who.lower())).limit(1)
    ).first()
    if found is None or not found.active or not found.email:
        return None
    return found


def reset_password(session: Session, *, user_id: int, token: str, new: str) -> User:
    """A new password through the e-mailed link: ``token`` is the account's ``session_token`` when the link
    was made, so the link works once (the new password changes it) and not after any other change to the
    account's sign-in. Every session of the account ends."""
    user = session.get(User, user_id)
    if user is None or not user.active or not secrets.compare_digest(session_token(user), token):
        raise AccountError("this link has expired or has been used: ask for a new one")
    _check_password(new)
    user.password_hash = generate_password_hash(new)
    record_event(session, user=user, action="password_reset_by_link", actor=user.username)
    return user


def _release_claims(session: Session, user: User) -> None:
    """Items the user holds go back to the queue now instead of when their leases run out."""
    session.execute(delete(Claim).where(Claim.reviewer_id == user.id))


def active_operators(session: Session, *, besides: int | None = None) -> int:
    """How many operator accounts can log in (``besides``: not counting that user id)."""
    query = select(func.count()).select_from(User).where(User.role == "operator", User.active.is_(True))
    if besides is not None:
        query = query.where(User.id != besides)
    return int(session.scalar(query) or 0)


def set_active(session: Session, *, username: str, active: bool, actor: str, reason: str = "") -> User:
    """Deactivate (cannot log in; open sessions end; claimed items go back to the queue) or reactivate.
    Refused for the last active operator, who would lock everyone out of the operator pages."""
    user = get_user(session, username=username)
    if user.active == active:
        raise AccountError(f"{username} is already {'active' if active else 'deactivated'}")
    if not active and user.role == "operator":
        if not active_operators(session, besides=user.id):
            raise AccountError(f"{username} is the last active operator; create another operator first")
    user.active = active
    if not active:
        _release_claims(session, user)
    record_event(
        session, user=user, action="reactivated" if active else "deactivated", actor=actor, reason=reason
    )
    return user


def suspend(session: Session, *, user: User, reason: str, now: datetime | None = None) -> None:
    """The gold check's automatic suspension: no more items; the reviewer's judgements count as coin
    flips in every posterior until an operator reinstates them."""
    user.suspended_at = now or utcnow()
    user.suspended_reason = reason[:300]
    _release_claims(session, user)
    record_event(session, user=user, action="suspended", actor="system", reason=reason)
    emit(
        session,
        "reviewer.suspended",
        f"Reviewer {user.username} was suspended by the gold check: {reason}. Their judgements count as coin "
        "flips until an operator reinstates them.",
        path="/operator/accounts",
        data={"reviewer": user.username, "reason": reason},
    )


def record_lockout(
    session: Session,
    *,
    username: str,
    failures: int,
    window_seconds: int,
    what: str = "passwords",
    now: datetime | None = None,
) -> bool:
    """Sign-ins to ``username`` refused after ``failures`` wrong passwords (or two-factor ``codes``) within
    the window, or (``what="session"``) its password and two-factor changes refused after wrong current
    passwords or codes typed in a signed-in session: kept in the account's audit trail and announced to
    operators (``account.locked``), once a lockout: the refused attempts that follow within the window add
    nothing. False for a name with no account (guesses at names raise no alarm per name) or a lockout
    recorded already."""
    user = session.scalars(select(User).where(func.lower(User.username) == username.lower())).first()
    if user is None:
        return False
    since = (now or utcnow()) - timedelta(seconds=window_seconds)
    recorded = select(AccountEvent.id).where(
        AccountEvent.user_id == user.id, AccountEvent.action == "locked", AccountEvent.created_at >= since
    )
    if session.scalars(recorded).first() is not None:
        return False
    minutes = max(1, round(window_seconds / 60))
    if what == "session":
        reason = (
            f"{failures} wrong current passwords or codes in a signed-in session within {minutes} minutes"
        )
        text = (
            f"Changes to the password and two-factor sign-in of {user.role} {user.username} are refused for "
            f"up to {minutes} minutes after {failures} wrong current passwords or codes typed in a signed-in "
            "session. If they did not mistype them, someone holds their session (a browser left signed in): "
            "deactivate the account or set a new password, which ends every session."
        )
    else:
        reason = f"{failures} wrong {what} within {minutes} minutes"
        guessed = "the code (their password is known)" if what == "codes" else "the password"
        text = (
            f"Sign-ins to {user.role} {user.username} are refused for up to {minutes} minutes after "
            f"{failures} wrong {what} (from any address). If they did not mistype it, someone is guessing "
            f"{guessed}."
        )
    record_event(session, user=user, action="locked", actor="system", reason=reason)
    emit(
        session,
        "account.locked",
        text,
        path="/operator/accounts",
        data={"username": user.username, "failures": failures, "minutes": minutes, "what": what},
    )
    return True


def count_gold(session: Session, *, reviewer: User, answered: int, correct: int) -> None:
    """Add to (or, negative, take from) a reviewer's gold record in one UPDATE that reads the stored counts,
    not the ones this session loaded: an operator retiring a check question while the reviewer answers
    another must not overwrite one change with the other. Never below zero. ``reviewer`` is refreshed."""
    if not answered and not correct:
        return

    def moved(column: Any, by: int) -> Any:
        return case((column + by < 0, 0), else_=column + by)

    session.execute(
        update(User)
        .where(User.id == reviewer.id)
        .values(
            gold_answered=moved(User.gold_answered, answered), gold_correct=moved(User.gold_correct, correct)
        )
        .execution_options(synchronize_session=False)
    )
    session.refresh(reviewer, ["gold_answered", "gold_correct"])


def reinstate(session: Session, *, username: str, actor: str, reason: str) -> User:
    """Lift a suspension after an operator has looked at it (a reason is required). The reviewer starts a
    new probation: the gold counts start again from zero (the old ones stay in the audit reason), so the
    gold check judges them afresh after the usual number of gold items."""
    user = get_user(session, username=username)
    if user.suspended_at is None:
        raise AccountError(f"{username} is not suspended")
    if not reason.strip():
        raise AccountError("say why the reviewer is reinstated")
    before = f"gold {user.gold_correct}/{user.gold_answered} before; {reason.strip()}"
    user.suspended_at = None
    user.suspended_reason = None
    user.gold_answered = 0
    user.gold_correct = 0
    record_event(session, user=user, action="reinstated", actor=actor, reason=before)
    return user


@dataclass(frozen=True)
class AccountRow:
    username: str
    role: str
    active: bool
    suspended_reason: str | None
    gold: str
    created_at: datetime
    last_event: str
    last_login_at: datetime | None = None
    two_factor: bool = False
    sso: bool = False  # linked to the identity provider: signs in there (single sign-on)
    email: str | None = None  # where a forgotten password's link goes (None: nowhere, an operator resets it)


def list_accounts(session: Session) -> list[AccountRow]:
    users = session.scalars(select(User).order_by(User.role, User.username)).all()
    newest = select(func.max(AccountEvent.id)).group_by(AccountEvent.user_id)
    latest: dict[int, Any] = {
        e.user_id: e for e in session.scalars(select(AccountEvent).where(AccountEvent.id.in_(newest)))
    }
    rows = []
    for user in users:
        event = latest.get(user.id)
        rows.append(
            AccountRow(
                username=user.username,
                role=user.role,
                active=user.active,
                suspended_reason=user.suspended_reason if user.suspended_at is not None else None,
                gold=f"{user.gold_correct}/{user.gold_answered}",
                created_at=user.created_at,
                last_event=(
                    f"{ACTION_LABELS[event.action]} by {event.actor} {event.created_at:%Y-%m-%d %H:%M}"
                    if event
                    else ""
                ),
                last_login_at=as_utc(user.last_login_at) if user.last_login_at else None,
                two_factor=bool(user.totp_secret),
                sso=user.sso_subject is not None,
                email=user.email,
            )
        )
    return rows


def account_events(session: Session, *, limit: int = 50) -> list[tuple[AccountEvent, str]]:
    """The newest changes to accounts with the account's username."""
    return [
        (event, username)
        for event, username in session.execute(
            select(AccountEvent, User.username)
            .join(User, User.id == AccountEvent.user_id)
            .order_by(AccountEvent.id.desc())
            .limit(limit)
        ).all()
    ]


# ------------------------------------------------------------------------------------------ API tokens

TOKEN_PREFIX = "hlk_"
TOKEN_NAME = re.compile(r"^[A-Za-z0-9_. -]{1,80}$")


def _token_hash(secret: str) -> str:
    # Tokens are 256 random bits: a plain SHA-256 is enough (a slow password hash is for guessable secrets).
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_api_token(session: Session, *, username: str, name: str, actor: str) -> tuple[ApiToken, str]:
    """A new admin-API token for an operator: (row, the secret). The secret is shown once and only its hash
    is stored. Reviewers get none: the admin API is operator work."""
    user = get_user(session, username=username)
    if user.role != "operator":
        raise AccountError(f"{username!r} is a {user.role}: API tokens are for operators")
    if not user.active:
        raise AccountError(f"{username!r} is deactivated")
    name = " ".join(name.split())
    if not TOKEN_NAME.match(name):
        raise AccountError("token name: 1-80 letters, digits, spaces, '.', '_' or '-' (e.g. 'ci deploy')")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id, name=name, token_hash=_token_hash(secret), prefix=secret[:12], created_by=actor[:80]
    )
    session.add(token)
    session.flush()
    record_event(session, user=user, action="token_created", actor=actor, reason=f"token {token.id} ({name})")
    return token, secret


def revoke_api_token(session: Session, *, token_id: int, actor: str) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise AccountError(f"no API token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record_event(
            session,
            user=token.user,
            action="token_revoked",
            actor=actor,
            reason=f"token {token.id} ({token.name})",
        )
    return token


def list_api_tokens(session: Session) -> list[ApiToken]:
    return list(
        session.scalars(select(ApiToken).options(selectinload(ApiToken.user)).order_by(ApiToken.id.desc()))
    )


def authenticate_token(session: Session, secret: str) -> User | None:
    """The operator a bearer token acts for, or None: unknown, revoked, or its user deactivated, no longer
    an operator. Records when it was last used."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == _token_hash(secret))).first()
    if token is None or token.revoked_at is not None:
        return None
    user = token.user
    if not user.active or user.role != "operator":
        return None
    token.last_used_at = utcnow()
    return user


SEEN_EVERY_SECONDS = 30  # last_seen_at is written at most this often per person (not on every request)


def seen_lately(last_seen_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether ``last_seen_at`` is recent enough not to be written again (a row already loaded can tell, so a
    request need not issue a write statement at all)."""
    if last_seen_at is None:
        return False
    now = now or utcnow()
    return as_utc(last_seen_at) >= as_utc(now) - timedelta(seconds=SEEN_EVERY_SECONDS)


def mark_seen(session: Session, *, user_id: int, now: datetime | None = None) -> bool:
    """Note that a person's browser asked for a page now; True when the row was written."""
    now = now or utcnow()
    stale = or_(User.last_seen_at.is_(None), User.last_seen_at < now - timedelta(seconds=SEEN_EVERY_SECONDS))
    result = session.execute(
        update(User).where(User.id == user_id, stale).values(last_seen_at=now),
        execution_options={"synchronize_session": False},  # a plain UPDATE; loaded rows need not follow
    )
    return bool(getattr(result, "rowcount", 0))


def operators_online(session: Session, *, within_seconds: int, now: datetime | None = None) -> int:
    """Active operators whose browser asked for a page within the last ``within_seconds``: people who can
    join a live chat now (an open inbox or conversation page polls every few seconds)."""
    since = (now or utcnow()) - timedelta(seconds=within_seconds)
    online = (
        select(func.count())
        .select_from(User)
        .where(User.role == "operator", User.active.is_(True), User.last_seen_at >= since)
    )
    return int(session.scalar(online) or 0)
