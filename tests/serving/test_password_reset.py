"""A forgotten password: each person's e-mail address on their account page, "Forgot your password?" on the
login page, and the e-mailed link that sets a new one (an hour, once), against a real SMTP server."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from core.models import AccountEvent, User
from crowd_feedback.reviewers import AccountError, WrongSecret, account_to_reset, create_user, set_own_email
from tests.serving.test_admin import PASSWORD, add_user, csrf_token, login
from tests.serving.test_mail import SENDER, smtp_server

PUBLIC = "https://help.acme.example"
NEW = "a brand new passphrase"


def test_each_person_sets_their_own_address_with_their_password(db_session: Any) -> None:
    rita = create_user(db_session, username="rita", password=PASSWORD, role="reviewer")
    create_user(db_session, username="omar", password=PASSWORD, role="operator")
    with pytest.raises(WrongSecret):
        set_own_email(db_session, user_id=rita.id, password="wrong", email="rita@acme.example")
    assert set_own_email(
        db_session, user_id=rita.id, password=PASSWORD, email=" Rita@Acme.example "
    ).email == ("rita@acme.example")
    omar = db_session.scalars(select(User).where(User.username == "omar")).one()
    with pytest.raises(AccountError, match="another account has this address"):
        set_own_email(db_session, user_id=omar.id, password=PASSWORD, email="RITA@acme.example")
    with pytest.raises(AccountError, match="is no e-mail address"):
        set_own_email(db_session, user_id=omar.id, password=PASSWORD, email="omar")
    # found by username or address (any case); not without an address, nor when deactivated
    assert account_to_reset(db_session, who="rita") is rita
    assert account_to_reset(db_session, who="RITA@acme.example") is rita
    assert account_to_reset(db_session, who="omar") is None
    rita.active = False
    assert account_to_reset(db_session, who="rita") is None
    assert set_own_email(db_session, user_id=omar.id, password=PASSWORD, email="").email is None


def reset_app(make_app: Any, port: int, **settings: Any) -> Any:
    app = make_app(
        ratelimit_enabled=False,
        smtp_url=f"smtp://127.0.0.1:{port}",
        mail_from=SENDER,
        public_url=PUBLIC,
        **settings,
    )
    add_user(app, "rita", "reviewer")
    return app


def set_address(app: Any, address: str) -> None:
    client = app.test_client()
    login(client, "rita")
    account = client.get("/account").get_data(as_text=True)
    assert 'id="email"' in account
    wrong = client.post(
        "/account/email",
        data={"email": address, "current_password": "nope", "csrf_token": csrf_token(account)},
    )
    assert wrong.status_code == 401 and "the current password is wrong" in wrong.get_data(as_text=True)
    assert f'value="{address}"' in wrong.get_data(as_text=True)  # what was typed stays
    saved = client.post(
        "/account/email",
        data={"email": address, "current_password": PASSWORD, "csrf_token": csrf_token(account)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert f"E-mail address set: {address}." in saved and f'value="{address}"' in saved


def link_in(message: Any) -> str:
    body = message.get_content()
    match = re.search(r"(https://\S+/login/reset/\S+)", body)
    assert match, body
    return match.group(1)


def test_a_forgotten_password_is_set_again_through_the_e_mailed_link(make_app: Any) -> None:
    with smtp_server() as (inbox, port):
        app = reset_app(make_app, port)
        set_address(app, "rita@acme.example")
        visitor = app.test_client()
        login_page = visitor.get("/login").get_data(as_text=True)
        assert 'id="forgot-link"' in login_page
        form = visitor.get("/login/forgot").get_data(as_text=True)
        # whoever asks chooses the Host header: the link is built from HELPLOOP_PUBLIC_URL, never from it
        evil = {"Host": "evil.example"}
        evil_form = visitor.get("/login/forgot", headers=evil).get_data(as_text=True)
        asked = visitor.post(
            "/login/forgot", data={"who": "rita", "csrf_token": csrf_token(evil_form)}, headers=evil
        )
        said = asked.get_data(as_text=True)
        assert asked.status_code == 200 and "a link to set a new password is on its way" in said
        for who in ("nobody", "omar@acme.example"):  # no such account: the same words, nothing sent
            other = visitor.post("/login/forgot", data={"who": who, "csrf_token": csrf_token(form)})
            assert "a link to set a new password is on its way" in other.get_data(as_text=True)
        assert app.extensions["helploop"].mail.drain(10)
    [(_, recipients, message)] = inbox.messages
    assert recipients == ["rita@acme.example"] and message["Subject"] == "Set a new HelpLoop password"
    link = link_in(message)
    assert link.startswith(f"{PUBLIC}/login/reset/") and "evil.example" not in message.get_content()
    path = link.removeprefix(PUBLIC)
    page = visitor.get(path).get_data(as_text=True)
    assert 'id="reset-form"' in page
    differ = visitor.post(
        path, data={"new_password": NEW, "confirm_password": NEW + "!", "csrf_token": csrf_token(page)}
    )
    assert differ.status_code == 400 and "differ" in differ.get_data(as_text=True)
    short = visitor.post(
        path, data={"new_password": "short", "confirm_password": "short", "csrf_token": csrf_token(page)}
    )
    assert short.status_code == 400 and "at least 10 characters" in short.get_data(as_text=True)
    done = visitor.post(
        path,
        data={"new_password": NEW, "confirm_password": NEW, "csrf_token": csrf_token(page)},
        follow_redirects=True,
    )
    assert "Password set. Log in with it" in done.get_data(as_text=True)
    # the old password no longer works, the new one does
    assert login(app.test_client(), "rita").status_code == 401
    fresh = app.test_client()
    login_form = fresh.get("/login").get_data(as_text=True)
    signed = fresh.post(
        "/login", data={"username": "rita", "password": NEW, "csrf_token": csrf_token(login_form)}
    )
    assert signed.status_code == 302
    # once: the link is bound to the password it was made for
    again = visitor.get(path)
    assert again.status_code == 400 and 'id="reset-expired"' in again.get_data(as_text=True)
    with app.extensions["helploop"].database.session() as session:
        actions = session.scalars(select(AccountEvent.action).order_by(AccountEvent.id)).all()
    assert actions[-3:] == ["email_changed", "reset_link_sent", "password_reset_by_link"]


def test_an_old_or_forged_link_is_refused(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with smtp_server() as (inbox, port):
        app = reset_app(make_app, port)
        set_address(app, "rita@acme.example")
        visitor = app.test_client()
        form = visitor.get("/login/forgot").get_data(as_text=True)
        visitor.post("/login/forgot", data={"who": "rita@ACME.example", "csrf_token": csrf_token(form)})
        assert app.extensions["helploop"].mail.drain(10)
    path = link_in(inbox.messages[0][2]).removeprefix(PUBLIC)
    assert visitor.get(path[:-3] + "abc").status_code == 400  # tampered
    import admin_ui.auth

    monkeypatch.setattr(admin_ui.auth, "RESET_SECONDS", -1)  # an hour has passed
    late = visitor.get(path)
    assert late.status_code == 400 and "This link has expired or has been used" in late.get_data(as_text=True)


def test_without_an_smtp_server_the_page_says_whom_to_ask(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    visitor = app.test_client()
    page = visitor.get("/login/forgot").get_data(as_text=True)
    assert 'id="reset-unavailable"' in page and "Ask an operator to set a new one" in page
    assert 'id="forgot-form"' not in page


def test_operators_see_who_can_get_a_link_and_a_link_opened_while_signed_in_keeps_that_session(
    make_app: Any,
) -> None:
    """The Accounts page says where each person's link would go (or that an operator must set a new
    password); a link opened in a browser where someone else is signed in sets the link's account's
    password and leaves that browser's own session as it was (a page any site can send people to must not
    sign them out)."""
    with smtp_server() as (inbox, port):
        app = reset_app(make_app, port)
        set_address(app, "rita@acme.example")
        add_user(app, "omar", "operator")
        omar = app.test_client()
        login(omar, "omar")
        accounts = omar.get("/operator/accounts").get_data(as_text=True)
        cells = dict(
            re.findall(r"<td>(\w+)</td>\s*<td>\w+</td>.*?<td class=\"email\">(.*?)</td>", accounts, re.S)
        )
        assert cells["rita"] == "rita@acme.example"
        assert "none: if they forget their password, set a new one here" in cells["omar"]
        visitor = app.test_client()  # rita, signed out somewhere
        form = visitor.get("/login/forgot").get_data(as_text=True)
        visitor.post("/login/forgot", data={"who": "rita", "csrf_token": csrf_token(form)})
        assert app.extensions["helploop"].mail.drain(10)
    path = link_in(inbox.messages[0][2]).removeprefix(PUBLIC)
    page = omar.get(path).get_data(as_text=True)
    assert 'id="reset-form"' in page
    done = omar.post(
        path, data={"new_password": NEW, "confirm_password": NEW, "csrf_token": csrf_token(page)}
    )
    assert done.status_code == 302
    assert omar.get("/operator/accounts").status_code == 200  # still omar, still signed in
    assert login(app.test_client(), "rita").status_code == 401  # rita's old password is gone
    fresh = app.test_client()
    form = fresh.get("/login").get_data(as_text=True)
    signed = fresh.post("/login", data={"username": "rita", "password": NEW, "csrf_token": csrf_token(form)})
    assert signed.status_code == 302
