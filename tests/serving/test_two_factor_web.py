"""Two-factor sign-in through the pages: setting it up from the QR page, signing in with a code (once per
code), wrong codes locking the account, what the settings require, and the operator's reset."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace
from typing import Any

import pyotp
import pytest

from admin_ui import auth as auth_module
from core.events import recent_events
from crowd_feedback import two_factor
from crowd_feedback.reviewers import account_events, list_accounts, set_active
from tests.serving.test_admin import PASSWORD, add_user, csrf_token, login

START = 1_796_000_010.0  # mid-step: the codes of the steps around it are unambiguous


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The time the codes are checked at (the test moves it); the rest of the app keeps the real clock."""
    now = [START]
    monkeypatch.setattr(two_factor, "time", SimpleNamespace(time=lambda: now[0]))
    return now


def code_at(key: str, moment: float) -> str:
    return pyotp.TOTP(key).at(moment)


def set_up(client: Any, when: float, *, username: str) -> str:
    """Turn two-factor sign-in on through its page, as a person with the app does; the key shown."""
    page = client.get("/account/two-factor").get_data(as_text=True)
    key = re.search(r'data-key="([A-Z2-7]+)"', page)
    assert key and "<svg" in page and "<strong>Off.</strong>" in page
    form = {
        "action": "enable",
        "username": username,
        "current_password": PASSWORD,
        "code": code_at(key.group(1), when),
        "csrf_token": csrf_token(page),
    }
    response = client.post("/account/two-factor", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)
    return key.group(1)


def shown_codes(page: str) -> list[str]:
    """The recovery codes the page shows (once, after turning two-factor sign-in on)."""
    block = re.search(
        r'<div class="flash" role="status" id="recovery-codes">.*?<pre[^>]*>(.*?)</pre>', page, re.S
    )
    return block.group(1).split() if block else []


def post_code(client: Any, code: str) -> Any:
    token = csrf_token(client.get("/login/code").get_data(as_text=True))
    return client.post("/login/code", data={"code": code, "csrf_token": token})


def test_set_up_then_sign_in_with_a_code_that_works_once(make_app: Any, clock: list[float]) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    client, elsewhere = app.test_client(), app.test_client()
    login(client, "rita")
    login(elsewhere, "rita")
    page = client.get("/account/two-factor")
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    text = page.get_data(as_text=True)
    key = re.search(r'data-key="([A-Z2-7]+)"', text)
    assert key and "otpauth" not in text  # the address is in the QR code, not in the page's text
    assert re.search(r'data-key="([A-Z2-7]+)"', client.get("/account/two-factor").get_data(as_text=True))
    # Refusals change nothing: a code the app would not show now, the wrong password.
    token = csrf_token(text)
    base = {"action": "enable", "username": "rita", "csrf_token": token}
    wrong_code = client.post(
        "/account/two-factor",
        data=base | {"current_password": PASSWORD, "code": code_at(key.group(1), START + 300)},
    )
    assert wrong_code.status_code == 401 and "Refused: the code does not match" in wrong_code.get_data(
        as_text=True
    )
    wrong_password = client.post(
        "/account/two-factor", data=base | {"current_password": "guess", "code": code_at(key.group(1), START)}
    )
    assert wrong_password.status_code == 401 and "the current password is wrong" in wrong_password.get_data(
        as_text=True
    )
    assert set_up(client, START, username="rita") == key.group(1)  # the key shown stays until confirmed
    after = client.get("/account/two-factor").get_data(as_text=True)
    assert "Two-factor sign-in is on" in after and "<strong>On.</strong>" in after and "data-key" not in after
    codes = shown_codes(after)
    assert len(codes) == 10 and "Recovery codes: 10 of 10 unused." in after
    again = client.get("/account/two-factor").get_data(as_text=True)
    assert shown_codes(again) == [] and 'id="recovery-codes"' not in again  # shown once
    assert client.get("/review/").status_code == 200  # this session goes on
    assert elsewhere.get("/review/").status_code == 302  # the one opened before it has ended

    # A sign-in: the right password leads to the code page, not into the app.
    fresh = app.test_client()
    response = login(fresh, "rita")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login/code")
    assert fresh.get("/review/").status_code == 302
    used = post_code(fresh, code_at(key.group(1), START))  # the code that turned it on
    assert used.status_code == 401 and "a code used already" in used.get_data(as_text=True)
    assert post_code(fresh, code_at(key.group(1), START + 600)).status_code == 401
    clock[0] = START + 30
    signed_in = post_code(fresh, code_at(key.group(1), START + 30))
    assert signed_in.status_code == 302 and signed_in.headers["Location"].endswith("/review/")
    assert fresh.get("/review/").status_code == 200
    with app.extensions["helploop"].database.session() as session:
        assert [row.last_login_at is not None for row in list_accounts(session)] == [True]
    # The same code again, from another browser that knows the password: refused.
    thief = app.test_client()
    login(thief, "rita")
    assert post_code(thief, code_at(key.group(1), START + 30)).status_code == 401
    assert thief.get("/review/").status_code == 302

    # A recovery code signs in in place of the app's code, once, and says how many are left.
    recovered = app.test_client()
    login(recovered, "rita")
    response = post_code(recovered, codes[3])
    assert response.status_code == 302
    assert "Signed in with a recovery code; 9 left." in recovered.get("/review/").get_data(as_text=True)
    reused = app.test_client()
    login(reused, "rita")
    assert post_code(reused, codes[3]).status_code == 401
    # Turning it off takes the password and a new code.
    clock[0] = START + 60
    page_text = fresh.get("/account/two-factor").get_data(as_text=True)
    off = {
        "action": "disable",
        "username": "rita",
        "current_password": PASSWORD,
        "code": code_at(key.group(1), START + 60),
        "csrf_token": csrf_token(page_text),
    }
    assert fresh.post("/account/two-factor", data=off).status_code == 302
    assert "<strong>Off.</strong>" in fresh.get("/account/two-factor").get_data(as_text=True)
    assert login(app.test_client(), "rita").headers["Location"].endswith("/review/")  # the password alone
    with app.extensions["helploop"].database.session() as session:
        trail = [e.action for e, name in reversed(account_events(session)) if name == "rita"]
    assert trail == ["created", "two_factor_enabled", "recovery_code_used", "two_factor_disabled"]


def test_the_code_page_waits_five_minutes_and_for_the_same_account(
    make_app: Any, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "rita")
    key = set_up(client, START, username="rita")
    assert app.test_client().get("/login/code").headers["Location"].endswith("/login")  # no password typed
    late = app.test_client()
    login(late, "rita")
    monkeypatch.setattr(auth_module, "CODE_WAIT_SECONDS", -1)
    expired = late.get("/login/code")
    assert expired.status_code == 302 and expired.headers["Location"].endswith("/login")
    assert "not entered within 5 minutes" in late.get("/login").get_data(as_text=True)
    monkeypatch.setattr(auth_module, "CODE_WAIT_SECONDS", 300)
    # Deactivated between the password and the code: the code does not let the person in.
    waiting = app.test_client()
    login(waiting, "rita")
    with app.extensions["helploop"].database.session() as session:
        set_active(session, username="rita", active=False, actor="omar")
    clock[0] = START + 30
    refused = post_code(waiting, code_at(key, START + 30))
    assert refused.status_code == 302 and refused.headers["Location"].endswith("/login")
    assert waiting.get("/review/").status_code == 302


def test_wrong_codes_lock_the_accounts_sign_ins_and_operators_are_told(
    make_app: Any, clock: list[float]
) -> None:
    app = make_app(login_rate_limit="100/minute", login_failures_per_account="3 per 15 minutes")
    add_user(app, "rita", "reviewer")
    owner = app.test_client()
    login(owner, "rita")
    key = set_up(owner, START, username="rita")
    guesser = app.test_client()
    login(guesser, "rita")  # the password is known
    statuses = [post_code(guesser, f"{n:06d}").status_code for n in range(3)]
    assert statuses == [401, 401, 401]
    clock[0] = START + 30
    locked = post_code(guesser, code_at(key, START + 30))  # the right code now: refused too
    page = locked.get_data(as_text=True)
    assert (
        locked.status_code == 429 and "Too many wrong codes for this account. Try again in 15 minutes" in page
    )
    assert 'id="code-form"' in page
    assert guesser.get("/review/").status_code == 302
    with app.extensions["helploop"].database.session() as session:
        events = recent_events(session, kind="account.locked")
        trail = [(e.action, e.reason) for e, name in account_events(session) if name == "rita"]
    assert len(events) == 1 and events[0].data["what"] == "codes"
    assert "someone is guessing the code (their password is known)" in events[0].text
    assert trail[0] == ("locked", "3 wrong codes within 15 minutes")


def test_settings_can_require_it_for_operators(make_app: Any, clock: list[float]) -> None:
    app = make_app(ratelimit_enabled=False, two_factor_required_for="operators")
    add_user(app, "omar", "operator")
    add_user(app, "ada", "operator")
    add_user(app, "rita", "reviewer")
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.get("/review/").status_code == 200  # not required for reviewers
    operator = app.test_client()
    login(operator, "omar")
    for path in ("/operator/", "/operator/accounts", "/operator/knowledge/", "/review/"):
        response = operator.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/account/two-factor")
    page = operator.get("/account/two-factor").get_data(as_text=True)
    assert "The settings require it for your account" in page
    assert "Set up two-factor sign-in to go on: the settings require it for operators." in page
    assert operator.get("/account/password").status_code == 200  # the account's own pages stay open
    set_up(operator, START, username="omar")
    assert operator.get("/operator/accounts").status_code == 200
    page = operator.get("/account/two-factor").get_data(as_text=True)
    # Required: no "Turn off"; moving to a new phone turns the old key off and asks for the new one at once.
    assert "Move to a new phone" in page and 'value="Set up a new phone"' in page and "Turn off" not in page
    codes = shown_codes(page)
    assert len(codes) == 10  # shown once, after turning it on
    moved = operator.post(
        "/account/two-factor",
        data={
            "action": "disable",
            "current_password": PASSWORD,
            "code": codes[0],  # the old phone is gone: a recovery code
            "csrf_token": csrf_token(page),
        },
    )
    assert moved.status_code == 302
    page = operator.get("/account/two-factor").get_data(as_text=True)
    assert "scan this one with the new phone" in page and "<strong>Off.</strong>" in page
    assert operator.get("/operator/").headers["Location"].endswith("/account/two-factor")
    clock[0] = START + 30
    set_up(operator, START + 30, username="omar")
    assert operator.get("/operator/").status_code == 200
    # Accounts: who has it, who is required to and has not yet; the reset for a lost phone.
    accounts = operator.get("/operator/accounts").get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-username="(\w+)">.*?<td class="two-factor">(.*?)</td>', accounts, re.S))
    assert rows == {"ada": "<strong>required, not set up</strong>", "omar": "on", "rita": "off"}
    assert accounts.count('value="reset_two_factor"') == 1
    token = csrf_token(accounts)
    no_reason = operator.post(
        "/operator/accounts/omar", data={"action": "reset_two_factor", "reason": "", "csrf_token": token}
    )
    assert "Refused: say why" in operator.get(no_reason.headers["Location"]).get_data(as_text=True)
    done = operator.post(
        "/operator/accounts/omar",
        data={"action": "reset_two_factor", "reason": "phone lost, checked by call", "csrf_token": token},
    )
    assert done.status_code == 302
    # Reset: omar's own session has ended with it, and his next sign-in asks him to set it up again.
    assert operator.get("/operator/accounts").status_code == 302
    again = app.test_client()
    assert login(again, "omar").headers["Location"].endswith("/operator/")
    assert again.get("/operator/").headers["Location"].endswith("/account/two-factor")
    with app.extensions["helploop"].database.session() as session:
        trail = [(e.action, e.actor, e.reason) for e, name in account_events(session) if name == "omar"]
    assert trail[0] == ("two_factor_reset", "omar", "phone lost, checked by call")


def test_a_real_clock_code_signs_in(make_app: Any) -> None:
    # No clock of the test's: the code an app shows now is accepted now (the steps are the Unix epoch's).
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    client = app.test_client()
    login(client, "rita")
    key = set_up(client, time.time(), username="rita")
    fresh = app.test_client()
    login(fresh, "rita")
    assert post_code(fresh, code_at(key, time.time() + 30)).headers["Location"].endswith("/review/")


def test_a_key_the_server_cannot_open_is_said_so_and_a_recovery_code_still_signs_in(
    make_app: Any, clock: list[float]
) -> None:
    """The database restored under another secret key (no fallback): the key sealed with the old one cannot
    be opened. The code page says why instead of "wrong code", and a recovery code signs in."""
    from sqlalchemy import select

    from core.models import User
    from core.sealed import Sealer

    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    client = app.test_client()
    login(client, "rita")
    key = set_up(client, START, username="rita")
    codes = shown_codes(client.get("/account/two-factor").get_data(as_text=True))
    with app.extensions["helploop"].database.session() as session:
        rita = session.scalars(select(User).where(User.username == "rita")).one()
        assert rita.totp_secret is not None and key not in rita.totp_secret
        rita.totp_secret = Sealer("the other server's secret key").seal(key)
    fresh = app.test_client()
    login(fresh, "rita")
    clock[0] = START + 30
    refused = post_code(fresh, code_at(key, START + 30))
    assert refused.status_code == 401
    assert "This server cannot read your app&#39;s key" in refused.get_data(as_text=True)
    assert post_code(fresh, codes[0]).headers["Location"].endswith("/review/")


def test_a_session_signed_with_a_fallback_secret_key_is_still_accepted(make_app: Any) -> None:
    """The secret key changed, the old one listed in HELPLOOP_SECRET_KEY_FALLBACKS: a browser signed in
    under the old key stays signed in; without the fallback it is sent to the login page."""
    from flask.sessions import SecureCookieSessionInterface

    def signed_under_old_key(app: Any, cookie: str) -> str:
        interface = SecureCookieSessionInterface()
        data = interface.get_signing_serializer(app).loads(cookie)  # type: ignore[union-attr]
        new, fallbacks = app.secret_key, app.config["SECRET_KEY_FALLBACKS"]
        app.secret_key, app.config["SECRET_KEY_FALLBACKS"] = "the-old-secret-key", []
        try:
            return str(interface.get_signing_serializer(app).dumps(data))  # type: ignore[union-attr]
        finally:
            app.secret_key, app.config["SECRET_KEY_FALLBACKS"] = new, fallbacks

    app = make_app(
        ratelimit_enabled=False, secret_key="the-new-secret-key", secret_key_fallbacks="the-old-secret-key"
    )
    add_user(app, "rita", "reviewer")
    client = app.test_client()
    login(client, "rita")
    cookie = client.get_cookie("session")
    assert cookie is not None and client.get("/review/").status_code == 200
    signed_before = signed_under_old_key(app, cookie.value)
    old = app.test_client()
    old.set_cookie("session", signed_before)
    assert old.get("/review/").status_code == 200  # (and its cookie is signed again with the new key)
    app.config["SECRET_KEY_FALLBACKS"] = []  # as without the setting
    without = app.test_client()
    without.set_cookie("session", signed_before)
    assert without.get("/review/").status_code == 302


def test_the_account_page_lists_sign_ins_and_signs_out_every_other_browser(
    make_app: Any, clock: list[float]
) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    laptop, phone = app.test_client(), app.test_client()
    firefox = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
    token = csrf_token(laptop.get("/login").get_data(as_text=True))
    laptop.post(
        "/login",
        data={"username": "rita", "password": PASSWORD, "csrf_token": token},
        environ_base={"REMOTE_ADDR": "192.0.2.7", "HTTP_USER_AGENT": firefox},
    )
    key = set_up(laptop, START, username="rita")
    safari = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.0 Mobile/15E148 Safari/604.1"
    )
    token = csrf_token(phone.get("/login").get_data(as_text=True))
    phone.post(
        "/login",
        data={"username": "rita", "password": PASSWORD, "csrf_token": token},
        environ_base={"REMOTE_ADDR": "198.51.100.4", "HTTP_USER_AGENT": safari},
    )
    clock[0] = START + 30
    token = csrf_token(phone.get("/login/code").get_data(as_text=True))
    phone.post(
        "/login/code",
        data={"code": code_at(key, START + 30), "csrf_token": token},
        environ_base={"REMOTE_ADDR": "198.51.100.4", "HTTP_USER_AGENT": safari},
    )
    page = phone.get("/account").get_data(as_text=True)
    rows = re.findall(
        r"<tr><td>[\d-]+ [\d:]+</td><td>(.*?)</td><td>(.*?)</td>\s*<td title=\"[^\"]*\">(.*?)</td>", page
    )
    assert rows == [
        ("app code", "198.51.100.4", "Safari on iOS"),
        ("password", "192.0.2.7", "Firefox on Linux"),
    ]
    assert "on (10 recovery codes unused)" in page
    # The laptop was left signed in somewhere: end it from the phone. The phone stays in.
    assert phone.post("/account/sign-out-others").status_code == 400  # no CSRF token: refused
    assert laptop.get("/review/").status_code == 200
    ended = phone.post("/account/sign-out-others", data={"csrf_token": csrf_token(page)})
    assert ended.status_code == 302
    assert "Signed out of every other browser" in phone.get("/account").get_data(as_text=True)
    assert phone.get("/review/").status_code == 200
    assert laptop.get("/review/").status_code == 302
    with app.extensions["helploop"].database.session() as session:
        trail = [e.action for e, name in account_events(session) if name == "rita"]
    assert trail[0] == "sessions_ended"


def test_browser_summaries() -> None:
    from admin_ui.auth import browser_summary

    edge = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
        "Safari/537.36 Edg/131.0.0.0"
    )
    chrome_mac = (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    )
    android = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36"
    assert browser_summary(edge) == "Edge on Windows"
    assert browser_summary(chrome_mac) == "Chrome on macOS"
    assert browser_summary(android) == "Chrome on Android"
    assert browser_summary("curl/8.5.0") == "curl/8.5.0"
    assert browser_summary("") == "unknown"
