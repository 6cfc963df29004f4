"""Single sign-on's accounts (SQLite and PostgreSQL): the role from the provider's groups, the account made
at the first sign-in and found by the provider's subject afterwards, role changes audited, deactivation
outranking the provider, linking a password account and undoing it."""

from __future__ import annotations

from typing import Any

import pytest

from core.models import User
from core.settings import SettingsError, load_settings
from crowd_feedback import single_sign_on as sso
from crowd_feedback.reviewers import AccountError, account_events, create_user, set_active

ISSUER = "https://id.example.com"
GROUPS = {"operator": frozenset({"helploop-admins"}), "reviewer": frozenset({"helpdesk", "support"})}


def role(claims: dict[str, Any], default: str = "") -> str:
    return sso.role_for(claims, groups_claim="groups", groups=GROUPS, default_role=default).name


REVIEWER, OPERATOR = sso.Role("reviewer", True), sso.Role("operator", True)


def test_the_role_comes_from_the_groups_claim() -> None:
    assert role({"groups": ["support", "helploop-admins"]}) == "operator"  # the stronger role wins
    assert role({"groups": ["support"]}) == "reviewer"
    assert role({"groups": "helpdesk, sales"}) == "reviewer"  # one string, comma-separated
    assert role({"groups": "sales helpdesk"}) == "reviewer"  # or space-separated
    with pytest.raises(sso.NotAllowed, match="none of the groups"):
        role({"groups": ["sales"]})
    with pytest.raises(sso.NotAllowed):
        role({})  # no groups claim at all
    assert role({"groups": ["sales"]}, default="reviewer") == "reviewer"
    assert sso.role_for({}, groups_claim="groups", groups=GROUPS, default_role="reviewer") == (
        "reviewer",
        False,
    )
    assert sso.role_for({"groups": ["support"]}, groups_claim="groups", groups=GROUPS) == ("reviewer", True)
    assert sso.groups_of({"roles": ["a", "b"]}, "roles") == {"a", "b"}
    assert sso.groups_of({"groups": 7}, "groups") == frozenset()


def test_the_first_sign_in_makes_the_account_and_later_ones_find_it(db_session: Any) -> None:
    claims = {"sub": "00u1", "preferred_username": "Ada.Lovelace@example.com", "email": "ada@example.com"}
    user = sso.sign_in(db_session, issuer=ISSUER, claims=claims, role=REVIEWER)
    assert (user.username, user.role, user.sso_issuer, user.sso_subject) == (
        "ada.lovelace",
        "reviewer",
        ISSUER,
        "00u1",
    )
    again = sso.sign_in(
        db_session, issuer=ISSUER, claims={**claims, "email": "new@example.com"}, role=REVIEWER
    )
    assert again.id == user.id  # found by the subject, not by a name or address that can change
    # Another person with the same name gets the next free username; the same subject at another issuer is
    # another person.
    other = sso.sign_in(
        db_session,
        issuer=ISSUER,
        claims={"sub": "00u2", "preferred_username": "ada.lovelace"},
        role=REVIEWER,
    )
    elsewhere = sso.sign_in(
        db_session,
        issuer="https://other.example.com",
        claims={"sub": "00u1", "email": "x@e.com"},
        role=REVIEWER,
    )
    assert (other.username, elsewhere.username) == ("ada.lovelace-2", "user")
    events = [
        (e.action, e.actor, e.reason) for e, name in account_events(db_session) if name == "ada.lovelace"
    ]
    assert events == [("created", "single sign-on", "role reviewer")]


def test_usernames_are_made_from_what_the_provider_says() -> None:
    assert sso._username_from({"preferred_username": "jo"}) == "user"  # too short, nothing else
    assert sso._username_from({"preferred_username": "jo", "email": "Jo.Smith@x.org"}) == "jo.smith"
    assert sso._username_from({"name": "Zoë O'Brien"}) == "zo-o-brien"
    assert sso._username_from({"nickname": "--..a b c..--"}) == "a-b-c"


def test_the_role_follows_the_groups_and_deactivation_here_outranks_the_provider(db_session: Any) -> None:
    create_user(db_session, username="omar", password="a long password", role="operator")
    claims = {"sub": "s1", "preferred_username": "rita"}
    rita = sso.sign_in(db_session, issuer=ISSUER, claims=claims, role=REVIEWER)
    promoted = sso.sign_in(db_session, issuer=ISSUER, claims=claims, role=OPERATOR)
    assert promoted.id == rita.id and promoted.role == "operator"
    demoted = sso.sign_in(db_session, issuer=ISSUER, claims=claims, role=REVIEWER)
    assert demoted.role == "reviewer"
    events = [(e.action, e.reason) for e, name in account_events(db_session) if name == "rita"]
    assert events[:2] == [
        ("role_changed", "operator -> reviewer (groups)"),
        ("role_changed", "reviewer -> operator (groups)"),
    ]
    # A provider that sends no groups (the default role): the role an operator has here is kept.
    kept = sso.sign_in(db_session, issuer=ISSUER, claims=claims, role=OPERATOR)
    assert sso.sign_in(db_session, issuer=ISSUER, claims=claims, role=sso.Role("reviewer", False)) is kept
    assert kept.role == "operator"
    set_active(db_session, username="rita", active=False, actor="omar", reason="left the team")
    with pytest.raises(AccountError, match="deactivated here"):
        sso.sign_in(db_session, issuer=ISSUER, claims=claims, role=REVIEWER)
    with pytest.raises(AccountError, match="no subject"):
        sso.sign_in(db_session, issuer=ISSUER, claims={"email": "a@b.c"}, role=REVIEWER)


def test_linking_a_password_account_and_undoing_it(db_session: Any) -> None:
    bart = create_user(db_session, username="bart", password="a long password", role="reviewer")
    linked = sso.link(db_session, user_id=bart.id, issuer=ISSUER, claims={"sub": "b1", "email": "bart@x.org"})
    assert (linked.sso_issuer, linked.sso_subject) == (ISSUER, "b1")
    assert sso.sign_in(db_session, issuer=ISSUER, claims={"sub": "b1"}, role=REVIEWER).id == bart.id
    # The same person cannot be linked to a second account.
    cora = create_user(db_session, username="cora", password="a long password", role="reviewer")
    with pytest.raises(AccountError, match="already signs in as bart"):
        sso.link(db_session, user_id=cora.id, issuer=ISSUER, claims={"sub": "b1"})
    with pytest.raises(AccountError, match="say why"):
        sso.unlink(db_session, username="bart", actor="omar", reason=" ")
    sso.unlink(db_session, username="bart", actor="omar", reason="provider replaced")
    assert db_session.get(User, bart.id).sso_subject is None
    with pytest.raises(AccountError, match="not linked"):
        sso.unlink(db_session, username="bart", actor="omar", reason="again")
    events = [(e.action, e.actor, e.reason) for e, name in account_events(db_session) if name == "bart"]
    assert events[:2] == [
        ("sso_unlinked", "omar", "provider replaced"),
        ("sso_linked", "bart", "as bart@x.org"),
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sso_issuer": "http://id.example.com"}, "must be an https URL"),
        ({"sso_client_secret": ""}, "set sso_client_id and sso_client_secret"),
        ({"sso_reviewer_groups": ""}, "nobody could sign in"),
        ({"sso_default_role": "operator"}, "sso_default_role must be empty"),
        ({"sso_name": " "}, "must not be blank"),
    ],
)
def test_settings_refuse_a_provider_nobody_could_use_safely(overrides: dict[str, str], message: str) -> None:
    good = {
        "sso_issuer": "https://id.example.com/realms/staff",
        "sso_client_id": "helploop",
        "sso_client_secret": "x" * 20,
        "sso_reviewer_groups": "helpdesk",
    }
    settings = load_settings(good, environ={})
    assert settings.sso_groups == {"operator": frozenset(), "reviewer": frozenset({"helpdesk"})}
    assert load_settings({**good, "sso_issuer": "http://127.0.0.1:9000"}, environ={}).sso_issuer
    with pytest.raises(SettingsError, match=message):
        load_settings({**good, **overrides}, environ={})
