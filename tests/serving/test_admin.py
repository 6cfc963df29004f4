"""Reviewer and operator pages: login, roles, CSRF, and the whole loop from chat to verified pair."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.events import recent_events
from core.models import (
    Claim,
    Job,
    Judgement,
    ModelVersion,
    ReviewItem,
    ReviewItemTurn,
    Turn,
    User,
    VerifiedPair,
    as_utc,
    utcnow,
)
from crowd_feedback.reviewers import account_events, create_user, suspend

PASSWORD = "correct horse battery staple"


def add_user(app: Any, username: str, role: str) -> None:
    with app.extensions["helploop"].database.session() as session:
        create_user(session, username=username, password=PASSWORD, role=role)


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: Any, username: str) -> Any:
    page = client.get("/login").get_data(as_text=True)
    return client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_token(page)}
    )


def signed_in_operator(make_app: Any, **settings: Any) -> tuple[Any, Any]:
    """An app (no rate limits, ``settings`` besides) with operator omar, and a client signed in as omar."""
    app = make_app(ratelimit_enabled=False, **settings)
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    return app, client


def test_login_roles_and_logout(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    add_user(app, "omar", "operator")
    client = app.test_client()
    assert client.get("/review/").status_code == 302  # to the login page
    bad = client.post(
        "/login",
        data={
            "username": "rita",
            "password": "nope",
            "csrf_token": csrf_token(client.get("/login").get_data(as_text=True)),
        },
    )
    assert bad.status_code == 401 and "Wrong username or password" in bad.get_data(as_text=True)
    assert login(client, "rita").headers["Location"].endswith("/review/")
    assert client.get("/review/").status_code == 200
    assert client.get("/operator/").status_code == 403  # a reviewer cannot open operator pages
    assert client.get("/review/items").status_code == 403
    page = client.get("/review/").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_token(page)})
    assert client.get("/review/").status_code == 302
    operator = app.test_client()
    login(operator, "omar")
    assert operator.get("/operator/").status_code == 200
    # A link followed before logging in comes back whole after it, query and all; never off the site.
    later = app.test_client()
    sent = later.get("/operator/knowledge/try?q=what%27s+the+weather")
    assert sent.headers["Location"] == "/login?next=/operator/knowledge/try?q%3Dwhat%2527s%2Bthe%2Bweather"
    back = later.post(
        sent.headers["Location"],
        data={
            "username": "omar",
            "password": PASSWORD,
            "csrf_token": csrf_token(later.get(sent.headers["Location"]).get_data(as_text=True)),
        },
    )
    assert back.headers["Location"] == "/operator/knowledge/try?q=what%27s+the+weather"
    assert "what&#39;s the weather" in later.get(back.headers["Location"]).get_data(as_text=True)
    stranger = app.test_client().get("/review/items")
    assert stranger.headers["Location"] == "/login?next=/review/items"  # no stray "?"
    offsite = app.test_client()
    token = csrf_token(offsite.get("/login").get_data(as_text=True))
    away = offsite.post(
        "/login?next=//evil.example/x",
        data={"username": "omar", "password": PASSWORD, "csrf_token": token},
    )
    assert away.headers["Location"] == "/operator/"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "/\\evil.example/x",
        "/%5Cevil.example/x",
        "/%09/evil.example/x",
        "/%0a/evil.example",
        "x",
    ],
)
def test_a_sign_in_never_sends_the_browser_off_the_site(make_app: Any, target: str) -> None:
    # Browsers read "/\\host" as "//host" and drop tabs and line breaks from addresses ("/\t/host").
    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    away = client.post(
        f"/login?next={target}", data={"username": "omar", "password": PASSWORD, "csrf_token": token}
    )
    assert away.headers["Location"] == "/operator/"


def test_the_navigation_marks_the_section_of_the_page(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    add_user(app, "omar", "operator")

    def current(client: Any, path: str) -> list[str]:
        page = client.get(path).get_data(as_text=True)
        nav = page[page.index('<nav aria-label="Sections">') : page.index("</nav>")]
        return re.findall(r'aria-current="page">([^<]+)<', nav)

    operator = app.test_client()
    login(operator, "omar")
    assert current(operator, "/operator/") == ["Operator"]
    assert current(operator, "/operator/runs") == ["Runs"]
    assert current(operator, "/operator/knowledge/") == ["Knowledge"]
    assert current(operator, "/operator/knowledge/try") == ["Try"]  # not Knowledge, whose address it extends
    assert current(operator, "/operator/knowledge/check") == ["Knowledge"]
    assert current(operator, "/operator/exports") == ["Jobs &amp; backups"]
    assert current(operator, "/review/guidelines") == ["Guidelines"]
    assert current(operator, "/review/items") == ["Operator"]  # under /review/, but an operator's page
    reviewer = app.test_client()
    login(reviewer, "rita")
    page = reviewer.get("/review/").get_data(as_text=True)
    assert "/operator/runs" not in page  # a reviewer's navigation has no operator sections
    assert current(reviewer, "/review/") == ["Review"]


def test_forms_without_csrf_token_are_refused(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    client = app.test_client()
    assert client.post("/login", data={"username": "rita", "password": PASSWORD}).status_code == 400
    login(client, "rita")
    assert client.post("/review/items/1", data={"choice": "change_pin"}).status_code == 400
    assert client.post("/logout").status_code == 400
    # The JSON API is not a form: no token needed there.
    assert client.post("/api/v1/chat", json={"message": "where is my card"}).status_code == 200


def test_security_headers_and_escaping(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    client = app.test_client()
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    client.post("/api/v1/chat", json={"message": "<script>alert(1)</script> zzz qqq, mail jo@example.com"})
    app.extensions["helploop"].router.drain(10)
    login(client, "rita")
    page = client.get("/review/next").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    # The placeholder is marked as redaction (what it stands for on hover), and the page says what it is.
    question = page[page.index('id="question"') : page.index("</blockquote>", page.index('id="question"'))]
    assert question.endswith(
        'zzz qqq, mail <span class="pii" title="an e-mail address, removed before review">[EMAIL]</span>'
    )
    assert 'id="redaction-note"' in page and "jo@example.com" not in page
    assert (
        'id="context"' not in page and 'name="needs_context"' not in page
    )  # a first question: nothing before it


def test_reviewers_and_operators_see_what_the_customer_said_before_the_question(make_app: Any) -> None:
    from tests.conftest import TOY

    app = make_app(ratelimit_enabled=False, review_audit_rate=0.0)
    add_user(app, "rita", "reviewer")
    add_user(app, "omar", "operator")
    customer = app.test_client()
    first = customer.post("/api/v1/chat", json={"message": TOY["card_arrival"][0] + ", jo@example.com"})
    assert first.get_json()["status"] == "answered"
    session_id = first.get_json()["session_id"]
    customer.post("/api/v1/chat", json={"message": "/change_pin", "session_id": session_id})  # a chip
    customer.post("/api/v1/chat", json={"message": "<b>zzz</b> qqq and then?", "session_id": session_id})
    app.extensions["helploop"].router.drain(10)
    with app.extensions["helploop"].database.session() as session:
        item = session.scalars(select(ReviewItem).where(ReviewItem.text.like("%zzz%"))).one()
        item_id = item.id
    reviewer = app.test_client()
    login(reviewer, "rita")
    page = reviewer.get("/review/next").get_data(as_text=True)
    assert f'data-item="{item_id}"' in page
    context = page[page.index('id="context"') : page.index("</details>", page.index('id="context"'))]
    assert "Earlier in this conversation" in context and "jo@example.com" not in page
    assert context.count('class="context-turn"') == 2
    assert TOY["card_arrival"][0] in context and "[EMAIL]</span>" in context
    assert "→ the bot answered “Where is my card?”" in context
    assert "Customer clicked</span> “Change my PIN”" in context and "→ the bot answered it" in context
    assert "/change_pin" not in context
    assert page.index('id="context"') < page.index('id="question"')
    assert 'id="redaction-note"' in page  # the placeholder is in the context only
    # With earlier turns shown, the reviewer can say the question is clear only with them (C).
    assert 'name="needs_context"' in page and "<kbd>C</kbd> needs the earlier turns" in page
    reviewer.post(
        f"/review/items/{item_id}",
        data={
            "choice": "card_arrival",
            "context_shown": "1",
            "needs_context": "yes",
            "csrf_token": csrf_token(page),
        },
    )
    with app.extensions["helploop"].database.session() as session:
        (judgement,) = session.scalars(select(Judgement).where(Judgement.item_id == item_id)).all()
        assert judgement.needs_context is True
    operator = app.test_client()
    login(operator, "omar")
    detail = operator.get(f"/review/items/{item_id}").get_data(as_text=True)
    assert 'id="context"' in detail and "→ the bot answered “Where is my card?”" in detail
    assert 'card_arrival <span class="muted">(clear only with the earlier turns)</span>' in detail


def test_the_earlier_turns_say_in_words_what_the_bot_did() -> None:
    from admin_ui.review import context_lines

    titles = {"card_arrival": "Where is my card?", "change_pin": "Change my PIN"}
    context = [
        {"text": "my card, [NAME] here", "status": "answered", "intent": "card_arrival", "helpful": False},
        {"text": "which?", "status": "clarify", "intent": None, "chosen_intent": "change_pin"},
        {"text": "/change_pin", "status": "answered", "intent": "change_pin", "clicked": True},
        {"text": "hi", "status": "small_talk", "intent": None},
        {"text": "a person please", "status": "asked_for_person", "intent": None},
        {"text": "zzz", "status": "handoff", "intent": None},
        {"text": "old", "status": "answered", "intent": "renamed_since"},
    ]
    assert [(line["text"], line["clicked"], line["bot"]) for line in context_lines(context, titles)] == [
        ("my card, [NAME] here", "", "answered “Where is my card?”; the customer marked it unhelpful"),
        ("which?", "", "asked “did you mean…”"),
        ("/change_pin", "Change my PIN", "answered it"),
        ("hi", "", "small talk"),
        ("a person please", "", "passed it to a person (the customer asked for one)"),
        ("zzz", "", "handed over to a person"),
        ("old", "", "answered “renamed_since”"),  # an intent gone from the knowledge base: its name
    ]
    assert context_lines(None, titles) == []
    typed = [{"text": "the second one", "status": "answered", "intent": "change_pin", "clicked": True}]
    assert [(line["typed"], line["clicked"]) for line in context_lines(typed, titles)] == [
        ("the second one", "Change my PIN")  # a choice typed, not clicked: its words are shown too
    ]
    assert context_lines(context, titles)[2]["typed"] == ""


def test_long_intent_names_may_wrap_after_underscores_and_stay_escaped() -> None:
    from admin_ui.markdown import render_breakable

    assert str(render_breakable("wrong_exchange_rate")) == "wrong_<wbr>exchange_<wbr>rate"
    assert str(render_breakable("<b>x_y</b>")) == "&lt;b&gt;x_<wbr>y&lt;/b&gt;"
    assert str(render_breakable(None)) == ""


def test_only_placeholders_are_marked_in_redacted_text() -> None:
    from admin_ui.markdown import has_placeholder, render_redacted

    shown = render_redacted("Hi, I'm [NAME] <b>[EMAIL]</b> [NOT_A_KIND] [name]")
    assert str(shown) == (
        'Hi, I&#39;m <span class="pii" title="a person&#39;s name, removed before review">[NAME]</span> '
        '&lt;b&gt;<span class="pii" title="an e-mail address, removed before review">[EMAIL]</span>'
        "&lt;/b&gt; "
        "[NOT_A_KIND] [name]"
    )
    assert has_placeholder("call [PHONE]") and not has_placeholder("order [12345]")


def test_a_search_hit_is_shown_around_its_words_escaped_and_marked() -> None:
    from admin_ui.markdown import render_match

    assert str(render_match("mail me at <b>JO@Example.com</b>", "example.COM")) == (
        "mail me at &lt;b&gt;JO@<mark>Example.com</mark>&lt;/b&gt;"  # case kept as typed
    )
    long = "a" * 100 + " refund please " + "b" * 100
    shown = str(render_match(long, "refund", width=40))
    assert shown.startswith("…") and shown.endswith("…") and "<mark>refund</mark>" in shown
    assert len(shown.replace("<mark>", "").replace("</mark>", "")) <= 42  # 40 characters and two ellipses
    words = "I paid extra on my payment last Saturday, maybe the rate was wrong? I'd like a refund now"
    assert str(render_match(words, "refund", width=40)) == (
        "…rate was wrong? I&#39;d like a <mark>refund</mark> now"  # cut between words, not in one
    )
    assert str(render_match("x" * 100, "nowhere", width=10)) == "x" * 9 + "…"  # no hit: the start
    assert str(render_match("<i>", "")) == "&lt;i&gt;"
    assert str(render_match("50% off", "%")) == "50<mark>%</mark> off"  # taken literally, not a pattern


def test_the_reviewer_chart_starts_its_scale_under_the_lowest_reviewer() -> None:
    """A crowd that agrees 83-88 % with the final labels spreads over the chart (80-100 %) instead of sitting
    in one blob at the top of 0-100 %; one reviewer far below brings the scale down with them."""
    from admin_ui.operator import reviewer_chart
    from crowd_feedback.workforce import ReviewerPerformance

    def person(name: str, agreed: int, seconds: float = 22.0) -> ReviewerPerformance:
        return ReviewerPerformance(
            username=name, role="reviewer", status="active", suspended_reason=None, judgements=100,
            resolved=100, agreed=agreed, gold_answered=0, gold_correct=0, timed=100, work_seconds=2200.0,
            median_seconds=seconds, last_judged_at=None,
        )  # fmt: skip

    chart = reviewer_chart([person("a", 83), person("b", 88)], height=180.0)
    assert [t["text"] for t in chart["y_ticks"]] == ["80%", "90%", "100%"]
    top, bottom = chart["y_ticks"][2]["y"], chart["y_ticks"][0]["y"]
    spread = chart["dots"][0]["y"] - chart["dots"][1]["y"]
    assert spread / (bottom - top) == pytest.approx(0.25)  # 5 points of a 20-point scale (on 0-100 %: 5 %)
    low = reviewer_chart([person("a", 83), person("c", 35, seconds=2.0)])
    assert [t["text"] for t in low["y_ticks"]] == ["30%", "65%", "100%"]
    assert reviewer_chart([person("d", 100)])["y_ticks"][0]["text"] == "80%"  # never closer than 80-100 %
    assert reviewer_chart([])["dots"] == []


def test_login_is_rate_limited(make_app: Any) -> None:
    app = make_app(login_rate_limit="3/minute")
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    codes = [
        client.post("/login", data={"username": "x", "password": "y", "csrf_token": token}).status_code
        for _ in range(4)
    ]
    assert codes[:3] == [401, 401, 401] and codes[3] == 429


def test_a_user_changes_their_own_password_and_their_other_sessions_end(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    add_user(app, "omar", "operator")
    assert app.test_client().get("/account/password").headers["Location"].startswith("/login?next=")
    here, elsewhere = app.test_client(), app.test_client()
    login(here, "rita")
    login(elsewhere, "rita")
    review = here.get("/review/").get_data(as_text=True)
    own = re.search(r'<a href="/account" id="own-account"\s+title="[^"]+">rita \(reviewer\)</a>', review)
    assert own is not None  # every page's header: the name leads to the account's own page
    assert 'href="/account/password" id="own-password"' in here.get("/account").get_data(as_text=True)
    page = here.get("/account/password").get_data(as_text=True)
    token = csrf_token(page)
    new = "a much longer secret"

    def change(current: str, new_password: str, again: str, csrf: str | None = token) -> Any:
        form = {"current_password": current, "new_password": new_password, "confirm_password": again}
        return here.post("/account/password", data=form | ({"csrf_token": csrf} if csrf else {}))

    assert change(PASSWORD, new, new, csrf=None).status_code == 400  # no CSRF token: refused
    refused = {
        "Refused: the current password is wrong.": change("not my password", new, new),
        "The new password and its repetition differ.": change(PASSWORD, new, new + "!"),
        "Refused: password must have at least 10 characters.": change(PASSWORD, "short", "short"),
    }
    for message, response in refused.items():
        wrong = message == "Refused: the current password is wrong."  # a refused sign-in, counted as one
        assert response.status_code == (401 if wrong else 400) and message in response.get_data(as_text=True)
    assert login(app.test_client(), "rita").status_code == 302  # nothing changed yet
    done = change(PASSWORD, new, new)
    assert done.status_code == 302 and done.headers["Location"] == "/review/"
    home = here.get("/review/")
    assert home.status_code == 200 and "Password changed." in home.get_data(as_text=True)
    assert elsewhere.get("/review/").status_code == 302  # the session opened with the old password ended
    assert login(app.test_client(), "rita").status_code == 401
    again = app.test_client()
    form = {
        "username": "rita",
        "password": new,
        "csrf_token": csrf_token(again.get("/login").get_data(as_text=True)),
    }
    assert again.post("/login", data=form).headers["Location"].endswith("/review/")
    operator = app.test_client()
    login(operator, "omar")
    accounts = operator.get("/operator/accounts").get_data(as_text=True)
    assert "password changed" in accounts and "password_changed" not in accounts
    with app.extensions["helploop"].database.session() as session:
        events = [(event.action, event.actor, name) for event, name in account_events(session)]
    assert ("password_changed", "rita", "rita") in events


def test_the_accounts_page_shows_when_each_account_last_signed_in(make_app: Any) -> None:
    app, operator = signed_in_operator(make_app)
    add_user(app, "rita", "reviewer")
    add_user(app, "nina", "reviewer")
    before = utcnow()
    reviewer = app.test_client()
    page = reviewer.get("/login").get_data(as_text=True)
    failed = reviewer.post(
        "/login", data={"username": "nina", "password": "wrong", "csrf_token": csrf_token(page)}
    )
    assert failed.status_code == 401  # a failed attempt is no sign-in
    login(reviewer, "rita")
    with app.extensions["helploop"].database.session() as session:
        seen = {u.username: u.last_login_at for u in session.scalars(select(User))}
    assert seen["nina"] is None and seen["omar"] is not None
    assert seen["rita"] is not None and as_utc(seen["rita"]) >= before.replace(microsecond=0)
    accounts = operator.get("/operator/accounts").get_data(as_text=True)
    assert "<th>last signed in (UTC)</th>" in accounts

    def cell(username: str) -> str:
        row = accounts[accounts.index(f'data-username="{username}"') :]
        return re.search(r'<td class="last-login">([^<]*)</td>', row).group(1)

    assert cell("nina") == "never"
    assert cell("rita") == f"{as_utc(seen['rita']):%Y-%m-%d %H:%M}"


def test_the_password_form_is_rate_limited_as_the_login_is(make_app: Any) -> None:
    # A session left open on a shared computer cannot be used to guess the current password quickly.
    app = make_app(login_rate_limit="3/minute")
    add_user(app, "rita", "reviewer")
    client = app.test_client()
    assert login(client, "rita").status_code == 302
    token = csrf_token(client.get("/account/password").get_data(as_text=True))
    form = {"current_password": "guess", "new_password": "x" * 12, "confirm_password": "x" * 12}
    codes = [
        client.post("/account/password", data=form | {"csrf_token": token}).status_code for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]  # a wrong current password is a refused sign-in


def test_a_session_guessing_the_current_password_from_many_addresses_is_stopped(make_app: Any) -> None:
    # A stolen session cookie works from anywhere: the per-address limit alone would not stop it guessing the
    # current password (to change it, or to turn two-factor sign-in off). Wrong ones count for the account.
    app = make_app(login_rate_limit="100/minute", login_failures_per_account="3 per 15 minutes")
    add_user(app, "rita", "reviewer")
    stolen = app.test_client()
    login(stolen, "rita")
    token = csrf_token(stolen.get("/account/password").get_data(as_text=True))
    # The form's username is whatever the thief sends: the count is the signed-in account's all the same.
    guesses = [
        {
            "username": f"x{n}",
            "current_password": f"guess {n}",
            "new_password": "y" * 12,
            "confirm_password": "y" * 12,
        }
        for n in range(4)
    ]
    codes = [
        stolen.post(
            "/account/password",
            data=form | {"csrf_token": token},
            environ_base={"REMOTE_ADDR": f"10.1.0.{n}"},
        ).status_code
        for n, form in enumerate(guesses)
    ]
    assert codes == [401, 401, 401, 429]
    stolen.get("/account/two-factor")  # the set-up page shows a key first
    page = stolen.post(
        "/account/two-factor",
        data={"action": "enable", "current_password": "guess", "code": "123456", "csrf_token": token},
        environ_base={"REMOTE_ADDR": "10.1.1.1"},
    )
    assert page.status_code == 401  # another page keeps its own count: not refused yet
    right = {"current_password": PASSWORD, "new_password": "y" * 12, "confirm_password": "y" * 12}
    locked = stolen.post("/account/password", data=right | {"csrf_token": token})
    assert locked.status_code == 429  # the right password too, for the window
    assert "Too many wrong passwords or codes for this account" in locked.get_data(as_text=True)
    assert login(app.test_client(), "rita").status_code == 302  # the owner still signs in
    with app.extensions["helploop"].database.session() as session:
        events = recent_events(session, kind="account.locked")
    assert len(events) == 1 and events[0].data["what"] == "session"
    assert "someone holds their session" in events[0].text


@pytest.mark.parametrize("proxies", [0, 1])
def test_behind_a_trusted_proxy_the_clients_address_is_the_forwarded_one(make_app: Any, proxies: int) -> None:
    # HELPLOOP_TRUSTED_PROXIES: behind nginx every request comes from the proxy's address; the per-address
    # login limit and the sign-in history must see the client's. With no proxy trusted, a client's own
    # X-Forwarded-For is ignored (it could otherwise pick a fresh address for every guess).
    from crowd_feedback.reviewers import recent_sign_ins

    app = make_app(login_rate_limit="2/minute", trusted_proxies=proxies)
    add_user(app, "rita", "reviewer")

    def sign_in(client_address: str, password: str = "guess") -> int:
        client = app.test_client()
        token = csrf_token(client.get("/login").get_data(as_text=True))
        form = {"username": "rita", "password": password, "csrf_token": token}
        # Over HTTPS Flask-WTF also checks the form came from this site (the Referer browsers send).
        headers = {
            "X-Forwarded-For": client_address,
            "X-Forwarded-Proto": "https",
            "Referer": "https://localhost/login",
        }
        return client.post(
            "/login", data=form, headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.1"}
        ).status_code

    assert [sign_in("203.0.113.5"), sign_in("203.0.113.5"), sign_in("203.0.113.5")] == [401, 401, 429]
    other = sign_in("198.51.100.9", PASSWORD)  # another customer of the same proxy
    assert other == (302 if proxies else 429)
    if proxies:
        with app.extensions["helploop"].database.session() as session:
            history = recent_sign_ins(session, user_id=1)
        assert [s.address for s in history] == ["198.51.100.9"]


def test_wrong_passwords_for_one_account_lock_its_sign_ins_from_every_address(make_app: Any) -> None:
    # The per-address limit is set out of the way: this is the account's own count, whatever the address.
    app = make_app(login_rate_limit="100/minute", login_failures_per_account="3 per 15 minutes")
    add_user(app, "rita", "reviewer")
    add_user(app, "omar", "operator")

    def sign_in(username: str, password: str, address: str) -> Any:
        client = app.test_client()
        token = csrf_token(client.get("/login").get_data(as_text=True))
        form = {"username": username, "password": password, "csrf_token": token}
        return client.post("/login", data=form, environ_base={"REMOTE_ADDR": address})

    assert [sign_in("rita", PASSWORD, "10.0.0.1").status_code for _ in range(4)] == [302] * 4  # no failures
    owner = app.test_client()  # rita, signed in before anyone guessed
    login(owner, "rita")
    wrong = [sign_in("rita", "guess", f"10.0.1.{n}").status_code for n in range(3)]
    assert wrong == [401, 401, 401]
    locked = sign_in("rita", PASSWORD, "10.0.2.1")  # the right password from a new address: refused too
    page = locked.get_data(as_text=True)
    assert (
        locked.status_code == 429
        and "Too many wrong passwords for this account. Try again in 15 minutes" in page
    )
    assert '<form method="post">' in page  # the login page, not a bare error
    assert sign_in("omar", PASSWORD, "10.0.1.0").status_code == 302  # another account is not affected
    # The owner, signed in already, still changes the password while the account's sign-ins are refused.
    # The form sends the username too, as the page's hidden field does (for password managers).
    form = {
        "username": "rita",
        "current_password": PASSWORD,
        "new_password": "x" * 12,
        "confirm_password": "x" * 12,
    }
    token = csrf_token(owner.get("/account/password").get_data(as_text=True))
    assert owner.post("/account/password", data=form | {"csrf_token": token}).status_code == 302
    # A name with no account is counted alike: the refusal does not tell which names exist.
    assert [sign_in("nobody", "guess", "10.0.3.1").status_code for _ in range(4)] == [401, 401, 401, 429]
    # Operators hear of rita's lockout once (on the Activity page and the ops webhook), and her account's
    # trail keeps it; the refused attempts after it, and the name with no account, add nothing.
    assert sign_in("rita", "guess", "10.0.2.2").status_code == 429
    with app.extensions["helploop"].database.session() as session:
        locked = [event.data["username"] for event in recent_events(session, kind="account.locked")]
        trail = [(e.action, e.actor, name) for e, name in account_events(session) if e.action == "locked"]
    assert locked == ["rita"] and trail == [("locked", "system", "rita")]


def test_a_lockout_that_cannot_be_recorded_still_refuses(
    make_app: Any, monkeypatch: Any, caplog: Any
) -> None:
    # The audit write fails (the database busy or gone): the sign-in is refused as before, not a 500.
    from sqlalchemy.exc import OperationalError

    from admin_ui import auth as auth_module

    def fails(*args: Any, **kwargs: Any) -> bool:
        raise OperationalError("INSERT INTO account_events", {}, Exception("database is locked"))

    monkeypatch.setattr(auth_module, "record_lockout", fails)
    app = make_app(login_rate_limit="100/minute", login_failures_per_account="1 per 15 minutes")
    add_user(app, "rita", "reviewer")
    client = app.test_client()

    def sign_in(password: str) -> Any:
        token = csrf_token(client.get("/login").get_data(as_text=True))
        return client.post("/login", data={"username": "rita", "password": password, "csrf_token": token})

    assert sign_in("guess").status_code == 401
    locked = sign_in(PASSWORD)
    assert locked.status_code == 429 and "Too many wrong passwords" in locked.get_data(as_text=True)
    assert "the lockout of 'rita' could not be recorded" in caplog.text


def test_an_accounts_wrong_passwords_are_counted_in_redis_across_processes(make_app: Any) -> None:
    # With several web processes the count must be shared: in Redis, as the other limits are.
    import uuid

    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at 127.0.0.1:6379: {exc}")
    # A name of its own, not a key prefix: the limiter is one per process, and the first app's prefix stays.
    name = f"rita-{uuid.uuid4().hex[:12]}"
    app = make_app(
        login_rate_limit="100/minute",
        login_failures_per_account="2 per 15 minutes",
        ratelimit_storage_url="redis://127.0.0.1:6379/15",
    )
    add_user(app, name, "reviewer")

    def sign_in(password: str, address: str) -> int:
        client = app.test_client()
        token = csrf_token(client.get("/login").get_data(as_text=True))
        form = {"username": name, "password": password, "csrf_token": token}
        return client.post("/login", data=form, environ_base={"REMOTE_ADDR": address}).status_code

    assert [sign_in("guess", "10.0.1.1"), sign_in("guess", "10.0.1.2"), sign_in(PASSWORD, "10.0.1.3")] == [
        401,
        401,
        429,
    ]
    keys = redis.Redis(host="127.0.0.1", port=6379, db=15).keys(f"*account:{name}*")
    assert keys, "the account's count is not in Redis"


def test_unseen_question_to_verified_pair_through_the_ui(make_app: Any) -> None:
    """Done means: chat an unseen question -> review item with its reason -> three reviewers answer in the
    UI -> it resolves with a posterior -> it is listed as a verified training pair."""
    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    body = (
        app.test_client()
        .post("/api/v1/chat", json={"message": "plonk my foreign money conversion"})
        .get_json()
    )
    assert body["status"] in {"handoff", "clarify"}
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        item = session.scalars(select(ReviewItem)).one()
        assert body["status"] in item.reasons and item.status == "pending"
        item_id = item.id
    for name in ("ann", "bob", "cat"):
        add_user(app, name, "reviewer")
    add_user(app, "omar", "operator")
    resolved_after = None
    for number, name in enumerate(("ann", "bob", "cat"), start=1):
        client = app.test_client()
        login(client, name)
        assert "<strong>1</strong> question waiting for you" in client.get("/review/").get_data(as_text=True)
        page = client.get("/review/next").get_data(as_text=True)
        if "There is nothing for you to review" in page:
            break
        assert "plonk my foreign money conversion" in page
        response = client.post(
            f"/review/items/{item_id}",
            data={
                "csrf_token": csrf_token(page),
                "choice": "__search__",
                "search": "exchange_rate",
                "answer_ok": "no",
            },
        )
        assert response.status_code == 302
        # Judged: nothing left for this reviewer (the others still see it until it resolves).
        assert "No question is waiting for you" in client.get("/review/").get_data(as_text=True)
        with helploop.database.session() as session:
            if session.get(ReviewItem, item_id).status == "resolved":
                resolved_after = number
                break
    assert resolved_after is not None
    with helploop.database.session() as session:
        item = session.get(ReviewItem, item_id)
        assert item.resolved_label == "exchange_rate" and item.resolved_confidence >= 0.9
        assert session.scalars(select(Judgement)).all()[0].answer_ok is False
        pair = session.scalars(select(VerifiedPair)).one()
        assert (pair.text, pair.intent) == ("plonk my foreign money conversion", "exchange_rate")
    operator = app.test_client()
    login(operator, "omar")
    overview = operator.get("/operator/").get_data(as_text=True)
    assert "plonk my foreign money conversion" in overview and "exchange_rate" in overview
    # This week's batch: one item judged alike by everyone who answered it.
    batch = overview[overview.index('id="batch-alpha"') :].split("</table>")[0]
    assert "<td>1</td>" in batch and "<td>1.000</td>" in batch


def test_reviewers_untick_member_questions_that_ask_something_else(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    chat = app.test_client()
    for message in ("plonk my foreign money conversion", "plonk my foreign money conversion today"):
        assert chat.post("/api/v1/chat", json={"message": message}).get_json()["status"] != "answered"
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        item = session.scalars(select(ReviewItem)).one()
        assert item.cluster_size == 2
        item_id = item.id
    member = "plonk my foreign money conversion today"
    for name in ("ann", "bob"):
        add_user(app, name, "reviewer")
        client = app.test_client()
        login(client, name)
        page = client.get("/review/next").get_data(as_text=True)
        assert "Also asked" in page and f'name="same" value="{member}" checked' in page
        form = {"csrf_token": csrf_token(page), "choice": "__search__", "search": "exchange_rate"}
        # The box is unticked: the browser sends the hidden "member" field and no "same" for it.
        assert client.post(f"/review/items/{item_id}", data=form | {"member": member}).status_code == 302
    with helploop.database.session() as session:
        item = session.get(ReviewItem, item_id)
        assert item.status == "resolved" and item.resolved_label == "exchange_rate"
        checks = session.scalars(select(Judgement.member_checks)).all()
        assert checks == [{member: False}, {member: False}]
        pairs = session.scalars(select(VerifiedPair.text)).all()
        assert pairs == ["plonk my foreign money conversion"]


def test_a_reviewer_changes_their_last_answer_from_the_next_page(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    chat = app.test_client()
    for message in ("plonk my foreign money conversion", "zzqx frobnicate the wibble"):
        assert chat.post("/api/v1/chat", json={"message": message}).get_json()["status"] != "answered"
    assert helploop.router.drain(10)
    add_user(app, "ann", "reviewer")
    client = app.test_client()
    login(client, "ann")
    page = client.get("/review/next").get_data(as_text=True)
    assert 'id="change-last"' not in page and "change your last answer" not in page
    with helploop.database.session() as session:
        shown = session.scalars(
            select(ReviewItem).order_by(ReviewItem.queue_key.desc(), ReviewItem.id)
        ).first()
        first_id, first_text = shown.id, shown.text
    assert first_text in page
    form = {"csrf_token": csrf_token(page), "choice": "__search__", "search": "exchange_rate"}
    assert client.post(f"/review/items/{first_id}", data=form).status_code == 302
    page = client.get("/review/next").get_data(as_text=True)
    other_id = int(re.search(r'action="/review/items/(\d+)" id="judgement"', page).group(1))
    assert other_id != first_id
    banner = page[page.index('id="change-last"') :].split("</form>")[0]
    assert f'action="/review/items/{first_id}/change"' in page and first_text in banner
    assert "exchange_rate" in banner or "Exchange" in banner
    assert "<kbd>U</kbd> change your last answer" in page
    assert f'action="/review/items/{first_id}/change"' in client.get("/review/").get_data(as_text=True)
    # Not on the list of one's answers: that list never shows check questions, and the offer would.
    assert 'id="change-last"' not in client.get("/review/history").get_data(as_text=True)
    assert client.post(f"/review/items/{first_id}/change").status_code == 400  # no CSRF token
    refused = client.post(
        f"/review/items/{other_id}/change", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Not changed: you have not answered this item." in refused
    again = client.post(
        f"/review/items/{first_id}/change", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Your answer was taken back: answer this question again." in again
    assert f'action="/review/items/{first_id}" id="judgement"' in again and 'id="change-last"' not in again
    form = {"csrf_token": csrf_token(again), "choice": "__search__", "search": "change_pin"}
    assert client.post(f"/review/items/{first_id}", data=form).status_code == 302
    with helploop.database.session() as session:
        answers = session.execute(select(Judgement.item_id, Judgement.label)).all()
        assert answers == [(first_id, "change_pin")]
        # The item shown between the answers went back to the queue, and is Ann's again on her next page.
        claims = session.scalars(select(Claim.item_id)).all()
    assert claims == []
    assert f'action="/review/items/{other_id}" id="judgement"' in client.get("/review/next").get_data(
        as_text=True
    )


def test_a_reviewer_reports_personal_data_and_an_operator_redacts_it(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    message = "I am Grace and plonk my foreign money conversion"
    assert (
        app.test_client().post("/api/v1/chat", json={"message": message}).get_json()["status"] != "answered"
    )
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        item_id = session.scalars(select(ReviewItem.id)).one()
    add_user(app, "ann", "reviewer")
    add_user(app, "bob", "reviewer")
    add_user(app, "omar", "operator")
    ann = app.test_client()
    login(ann, "ann")
    page = ann.get("/review/next").get_data(as_text=True)
    assert message in page and 'id="privacy"' in page and "<kbd>P</kbd> personal data shown" in page
    assert ann.post(f"/review/items/{item_id}/privacy").status_code == 400  # no CSRF token
    after = ann.post(
        f"/review/items/{item_id}/privacy", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Thank you: an operator will take the personal data out" in after and 'id="empty"' in after
    bob = app.test_client()
    login(bob, "bob")
    assert 'id="empty"' in bob.get("/review/next").get_data(as_text=True)  # nobody else is shown it
    assert bob.post(f"/review/items/{item_id}/redact", data={"text": "x"}).status_code in (400, 403)
    omar = app.test_client()
    login(omar, "omar")
    overview = omar.get("/operator/").get_data(as_text=True)
    assert 'id="privacy-count"' in overview and "1 review item\n  with personal data" in overview
    listed = omar.get("/review/items?status=pending&reported=1").get_data(as_text=True)
    assert f'href="/review/items/{item_id}"' in listed
    detail = omar.get(f"/review/items/{item_id}").get_data(as_text=True)
    assert (
        'id="privacy-report"' in detail
        and "reviewer ann" in detail
        and '<details id="redact" open>' in detail
    )
    saved = omar.post(
        f"/review/items/{item_id}/redact",
        data={"csrf_token": csrf_token(detail), "text": "I am [NAME] and plonk my foreign money conversion"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert f"Item {item_id} redacted" in saved and 'id="privacy-report"' not in saved
    assert 'id="privacy-count"' not in omar.get("/operator/").get_data(as_text=True)
    listed = omar.get("/review/items?status=pending&reported=1").get_data(as_text=True)
    assert f'href="/review/items/{item_id}"' not in listed
    page = bob.get("/review/next").get_data(as_text=True)
    assert (
        "I am " in page and "Grace" not in page and f'action="/review/items/{item_id}" id="judgement"' in page
    )


def import_small_banking(app: Any, small_banking: Any) -> None:
    from core.kb_files import KnowledgeBaseData, Origin
    from core.knowledge_base import import_knowledge_base

    kb = KnowledgeBaseData()
    for text, label in zip(*small_banking["train"], strict=True):
        intent = kb.intent(label, Origin("fixture", None))
        intent.examples.append(text)
        intent.answer = f"How to handle {label}."
    with app.extensions["helploop"].database.session() as session:
        import_knowledge_base(session, incoming=kb, source="test")


def training_app(make_app: Any, small_banking: Any, **settings: Any) -> tuple[Any, Any]:
    """An app with no model yet that loads real bundles, the small BANKING77 knowledge base, and operator
    omar signed in: (app, omar's client)."""
    from bot.engine import AnsweringEngine

    app = make_app(
        register=False, load=False, ratelimit_enabled=False, model_loader=AnsweringEngine.load, **settings
    )
    import_small_banking(app, small_banking)
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    return app, client


def test_operator_retrains_sees_the_gate_and_rolls_out_from_the_ui(make_app: Any, small_banking: Any) -> None:
    """Start a retrain from the operator pages -> the worker runs it with progress -> the run page shows the
    gate's report -> shadow, canary, promote -> the chat serves it -> rollback refused with nothing before."""
    from core.models import Deployment, Job
    from training.jobs import Worker

    app, client = training_app(make_app, small_banking)
    helploop = app.extensions["helploop"]
    page = client.get("/operator/runs").get_data(as_text=True)
    started = client.post("/operator/runs", data={"csrf_token": csrf_token(page)})
    assert started.status_code == 302 and started.headers["Location"].endswith("/operator/runs/1")
    queued_page = client.get("/operator/runs/1").get_data(as_text=True)
    assert (
        "queued" in queued_page and "Started by omar, queued " in queued_page and " ran " not in queued_page
    )
    assert Worker(helploop.database, helploop.settings, worker_id="test").run_once() == 1
    with helploop.database.session() as session:
        job = session.get(Job, 1)
        assert job.status == "succeeded", job.error
        version = job.result["version"]
    run_page = client.get("/operator/runs/1").get_data(as_text=True)
    assert "Promotion gate: no baseline" in run_page and version in run_page and "<svg" in run_page
    listing = client.get("/operator/runs").get_data(as_text=True)
    assert re.search(r"<td>no baseline</td><td>omar</td>\s*<td>[\d.]+ (s|min)</td>", listing)
    facts = re.search(r'<p class="muted" id="run-facts">(.*?)</p>', run_page, re.S)
    assert facts and re.search(
        r"Started by omar, queued \S+ \S+ UTC · ran [\d.]+ (s|min) ·\s+frozen encoder$",
        facts.group(1).strip(),
    )
    assert 'id="risk-coverage"' in run_page and 'id="reliability"' in run_page and "<circle" in run_page
    token = csrf_token(run_page)
    # Each form says where it is, and the action goes back there; an address off this site goes to the runs.
    assert run_page.count('name="next" value="/operator/runs/1"') == run_page.count('name="action"') == 3
    backs = {"shadow": "/operator/runs/1", "canary": "https://evil.example/x", "promote": "//evil.example"}
    for action, extra in (("shadow", {}), ("canary", {"share": "0.5"}), ("promote", {})):
        response = client.post(
            "/operator/deploy",
            data={
                "csrf_token": token,
                "action": action,
                "version": version,
                "reason": f"ui {action}",
                "next": backs[action],
                **extra,
            },
        )
        assert response.status_code == 302
        expected = "/operator/runs/1" if action == "shadow" else "/operator/runs"
        assert response.headers["Location"] == expected
    helploop.models.refresh()
    assert helploop.models.state.production.version == version
    reply = client.post("/api/v1/chat", json={"message": "I want to close my account"}).get_json()
    assert reply["model_version"] == version and reply["intent"] == "terminate_account"
    response = client.post(
        "/operator/deploy",
        data={"csrf_token": token, "action": "rollback", "reason": "x"},
        follow_redirects=True,
    )
    assert "Refused: nothing to roll back to" in response.get_data(as_text=True)
    runs_page = client.get("/operator/runs").get_data(as_text=True)  # says so before anyone clicks
    assert "Roll back: nothing to roll back to" in runs_page and 'value="rollback"' not in runs_page
    with helploop.database.session() as session:
        reasons = [d.reason for d in session.scalars(select(Deployment).order_by(Deployment.id))]
        assert reasons == ["ui shadow", "ui canary", "ui promote"]
        assert all(d.actor == "omar" for d in session.scalars(select(Deployment)))


def test_a_run_with_nothing_new_builds_no_model_until_the_operator_retrains_anyway(
    make_app: Any, small_banking: Any
) -> None:
    """Retrain twice with nothing new in between: the second run ends at once naming the model that has the
    same inputs; "Retrain anyway" fits; a new verified pair makes the next run fit again."""
    from core.kb_files import KnowledgeBaseData, Origin
    from core.knowledge_base import import_knowledge_base
    from training.gate import in_evaluation_set
    from training.jobs import Worker

    app, client = training_app(make_app, small_banking)
    helploop = app.extensions["helploop"]
    worker = Worker(helploop.database, helploop.settings, worker_id="test")

    def start() -> dict[str, Any]:
        token = csrf_token(client.get("/operator/runs").get_data(as_text=True))
        assert client.post("/operator/runs", data={"csrf_token": token}).status_code == 302
        job_id = worker.run_once()
        with helploop.database.session() as session:
            job = session.get(Job, job_id)
            assert job is not None and job.status == "succeeded", job.error if job else None
            return {"id": job.id, **job.result}

    first = start()
    assert "version" in first and not first.get("unchanged")
    assert '0 questions logged<span class="muted">: nothing labelled is new</span>.' in client.get(
        "/operator/runs"
    ).get_data(as_text=True)
    helploop.models.refresh()
    assert client.post("/api/v1/chat", json={"message": "I want to close my account"}).status_code == 200
    changes = re.search(
        r'<p id="changes-since">(.*?)</p>', client.get("/operator/runs").get_data(as_text=True), re.S
    )
    said = " ".join(re.sub(r"<[^>]+>", "", changes.group(1) if changes else "").split())
    assert said.split(" UTC): ")[1] == (
        "0 verified pairs · knowledge base unchanged · 1 question logged: nothing labelled is new "
        "(self-training may still learn from the log)."
    )
    second = start()
    assert second["unchanged"] is True and "version" not in second
    assert second["same_as"] == first["version"] and second["same_as_role"] == "production"
    assert second["inputs_hash"] == first["metrics"]["inputs_hash"]
    page = client.get(f"/operator/runs/{second['id']}").get_data(as_text=True)
    assert "Nothing new to learn:" in page and f"<code>{first['version']}</code> (production)" in page
    assert "Promotion gate" not in page and "Roll out" not in page
    listing = client.get("/operator/runs").get_data(as_text=True)
    assert f'<span class="muted">none: same as</span> {first["version"]}' in listing
    with helploop.database.session() as session:
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 1  # nothing registered

    response = client.post(f"/operator/runs/{second['id']}/again", data={})  # no CSRF token: refused
    assert response.status_code == 400
    response = client.post(f"/operator/runs/{second['id']}/again", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    third_id = worker.run_once()
    with helploop.database.session() as session:
        third = session.get(Job, third_id)
        assert third is not None and third.params["force"] is True and third.created_by == "omar"
        assert third.status == "succeeded" and third.result["version"] != first["version"]
        assert third.result["metrics"]["inputs_hash"] == first["metrics"]["inputs_hash"]
    label = small_banking["train"][1][0]
    text = next(
        f"my question number {n}"
        for n in range(100)
        if not in_evaluation_set(label, f"my question number {n}")
    )
    kb = KnowledgeBaseData()
    kb.intent(label, Origin("test", None)).examples.append(text)
    with helploop.database.session() as session:
        import_knowledge_base(session, incoming=kb, source="test")  # merged: one example more
    runs_page = client.get("/operator/runs").get_data(as_text=True)
    examples = first["training_rows"] + first["evaluation_rows"]
    assert (
        f"{examples + 1} examples against {examples})" in runs_page and "knowledge base edited" in runs_page
    )
    fourth = start()
    assert "version" in fourth and fourth["training_rows"] == first["training_rows"] + 1
    assert fourth["metrics"]["inputs_hash"] != first["metrics"]["inputs_hash"]


def test_a_worker_retrains_on_schedule_and_announces_only_a_new_model(
    make_app: Any, small_banking: Any
) -> None:
    """HELPLOOP_TRAIN_EVERY_HOURS: a worker queues a run when none was queued within the period; the first
    builds a model (announced: a candidate waits), the next a day later has nothing new (not announced)."""
    from core.events import recent_events
    from training.jobs import Worker, schedule_due

    app, client = training_app(make_app, small_banking, train_every_hours=24)
    helploop = app.extensions["helploop"]
    worker = Worker(helploop.database, helploop.settings, worker_id="test")
    now = utcnow()
    with helploop.database.session() as session:
        (job,) = [j for j in schedule_due(session, helploop.settings, now=now) if j.kind == "train"]
        assert (job.params, job.created_by) == ({"onnx": True}, "schedule")
    assert worker.run_once() == job.id
    with helploop.database.session() as session:
        first = session.get(Job, job.id)
        assert first is not None and first.status == "succeeded" and first.result["version"]
        assert not [j for j in schedule_due(session, helploop.settings, now=now + timedelta(hours=23))]
        (later,) = [
            j
            for j in schedule_due(session, helploop.settings, now=now + timedelta(hours=25))
            if j.kind == "train"
        ]
    assert worker.run_once() == later.id
    with helploop.database.session() as session:
        assert session.get(Job, later.id).result["same_as"] == first.result["version"]
        announced = [e.text for e in recent_events(session, kind="job.finished")]
    assert announced == [
        f"Training run {job.id} succeeded: model {first.result['version']}, gate: no baseline "
        "(started by schedule)."
    ]
    page = client.get("/operator/runs").get_data(as_text=True)
    assert "Retrains by itself every 24.0 h after the last run" in page


def test_a_scheduled_model_goes_to_shadow_when_asked_and_nothing_else_is_there(
    make_app: Any, small_banking: Any
) -> None:
    """HELPLOOP_TRAIN_AUTO_SHADOW: the first model serves (nothing to shadow); the next, after an edit, is put
    in shadow by "schedule" (audited, announced); a third never replaces that shadow."""
    from core.events import recent_events
    from core.kb_files import KnowledgeBaseData, Origin
    from core.knowledge_base import import_knowledge_base
    from core.models import Deployment
    from training.gate import in_evaluation_set
    from training.jobs import Worker, schedule_due

    app, client = training_app(make_app, small_banking, train_every_hours=24, train_auto_shadow=True)
    helploop = app.extensions["helploop"]
    worker = Worker(helploop.database, helploop.settings, worker_id="test")
    label = small_banking["train"][1][0]
    texts = (
        f"my question number {n}"
        for n in range(1000)
        if not in_evaluation_set(label, f"my question number {n}")
    )

    def scheduled_run(hours: int) -> dict[str, Any]:
        kb = KnowledgeBaseData()
        kb.intent(label, Origin("test", None)).examples.append(next(texts))  # something new each day
        with helploop.database.session() as session:
            import_knowledge_base(session, incoming=kb, source="test")
            (job,) = [
                j for j in schedule_due(session, helploop.settings, now=utcnow() + timedelta(hours=hours))
            ]
            assert job.params == {"onnx": True, "auto_shadow": True}
        job_id = worker.run_once()
        with helploop.database.session() as session:
            done = session.get(Job, job_id)
            assert done is not None and done.status == "succeeded", done.error if done else None
            return {"id": job_id, **done.result}

    first = scheduled_run(0)
    assert first["auto_shadow"] == {
        "shadowed": False,
        "why": "it is the production model (the first one built)",
    }
    second = scheduled_run(25)
    assert second["auto_shadow"] == {"shadowed": True, "why": ""}
    with helploop.database.session() as session:
        row = session.scalars(select(Deployment).order_by(Deployment.id.desc())).first()
        assert row is not None and (row.production_version, row.shadow_version) == (
            first["version"],
            second["version"],
        )
        assert row.actor == "schedule" and row.reason.startswith("scheduled retrain: new model put in shadow")
        announced = [e.text for e in recent_events(session, kind="job.finished")]
    assert announced[0].startswith(
        f"Training run {second['id']} succeeded: model {second['version']}, gate: "
    )
    assert announced[0].endswith(", put in shadow (started by schedule).")
    page = client.get(f"/operator/runs/{second['id']}").get_data(as_text=True)
    assert "The schedule put this model in <strong>shadow</strong>" in page
    third = scheduled_run(50)
    assert third["auto_shadow"] == {"shadowed": False, "why": f"{second['version']} is in shadow"}
    page = client.get(f"/operator/runs/{third['id']}").get_data(as_text=True)
    assert f"Not put in shadow by the schedule: {second['version']} is in shadow." in page


def test_training_runs_are_scheduled_only_when_asked(
    make_app: Any, small_banking: Any, tmp_path: Path
) -> None:
    from core.settings import SettingsError, load_settings
    from serving.job_kinds import train_params

    app, client = training_app(make_app, small_banking)
    assert train_params(app.extensions["helploop"].settings) is None  # the default: no schedule
    assert "Retrains only when asked" in client.get("/operator/runs").get_data(as_text=True)
    with pytest.raises(SettingsError, match="train_every_hours must be 0 \\(no schedule\\) or 1 to 744"):
        load_settings({"instance_path": str(tmp_path), "train_every_hours": 0.5}, environ={})


def test_operator_sees_agreement_and_queues_a_reaggregation(make_app: Any) -> None:
    from core.models import Job

    app, client = signed_in_operator(make_app)
    page = client.get("/operator/").get_data(as_text=True)
    assert "Krippendorff" in page
    response = client.post(
        "/operator/reaggregate", data={"csrf_token": csrf_token(page), "method": "one_coin"}
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/operator/exports")
    jobs = client.get("/operator/exports").get_data(as_text=True)
    assert "Re-aggregation job 1 queued (one_coin)" in jobs and "reaggregate (one_coin)" in jobs
    with app.extensions["helploop"].database.session() as session:
        job = session.scalars(select(Job)).one()
        assert job.kind == "reaggregate" and job.params == {"method": "one_coin"} and job.created_by == "omar"
    assert (
        client.post(
            "/operator/reaggregate", data={"csrf_token": csrf_token(page), "method": "oracle"}
        ).status_code
        == 400
    )


def test_operator_settles_an_escalated_item_and_sees_shadow_agreement(
    make_app: Any, toy_bundles: Any
) -> None:
    from bot.engine import AnsweringEngine
    from core.registry import set_deployment

    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    client = app.test_client()
    client.post("/api/v1/chat", json={"message": "gronk the flibber please"})
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        item = session.scalars(select(ReviewItem)).one()
        item.status = "escalated"
        item_id = item.id
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    reviewer = app.test_client()
    login(reviewer, "rita")
    token = csrf_token(reviewer.get("/review/").get_data(as_text=True))
    assert (
        reviewer.post(
            f"/review/items/{item_id}/settle", data={"csrf_token": token, "label": "change_pin"}
        ).status_code
        == 403
    )
    login(client, "omar")
    page = client.get("/review/items?status=escalated").get_data(as_text=True)
    assert "gronk the flibber please" in page
    client.post(
        f"/review/items/{item_id}/settle", data={"csrf_token": csrf_token(page), "label": "change_pin"}
    )
    with helploop.database.session() as session:
        item = session.get(ReviewItem, item_id)
        assert (
            item.status == "resolved"
            and item.resolved_label == "change_pin"
            and item.resolved_confidence == 1.0
        )
        pair = session.scalars(select(VerifiedPair)).one()
        assert (pair.intent, pair.weight) == ("change_pin", 1.0)

    versions = [AnsweringEngine.load(path).version for path in toy_bundles.values()]
    with helploop.database.session() as session:
        set_deployment(
            session, production_version=versions[0], shadow_version=versions[1], actor="t", reason="t"
        )
    helploop.models.refresh()
    for message in ("where is my card", "change pin number", "close my account"):
        client.post("/api/v1/chat", json={"message": message})
    assert helploop.shadow.drain(10)
    runs = client.get("/operator/runs").get_data(as_text=True)
    assert versions[1] in runs and "100.0%" in runs


def test_operator_chooses_the_fine_tuning_recipe_from_the_runs_page(
    make_app: Any, small_banking: Any
) -> None:
    from core.models import Job

    app, client = signed_in_operator(make_app)
    page = client.get("/operator/runs").get_data(as_text=True)
    assert 'name="head_epochs"' in page
    assert 'name="self_training" value="1" checked' in page  # HELPLOOP_SELF_TRAINING is on by default
    token = csrf_token(page)
    # Nothing to train on yet: refused before a run is queued (it could only fail).
    empty = client.post("/operator/runs", data={"csrf_token": token}, follow_redirects=True)
    assert "Refused: the knowledge base is empty" in empty.get_data(as_text=True)
    with app.extensions["helploop"].database.session() as session:
        assert session.scalars(select(Job)).all() == []
    import_small_banking(app, small_banking)
    refused = client.post(
        "/operator/runs", data={"csrf_token": token, "fine_tune": "1", "head_epochs": "lots"}
    )
    assert refused.status_code == 302 and refused.headers["Location"].endswith("/operator/runs")
    assert "Refused: classification-head epochs" in client.get("/operator/runs").get_data(as_text=True)
    client.post("/operator/runs", data={"csrf_token": token, "fine_tune": "1", "head_epochs": "0"})
    client.post("/operator/runs", data={"csrf_token": token, "fine_tune": "1", "head_epochs": "2.5"})
    with app.extensions["helploop"].database.session() as session:
        jobs = session.scalars(select(Job).order_by(Job.id)).all()
        assert [job.params["fine_tune"] for job in jobs] == [{}, {"head_epochs": 2.5}]
    # The self-training box: ticked, unticked (the form says it was shown), or not on the form at all.
    for data in ({"self_training_shown": "1", "self_training": "1"}, {"self_training_shown": "1"}, {}):
        client.post("/operator/runs", data={"csrf_token": token, **data})
    with app.extensions["helploop"].database.session() as session:
        jobs = session.scalars(select(Job).order_by(Job.id)).all()[2:]
        assert [job.params.get("self_training") for job in jobs] == [True, False, None]


def test_operator_manages_accounts_from_the_accounts_page(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get("/operator/accounts").get_data(as_text=True)
    assert 'data-username="rita"' in page and "created by cli" in page
    token = csrf_token(page)

    # A new reviewer account; a weak password is refused and creates nothing.
    weak = operator.post(
        "/operator/accounts",
        data={"username": "nina", "role": "reviewer", "password": "short", "csrf_token": token},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Refused: password must have at least 10 characters" in weak and 'data-username="nina"' not in weak
    operator.post(
        "/operator/accounts",
        data={"username": "nina", "role": "reviewer", "password": PASSWORD, "csrf_token": token},
    )
    nina = app.test_client()
    assert login(nina, "nina").headers["Location"].endswith("/review/")
    assert nina.get("/operator/accounts").status_code == 403  # reviewers cannot manage accounts
    assert nina.post("/operator/accounts/rita", data={"action": "deactivate"}).status_code == 400  # no token

    # A new password ends the sessions opened with the old one.
    rita = app.test_client()
    login(rita, "rita")
    assert rita.get("/review/").status_code == 200
    operator.post(
        "/operator/accounts/rita",
        data={"action": "password", "password": "a brand new secret", "csrf_token": token},
    )
    assert rita.get("/review/").status_code == 302  # back to the login page
    assert login(rita, "rita").status_code == 401  # the old password no longer works

    # Deactivation ends nina's session at once; the reason is kept and shown escaped.
    done = operator.post(
        "/operator/accounts/nina",
        data={"action": "deactivate", "reason": "<b>left</b>", "csrf_token": token},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "nina deactivated." in done and "&lt;b&gt;left&lt;/b&gt;" in done and "<b>left</b>" not in done
    assert nina.get("/review/").status_code == 302
    refused = operator.post(
        "/operator/accounts/omar", data={"action": "deactivate", "csrf_token": token}, follow_redirects=True
    ).get_data(as_text=True)
    assert "you cannot deactivate your own account" in refused
    assert operator.get("/operator/").status_code == 200
    assert (
        operator.post("/operator/accounts/rita", data={"action": "delete", "csrf_token": token}).status_code
        == 400
    )
    with app.extensions["helploop"].database.session() as session:
        events = [(e.action, e.actor, name) for e, name in account_events(session)]
    assert ("password_reset", "omar", "rita") in events and ("deactivated", "omar", "nina") in events
    assert ("created", "omar", "nina") in events


def test_operator_reinstates_a_suspended_reviewer(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    add_user(app, "bart", "reviewer")
    with app.extensions["helploop"].database.session() as session:
        bart = session.scalars(select(User).where(User.username == "bart")).one()
        bart.gold_answered, bart.gold_correct = 5, 1
        suspend(session, user=bart, reason="accuracy on gold 1/5 below 60%")
    reviewer = app.test_client()
    login(reviewer, "bart")
    assert "Your reviewing is paused" in reviewer.get("/review/").get_data(as_text=True)
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get("/operator/accounts").get_data(as_text=True)
    assert "suspended: accuracy on gold 1/5 below 60%" in page and "Reinstate" in page
    no_reason = operator.post(
        "/operator/accounts/bart",
        data={"action": "reinstate", "reason": "", "csrf_token": csrf_token(page)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Refused: say why the reviewer is reinstated" in no_reason
    after = operator.post(
        "/operator/accounts/bart",
        data={"action": "reinstate", "reason": "retrained", "csrf_token": csrf_token(page)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "bart reinstated" in after and "gold 1/5 before; retrained" in after
    with app.extensions["helploop"].database.session() as session:
        bart = session.scalars(select(User).where(User.username == "bart")).one()
        assert bart.suspended_at is None and (bart.gold_answered, bart.gold_correct) == (0, 0)
    home = reviewer.get("/review/").get_data(as_text=True)  # same session, reviewing again
    assert "Your reviewing is paused" not in home and "Start reviewing" in home


def test_operator_reads_the_turn_log_and_works_the_handoff_inbox(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    chat = app.test_client()
    unsure = chat.post(
        "/api/v1/chat", json={"message": "plonk <b>zz</b> mail me at jo@example.com"}
    ).get_json()
    assert unsure["status"] in {"handoff", "clarify"}
    sure = chat.post("/api/v1/chat", json={"message": "where is my card"}).get_json()
    chat.post(f"/api/v1/sessions/{sure['session_id']}/handoff")
    chat.post(f"/api/v1/sessions/{sure['session_id']}/contact", json={"contact": "+44 20 7946 0958"})
    assert helploop.router.drain(10)

    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.get("/operator/conversations").status_code == 403  # originals are for operators
    assert reviewer.get(f"/operator/conversations/{unsure['session_id']}").status_code == 403

    operator = app.test_client()
    login(operator, "omar")
    waiting = 1 + (unsure["status"] == "handoff")
    assert f"{waiting} conversation{'s' if waiting > 1 else ''} waiting" in operator.get(
        "/operator/"
    ).get_data(as_text=True)
    inbox = operator.get("/operator/conversations").get_data(as_text=True)
    assert sure["session_id"] in inbox and "asked" in inbox  # the customer asked for a person
    assert (unsure["session_id"] in inbox) == (unsure["status"] == "handoff")
    everything = operator.get("/operator/conversations?view=all&q=EXAMPLE.COM").get_data(as_text=True)
    assert unsure["session_id"] in everything and sure["session_id"] not in everything
    # The list shows the message that matched, its words marked, linked to its turn in the transcript.
    with helploop.database.session() as session:
        hit = session.scalars(select(Turn.id).where(Turn.conversation_id == unsure["session_id"])).one()
    assert "<th>message with “EXAMPLE.COM”</th>" in everything
    assert (
        f'href="/operator/conversations/{unsure["session_id"]}?q=EXAMPLE.COM#turn-{hit}" class="hit">'
        "plonk &lt;b&gt;zz&lt;/b&gt; mail me at jo@<mark>example.com</mark></a>"
    ) in everything
    found = operator.get(f"/operator/conversations/{unsure['session_id']}?q=EXAMPLE.COM").get_data(
        as_text=True
    )
    assert "mail me at jo@<mark>example.com</mark>" in found  # and the transcript marks the words too
    assert operator.get("/operator/conversations?view=nope").status_code == 400
    assert operator.get("/operator/conversations/no-such-session").status_code == 404

    page = operator.get(f"/operator/conversations/{unsure['session_id']}").get_data(as_text=True)
    # The original (not redacted), escaped; the turn log's details; the review item it joined.
    assert "jo@example.com" in page and "&lt;b&gt;zz&lt;/b&gt;" in page and "<b>zz</b>" not in page
    with helploop.database.session() as session:
        turn = session.scalars(select(Turn).where(Turn.conversation_id == unsure["session_id"])).one()
        item_id = session.scalars(
            select(ReviewItemTurn.item_id).where(ReviewItemTurn.turn_id == turn.id)
        ).one()
        for name in turn.member_scores:
            assert f"<th>{name}</th>" in page
        assert turn.model_version in page and f"{turn.confidence:.2f}" in page
    assert f'<a href="/review/items/{item_id}">item #{item_id}</a> ({unsure["status"]}, pending)' in page

    detail = operator.get(f"/operator/conversations/{sure['session_id']}").get_data(as_text=True)
    assert "Waiting for a person: the customer asked" in detail
    assert "The customer left a contact: <strong>+44 20 7946 0958</strong>" in detail
    assert '<td class="contact">+44 20 7946 0958</td>' in inbox
    assert (
        operator.post(f"/operator/conversations/{sure['session_id']}/close", data={"note": "x"}).status_code
        == 400
    )  # no CSRF token
    handled = operator.post(
        f"/operator/conversations/{sure['session_id']}/close",
        data={"note": "phoned back", "csrf_token": csrf_token(detail)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Handoff handled by omar" in handled and "phoned back" in handled
    assert sure["session_id"] not in operator.get("/operator/conversations").get_data(as_text=True)
    again = operator.post(
        f"/operator/conversations/{sure['session_id']}/close",
        data={"csrf_token": csrf_token(detail)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Refused: already marked handled by omar" in again


def test_operator_erases_a_conversation_only_after_typing_erase(make_app: Any) -> None:
    from training.jobs import Worker

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    chat = app.test_client().post("/api/v1/chat", json={"message": "forget me: jo@example.com"}).get_json()
    assert app.extensions["helploop"].router.drain(10)
    operator = app.test_client()
    login(operator, "omar")
    url = f"/operator/conversations/{chat['session_id']}"
    page = operator.get(url).get_data(as_text=True)
    assert "Originals are kept until erased" in operator.get("/operator/conversations?view=all").get_data(
        as_text=True
    )
    refused = operator.post(
        url + "/erase", data={"confirm": "yes", "csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Refused: type &#34;erase&#34; to confirm." in refused and "jo@example.com" in refused
    assert operator.post(url + "/erase", data={"confirm": "erase"}).status_code == 400  # no CSRF token
    done = operator.post(
        url + "/erase", data={"confirm": "erase", "csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Conversation erased: 1 turns" in done and "write-ahead log is in use" not in done
    assert operator.get(url).status_code == 404
    helploop = app.extensions["helploop"]
    with helploop.database.session() as session:
        assert session.scalars(select(Turn)).all() == []
        # The search index's merge rewrites the whole index: a job, not part of the request.
        job = session.scalars(select(Job).where(Job.kind == "search_compact")).one()
        assert (job.status, job.params, job.created_by) == (
            "queued",
            {"conversations": [chat["session_id"]]},
            "omar",
        )
        job_id = job.id
        segments = "SELECT count(DISTINCT segid) FROM turns_text_idx"
        assert session.connection().exec_driver_sql(segments).scalar_one() > 1  # deletions kept apart
    assert f"Job {job_id} merges the search index" in done
    assert Worker(helploop.database, helploop.settings, worker_id="test").run_once() == job_id
    with helploop.database.session() as session:
        finished = session.get(Job, job_id)
        assert finished is not None and finished.status == "succeeded"
        assert finished.result["conversations"] == [chat["session_id"]] and finished.result["steps"] >= 1
        assert finished.result["checkpointed"] is True
        assert session.connection().exec_driver_sql(segments).scalar_one() <= 1  # merged
    jobs = operator.get("/operator/exports").get_data(as_text=True)
    assert f"search index merged after 1 erasure ({finished.result['steps']} steps)" in jobs
    # Where a long reader holds the write-ahead log, the page says the erased pages' older copies stay there.
    other = app.test_client().post("/api/v1/chat", json={"message": "forget me too"}).get_json()
    database = app.extensions["helploop"].database
    database.checkpoint = lambda: False  # type: ignore[method-assign]
    said = operator.post(
        f"/operator/conversations/{other['session_id']}/erase",
        data={"confirm": "erase", "csrf_token": csrf_token(page)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Conversation erased: 1 turns" in said and "write-ahead log is in use" in said
    # Erasures while a merge is still queued join it: one merge serves them all.
    third = app.test_client().post("/api/v1/chat", json={"message": "and me"}).get_json()
    joined = operator.post(
        f"/operator/conversations/{third['session_id']}/erase",
        data={"confirm": "erase", "csrf_token": csrf_token(page)},
        follow_redirects=True,
    ).get_data(as_text=True)
    with helploop.database.session() as session:
        queued = session.scalars(
            select(Job).where(Job.kind == "search_compact", Job.status == "queued")
        ).one()
        assert queued.id != job_id
        assert queued.params == {"conversations": [other["session_id"], third["session_id"]]}
    assert f"Job {queued.id} merges the search index" in said and f"Job {queued.id} merges" in joined


def test_a_question_no_intent_answers_becomes_a_new_intent_the_bot_learns(
    make_app: Any, small_banking: Any
) -> None:
    """Customers ask what the knowledge base does not cover -> the bot hands off -> reviewers say "none fits",
    proposing a new intent -> the operator sees the suggestion and creates the intent from it -> retrain and
    promote -> the bot answers that question."""
    from bot.engine import AnsweringEngine
    from core.knowledge_base import load_knowledge_base
    from core.models import Job
    from training.jobs import Worker

    app = make_app(
        register=False, load=False, ratelimit_enabled=False, gold_rate=0.0, model_loader=AnsweringEngine.load
    )
    helploop = app.extensions["helploop"]
    import_small_banking(app, small_banking)
    add_user(app, "omar", "operator")
    for name in ("ann", "bob", "cat"):
        add_user(app, name, "reviewer")
    operator = app.test_client()
    login(operator, "omar")

    def retrain_and_promote() -> str:
        page = operator.get("/operator/runs").get_data(as_text=True)
        assert operator.post("/operator/runs", data={"csrf_token": csrf_token(page)}).status_code == 302
        job_id = Worker(helploop.database, helploop.settings, worker_id="test").run_once()
        with helploop.database.session() as session:
            job = session.get(Job, job_id)
            assert job.kind == "train" and job.status == "succeeded", job.error
            version = str(job.result["version"])
        token = csrf_token(operator.get("/operator/runs").get_data(as_text=True))
        data = {
            "csrf_token": token,
            "action": "promote",
            "version": version,
            "reason": "test",
        }
        assert operator.post("/operator/deploy", data=data).status_code == 302
        helploop.models.refresh()
        assert helploop.models.state.production.version == version
        return version

    retrain_and_promote()
    questions = [
        "Can I order a card made of titanium metal?",
        "Do you sell titanium metal cards?",
        "I'd like my card in titanium metal",
    ]
    for question in questions:
        reply = operator.post("/api/v1/chat", json={"message": question}).get_json()
        # not answered; declined as off topic or not, it reaches review
        assert reply["status"] in {"handoff", "clarify", "off_topic"}, reply
    assert helploop.router.drain(10)
    for name in ("ann", "bob", "cat"):
        client = app.test_client()
        login(client, name)
        for _ in range(5):
            page = client.get("/review/next").get_data(as_text=True)
            if "There is nothing for you to review" in page:
                break
            item_id = re.search(r'action="/review/items/(\d+)"', page).group(1)
            data = {
                "csrf_token": csrf_token(page),
                "choice": "new_intent",
                "new_intent_text": "Titanium card",
            }
            assert client.post(f"/review/items/{item_id}", data=data).status_code == 302

    reviewer = app.test_client()
    login(reviewer, "ann")
    assert reviewer.get("/operator/suggestions").status_code == 403
    overview = operator.get("/operator/").get_data(as_text=True)
    assert re.search(r"[1-3] new-intent suggestions? from reviewers", overview)
    assert overview.count("out of scope (none fits)</span>") == 3  # the verified pairs' table
    page = operator.get("/operator/suggestions").get_data(as_text=True)
    assert "Titanium card" in page and "titanium metal" in page and 'id="none-fits-note"' in page

    # Before anyone makes an intent of it, a retraining learns the topic as out of scope: the bot hands an
    # unseen titanium question to a person, its top candidate no neighbouring intent.
    before = retrain_and_promote()
    with helploop.database.session() as session:
        run = session.scalars(select(Job).where(Job.kind == "train").order_by(Job.id.desc())).first()
        assert (run.result["crowd_pairs"], run.result["out_of_scope_pairs"]) == (3, 3)
        run_id = run.id
    run_page = operator.get(f"/operator/runs/{run_id}").get_data(as_text=True)
    assert re.search(r'id="out-of-scope-pairs">3 of them questions no intent answers', run_page)
    reply = operator.post("/api/v1/chat", json={"message": "Is a titanium metal card available?"}).get_json()
    assert reply["model_version"] == before and reply["status"] in {"handoff", "off_topic"}, reply
    with helploop.database.session() as session:
        turn = session.get(Turn, reply["turn_id"])
        assert turn.candidates[0]["intent"] == "oos", turn.candidates
    picked = re.findall(r'name="item" value="(\d+)"', page)
    assert 1 <= len(picked) <= 3
    form = {
        "item": picked,
        "name": "titanium_card",
        "title": "Titanium card",
        "answer": "We offer no metal cards.",
    }
    assert operator.post("/operator/suggestions/adopt", data=form).status_code == 400  # no CSRF token
    response = operator.post(
        "/operator/suggestions/adopt", data={**form, "csrf_token": csrf_token(page)}, follow_redirects=True
    )
    assert "Intent titanium_card created with 3 example questions" in response.get_data(as_text=True)
    assert "none open" in response.get_data(as_text=True)
    with helploop.database.session() as session:
        assert sorted(load_knowledge_base(session).intents["titanium_card"].examples) == sorted(questions)

    version = retrain_and_promote()
    reply = operator.post("/api/v1/chat", json={"message": "Is a titanium metal card available?"}).get_json()
    assert reply["model_version"] == version and reply["intent"] == "titanium_card", reply
    assert reply["answer"] == "We offer no metal cards."


def test_operator_adds_a_suggestion_to_an_existing_intent_or_dismisses_it(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    client = app.test_client()
    for message in ("<b>zorp</b> the quibbles", "blorft my wibble"):
        client.post("/api/v1/chat", json={"message": message})
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        first, second = session.scalars(select(ReviewItem).order_by(ReviewItem.id)).all()
        for item in (first, second):
            item.status, item.resolved_label, item.resolved_confidence = "resolved", "new_intent", 0.95
        ids = (first.id, second.id)
    add_user(app, "omar", "operator")
    login(client, "omar")
    page = client.get("/operator/suggestions").get_data(as_text=True)
    assert "&lt;b&gt;zorp&lt;/b&gt; the quibbles" in page and "<b>zorp" not in page
    assert page.count('<optgroup label="the bot\'s guesses">') == 2  # the toy model's top intents first
    token = csrf_token(page)
    refused = client.post(
        f"/operator/suggestions/{ids[0]}/existing",
        data={"csrf_token": token, "label": "no_such_intent"},
        follow_redirects=True,
    )
    assert "Not changed: unknown intent" in refused.get_data(as_text=True)
    client.post(f"/operator/suggestions/{ids[0]}/existing", data={"csrf_token": token, "label": "change_pin"})
    dismissed_page = client.post(
        f"/operator/suggestions/{ids[1]}/dismiss", data={"csrf_token": token}, follow_redirects=True
    ).get_data(as_text=True)
    assert (
        f"Suggestion {ids[1]} dismissed: retraining keeps its questions out of scope (handed to a person)."
        in dismissed_page
    )
    again = client.post(
        f"/operator/suggestions/{ids[1]}/dismiss", data={"csrf_token": token}, follow_redirects=True
    )
    assert f"Not changed: review item {ids[1]} is not an open new-intent suggestion" in again.get_data(
        as_text=True
    )
    with helploop.database.session() as session:
        added, dismissed = (session.get(ReviewItem, i) for i in ids)
        assert (added.resolved_label, added.settled_by) == ("change_pin", "omar")
        assert (dismissed.resolved_label, dismissed.settled_by) == ("new_intent", "omar")
        pairs = session.scalars(select(VerifiedPair).order_by(VerifiedPair.item_id)).all()
        assert [(p.text, p.intent, p.weight, p.item_id) for p in pairs] == [
            ("<b>zorp</b> the quibbles", "change_pin", 1.0, ids[0]),
            ("blorft my wibble", "oos", 1.0, ids[1]),  # dismissed: none fits, for the operator too
        ]
    assert "none open" in client.get("/operator/suggestions").get_data(as_text=True)


def test_operator_exports_the_crowds_work_as_a_job_and_downloads_it(make_app: Any) -> None:
    from core.models import Job
    from training.jobs import Worker

    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    client = app.test_client()
    client.post("/api/v1/chat", json={"message": "glorp my zingle, mail jo@example.com"})
    assert helploop.router.drain(10)
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.get("/operator/exports").status_code == 403
    login(client, "omar")
    page = client.get("/operator/exports").get_data(as_text=True)
    assert "none yet" in page
    assert client.post("/operator/exports", data={"what": "items", "format": "jsonl"}).status_code == 400
    refused = client.post(
        "/operator/exports",
        data={"csrf_token": csrf_token(page), "what": "answers", "format": "jsonl"},
        follow_redirects=True,
    )
    assert "Refused: answers exports as csv, not &#39;jsonl&#39;" in refused.get_data(as_text=True)
    queued = client.post(
        "/operator/exports",
        data={"csrf_token": csrf_token(page), "what": "items", "format": "jsonl"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Export job 1 queued (items, jsonl)." in queued and '<meta http-equiv="refresh"' in queued
    assert '<td class="time"></td>' in queued  # not started yet: no time to show
    assert client.get("/operator/exports/1/download").status_code == 404  # not done yet
    assert Worker(helploop.database, helploop.settings, worker_id="test").run_once() == 1
    with helploop.database.session() as session:
        job = session.get(Job, 1)
        assert job.status == "succeeded" and job.result["rows"] == 1, job.error
    page = client.get("/operator/exports").get_data(as_text=True)
    assert "download" in page and "1 rows" in page and '<meta http-equiv="refresh"' not in page
    assert re.search(r'<td class="time">[\d.]+ (s|min)</td>', page)  # how long the export took
    download = client.get("/operator/exports/1/download")
    assert download.status_code == 200 and download.mimetype == "application/x-ndjson"
    assert "attachment" in download.headers["Content-Disposition"]
    (row,) = [json.loads(line) for line in download.get_data(as_text=True).splitlines()]
    download.close()  # send_file streams from an open file
    assert row["text"] == "glorp my zingle, mail [EMAIL]" and row["status"] == "pending"
    with helploop.database.session() as session:
        session.get(Job, 1).result = {**job.result, "file": "../helploop.sqlite3"}
    assert client.get("/operator/exports/1/download").status_code == 404  # a name, never a path
    assert client.get("/operator/exports/99/download").status_code == 404


def test_without_a_backup_folder_the_pages_say_so_and_back_up_now_is_refused(make_app: Any) -> None:
    app, client = signed_in_operator(make_app)
    assert "No scheduled backups of the database" in client.get("/operator/").get_data(as_text=True)
    page = client.get("/operator/exports").get_data(as_text=True)
    assert "No scheduled backups: set <code>HELPLOOP_BACKUP_DIR</code>" in page and "Back up now" not in page
    assert "helploop_backup_newest_timestamp_seconds{" not in client.get("/metrics").get_data(
        as_text=True
    )  # nothing to alert on
    refused = client.post(
        "/operator/backups", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Refused: set HELPLOOP_BACKUP_DIR (a folder for the backups) first" in refused
    with app.extensions["helploop"].database.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_operator_sees_the_backups_backs_up_now_and_cancels_background_jobs(
    make_app: Any, tmp_path: Path
) -> None:
    from core.backup import scheduled_backup
    from training.jobs import Worker, enqueue

    folder = tmp_path / "backups"
    app = make_app(ratelimit_enabled=False, backup_dir=str(folder), backup_keep=3)
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    reviewer = app.test_client()
    login(reviewer, "rita")
    client = app.test_client()
    login(client, "omar")
    page = client.get("/operator/exports").get_data(as_text=True)
    assert f"Once a day into <code>{folder}</code> (an SQLite copy, or with PostgreSQL" in page
    assert "keeping the newest 3." in page
    assert "No backup in the folder yet" in page and 'id="backup-files"' not in page
    assert "No backup yet" in client.get("/operator/").get_data(as_text=True)
    own = {"csrf_token": csrf_token(reviewer.get("/review/").get_data(as_text=True))}
    assert reviewer.post("/operator/backups", data=own).status_code == 403
    assert client.post("/operator/backups").status_code == 400  # no CSRF token
    queued = client.post(
        "/operator/backups", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Backup job 1 queued." in queued and '<meta http-equiv="refresh"' in queued
    twice = client.post("/operator/backups", data={"csrf_token": csrf_token(page)}, follow_redirects=True)
    assert "Backup job 1 is already queued or running." in twice.get_data(as_text=True)
    assert Worker(helploop.database, helploop.settings, worker_id="test").run_once() == 1
    with helploop.database.session() as session:
        job = session.get(Job, 1)
        assert (job.kind, job.status, job.created_by) == ("backup", "succeeded", "omar"), job.error
    (written,) = folder.glob("helploop-*.sqlite3")
    (folder / "helploop-notes.sqlite3").write_text("not a backup of ours")  # matches the glob, no stamp
    page = client.get("/operator/exports").get_data(as_text=True)
    size = f"{written.stat().st_size / 1048576:.1f} MB"
    assert f"<td><code>{written.name}</code></td>" in page and f"<code>{written.name}</code> · {size}" in page
    assert "helploop-notes" not in page and 'id="backup-stale"' not in page
    # The newest toy model serves (no deployment yet): its bundle was copied beside the backup.
    assert "models: 1 copied, 0 already there" in page and "returns to, 1 version (" in page
    assert (folder / "models" / job.result["models"]["copied"][0] / "manifest.json").is_file()
    overview = client.get("/operator/").get_data(as_text=True)
    assert re.search(r"Newest backup \d+ s ago</a>\s*</p>", overview)
    taken = datetime.strptime(written.name, "helploop-%Y%m%dT%H%M%SZ.sqlite3").replace(tzinfo=UTC)
    gauge = f'helploop_backup_newest_timestamp_seconds{{folder="{folder}"}} '
    (line,) = [x for x in client.get("/metrics").get_data(as_text=True).splitlines() if x.startswith(gauge)]
    assert (
        float(line.removeprefix(gauge)) == taken.timestamp()
    )  # Prometheus drops trailing zeros: compare values
    # Only a backup from three days ago: the daily schedule has missed a day, and both pages say so.
    written.unlink()
    old = scheduled_backup(
        helploop.settings.database_url, folder, keep=3, now=utcnow() - timedelta(days=3, hours=1)
    )[0]
    page = client.get("/operator/exports").get_data(as_text=True)
    assert "The newest backup is more than two days old" in page and old.path.name in page
    overview = client.get("/operator/").get_data(as_text=True)
    assert 'Newest backup 3.0 days ago</a> <span class="warn">the daily backup has missed a day' in overview
    # Background jobs other than training runs can be cancelled here; a training run cannot.
    with helploop.database.session() as session:
        export_id = enqueue(
            session, kind="export", params={"what": "items", "format": "csv"}, created_by="x"
        ).id
        train_id = enqueue(session, kind="train", params={}, created_by="x").id
    page = client.get("/operator/exports").get_data(as_text=True)
    assert f'action="/operator/jobs/{export_id}/cancel"' in page and f"/jobs/{train_id}/" not in page
    token = {"csrf_token": csrf_token(page)}
    assert client.post(f"/operator/jobs/{train_id}/cancel", data=token).status_code == 404
    assert client.post("/operator/jobs/99/cancel", data=token).status_code == 404
    cancelled = client.post(f"/operator/jobs/{export_id}/cancel", data=token, follow_redirects=True)
    assert f"Cancel requested for job {export_id}." in cancelled.get_data(as_text=True)
    again = client.post(f"/operator/jobs/{export_id}/cancel", data=token, follow_redirects=True)
    assert f"job {export_id} already cancelled" in again.get_data(as_text=True)
    with helploop.database.session() as session:
        assert session.get(Job, export_id).status == "cancelled"
        assert session.get(Job, train_id).status == "queued"
        session.get(Job, train_id).status = "cancelled"  # out of the worker's way
        prune_id = enqueue(session, kind="prune_models", params={"keep": 5}, created_by="omar").id
    assert Worker(helploop.database, helploop.settings, worker_id="test").run_once() == prune_id
    page = client.get("/operator/exports").get_data(as_text=True)
    assert "0 bundles pruned, 0.0 MB freed" in page  # the toy bundles lie outside the model folder


def test_the_overview_plots_the_last_30_days(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    client = app.test_client()
    answered = [
        client.post("/api/v1/chat", json={"message": m}).get_json() for m in ("change pin number",) * 3
    ]
    assert all(r["status"] == "answered" for r in answered)
    client.post("/api/v1/chat", json={"message": "qwxz vbnm"})
    client.post("/api/v1/feedback", json={"turn_id": answered[0]["turn_id"], "helpful": False})
    add_user(app, "omar", "operator")
    login(client, "omar")
    page = client.get("/operator/").get_data(as_text=True)
    trend = page[page.index('<svg id="trend"') : page.index("</svg>", page.index('<svg id="trend"'))]
    assert trend.count('fill="#1e8e3e"') == 1  # today's answered share
    assert re.search(
        r"4 turns, 3 answered, \d clarify \(0 picked\), \d handoff, 0 off topic, 1 thumbs down", trend
    )
    assert 'id="answered-7">75.0%' in page and "<polyline" in trend
    # One thumbs-down in four turns: 25 %, drawn halfway up a 0-50 % scale.
    assert 'id="thumbs-down-top">50 %' in page and re.search(r'points="[\d.]+,60\.0"', trend)


def test_the_thumbs_down_line_has_a_scale_that_shows_a_few_per_cent() -> None:
    from datetime import date, timedelta

    from admin_ui.operator import trend_chart
    from core.registry import DayTraffic

    start = date(2026, 11, 1)
    days = [
        DayTraffic(start + timedelta(days=i), answered=90, clarify=5, handoff=5, unhelpful=i % 3)
        for i in range(3)
    ]
    days.append(DayTraffic(start + timedelta(days=3)))  # a day without traffic: no point
    chart = trend_chart(days, width=400, height=100)
    assert chart["rate_top"] == 0.05  # the worst day is 2 %: the scale tops at 5 %, not 100 %
    assert chart["line"] == "50.0,100.0 150.0,80.0 250.0,60.0"
    busy = trend_chart([DayTraffic(start, answered=10, unhelpful=7)], width=100, height=100)
    assert busy["rate_top"] == 1.0 and busy["line"] == "50.0,30.0"


def test_a_did_you_mean_click_is_recorded_resumed_counted_and_shown_to_operators_only(make_app: Any) -> None:
    from core.registry import log_turn

    app = make_app(ratelimit_enabled=False, gold_rate=0.0, review_audit_rate=0.0)
    helploop = app.extensions["helploop"]
    client = app.test_client()
    session_id = client.post("/api/v1/chat", json={"message": "change pin number"}).get_json()["session_id"]
    with helploop.database.session() as session:  # the bot asks "did you mean" (the toy model rarely does)
        asked = log_turn(
            session,
            conversation_id=session_id,
            user_text="my card and my pin",
            status="clarify",
            intent=None,
            answer="Did you mean:",
            confidence=0.5,
            candidates=[
                {"intent": "change_pin", "probability": 0.5},
                {"intent": "card_arrival", "probability": 0.4},
            ],
            member_scores={},
            model_version="v1",
            latency_ms=1.0,
            suggested=["change_pin", "card_arrival"],
        )
        session.commit()
        asked_id = asked.id
    helploop.router.submit(asked_id, ["clarify"], None)
    assert helploop.router.drain(10)
    reply = client.post(
        "/api/v1/chat", json={"message": "/card_arrival", "session_id": session_id}
    ).get_json()
    assert reply["status"] == "answered" and reply["intent"] == "card_arrival"
    assert reply["suggestions"] == [{"intent": "change_pin", "title": "Change my PIN"}]  # its follow-up
    with helploop.database.session() as session:
        turns = session.scalars(
            select(Turn).where(Turn.conversation_id == session_id).order_by(Turn.id)
        ).all()
        assert [(t.served_by, t.chosen_intent) for t in turns] == [
            ("production", None),
            ("production", "card_arrival"),
            ("suggestion", None),
        ]
        assert turns[2].suggested == ["change_pin"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'helploop_clarify_choices_total{rank="2"} 1.0' in metrics
    # a reload offers the chips each reply showed, titled from the knowledge base
    transcript = client.get(f"/api/v1/sessions/{session_id}").get_json()["turns"]
    assert transcript[1]["suggestions"] == [
        {"intent": "change_pin", "title": "Change my PIN"},
        {"intent": "card_arrival", "title": "Where is my card?"},
    ]
    assert transcript[2]["suggestions"] == [{"intent": "change_pin", "title": "Change my PIN"}]
    assert [t["chosen_intent"] for t in transcript] == [None, "card_arrival", None]
    # a second click does not change the customer's answer
    client.post("/api/v1/chat", json={"message": "/change_pin", "session_id": session_id})
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'helploop_clarify_choices_total{rank="1"}' not in metrics
    # the overview counts the click once, as the clarify turn's outcome, not as a question of its own
    add_user(app, "omar", "operator")
    login(client, "omar")
    page = client.get("/operator/").get_data(as_text=True)
    assert re.search(r"Questions \(2\)", page)
    listing = client.get("/operator/conversations?view=all").get_data(as_text=True)
    # the click reads as such, with the question it answered under it
    question = '<div class="muted question">question: my card and my pin</div>'
    assert f"<td>clicked change_pin{question}</td>" in listing and "/change_pin" not in listing
    choices = page[
        page.index('id="clarify-choices"') : page.index("</p>", page.index('id="clarify-choices"'))
    ]
    assert 'asked "did you mean" 1 time;' in choices.replace("&#34;", '"')
    assert "<strong>1</strong> (100.0%)" in choices and "choice 2: 1" in choices
    assert "carry no weight" in choices  # nothing checked yet
    table = page[page.index('id="choice-sets"') : page.index("</table>", page.index('id="choice-sets"'))]
    assert re.search(r">card_arrival</a> · <a [^>]*>change_pin</a></td><td>1</td>", table)
    assert "card_arrival 1 · nothing 0" in table
    assert 'id="answered-7">50.0%' in page and 'id="resolved-7">100.0%' in page
    assert re.search(r"2 turns, 1 answered, 1 clarify \(1 picked\), 0 handoff", page)
    # once people have settled questions with a pick, the overview says how often the pick was right
    from tests.crowd_feedback.test_choices import settled_history

    with helploop.database.session() as session:
        checkers = [
            create_user(session, username=name, password="correct horse battery", role="reviewer")
            for name in ("chk1", "chk2")
        ]
        settled_history(session, checkers, right=4, wrong=1, lone=0)
        session.commit()
    page = client.get("/operator/").get_data(as_text=True)
    assert 'id="pick-accuracy">80.0%</strong>; random clicks would have been right 33.3%' in page
    assert "chance-corrected accuracy 0.70, weight 0.20" in page  # (4 - 5/3) / (5 - 5/3); 5 / (5 + 20)
    assert "complaint-pick-trust" not in page  # no pick after "that's wrong" checked yet
    # picks after "that's wrong" are checked apart, with a record of their own
    from tests.crowd_feedback.test_choices import complaint_history

    with helploop.database.session() as session:
        complaint_history(session, checkers, right=3, wrong=1)
        session.commit()
    page = client.get("/operator/").get_data(as_text=True)
    assert 'id="pick-accuracy">80.0%</strong>' in page  # the "did you mean" record as it was
    complaint = page[
        page.index('id="complaint-pick-trust"') : page.index("</span>", page.index("complaint-pick"))
    ]
    assert (
        "label 3 times out of 4" in complaint and "<strong>75.0%</strong>; random clicks 33.3%" in complaint
    )
    assert "chance-corrected accuracy 0.62, weight 0.17" in complaint  # (3 - 4/3) / (4 - 4/3); 4 / (4 + 20)
    # the transcript shows what the bot offered and what the customer clicked
    transcript_page = client.get(f"/operator/conversations/{session_id}").get_data(as_text=True)
    offered = (
        '<th>did you mean</th><td class="shown-choices">change_pin · <strong>card_arrival</strong> (clicked)'
    )
    assert offered in transcript_page
    assert '<th>chips offered</th><td class="shown-choices">change_pin</td>' in transcript_page
    # a click reads as one, not as "/card_arrival" typed
    assert '<strong>Customer:</strong> <span class="muted">clicked</span> card_arrival' in transcript_page
    assert "<strong>Customer:</strong> /card_arrival" not in transcript_page
    # the operator's item page shows the pick; a reviewer's page for the same item does not
    with helploop.database.session() as session:
        item_id = session.scalars(
            select(ReviewItemTurn.item_id).where(ReviewItemTurn.turn_id == asked_id)
        ).one()
    item_page = client.get(f"/review/items/{item_id}").get_data(as_text=True)
    assert 'id="customer-pick"' in item_page and "clicked <strong>card_arrival</strong>" in item_page
    client.post("/logout", data={"csrf_token": csrf_token(page)})
    add_user(app, "ann", "reviewer")
    login(client, "ann")
    review_page = client.get("/review/next", follow_redirects=True).get_data(as_text=True)
    assert "my card and my pin" in review_page and "customer-pick" not in review_page
    assert "clicked" not in review_page


def test_operator_reads_one_item_with_its_judgements_and_posterior_and_settles_it_there(
    make_app: Any,
) -> None:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    client = app.test_client()
    for message in ("zap the <i>frobnicator</i>", "zap the <i>frobnicator</i> now"):
        client.post("/api/v1/chat", json={"message": message})
        assert helploop.router.drain(10)
    for name in ("ann", "bob", "cat"):
        add_user(app, name, "reviewer")
    add_user(app, "omar", "operator")
    with helploop.database.session() as session:
        item = session.scalars(select(ReviewItem)).one()
        item_id = item.id
        users = {u.username: u.id for u in session.scalars(select(User))}
        for name, label in (("ann", "change_pin"), ("bob", "exchange_rate"), ("cat", "new_intent")):
            session.add(
                Judgement(
                    item_id=item_id,
                    reviewer_id=users[name],
                    label=label,
                    new_intent_text="frobnicator" if label == "new_intent" else None,
                    member_checks={"zap the <i>frobnicator</i> now": name != "bob"},
                )
            )
        item.status, item.resolved_label, item.resolved_confidence = "escalated", "change_pin", 0.4
        item.bot_answer = "Cards arrive in **5–7 days**.\n\n<script>alert(1)</script>"
    reviewer = app.test_client()
    login(reviewer, "ann")
    assert reviewer.get(f"/review/items/{item_id}").status_code == 403
    login(client, "omar")
    assert client.get("/review/items/999999").status_code == 404
    page = client.get(f"/review/items/{item_id}").get_data(as_text=True)
    assert "zap the &lt;i&gt;frobnicator&lt;/i&gt;" in page and "<i>frobnicator" not in page
    assert re.search(r"zap the &lt;i&gt;frobnicator&lt;/i&gt; now</td><td>2</td><td>1</td>", page)
    judgements = page[page.index('id="judgements"') : page.index("</table>", page.index('id="judgements"'))]
    assert judgements.count("<tr>") == 4 and "0.80" in judgements and "frobnicator" in judgements
    posterior = page[
        page.index('<svg id="posterior"') : page.index("</svg>", page.index('<svg id="posterior"'))
    ]
    assert "change_pin" in posterior and "exchange_rate" in posterior and "new_intent" in posterior
    assert "Leading: <strong>change_pin</strong>" in page
    # the answer as the customer saw it: markdown rendered, anything else escaped
    answer = page[page.index('id="bot-answer"') : page.index("</blockquote>", page.index('id="bot-answer"'))]
    assert "Cards arrive in <strong>5–7 days</strong>." in answer and "**" not in answer
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer and "<script>" not in answer
    settled = client.post(
        f"/review/items/{item_id}/settle",
        data={"csrf_token": csrf_token(page), "label": "exchange_rate", "back": "item"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Resolved: <strong>exchange_rate</strong> (posterior 1.000) · settled by omar" in settled
    assert settled.count("<td>exchange_rate</td>") == 3  # bob's judgement and both questions as pairs
    items = client.get("/review/items?status=resolved").get_data(as_text=True)
    assert f'href="/review/items/{item_id}"' in items


def test_live_chat_an_operator_takes_over_and_hands_back_to_the_bot(make_app: Any) -> None:
    """Handoff → an operator replies on the conversation page → the customer's widget gets it by polling →
    what the customer writes goes to the operator (no bot turn, nothing for review) → marked handled → the bot
    answers again."""
    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    customer = app.test_client()
    first = customer.post("/api/v1/chat", json={"message": "where is my card"}).get_json()
    assert first["status"] == "answered"
    session_id = first["session_id"]
    api = f"/api/v1/sessions/{session_id}"
    assert customer.get(f"{api}/messages").get_json() == {
        "session_id": session_id,
        "agent_active": False,
        "waiting_for_person": False,
        "agent_typing": False,
        "messages": [],
    }
    operator = app.test_client()
    login(operator, "omar")
    page_url = f"/operator/conversations/{session_id}"
    page = operator.get(page_url).get_data(as_text=True)
    assert 'id="reply-form"' not in page  # nobody asked for a person: nothing to reply to
    refused = operator.post(
        f"{page_url}/messages", data={"text": "hi", "csrf_token": csrf_token(page)}, follow_redirects=True
    )
    assert "Refused: this conversation is not waiting for a person" in refused.get_data(as_text=True)

    quiet = operator.get("/operator/conversations/inbox.json").get_json()
    assert quiet["waiting"] == 0 and quiet["customer_wrote"] == 0
    from core.kb_files import KnowledgeBaseData, Origin
    from core.knowledge_base import import_knowledge_base

    kb = KnowledgeBaseData()
    card = kb.intent("card_arrival", Origin("test", None))
    card.examples.append("where is my card")
    card.title, card.answer = "Card arrival", "Soon.</script><script>alert(1)</script>"
    with app.extensions["helploop"].database.session() as session:
        import_knowledge_base(session, incoming=kb, source="test")
    # The operator's pages mark them as online (the reviewer's do not count): the customer hears a person can
    # join now.
    assert customer.post(f"{api}/handoff").get_json()["people_online"] is True
    with helploop_db(app).session() as session:
        seen = dict(session.execute(select(User.username, User.last_seen_at)).all())
    assert seen["omar"] is not None and seen["rita"] is None
    asked = operator.get("/operator/conversations/inbox.json").get_json()
    assert asked["waiting"] == 1 and asked["signature"] != quiet["signature"]
    assert operator.get("/operator/conversations/inbox.json").get_json() == asked  # nothing new: same
    assert f'data-signature="{asked["signature"]}"' in operator.get("/operator/conversations").get_data(
        as_text=True
    )
    page = operator.get(page_url).get_data(as_text=True)
    assert 'id="reply-form"' in page and "live_chat.js" in page and "Your first reply takes" in page
    # The knowledge base's answers ride along as JSON data for the reply box, escaped so none can end the tag.
    canned = re.search(r'<script type="application/json" id="canned-answers">(.*?)</script>', page, re.S)
    assert canned and json.loads(canned.group(1)) == {
        "card_arrival": "Soon.</script><script>alert(1)</script>"
    }
    assert "<script>alert(1)" not in page
    assert '<optgroup label="What the bot considered"><option value="card_arrival">Card arrival' in page
    assert operator.post(f"{page_url}/messages", data={"text": "no token"}).status_code == 400  # CSRF
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.post(f"{page_url}/messages", data={"text": "hi"}).status_code in (400, 403)
    assert reviewer.get(f"{page_url}/messages.json").status_code == 403
    sent = operator.post(
        f"{page_url}/messages",
        data={"text": "Hi, this is <b>Omar</b>. Let me check.", "csrf_token": csrf_token(page)},
    )
    assert sent.status_code == 302 and sent.headers["Location"].endswith("#live-chat")
    page = operator.get(page_url).get_data(as_text=True)
    assert "Hi, this is &lt;b&gt;Omar&lt;/b&gt;. Let me check." in page  # escaped
    assert "<strong>omar</strong> is chatting with the customer" in page

    polled = customer.get(f"{api}/messages").get_json()
    assert polled["agent_active"] is True and polled["waiting_for_person"] is True
    (message,) = polled["messages"]
    assert message["sender"] == "agent" and message["text"] == "Hi, this is <b>Omar</b>. Let me check."
    assert "omar" not in json.dumps(polled)  # the operator's account name is never shown to customers
    assert customer.get(f"{api}/messages?after={message['id']}").get_json()["messages"] == []
    bad = customer.get(f"{api}/messages?after=-1")
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_after"
    assert customer.get("/api/v1/sessions/0123456789abcdef/messages").status_code == 404

    helploop = app.extensions["helploop"]
    turns_before = len(_turns(app))
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        routed = session.scalar(select(func.count()).select_from(ReviewItemTurn))
    reply = customer.post("/api/v1/chat", json={"message": "Card ending 4242", "session_id": session_id})
    body = reply.get_json()
    assert body["status"] == "agent" and body["turn_id"] is None and body["answer"] == ""
    assert body["model_version"] is None and isinstance(body["message_id"], int)
    rasa = customer.post("/webhooks/rest/webhook", json={"sender": session_id, "message": "are you there?"})
    assert rasa.get_json() == []  # the Rasa channel stays quiet too
    assert len(_turns(app)) == turns_before  # no bot turn: nothing predicted, nothing to review
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        assert session.scalar(select(func.count()).select_from(ReviewItemTurn)) == routed
    seen = operator.get(f"{page_url}/messages.json?after={message['id']}").get_json()
    assert seen["agent"] == "omar" and seen["waiting"] is True
    assert [(m["sender"], m["text"]) for m in seen["messages"]] == [
        ("customer", "Card ending 4242"),
        ("customer", "are you there?"),
    ]
    inbox = operator.get("/operator/conversations").get_data(as_text=True)
    assert "chatting: omar" in inbox and "customer wrote" in inbox
    wrote = operator.get("/operator/conversations/inbox.json").get_json()
    assert wrote["customer_wrote"] == 1 and wrote["signature"] != asked["signature"]
    assert reviewer.get("/operator/conversations/inbox.json").status_code == 403
    transcript = customer.get(api).get_json()
    assert transcript["agent_active"] is True and transcript["waiting_for_person"] is True
    assert [m["sender"] for m in transcript["messages"]] == ["agent", "customer", "customer"]
    metrics = customer.get("/metrics").get_data(as_text=True)
    assert 'helploop_live_chat_messages_total{sender="customer"} 2.0' in metrics
    assert 'helploop_live_chat_messages_total{sender="agent"} 1.0' in metrics

    operator.post(f"{page_url}/close", data={"note": "refunded", "csrf_token": csrf_token(page)})
    after = customer.get(f"{api}/messages").get_json()
    assert after["agent_active"] is False and after["waiting_for_person"] is False
    assert customer.get(api).get_json()["waiting_for_person"] is False  # dealt with: the widget stops asking
    back = customer.post(
        "/api/v1/chat", json={"message": "when will my card arrive", "session_id": session_id}
    )
    assert back.get_json()["status"] == "answered" and isinstance(back.get_json()["turn_id"], int)
    assert len(_turns(app)) == turns_before + 1


def test_the_customer_rates_the_live_chat_and_operators_read_satisfaction(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    customer, operator = app.test_client(), app.test_client()
    login(operator, "omar")
    session_id = customer.post("/api/v1/chat", json={"message": "where is my card"}).get_json()["session_id"]
    api = f"/api/v1/sessions/{session_id}"
    # nobody from the team chatted yet: nothing to rate
    early = customer.post(f"{api}/rating", json={"rating": 5})
    assert early.status_code == 409 and early.get_json()["error"]["code"] == "nothing_to_rate"
    assert customer.get(api).get_json()["can_rate"] is False
    customer.post(f"{api}/handoff")
    page_url = f"/operator/conversations/{session_id}"
    page = operator.get(page_url).get_data(as_text=True)
    operator.post(f"{page_url}/messages", data={"text": "Hi, Omar here.", "csrf_token": csrf_token(page)})
    assert customer.get(api).get_json()["can_rate"] is False  # still chatting
    operator.post(f"{page_url}/close", data={"note": "", "csrf_token": csrf_token(page)})
    transcript = customer.get(api).get_json()
    assert transcript["can_rate"] is True and transcript["rating"] is None
    for body, code in (
        ({"rating": 6}, "invalid_rating"),
        ({"rating": "5"}, "invalid_rating"),
        ({"rating": True}, "invalid_rating"),
        ({}, "invalid_rating"),
        ({"rating": 4, "comment": "x" * 501}, "too_long"),
    ):
        refused = customer.post(f"{api}/rating", json=body)
        assert refused.status_code == 400 and refused.get_json()["error"]["code"] == code, body
    assert customer.post("/api/v1/sessions/0123456789abcdef/rating", json={"rating": 5}).status_code == 404
    rated = customer.post(f"{api}/rating", json={"rating": 4, "comment": "quick, <b>thanks</b>"})
    assert rated.status_code == 200
    assert rated.get_json() == {
        "session_id": session_id,
        "rating": 4,
        "message": "Thank you for your feedback.",
    }
    assert customer.get(api).get_json()["rating"] == 4
    assert 'helploop_chat_ratings_total{rating="4"} 1.0' in customer.get("/metrics").get_data(as_text=True)
    page = operator.get(page_url).get_data(as_text=True)
    assert "rated the chat with omar <strong>4 out of 5</strong>: “quick, &lt;b&gt;thanks&lt;/b&gt;”" in page
    overview = operator.get("/operator/").get_data(as_text=True)
    block = overview[overview.index('id="satisfaction"') : overview.index("<h2>Answer quality")]
    assert "rated it 1 time" in block and "CSAT <strong>100.0%</strong>" in block and "mean 4.00" in block
    assert "<td>omar</td><td>1</td><td>100%</td><td>4.00</td>" in block
    # the inbox lists unhappy customers apart, to follow up
    listing = operator.get("/operator/conversations?view=all").get_data(as_text=True)
    assert "<td>4/5</td>" in listing
    assert "0 conversations whose live chat" in operator.get("/operator/conversations?view=unhappy").get_data(
        as_text=True
    )
    customer.post(f"{api}/rating", json={"rating": 2})
    unhappy = operator.get("/operator/conversations?view=unhappy").get_data(as_text=True)
    assert "1 conversation whose live chat the customer rated 1 or 2 out of 5" in unhappy
    assert session_id in unhappy and "<td>2/5</td>" in unhappy
    assert operator.get("/operator/conversations?view=bogus").status_code == 400


def _turns(app: Any) -> list[Turn]:
    with app.extensions["helploop"].database.session() as session:
        return list(session.scalars(select(Turn)))


def test_operator_sets_how_sure_the_bot_must_be_without_retraining(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    helploop = app.extensions["helploop"]
    operator = app.test_client()
    login(operator, "omar")
    with helploop.database.session() as session:  # a model built with two encoders lists both
        newest = session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())).first()
        newest.metrics = {"encoders": ["minilm", "all_mpnet_base_v2"]}
    page = operator.get("/operator/models").get_data(as_text=True)
    assert "as each model was built" in page and 'id="precision-chart"' in page
    assert "<td>minilm + all_mpnet_base_v2</td>" in page
    options = re.findall(r'name="target" id="target-\d+" value="([0-9.]+)"', page)
    assert options == ["0.80", "0.85", "0.90", "0.95", "0.97", "0.99"]
    assert "0.90 (built for)" in page  # the toy bundles are built for precision 0.9
    token = csrf_token(page)
    queries = ["where is my card", "card pin", "exchange my card", "change pin", "close account", "pin rate"]
    customer = app.test_client()

    def answered() -> int:
        replies = [customer.post("/api/v1/chat", json={"message": q}).get_json() for q in queries]
        return sum(r["status"] == "answered" for r in replies)

    built = answered()
    production = helploop.models.state.production
    built_gate = production.gate
    refused = operator.post("/operator/precision", data={"target": "0.80", "csrf_token": token})
    assert "Refused: give a reason" in operator.get("/operator/models").get_data(as_text=True)
    assert refused.status_code == 302
    operator.post("/operator/precision", data={"target": "0.93", "reason": "x", "csrf_token": token})
    assert "0.93 is not offered" in operator.get("/operator/models").get_data(as_text=True)
    assert operator.post("/operator/precision", data={"target": "0.80", "reason": "x"}).status_code == 400
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.get("/operator/models").status_code == 403

    operator.post(
        "/operator/precision", data={"target": "0.80", "reason": "fewer handoffs", "csrf_token": token}
    )
    helploop.models.refresh()  # what the background poll does every few seconds
    assert helploop.models.state.production is production  # the same model, no reload
    assert production.gate.target_precision == 0.8 and helploop.models.target_precision == 0.8
    lenient = answered()
    operator.post("/operator/precision", data={"target": "0.99", "reason": "complaints", "csrf_token": token})
    helploop.models.refresh()
    strict = answered()
    assert lenient >= built >= strict and lenient > strict
    page = operator.get("/operator/models").get_data(as_text=True)
    assert "precision 0.99" in page and "complaints" in page and "fewer handoffs" in page  # the audit trail
    operator.post("/operator/precision", data={"target": "built", "reason": "back", "csrf_token": token})
    helploop.models.refresh()
    assert production.gate is built_gate and answered() == built


def test_a_pruned_model_is_marked_on_the_models_page_and_its_run_offers_no_rollout(make_app: Any) -> None:
    from core.models import Job, utcnow

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    helploop = app.extensions["helploop"]
    operator = app.test_client()
    login(operator, "omar")
    with helploop.database.session() as session:
        older, newest = session.scalars(select(ModelVersion).order_by(ModelVersion.id)).all()
        job = Job(kind="train", status="succeeded", progress=1.0, created_by="omar")
        job.result = {"version": older.version}
        session.add(job)
        session.flush()
        job_id, old_version, new_version = job.id, older.version, newest.version
    before = operator.get(f"/operator/runs/{job_id}").get_data(as_text=True)
    assert 'id="action-promote"' in before and 'id="pruned"' not in before
    with helploop.database.session() as session:  # as `helploop models prune` leaves it (files kept here)
        row = session.scalars(select(ModelVersion).where(ModelVersion.version == old_version)).one()
        row.pruned_at, row.pruned_by = utcnow(), "omar"
    page = operator.get("/operator/models").get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-version="([^"]+)">(.*?)</tr>', page, flags=re.S))
    assert "pruned " in rows[old_version] and "bundle deleted" in rows[old_version]
    assert "serving (newest model, no deployment yet)" in rows[new_version]
    assert "helploop models prune" in page
    after = operator.get(f"/operator/runs/{job_id}").get_data(as_text=True)
    assert 'id="pruned"' in after and "can no longer be deployed" in after and "by omar" in after
    assert 'id="action-promote"' not in after and 'id="action-shadow"' not in after
    refused = operator.post(
        "/operator/deploy",
        data={"action": "shadow", "version": old_version, "reason": "x", "csrf_token": csrf_token(after)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert f"{old_version} was pruned on" in refused


def test_an_operator_prunes_old_bundles_from_the_models_page_as_a_job(make_app: Any) -> None:
    from pathlib import Path

    from core.models import Job, OpsEvent
    from core.registry import register_model_version
    from training.jobs import Worker

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    helploop = app.extensions["helploop"]
    model_dir = Path(helploop.settings.model_dir)
    with helploop.database.session() as session:  # three models built into the model folder, newest last
        for version in ("m1", "m2", "m3"):
            (model_dir / version).mkdir(parents=True)
            (model_dir / version / "weights.bin").write_bytes(b"x" * 1_500_000)
            register_model_version(
                session,
                version=version,
                bundle_path=str(model_dir / version),
                data_hash="h" * 64,
                metrics={},
                kb_version_id=None,
            )
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get("/operator/models").get_data(as_text=True)
    assert "Nothing to prune while keeping the newest 5." in page  # the toy bundles lie outside the folder
    page = operator.get("/operator/models?keep=1").get_data(as_text=True)
    preview = page.split('id="prune-preview"')[1].split("</table>")[0]
    assert re.findall(r"<tr><td>(m\d)</td><td>([0-9.]+) MB</td></tr>", preview) == [
        ("m2", "1.5"),
        ("m1", "1.5"),
    ]
    assert "Delete 2 bundles (3.0 MB)" in page
    token = csrf_token(page)
    assert operator.post("/operator/models/prune", data={"keep": "1"}).status_code == 400  # no CSRF token
    refused = operator.post(
        "/operator/models/prune", data={"keep": "none", "csrf_token": token}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Refused: keep must be a whole number from 1 to 10000" in refused
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.post("/operator/models/prune", data={"keep": "1"}).status_code in (400, 403)
    with helploop.database.session() as session:
        assert session.scalars(select(Job).where(Job.kind == "prune_models")).all() == []
    queued = operator.post(
        "/operator/models/prune", data={"keep": "1", "csrf_token": token}, follow_redirects=True
    )
    assert "Pruning queued as job" in queued.get_data(as_text=True)
    with helploop.database.session() as session:
        job = session.scalars(select(Job).where(Job.kind == "prune_models")).one()
        assert job.params == {"keep": 1, "keep_rollbacks": 2, "actor": "omar"}
    assert Worker(helploop.database, helploop.settings).run_once() == job.id
    with helploop.database.session() as session:
        done = session.get(Job, job.id)
        assert done.status == "succeeded", done.error
        assert done.result == {"pruned": ["m2", "m1"], "bytes": 3_000_000, "failed": {}}
        event = session.scalars(select(OpsEvent).where(OpsEvent.kind == "models.pruned")).one()
        assert event.data["actor"] == "omar"
    assert not (model_dir / "m1").exists() and (model_dir / "m3").is_dir()
    after = operator.get("/operator/models?keep=1").get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-version="([^"]+)">(.*?)</tr>', after, flags=re.S))
    assert "pruned " in rows["m1"] and "pruned " in rows["m2"] and "serving" in rows["m3"]
    assert "Nothing to prune while keeping the newest 1." in after


def helploop_db(app: Any) -> Any:
    return app.extensions["helploop"].database


def test_the_overview_shows_each_reviewers_pace_and_agreement(make_app: Any) -> None:
    """Time per judgement is measured from taking the item (through the review page as well), and the
    overview shows per reviewer: judgements, agreement, median time with a 'fast' marker, and a scatter."""
    from datetime import timedelta

    from core.models import utcnow
    from tests.conftest import answer_next

    app = make_app(ratelimit_enabled=False, gold_rate=0.0, review_audit_rate=0.0)
    helploop = app.extensions["helploop"]
    chat = app.test_client()
    for message in ("plonk my foreign money conversion", "qwxz vbnm", "zzkk wobble frob"):
        assert chat.post("/api/v1/chat", json={"message": message}).get_json()["status"] != "answered"
    assert helploop.router.drain(10)
    for name in ("ann", "bob", "cat"):
        add_user(app, name, "reviewer")
    add_user(app, "omar", "operator")
    # ann takes 30 s and 40 s per item, bob 1 s and 2 s; they agree, so both items resolve.
    with helploop.database.session() as session:
        people = {u.username: u for u in session.scalars(select(User))}
        taken = utcnow() - timedelta(minutes=5)
        first_item = None
        for name, times in (("ann", (30, 40)), ("bob", (1, 2))):
            for spent in times:
                item = answer_next(
                    session,
                    people[name],
                    "exchange_rate",
                    policy=helploop.policy,
                    known_intents=["exchange_rate"],
                    taken=taken,
                    seconds=spent,
                )
                first_item = first_item or item.id
        session.commit()
        assert (
            session.scalar(
                select(func.count()).select_from(ReviewItem).where(ReviewItem.status == "resolved")
            )
            == 2
        )
    # cat answers the third item through the review page: the time is measured there too.
    cat = app.test_client()
    login(cat, "cat")
    page = cat.get("/review/next").get_data(as_text=True)
    item_id = int(re.search(r'action="/review/items/(\d+)"', page).group(1))
    assert f'name="active_seconds" id="active-seconds" value="" data-item="{item_id}"' in page
    form = {"csrf_token": csrf_token(page), "choice": "not_a_question", "active_seconds": "not a number"}
    assert cat.post(f"/review/items/{item_id}", data=form).status_code == 302
    with helploop.database.session() as session:
        seconds = session.scalars(select(Judgement.seconds).where(Judgement.item_id == item_id)).one()
        assert seconds is not None and 0.0 < seconds < 60.0  # garbage from the page: the claim's age
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get("/operator/").get_data(as_text=True)
    card = page[page.index('id="reviewers"') :]
    table = card[card.index('id="reviewer-table"') : card.index("</table>")]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr><td>(\w+)</td>.*?</tr>", table, re.S)}
    assert set(rows) == {"ann", "bob", "cat"}  # reviewers; omar judged nothing
    assert "<td>2</td>" in rows["ann"] and "100%" in rows["ann"] and "35.0 s" in rows["ann"]
    assert "1.5 s" in rows["bob"] and "fast" in rows["bob"] and "fast" not in rows["ann"]
    chart = card[card.index('<svg id="reviewer-chart"') : card.index("</svg>")]
    assert chart.count("<circle") == 2  # ann and bob have resolved items; cat's item is still open
    assert chart.count('fill="#d93025" fill-opacity') == 1 and "bob: median 1.5 s, agreement 100%" in chart
    effort = card[card.index('id="review-effort"') : card.index("</p>", card.index('id="review-effort"'))]
    assert "5 judgements" in effort and "2 items resolved" in effort
    # 73 s and a bit over 5 judgements, 2 resolved: (73 + cat's) / 2 seconds.
    assert (
        re.search(r'id="cost-per-item">3[67] s<', effort) and "Time spent: <strong>1.2 min</strong>" in effort
    )
    # The item page gives each judgement's time; bob's second is flagged.
    item_page = operator.get(f"/review/items/{first_item}").get_data(as_text=True)
    judged = item_page[
        item_page.index('id="judgements"') : item_page.index("</table>", item_page.index('id="judgements"'))
    ]
    assert "<td>30 s</td>" in judged and '<td>1 s <strong class="warn">fast</strong></td>' in judged
    home = app.test_client()
    login(home, "ann")
    assert 'id="stat-seconds">35 s' in home.get("/review/").get_data(as_text=True)


def test_the_runs_page_compares_the_canary_on_live_traffic_then_the_promotion(make_app: Any) -> None:
    """Live chat under a canary: each arm's turns are counted on its own; the Runs page, the admin API and
    `deploy status` compare them; after the promotion, the page compares production before and after."""
    from bot.engine import AnsweringEngine

    app = make_app(ratelimit_enabled=False, review_audit_rate=0.0)
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    helploop.models.refresh()
    production = helploop.models.state.production.version
    with helploop.database.session() as session:
        paths = [m.bundle_path for m in session.scalars(select(ModelVersion))]
    other = next(v for v in (AnsweringEngine.load(p).version for p in paths) if v != production)
    page = operator.get("/operator/runs").get_data(as_text=True)
    assert "No canary is serving" in page and "No model change yet" in page
    form = {
        "csrf_token": csrf_token(page),
        "action": "canary",
        "version": other,
        "share": "0.5",
        "reason": "try",
    }
    assert operator.post("/operator/deploy", data=form).status_code == 302
    helploop.models.refresh()
    chat = app.test_client()
    for index in range(40):  # a new session each time: the stable hash splits them between the arms
        chat.post("/api/v1/chat", json={"message": "change pin number" if index % 3 else "qwxz vbnm"})
    with helploop.database.session() as session:
        per_arm = dict(session.execute(select(Turn.served_by, func.count()).group_by(Turn.served_by)).all())
        answered = dict(
            session.execute(
                select(Turn.served_by, func.count()).where(Turn.status == "answered").group_by(Turn.served_by)
            ).all()
        )
    assert per_arm["canary"] > 5 and per_arm["production"] > 5 and sum(per_arm.values()) == 40
    page = operator.get("/operator/runs").get_data(as_text=True)
    card = page[page.index('id="canary-live"') : page.index('id="promotion-effects"')]
    assert f"canary <code>{other}</code> answered {per_arm['canary']} questions" in card
    assert f"production <code>{production}</code> {per_arm['production']}" in card
    assert "once each arm has answered 200 questions (not yet)" in card  # the guard waits for traffic
    table = card[card.index('id="canary-table"') : card.index("</table>")]
    first_row = table[
        table.index("<td>answered</td>") : table.index("</tr>", table.index("<td>answered</td>"))
    ]
    share = answered.get("canary", 0) / per_arm["canary"]
    assert f'{share * 100:.1f}% <span class="muted">of {per_arm["canary"]}</span>' in first_row
    api_user = _token(app, "omar")
    live = operator.get("/api/v1/admin/deployment", headers=api_user).get_json()["canary_live"]
    assert live["candidate"]["questions"] == per_arm["canary"] and live["baseline"]["version"] == production
    assert [d["outcome"] for d in live["differences"]] == [
        "answered",
        "answered or picked",
        "handoffs",
        "thumbs-down",
        "audited precision",
    ]
    # End the canary from its card: production stays; the same for a shadow.
    assert 'id="end-canary"' in card and 'id="end-shadow"' not in page
    ended = operator.post(
        "/operator/deploy",
        data={"csrf_token": csrf_token(page), "action": "end_canary", "reason": "enough"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "No canary is serving" in ended and f"Done: production {production} (by omar: enough)" in ended
    form = {"csrf_token": csrf_token(page), "action": "shadow", "version": other, "reason": "watch"}
    assert operator.post("/operator/deploy", data=form).status_code == 302
    page = operator.get("/operator/runs").get_data(as_text=True)
    assert f'id="end-shadow">End shadow <code>{other}</code>' in page
    form = {"csrf_token": csrf_token(page), "action": "end_shadow", "reason": "seen enough"}
    assert operator.post("/operator/deploy", data=form).status_code == 302
    again = operator.post("/operator/deploy", data=form, follow_redirects=True).get_data(as_text=True)
    assert "Refused: no shadow is serving" in again and 'id="end-shadow"' not in again
    # Promote the candidate; production's turns before and after the change are compared.
    form = {"csrf_token": csrf_token(page), "action": "promote", "version": other, "reason": "ship"}
    assert operator.post("/operator/deploy", data=form).status_code == 302
    helploop.models.refresh()
    for _ in range(6):
        chat.post("/api/v1/chat", json={"message": "change pin number"})
    page = operator.get("/operator/runs").get_data(as_text=True)
    effects = page[page.index('id="promotion-effects"') :]
    assert f"<code>{production}</code> → <code>{other}</code>" in effects and "No canary is serving" in page
    assert effects.count("<circle") == 2  # one dumbbell: before and after
    body = operator.get("/api/v1/admin/deployment", headers=api_user).get_json()
    assert body["canary_live"] is None
    (effect,) = body["promotion_effects"]
    assert (effect["baseline"]["version"], effect["candidate"]["version"]) == (production, other)
    assert effect["baseline"]["questions"] == per_arm["production"] and effect["candidate"]["questions"] == 6


def _token(app: Any, username: str) -> dict[str, str]:
    from crowd_feedback.reviewers import create_api_token

    with app.extensions["helploop"].database.session() as session:
        _, secret = create_api_token(session, username=username, name="test", actor="test")
    return {"Authorization": f"Bearer {secret}"}


def test_the_before_after_figures_are_cached_for_a_minute_per_deployment(
    db_session: Any, monkeypatch: Any
) -> None:
    from crowd_feedback import outcomes as operator_page  # where the Runs page and the admin API read them

    calls: list[int] = []
    monkeypatch.setattr(operator_page, "_effects_cache", {})  # this test's fake clock stays in this test
    monkeypatch.setattr(operator_page, "promotion_effects", lambda session, days: calls.append(days) or [])
    clock = [1000.0]
    monkeypatch.setattr(operator_page.time, "monotonic", lambda: clock[0])
    for _ in range(3):  # the page refreshing every 3 s while a run trains
        assert operator_page.cached_effects(db_session, 7) == []
        clock[0] += 3
    assert calls == [7]
    operator_page.cached_effects(db_session, 8)  # a new deployment row: computed again at once
    clock[0] += 61
    operator_page.cached_effects(db_session, 8)  # a minute later: again
    assert calls == [7, 7, 7]


def test_a_new_reviewer_sees_practice_questions_and_the_expected_answers(make_app: Any) -> None:
    from crowd_feedback.review import add_gold_item

    app = make_app(ratelimit_enabled=False, gold_rate=0.0, review_qualification_items=2, gold_min_answered=2)
    helploop = app.extensions["helploop"]
    add_user(app, "nina", "reviewer")
    add_user(app, "omar", "operator")
    nina, omar = app.test_client(), app.test_client()
    login(nina, "nina")
    login(omar, "omar")
    # No check questions yet: no practice is promised, and the overview says what is missing.
    assert 'id="practice"' not in nina.get("/review/").get_data(as_text=True)
    assert 'id="no-check-questions"' in omar.get("/operator/").get_data(as_text=True)
    with helploop.database.session() as session:
        for text in ("my card still has not arrived", "when will my card come"):
            add_gold_item(session, text=text, label="card_arrival", policy=helploop.policy)
    assert 'id="no-check-questions"' not in omar.get("/operator/").get_data(as_text=True)
    home = nina.get("/review/").get_data(as_text=True)
    assert 'id="practice"' in home and "0 of 2 done" in home
    page = nina.get("/review/next").get_data(as_text=True)
    assert "Practice question 1 of 2: the answer is\n   known" in page
    # A check question from the knowledge base has no turn behind it; the page still shows what the bot
    # makes of it, with its suggestions, like any real item (else every such item would give itself away).
    assert 'id="bot-answer"' in page and 'id="choice-search" data-key="1"' not in page
    item_id = int(re.search(r'action="/review/items/(\d+)"', page).group(1))
    form = {"csrf_token": csrf_token(page), "choice": "exchange_rate"}
    after = nina.post(f"/review/items/{item_id}", data=form, follow_redirects=True).get_data(as_text=True)
    assert (
        "Practice question 1 of 2. Not quite: you answered “exchange_rate”; the expected answer is "
        "“card_arrival”." in after
    )
    assert "Practice question 2 of 2" in after  # the next page is the second practice question
    item_id = int(re.search(r'action="/review/items/(\d+)"', after).group(1))
    form = {"csrf_token": csrf_token(after), "choice": "card_arrival"}
    done = nina.post(f"/review/items/{item_id}", data=form, follow_redirects=True).get_data(as_text=True)
    assert "Practice question 2 of 2. Right; the expected answer is “card_arrival”." in done
    # 1 of 2 is below the 60 % asked: the practice ends in a suspension, before any real item.
    assert "Your reviewing is paused: accuracy on gold 1/2 below 60%" in done and 'id="practice"' not in done
    assert "50% (2 answered)" in done


def test_the_gold_page_flags_a_contested_key_and_retires_it(make_app: Any) -> None:
    from crowd_feedback.review import ReviewPolicy, add_gold_item, next_item, submit_judgement

    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    policy = ReviewPolicy(gold_rate=1.0, qualification_items=0, gold_min_answered=100)
    with helploop.database.session() as session:
        key = add_gold_item(session, text="I want to change my PIN", label="card_arrival", policy=policy)
        for i in range(5):  # everybody answers otherwise: the key is wrong
            reviewer = create_user(session, username=f"crowd{i}", password=PASSWORD, role="reviewer")
            assert next_item(session, reviewer=reviewer, policy=policy) is key
            submit_judgement(
                session,
                item_id=key.id,
                reviewer=reviewer,
                label="change_pin",
                answer_ok=None,
                known_intents=["card_arrival", "change_pin"],
                policy=policy,
            )
        fine = add_gold_item(session, text="where is my card", label="card_arrival", policy=policy)
        key_id, fine_id = key.id, fine.id
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get("/operator/gold").get_data(as_text=True)
    summary = " ".join(page[page.index('id="gold-summary"') :].split("</p>")[0].split())
    assert "<strong>2</strong> active · 5 answers · 0% matched the key" in summary
    assert '<span class="warn">1 contested</span>' in page
    table = page[page.index('id="gold"') :]
    assert table.index(f'data-gold="{key_id}" class="contested"') < table.index(f'data-gold="{fine_id}"')
    row = table[
        table.index(f'data-gold="{key_id}"') : table.index("</tr>", table.index(f'data-gold="{key_id}"'))
    ]
    assert "0%" in row and "change_<wbr>pin (5)" in row
    retired = operator.post(
        f"/operator/gold/{key_id}/retire", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert (
        f"Check question {key_id} retired; its answers no longer count in 5 reviewer gold records." in retired
    )
    assert f'data-gold="{key_id}"' not in retired and "<strong>1</strong> active · 0 answers" in retired
    with helploop.database.session() as session:
        assert [u.gold_answered for u in session.scalars(select(User).where(User.role == "reviewer"))] == [
            0
        ] * 5
    empty = operator.post(
        "/operator/gold", data={"csrf_token": csrf_token(page), "per_intent": "2"}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Not changed: the knowledge base is empty" in empty
    assert operator.post(f"/operator/gold/{fine_id}/retire").status_code == 400  # no CSRF token
    add_user(app, "rita", "reviewer")
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.get("/operator/gold").status_code == 403


def test_a_resolved_item_becomes_a_check_question_from_its_page(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0, review_audit_rate=0.0)
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    app.test_client().post("/api/v1/chat", json={"message": "qwxz vbnm"})  # handed off: a review item
    helploop.router.drain(10)
    with helploop.database.session() as session:
        item = session.scalars(select(ReviewItem)).one()
        item.status, item.resolved_label, item_id = "resolved", "change_pin", item.id
    page = operator.get(f"/review/items/{item_id}").get_data(as_text=True)
    assert 'id="make-gold"' in page and "the key “change_pin”" in page
    made = operator.post(
        f"/review/items/{item_id}/gold", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Check question" in made and "→ change_pin" in made
    again = operator.post(
        f"/review/items/{item_id}/gold", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Not changed: the same question is check question" in again
    gold = operator.get("/operator/gold").get_data(as_text=True)
    assert "<strong>1</strong> active" in gold and "qwxz vbnm" in gold


def test_the_run_page_says_what_self_training_added_or_left_out(make_app: Any) -> None:
    from core.models import Job

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    helploop = app.extensions["helploop"]
    operator = app.test_client()
    login(operator, "omar")
    summary = {"threshold": 0.8, "traffic_rows": 900, "pseudo_labelled": 640, "intents": 4}
    results = [
        {"self_training": {**summary, "kept": True}},
        {
            "self_training": {
                **summary,
                "kept": False,
                "held_out_log_loss_without": 0.31,
                "held_out_log_loss_with": 0.4,
            }
        },
        {"self_training": None, "traffic_questions": 12},
    ]
    with helploop.database.session() as session:
        version = session.scalars(select(ModelVersion.version)).first()
        jobs = [Job(kind="train", status="succeeded", progress=1.0, created_by="omar") for _ in results]
        for job, result in zip(jobs, results, strict=True):
            job.result = {"version": version, "training_rows": 20, "crowd_pairs": 0, **result}
        session.add_all(jobs)
        session.flush()
        ids = [job.id for job in jobs]
    pages = [operator.get(f"/operator/runs/{i}").get_data(as_text=True) for i in ids]
    lines = [re.search(r'<p[^>]*id="self-training">(.*?)</p>', page, flags=re.S) for page in pages]
    assert all(lines)
    kept, dropped, none = (m.group(1) for m in lines if m)
    assert "of 900 questions from the turn log, 640" in kept and "at least 80" in kept
    assert "were added as training-only examples" in kept
    assert "<strong>left out</strong>" in dropped and "log loss 0.4000 against 0.3100" in dropped
    assert "No self-training: 12 questions" in none


def test_a_reviewer_reads_the_bots_answer_as_the_customer_saw_it(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    client = app.test_client()
    client.post("/api/v1/chat", json={"message": "zap the frobnicator"})
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        item = session.scalars(select(ReviewItem)).one()
        item.bot_answer = "Open **Cards** and tap [Track](https://example.com/track).\n<b>bold?</b>"
    add_user(app, "ann", "reviewer")
    login(client, "ann")
    page = client.get("/review/next", follow_redirects=True).get_data(as_text=True)
    answer = page[page.index('id="bot-answer"') : page.index("</blockquote>", page.index('id="bot-answer"'))]
    assert "Open <strong>Cards</strong> and tap" in answer
    assert '<a href="https://example.com/track">Track</a>' in answer
    assert "&lt;b&gt;bold?&lt;/b&gt;" in answer and "<b>" not in answer


def test_a_transcript_shows_the_bots_answers_as_the_customer_saw_them(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    chat = app.test_client()
    sure = chat.post("/api/v1/chat", json={"message": "where is my card"}).get_json()
    assert sure["status"] == "answered"
    assert chat.post("/api/v1/chat", json={"message": "that's wrong", "session_id": sure["session_id"]})
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        first = session.scalars(
            select(Turn).where(Turn.conversation_id == sure["session_id"]).order_by(Turn.id)
        ).first()
        assert first is not None
        first.answer = (
            "Track it in **Cards**:\n\n- open the app\n- tap *Track*\n\n<img src=x onerror=alert(1)>"
        )
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get(f"/operator/conversations/{sure['session_id']}").get_data(as_text=True)
    answer = page[page.index('class="bot-answer"') : page.index("</div>", page.index('class="bot-answer"'))]
    assert "Track it in <strong>Cards</strong>:" in answer and "<li>tap <em>Track</em></li>" in answer
    assert "&lt;img src=x onerror=alert(1)&gt;" in answer and "<img" not in answer
    # the "that's wrong" turn ranked nothing: no empty "top candidates" row
    assert page.count("<th>top candidates</th>") == 1


def test_the_overview_measures_agreement_on_the_newest_judged_items(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import admin_ui.operator as operator_page
    from crowd_feedback.agreement import krippendorff_alpha
    from crowd_feedback.review import judgement_answers

    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    for name in ("ann", "bob"):
        add_user(app, name, "reviewer")
    add_user(app, "omar", "operator")
    with helploop.database.session() as session:
        ids = {u.username: u.id for u in session.scalars(select(User))}
        labels = [
            ("change_pin", "change_pin"),
            ("card_arrival", "exchange_rate"),
            ("card_arrival", "card_arrival"),
        ]
        for i, (first, second) in enumerate(labels):
            item = ReviewItem(text=f"agree {i}", status="pending")
            session.add(item)
            session.flush()
            session.add(Judgement(item_id=item.id, reviewer_id=ids["ann"], label=first))
            session.add(Judgement(item_id=item.id, reviewer_id=ids["bob"], label=second))
        session.commit()
        everything = krippendorff_alpha(judgement_answers(session))
        newest = krippendorff_alpha(judgement_answers(session, latest=2))
    assert everything == everything and newest == newest and f"{everything:.3f}" != f"{newest:.3f}"
    client = app.test_client()
    login(client, "omar")
    page = client.get("/operator/").get_data(as_text=True)
    assert f'over all judgements: <strong id="alpha">{everything:.3f}</strong>' in page
    monkeypatch.setattr(operator_page, "ALPHA_ITEMS", 2)
    page = client.get("/operator/").get_data(as_text=True)
    assert f'the newest 2 judged items: <strong id="alpha">{newest:.3f}</strong>' in page


def test_the_gate_charts_zoom_on_the_precisions_drawn_and_keep_circles_inside_the_plot() -> None:
    from admin_ui.operator import gate_charts

    assert gate_charts({}) is None
    reliability = [
        {"confidence": 0.99, "accuracy": 1.0, "count": 900},  # a big bin in the top right corner
        {"confidence": 0.05, "accuracy": 0.0, "count": 4},
    ]
    gate = {
        "candidate": {"curves": {"risk_coverage": [[0.5, 1.0], [1.0, 0.93]], "reliability": reliability}},
        "production": {"curves": {"risk_coverage": [[1.0, 0.91]], "reliability": []}},
    }
    charts = gate_charts(gate)
    assert charts is not None
    left, top, right, bottom = charts["left"], charts["top"], charts["right"], charts["bottom"]
    # The precision axis starts at 0.9 (the lowest precision drawn, rounded down), not at 0.5.
    assert [t["text"] for t in charts["precision_ticks"]] == ["0.90", "0.95", "1.00"]
    candidate = charts["curves"][0]["points"].split()
    assert candidate[-1] == f"{right:.1f},{bottom - 0.3 * charts['size']:.1f}"  # coverage 1, precision 0.93
    big, small = charts["circles"]
    assert big["r"] == 10.0 and 2.0 < small["r"] < 3.0
    for circle in charts["circles"]:
        assert left + circle["r"] <= circle["x"] <= right - circle["r"]
        assert top + circle["r"] <= circle["y"] <= bottom - circle["r"]
    assert [entry["name"] for entry in charts["legend"]] == ["candidate", "production"]


def test_the_overview_says_whether_a_retrain_would_learn_something(make_app: Any) -> None:
    app, client = signed_in_operator(make_app)
    page = client.get("/operator/").get_data(as_text=True)
    assert re.search(
        r'<p id="retrain-hint"><span class="muted">Nothing labelled is new since it was trained', page
    )
    with app.extensions["helploop"].database.session() as session:
        item = ReviewItem(text="q", reasons=["clarify"])
        session.add(item)
        session.flush()
        session.add_all(
            [
                VerifiedPair(item_id=item.id, text="where is my card", intent="card_arrival", weight=1.0),
                VerifiedPair(
                    item_id=item.id, text="unsure", intent="card_arrival", weight=0.5
                ),  # not trained on
            ]
        )
    page = client.get("/operator/").get_data(as_text=True)
    assert (
        '<p id="retrain-hint"><a href="/operator/runs">New since it was trained: 1 verified pair: '
        "a retrain would learn them</a></p>"
    ) in page


def test_the_inbox_shows_the_question_behind_a_typed_request_for_a_person(make_app: Any) -> None:
    """ "Can I talk to a human?" is the last message of most conversations in the inbox: under it the list
    shows the question the customer asked before it (escaped)."""
    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    chat = app.test_client()
    asked = chat.post("/api/v1/chat", json={"message": "where is my card <b>now</b>"}).get_json()
    person = chat.post(
        "/api/v1/chat", json={"message": "can I talk to a human?", "session_id": asked["session_id"]}
    ).get_json()
    assert person["status"] == "handoff"
    operator = app.test_client()
    login(operator, "omar")
    inbox = operator.get("/operator/conversations").get_data(as_text=True)
    question = '<div class="muted question">question: where is my card &lt;b&gt;now&lt;/b&gt;</div>'
    assert f"can I talk to a human?{question}" in inbox


def test_the_inbox_states_the_team_hours_and_what_customers_are_told_outside_them(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    import admin_ui.operator

    monkeypatch.setattr(admin_ui.operator, "utcnow", lambda: datetime(2026, 12, 5, 15, 0, tzinfo=UTC))
    app = make_app(
        ratelimit_enabled=False,
        team_hours="Mon-Fri 09:00-17:30, Sat 10:00-14:00",
        team_timezone="Europe/London",
    )
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    page = client.get("/operator/conversations").get_data(as_text=True)
    assert re.search(r'<span id="team-hours">(.*?)</span>', page, re.S).group(1) == (  # type: ignore[union-attr]
        "Team hours: Mon–Fri 09:00–17:30, Sat 10:00–14:00 (Europe/London); <strong>away now</strong>: with "
        "nobody online, a customer who is handed to a person is told you are back on Monday at 09:00 GMT."
    )
    monkeypatch.setattr(admin_ui.operator, "utcnow", lambda: datetime(2026, 12, 5, 11, 0, tzinfo=UTC))
    assert "(Europe/London); within them now." in client.get("/operator/conversations").get_data(as_text=True)


def test_with_no_team_hours_the_inbox_says_what_setting_them_would_do(make_app: Any) -> None:
    _, operator = signed_in_operator(make_app)
    page = operator.get("/operator/conversations").get_data(as_text=True)
    assert "No team hours are set: with nobody online, a customer who is handed to a person is told" in page
    assert "<code>HELPLOOP_TEAM_HOURS</code>" in page and "Team hours:" not in page


def test_the_overview_says_how_fast_the_team_answered_handoffs_by_the_team_hours(make_app: Any) -> None:
    from core.registry import agent_reply, request_handoff

    app = make_app(ratelimit_enabled=False, team_hours="Mon-Sun 00:00-24:00")  # every handoff within them
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    assert "No conversation was handed to a person." in client.get("/operator/").get_data(as_text=True)
    session_id = client.post("/api/v1/chat", json={"message": "can I talk to a human?"}).get_json()[
        "session_id"
    ]
    with app.extensions["helploop"].database.session() as session:
        request_handoff(session, conversation_id=session_id)
        agent_reply(session, conversation_id=session_id, agent="omar", text="Hi, <b>how</b> can I help?")
        session.commit()
    page = client.get("/operator/").get_data(as_text=True)
    section = re.search(r'<div id="team-response">(.*?)</div>', page, re.S).group(1)  # type: ignore[union-attr]
    assert "1 conversation handed to a person (the customer asked, or the bot handed off)." in section
    assert (
        "A person replied in the chat to <strong>1</strong> (100%): the first reply came after a median"
        in section
    )
    assert "0 marked handled." in section
    rows = re.findall(r"<tr><td>(.*?)</td><td>(\d+)</td><td>(\d+)</td>", section)
    assert rows == [("within the team&#39;s hours", "1", "1"), ("outside them", "0", "0")]


def test_a_run_with_nothing_held_out_shows_no_figures_and_says_why(make_app: Any) -> None:
    """A knowledge base of a few examples an intent (an FAQ page) holds nothing out: the run page shows
    dashes and the gate's note, not a server error or "nan"."""
    from types import SimpleNamespace

    from core.models import Job
    from training.gate import compare

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    gate = compare(SimpleNamespace(version="v-faq"), None, [], [])  # type: ignore[arg-type]
    with app.extensions["helploop"].database.session() as session:
        job = Job(
            kind="train",
            params={},
            created_by="omar",
            status="succeeded",
            progress=1.0,
            result={
                "version": "v-faq",
                "training_rows": 4,
                "crowd_pairs": 0,
                "evaluation_rows": 0,
                "gate": gate,
            },
        )
        session.add(job)
        session.flush()
        job_id = job.id
    page = client.get(f"/operator/runs/{job_id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "<tr><th>accuracy</th><td>–</td><td></td></tr>" in text and ">nan<" not in text.lower()
    assert '<p class="muted" id="gate-note">no frozen evaluation rows:' in text
