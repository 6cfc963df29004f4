"""Single sign-on through the pages, against an OpenID Connect provider served on a loopback port: the
authorization-code flow with PKCE, state and nonce; an account made at the first sign-in with the role of
the person's groups; every way the answer can be forged or refused; linking a password account, which
then signs in only through the provider; and the way back (`helploop users unlink-sso`)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from click.testing import CliRunner

from core.models import User
from crowd_feedback.reviewers import account_events, list_accounts, recent_sign_ins
from serving.cli import main
from tests.serving.conftest import live
from tests.serving.fake_idp import CLIENT_ID, CLIENT_SECRET, FakeIdP
from tests.serving.test_admin import add_user, csrf_token, login
from tests.serving.test_admin_browser import logged_in_page

ADA = {"sub": "00u-ada", "preferred_username": "ada@example.com", "groups": ["helpdesk"]}


@pytest.fixture
def idp() -> Iterator[FakeIdP]:
    provider = FakeIdP()
    with live(provider.app()) as address:
        provider.issuer = address
        yield provider


def with_provider(make_app: Any, idp: FakeIdP, **overrides: Any) -> Any:
    """An app (no rate limits) whose single sign-on is ``idp``; reviewers are its "helpdesk" group."""
    settings = {
        "ratelimit_enabled": False,
        "sso_issuer": idp.issuer,
        "sso_client_id": CLIENT_ID,
        "sso_client_secret": CLIENT_SECRET,
        "sso_reviewer_groups": "helpdesk",
    }
    return make_app(**{**settings, **overrides})


@pytest.fixture
def sso_app(make_app: Any, idp: FakeIdP) -> Any:
    return with_provider(make_app, idp, sso_name="Example ID", sso_operator_groups="helploop-admins")


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def through_provider(client: Any, start: Any) -> Any:
    """Follow ``start`` (the app's redirect to the provider) as a browser would: the provider's page, then
    back to the app's callback."""
    assert start.status_code == 302, start.get_data(as_text=True)
    at_provider = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
    assert at_provider.status_code == 302
    return client.get(path_of(at_provider.headers["Location"]))


def sso_sign_in(client: Any, next_page: str = "") -> Any:
    return through_provider(client, client.get("/login/sso" + (f"?next={next_page}" if next_page else "")))


def whoami(app: Any, username: str) -> User:
    with app.extensions["helploop"].database.session() as session:
        user = session.query(User).filter_by(username=username).one()
        session.expunge(user)
        return user


def test_the_first_sign_in_makes_a_reviewer_account_with_pkce_state_and_nonce(
    sso_app: Any, idp: FakeIdP
) -> None:
    client = sso_app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert 'id="sso-login"' in page and "Sign in\n  with Example ID" in page
    idp.person = ADA
    done = sso_sign_in(client)
    assert done.status_code == 302 and done.headers["Location"].endswith("/review/")
    asked = idp.authorize_requests[0]
    assert asked["response_type"] == "code" and asked["client_id"] == CLIENT_ID
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) >= 43
    assert len(asked["state"]) >= 20 and len(asked["nonce"]) >= 20
    assert set(asked["scope"].split()) == {"openid", "email", "profile"}
    assert asked["redirect_uri"] == "http://localhost/login/sso/callback"
    assert idp.token_requests[0]["code_verifier"]  # the secret half of PKCE, sent server to server
    assert client.get("/review/").status_code == 200  # signed in
    ada = whoami(sso_app, "ada")
    assert (ada.role, ada.sso_subject, ada.sso_issuer) == ("reviewer", "00u-ada", idp.issuer)
    with sso_app.extensions["helploop"].database.session() as session:
        assert [s.method for s in recent_sign_ins(session, user_id=ada.id)] == ["single sign-on"]
        assert [(e.action, e.actor) for e, name in account_events(session) if name == "ada"] == [
            ("created", "single sign-on")
        ]
        assert [a.sso for a in list_accounts(session) if a.username == "ada"] == [True]
    # The operator pages stay closed to a reviewer; the account page says where the password lives.
    assert client.get("/operator/").status_code == 403
    account = client.get("/account").get_data(as_text=True)
    assert 'id="sso-linked"' in account and 'id="own-password"' not in account
    moved = client.get("/account/password")
    assert moved.status_code == 302 and moved.headers["Location"].endswith("/account")
    assert client.get("/account/two-factor").status_code == 302


def test_an_operator_group_makes_an_operator_and_the_role_follows_the_groups(
    sso_app: Any, idp: FakeIdP
) -> None:
    idp.person = {**ADA, "groups": ["helpdesk", "helploop-admins"]}
    client = sso_app.test_client()
    assert sso_sign_in(client, next_page="/operator/accounts").headers["Location"] == "/operator/accounts"
    accounts = client.get("/operator/accounts").get_data(as_text=True)
    assert "single sign-on" in accounts and 'id="sso-accounts"' in accounts
    assert "change your password at Example ID too" in client.get("/account").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_token(accounts)})
    idp.person = ADA  # taken out of the admins' group at the provider
    assert sso_sign_in(client).headers["Location"].endswith("/review/")
    assert whoami(sso_app, "ada").role == "reviewer"
    assert client.get("/operator/").status_code == 403


def test_nobody_outside_the_groups_gets_in_and_no_account_is_made(sso_app: Any, idp: FakeIdP) -> None:
    idp.person = {**ADA, "groups": ["sales"]}
    client = sso_app.test_client()
    refused = sso_sign_in(client)
    assert refused.status_code == 403
    assert "none of the groups allowed to sign in here" in refused.get_data(as_text=True)
    assert client.get("/review/").status_code == 302  # not signed in
    with sso_app.extensions["helploop"].database.session() as session:
        assert session.query(User).count() == 0


@pytest.mark.parametrize(
    ("forgery", "message"),
    [
        ({"tamper": {"aud": "someone-else"}}, "could not be verified"),
        ({"tamper": {"iss": "https://evil.example.com"}}, "iss"),
        ({"tamper": {"nonce": "replayed"}}, "nonce"),
        ({"tamper": {"exp": int(time.time()) - 3600}}, "expired"),
        ({"foreign_key": True}, "could not be verified"),
    ],
)
def test_a_forged_identity_token_signs_nobody_in(
    sso_app: Any, idp: FakeIdP, forgery: dict[str, Any], message: str
) -> None:
    idp.person = ADA
    for name, value in forgery.items():
        setattr(idp, name, value)
    client = sso_app.test_client()
    refused = sso_sign_in(client)
    assert refused.status_code == 401
    assert message in refused.get_data(as_text=True)
    assert client.get("/review/").status_code == 302
    with sso_app.extensions["helploop"].database.session() as session:
        assert session.query(User).count() == 0


def test_refusals_at_the_provider_replays_and_callbacks_not_started_here(sso_app: Any, idp: FakeIdP) -> None:
    client = sso_app.test_client()
    idp.person = None  # the person cancels at the provider
    cancelled = sso_sign_in(client)
    assert cancelled.status_code == 401 and "the user cancelled" in cancelled.get_data(as_text=True)
    # A callback nobody started in this browser (a login link planted by someone else: login CSRF).
    idp.person = ADA
    start = client.get("/login/sso")
    at_provider = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
    callback = path_of(at_provider.headers["Location"])
    stranger = sso_app.test_client()
    assert stranger.get(callback).status_code == 400
    # A state that is not this browser's.
    state = parse_qs(urlsplit(callback).query)["state"][0]
    forged = callback.replace(state, "x" * len(state))
    wrong_state = client.get(forged)  # the sign-in began here, but the answer is not its own
    assert wrong_state.status_code == 401 and "State not equal" in wrong_state.get_data(as_text=True)
    # The real answer still signs in (nothing above spent it); replayed later, it signs nobody in.
    client.get("/login/sso")
    assert client.get(callback).headers["Location"].endswith("/review/")
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/review/").get_data(as_text=True))})
    client.get("/login/sso")
    replayed = client.get(callback)
    assert replayed.status_code == 401 and "State not equal" in replayed.get_data(as_text=True)
    assert client.get("/review/").status_code == 302


def test_a_discovery_document_naming_another_issuer_is_refused(sso_app: Any, idp: FakeIdP) -> None:
    idp.issuer_in_document = "https://evil.example.com"
    refused = sso_app.test_client().get("/login/sso")
    assert refused.status_code == 502 and "names the issuer" in refused.get_data(as_text=True)
    assert idp.authorize_requests == []


def test_without_a_provider_there_is_no_button_and_no_route(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    assert 'id="sso-login"' not in client.get("/login").get_data(as_text=True)
    assert client.get("/login/sso").status_code == 404
    assert client.get("/login/sso/callback?code=x&state=y").status_code == 404
    assert client.post("/login/sso/backchannel-logout", data={"logout_token": "x"}).status_code == 404


def test_linking_a_password_account_then_only_the_provider_signs_it_in(sso_app: Any, idp: FakeIdP) -> None:
    add_user(sso_app, "bart", "reviewer")
    client = sso_app.test_client()
    login(client, "bart")
    account = client.get("/account").get_data(as_text=True)
    assert 'id="sso-link"' in account
    idp.person = {"sub": "00u-bart", "email": "bart@example.com", "groups": ["helpdesk"]}
    linked = through_provider(
        client, client.post("/account/sso/link", data={"csrf_token": csrf_token(account)})
    )
    assert linked.status_code == 302 and linked.headers["Location"].endswith("/account")
    assert "from now on this account signs in with Example ID" in client.get("/account").get_data(
        as_text=True
    )
    assert whoami(sso_app, "bart").sso_subject == "00u-bart"
    # The account page's form is answered with a redirect to the provider: its CSP allows that origin there.
    assert f"form-action 'self' {idp.issuer};" in client.get("/account").headers["Content-Security-Policy"]
    assert "form-action 'self';" in client.get("/login").headers["Content-Security-Policy"]
    # The password no longer signs in (removing bart at the provider must end his access); the provider does.
    other = sso_app.test_client()
    refused = login(other, "bart")
    assert refused.status_code == 403 and "signs in with Example ID" in refused.get_data(as_text=True)
    assert sso_sign_in(other).headers["Location"].endswith("/review/")
    assert [u.username for u in (whoami(sso_app, "bart"),)] == ["bart"]
    # The link cannot be made without a CSRF token.
    carol = sso_app.test_client()
    add_user(sso_app, "carol", "reviewer")
    login(carol, "carol")
    assert carol.post("/account/sso/link").status_code == 400
    # The person at the provider already signs in as bart: linking carol to them is refused.
    page = carol.get("/account").get_data(as_text=True)
    again = through_provider(carol, carol.post("/account/sso/link", data={"csrf_token": csrf_token(page)}))
    assert again.status_code == 302
    assert "already signs in as bart" in carol.get("/account").get_data(as_text=True)
    assert whoami(sso_app, "carol").sso_subject is None
    # The way back: unlinked on the server, bart signs in with a (new) password again.
    settings = sso_app.extensions["helploop"].settings
    listed = CliRunner().invoke(main, ["users", "list"], obj={"settings": settings}).output.splitlines()
    assert [line.split()[4] for line in listed[1:] if line.startswith(("bart", "carol"))] == ["sso", "off"]
    done = CliRunner().invoke(
        main,
        ["users", "unlink-sso", "--username", "bart", "--reason", "provider replaced"],
        obj={"settings": settings},
    )
    assert done.exit_code == 0, done.output
    assert login(sso_app.test_client(), "bart").status_code == 302


def test_an_operator_unlinks_an_account_on_the_accounts_page(sso_app: Any, idp: FakeIdP) -> None:
    idp.person = ADA
    sso_sign_in(sso_app.test_client())
    add_user(sso_app, "omar", "operator")
    operator = sso_app.test_client()
    login(operator, "omar")
    page = operator.get("/operator/accounts").get_data(as_text=True)
    assert page.count('<button type="submit">Unlink single sign-on') == 1  # ada's row only
    token = csrf_token(page)
    refused = operator.post(
        "/operator/accounts/ada", data={"action": "unlink_sso", "reason": " ", "csrf_token": token}
    )
    assert "say why" in operator.get(refused.headers["Location"]).get_data(as_text=True)
    assert whoami(sso_app, "ada").sso_subject == "00u-ada"
    done = operator.post(
        "/operator/accounts/ada",
        data={"action": "unlink_sso", "reason": "left the provider", "csrf_token": token},
    )
    assert "ada is unlinked from single sign-on" in operator.get(done.headers["Location"]).get_data(
        as_text=True
    )
    assert whoami(sso_app, "ada").sso_subject is None
    with sso_app.extensions["helploop"].database.session() as session:
        assert [(e.action, e.actor, e.reason) for e, name in account_events(session) if name == "ada"][0] == (
            "sso_unlinked",
            "omar",
            "left the provider",
        )


def test_sign_ins_through_the_provider_skip_the_local_second_factor(make_app: Any, idp: FakeIdP) -> None:
    app = with_provider(make_app, idp, two_factor_required_for="everyone")
    idp.person = ADA
    client = app.test_client()
    sso_sign_in(client)
    assert client.get("/review/").status_code == 200  # not sent to set up an authenticator app
    add_user(app, "bart", "reviewer")
    password_only = app.test_client()
    login(password_only, "bart")
    assert password_only.get("/review/").headers["Location"].endswith("/account/two-factor")


def test_a_wrong_client_secret_is_refused_by_the_provider(make_app: Any, idp: FakeIdP) -> None:
    app = with_provider(make_app, idp, sso_client_secret="not-the-secret")
    idp.person = ADA
    refused = sso_sign_in(app.test_client())
    assert refused.status_code == 401 and "invalid_client" in refused.get_data(as_text=True)


def test_signing_in_and_linking_through_the_provider_in_the_browser(
    browser: Any, sso_app: Any, idp: FakeIdP
) -> None:
    add_user(sso_app, "bart", "reviewer")
    idp.person = ADA
    with live(sso_app) as base:
        context = browser.new_context()
        page = context.new_page()
        page.goto(base + "/login")
        page.click("#sso-login")  # to the provider, which signs ada in and sends her back
        page.wait_for_url(re.compile(r".*/review/$"))
        assert page.locator("header").inner_text().count("ada") == 1
        context.close()
        # bart links his password account: the form's answer, a redirect to the provider, is not blocked.
        context, page, errors = logged_in_page(browser, base + "/account", "bart")
        idp.person = {"sub": "00u-bart", "email": "bart@example.com", "groups": ["helpdesk"]}
        page.click("#sso-link button")
        page.wait_for_url(re.compile(r".*/account$"))
        assert "from now on this account signs in with Example ID" in page.locator("main").inner_text()
        assert page.locator("#sso-linked").is_visible() and errors == []
        context.close()


def test_a_provider_without_groups_makes_reviewers_and_keeps_a_linked_operator(
    make_app: Any, idp: FakeIdP
) -> None:
    # As for Google, whose ID tokens carry no groups.
    app = with_provider(make_app, idp, sso_reviewer_groups="", sso_default_role="reviewer")
    idp.person = {"sub": "g-1", "email": "newcomer@example.com"}
    assert sso_sign_in(app.test_client()).headers["Location"].endswith("/review/")
    assert whoami(app, "newcomer").role == "reviewer"
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    idp.person = {"sub": "g-2", "email": "omar@example.com"}
    page = client.get("/account").get_data(as_text=True)
    through_provider(client, client.post("/account/sso/link", data={"csrf_token": csrf_token(page)}))
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/account").get_data(as_text=True))})
    assert sso_sign_in(client).headers["Location"].endswith("/operator/")
    assert whoami(app, "omar").role == "operator"


def test_behind_a_proxy_the_provider_sends_people_back_to_the_public_address(
    make_app: Any, idp: FakeIdP
) -> None:
    app = with_provider(make_app, idp, public_url="https://help.example.com/")
    start = app.test_client().get("/login/sso")
    sent = parse_qs(urlsplit(start.headers["Location"]).query)
    assert sent["redirect_uri"] == ["https://help.example.com/login/sso/callback"]  # as registered there


LOGOUT = "/login/sso/backchannel-logout"


def test_a_sign_out_at_the_provider_ends_every_session_here(sso_app: Any, idp: FakeIdP) -> None:
    idp.person = ADA
    laptop, phone = sso_app.test_client(), sso_app.test_client()
    sso_sign_in(laptop)
    sso_sign_in(phone)
    assert laptop.get("/review/").status_code == 200 and phone.get("/review/").status_code == 200
    provider = sso_app.test_client()  # the provider's own call: no cookie, no CSRF token
    done = provider.post(LOGOUT, data={"logout_token": idp.logout_token("00u-ada")})
    assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
    assert laptop.get("/review/").status_code == 302 and phone.get("/review/").status_code == 302
    with sso_app.extensions["helploop"].database.session() as session:
        assert [(e.action, e.actor, e.reason) for e, name in account_events(session) if name == "ada"][0] == (
            "sessions_ended",
            "single sign-on",
            "signed out at the identity provider",
        )
    assert sso_sign_in(laptop).headers["Location"].endswith("/review/")  # signing in again works
    # Someone nobody here is linked to: nothing to do, and nothing said about who exists.
    assert provider.post(LOGOUT, data={"logout_token": idp.logout_token("00u-nobody")}).status_code == 200
    assert laptop.get("/review/").status_code == 200


@pytest.mark.parametrize(
    ("forgery", "message"),
    [
        ({"foreign_key": True}, "could not be verified"),
        ({"aud": "someone-else"}, "not for this client"),
        ({"iss": "https://evil.example.com"}, "issuer"),
        ({"iat": int(time.time()) - 3600}, "not recent"),
        ({"events": None}, "no back-channel logout event"),
        ({"nonce": "n"}, "carries no nonce"),
        ({"sub": None, "sid": "s-1"}, "names no person"),
    ],
)
def test_a_forged_logout_token_ends_no_session(
    sso_app: Any, idp: FakeIdP, forgery: dict[str, Any], message: str
) -> None:
    idp.person = ADA
    client = sso_app.test_client()
    sso_sign_in(client)
    refused = sso_app.test_client().post(
        LOGOUT, data={"logout_token": idp.logout_token("00u-ada", **forgery)}
    )
    assert refused.status_code == 400
    assert (
        refused.get_json()["error"] == "invalid_request"
        and message in refused.get_json()["error_description"]
    )
    assert client.get("/review/").status_code == 200  # still signed in


def test_back_channel_logout_needs_a_token(sso_app: Any) -> None:
    assert sso_app.test_client().post(LOGOUT).get_json()["error_description"] == "no logout_token"
    assert sso_app.test_client().get(LOGOUT).status_code == 405
    garbled = sso_app.test_client().post(LOGOUT, data={"logout_token": "not.a.token"})
    assert garbled.status_code == 400 and "could not be verified" in garbled.get_json()["error_description"]
