"""Single sign-on through the company's identity provider (OpenID Connect): which account a verified ID
token's claims sign in to, with which role, and linking a password account to the provider.

The web layer (``admin_ui.auth``) runs the authorization-code flow and verifies the ID token (signature,
issuer, audience, expiry, nonce); these functions take its claims. The person is known by the provider's
``sub`` (stable, never reassigned), not by e-mail address or name, which people and administrators can
change: a password account is linked only by its owner, signed in, going through the provider once.

The provider decides who may come in, as what: the role follows the groups claim at every sign-in (a
change is audited), and an account linked to the provider signs in only through it while single sign-on
is configured, so removing someone at the provider ends their access here at their next sign-in."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from core.models import User
from crowd_feedback.reviewers import USERNAME, AccountError, end_sessions, get_user, record_event

ACTOR = "single sign-on"


class NotAllowed(AccountError):
    """The provider vouched for the person, but none of their groups may sign in here."""


def groups_of(claims: Mapping[str, Any], claim: str) -> frozenset[str]:
    """The groups in the ID token's ``claim``: a list of names (Okta, Keycloak, Entra ID's ids), or one
    string, comma- or space-separated."""
    value = claims.get(claim)
    if isinstance(value, str):
        return frozenset(g for g in re.split(r"[,\s]+", value) if g)
    if isinstance(value, list | tuple):
        return frozenset(str(g) for g in value if str(g))
    return frozenset()


class Role(NamedTuple):
    name: str  # reviewer | operator
    from_groups: bool  # False: the default role (the provider sent no group that is mapped)


def role_for(
    claims: Mapping[str, Any],
    *,
    groups_claim: str,
    groups: Mapping[str, frozenset[str]],
    default_role: str = "",
) -> Role:
    """The role the claims give: operator when in an operator group, else reviewer when in a reviewer group,
    else ``default_role`` (for a provider that sends no groups, such as Google's); ``NotAllowed`` where that
    is empty."""
    member_of = groups_of(claims, groups_claim)
    for role in ("operator", "reviewer"):
        if member_of & groups.get(role, frozenset()):
            return Role(role, True)
    if default_role:
        return Role(default_role, False)
    raise NotAllowed("your account there is in none of the groups allowed to sign in here")


def _username_from(claims: Mapping[str, Any]) -> str:
    """A username in the accounts' alphabet from the provider's name for the person: preferred_username
    (its part before an @), else the e-mail's local part, else "user"."""
    for key in ("preferred_username", "email", "nickname", "name"):
        value = str(claims.get(key) or "").split("@")[0]
        cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value.strip()).strip("-.")[:70]
        if len(cleaned) >= 3:
            return cleaned.lower()
    return "user"


def _free_username(session: Session, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``...: the first name no account has (compared case-blind)."""
    taken = {
        name.lower()
        for name in session.scalars(
            select(User.username).where(func.lower(User.username).like(f"{base.lower()}%"))
        )
    }
    candidate, number = base, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{base}-{number}"
    if not USERNAME.match(candidate):  # pragma: no cover - _username_from keeps to the alphabet
        raise AccountError(f"no username can be made from {base!r}")
    return candidate


def find_linked(session: Session, *, issuer: str, subject: str) -> User | None:
    query = select(User).where(User.sso_issuer == issuer, User.sso_subject == subject)
    return session.scalars(query).first()


def sign_in(session: Session, *, issuer: str, claims: Mapping[str, Any], role: Role) -> User:
    """The account the provider's verified ``claims`` sign in to: the one linked to their ``sub``, created
    at the first sign-in (a username from the provider's name for them, no usable password) with ``role``
    (from ``role_for``). A role from the groups is applied at every sign-in (a change is audited); the
    default role only to a new account, so an operator linked by their owner stays one where the provider
    sends no groups. Refused for a deactivated account: deactivation here outranks the provider."""
    subject = str(claims.get("sub") or "")
    if not subject:
        raise AccountError("the identity provider sent no subject (sub)")
    user = find_linked(session, issuer=issuer, subject=subject)
    if user is None:
        username = _free_username(session, _username_from(claims))
        user = User(
            username=username,
            # Nobody knows this password: the account signs in through the provider (an operator can set a
            # password after `helploop users unlink-sso`, the way back if the provider goes away).
            password_hash=generate_password_hash(secrets.token_urlsafe(32)),
            role=role.name,
            sso_issuer=issuer,
            sso_subject=subject,
        )
        session.add(user)
        session.flush()
        record_event(session, user=user, action="created", actor=ACTOR, reason=f"role {role.name}")
        return user
    if not user.active:
        raise AccountError("this account is deactivated here; an operator can reactivate it")
    if role.from_groups and user.role != role.name:
        before = user.role
        user.role = role.name
        record_event(
            session, user=user, action="role_changed", actor=ACTOR, reason=f"{before} -> {role.name} (groups)"
        )
    return user


def link(session: Session, *, user_id: int, issuer: str, claims: Mapping[str, Any]) -> User:
    """Link a signed-in account to the person the provider vouched for (its owner went through the
    provider's sign-in from their own session). Refused where that person is linked to another account."""
    subject = str(claims.get("sub") or "")
    if not subject:
        raise AccountError("the identity provider sent no subject (sub)")
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise AccountError("this account is not active")
    other = find_linked(session, issuer=issuer, subject=subject)
    if other is not None and other.id != user.id:
        raise AccountError(f"that account at the provider already signs in as {other.username}")
    if user.sso_subject == subject and user.sso_issuer == issuer:
        return user
    user.sso_issuer, user.sso_subject = issuer, subject
    who = claims.get("email") or claims.get("preferred_username") or subject
    record_event(session, user=user, action="sso_linked", actor=user.username, reason=f"as {who}"[:500])
    return user


def unlink(session: Session, *, username: str, actor: str, reason: str) -> User:
    """Undo the link (an operator, with a reason): the account signs in with its password again (set one
    with `helploop users set-password`), for a person leaving the provider or a provider being replaced."""
    if not reason.strip():
        raise AccountError("say why the account is unlinked from single sign-on")
    user = get_user(session, username=username)
    if user.sso_subject is None:
        raise AccountError(f"{username} is not linked to single sign-on")
    user.sso_issuer = user.sso_subject = None
    record_event(session, user=user, action="sso_unlinked", actor=actor, reason=reason.strip())
    return user


# ------------------------------------------------------------------------------ back-channel logout

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_MAX_AGE = 600  # seconds either side of now a logout token's "iat" may be


def logout_subject(
    claims: Mapping[str, Any], *, issuer: str, client_id: str, now: float, max_age: int = LOGOUT_TOKEN_MAX_AGE
) -> str:
    """The person a back-channel logout token (OpenID Connect Back-Channel Logout 1.0, its signature
    verified already) signs out: its issuer and audience ours, issued lately, the logout event named, no
    nonce (which only ID tokens carry). ``AccountError`` says which check failed. Tokens naming only a
    session (``sid``) are refused: HelpLoop keeps no provider sessions, and signs the person out instead."""
    if str(claims.get("iss", "")).rstrip("/") != issuer.rstrip("/"):
        raise AccountError("the token's issuer (iss) is not the configured provider")
    audience = claims.get("aud")
    if client_id not in (audience if isinstance(audience, list) else [audience]):
        raise AccountError("the token is not for this client (aud)")
    issued = claims.get("iat")
    if not isinstance(issued, int | float) or abs(now - issued) > max_age:
        raise AccountError("the token's issue time (iat) is missing or not recent")
    events = claims.get("events")
    if not isinstance(events, dict) or LOGOUT_EVENT not in events:
        raise AccountError("the token names no back-channel logout event")
    if "nonce" in claims:
        raise AccountError("a logout token carries no nonce")
    subject = str(claims.get("sub") or "")
    if not subject:
        raise AccountError("the token names no person (sub)")
    return subject


def signed_out_at_provider(session: Session, *, issuer: str, subject: str) -> User | None:
    """The provider signed the person out (or an administrator there ended their sessions): every session of
    their account ends now (``session_token`` changes), audited; None when nobody here is linked to them."""
    user = find_linked(session, issuer=issuer, subject=subject)
    if user is None:
        return None
    end_sessions(session, user=user, actor=ACTOR, reason="signed out at the identity provider")
    return user
