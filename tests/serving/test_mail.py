"""Replies by e-mail against a real SMTP server (aiosmtpd on this machine): the e-mail as sent, the server's
refusals (permanent ones final, temporary ones tried again), the login, the live chat's "Also e-mail it",
the Activity page, `helploop mail test` and `helploop doctor`."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
from sqlalchemy import select

from core.channels import Failure, Sent
from core.models import ChannelMessage, Conversation, ConversationMessage, utcnow
from core.settings import SettingsError, load_settings
from serving.mail import Mailer, build_email
from tests.serving.test_admin import add_user, csrf_token, login, signed_in_operator

SENDER = "Acme support <help@acme.example>"
# The test server takes a login without TLS (it is on this machine, and has no certificate): aiosmtpd warns.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


@dataclass
class Inbox:
    """What the SMTP server took; RCPT answers 550 for nobody@…, 451 for later@…."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)  # every RCPT, taken or refused

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        self.asked.append(address)
        if address.startswith("nobody@"):
            return "550 5.1.1 no such mailbox here"
        if address.startswith("later@"):
            return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        parsed = email.message_from_bytes(envelope.content, policy=default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 2.0.0 queued"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server(login: tuple[str, str] | None = None) -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on 127.0.0.1 (no STARTTLS offered); with ``login``, it takes only that user and
    password (AUTH PLAIN or LOGIN) before any mail."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = login is not None and (data.login.decode(), data.password.decode()) == login
        return AuthResult(success=ok, handled=False)  # a refusal answered with 535

    inbox = Inbox()
    port = free_port()
    options: dict[str, Any] = {"auth_require_tls": False}
    if login is not None:
        options.update(authenticator=authenticate, auth_required=True)
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def mailer(port: int, user: str = "") -> Mailer:
    return Mailer(
        load_settings(
            {
                "smtp_url": f"smtp://{user}127.0.0.1:{port}",
                "mail_from": SENDER,
                "mail_reply_to": "team@acme.example",
            },
            environ={},
        ),
        timeout=5,
    )


PAYLOAD = {
    "text": "It was posted on **Monday**:\n\n- track it [here](https://acme.example/track)",
    "subject": "About your question to our team",
    "message_header": "<1.2.3@acme.example>",
    "references": ["<0.1.2@acme.example>"],
    "quote": "where is my card? <b>now</b>",
}


def test_a_reply_goes_out_as_one_threaded_e_mail_with_text_and_html() -> None:
    with smtp_server() as (inbox, port):
        sent = mailer(port).send("jo@example.com", PAYLOAD)
    assert sent == Sent("<1.2.3@acme.example>")
    [(envelope_from, recipients, message)] = inbox.messages
    assert envelope_from == "help@acme.example" and recipients == ["jo@example.com"]
    assert message["From"] == SENDER and message["To"] == "jo@example.com"
    assert message["Reply-To"] == "team@acme.example"  # the customer's answer goes to the team's mailbox
    assert message["Subject"] == "About your question to our team"
    assert message["Message-ID"] == "<1.2.3@acme.example>"
    assert message["In-Reply-To"] == "<0.1.2@acme.example>" == message["References"]
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    text = plain.get_content()
    assert text.startswith("It was posted on **Monday**:") and "> where is my card? <b>now</b>" in text
    markup = html.get_content()
    assert "<strong>Monday</strong>" in markup and '<a href="https://acme.example/track">here</a>' in markup
    assert "where is my card? &lt;b&gt;now&lt;/b&gt;" in markup and "<b>now</b>" not in markup


def test_a_reply_with_no_earlier_e_mail_answers_none() -> None:
    message = build_email(
        "jo@example.com", {**PAYLOAD, "references": [], "quote": None}, sender=SENDER, reply_to=""
    )
    assert message["In-Reply-To"] is None and message["References"] is None
    assert message["Reply-To"] == "help@acme.example"  # none set: the sender's own address
    plain = message.get_body(("plain",))
    assert plain is not None and "You wrote to us" not in plain.get_content()


def test_the_servers_refusals_are_final_or_tried_again() -> None:
    with smtp_server() as (inbox, port):
        gone = mailer(port).send("nobody@example.com", PAYLOAD)
        busy = mailer(port).send("later@example.com", PAYLOAD)
    assert gone == Failure("550 5.1.1 no such mailbox here", final=True)
    assert busy == Failure("451 4.3.0 mailbox busy, try again later", final=False)
    assert inbox.messages == []
    down = mailer(free_port()).send("jo@example.com", PAYLOAD)  # nothing listens there
    assert isinstance(down, Failure) and not down.final and "ConnectionRefusedError" in down.error


def test_the_login_is_used_and_a_wrong_password_is_final() -> None:
    with smtp_server(login=("apikey", "p@ss:word")) as (inbox, port):
        assert mailer(port, "apikey:p%40ss%3Aword@").send("jo@example.com", PAYLOAD) == Sent(
            "<1.2.3@acme.example>"
        )
        wrong = mailer(port, "apikey:nope@").send("jo@example.com", PAYLOAD)
        anonymous = mailer(port).send("jo@example.com", PAYLOAD)  # the server wants a login first
    assert len(inbox.messages) == 1
    assert isinstance(wrong, Failure) and wrong.final and wrong.error.startswith("535")
    assert isinstance(anonymous, Failure) and anonymous.final and anonymous.error.startswith("530")


def test_nothing_is_sent_unencrypted_to_a_server_elsewhere_that_offers_no_starttls() -> None:
    with smtp_server() as (inbox, port):
        client = mailer(port)
        client.server = replace(client.server, security="starttls")  # as for any host but this machine
        refused = client.send("jo@example.com", PAYLOAD)
    assert isinstance(refused, Failure) and refused.final and "does not offer STARTTLS" in refused.error
    assert inbox.messages == []


def waiting_customer(app: Any, contact: str = "jo@example.com") -> str:
    """A widget conversation handed to a person, with ``contact`` left."""
    chat = app.test_client()
    session_id = chat.post("/api/v1/chat", json={"message": "can I talk to a human?"}).get_json()[
        "session_id"
    ]
    assert chat.post(f"/api/v1/sessions/{session_id}/contact", json={"contact": contact}).status_code == 200
    return str(session_id)


def quiet_for(app: Any, session_id: str, minutes: int) -> None:
    with app.extensions["helploop"].database.session() as session:
        conversation = session.get(Conversation, session_id)
        assert conversation is not None
        conversation.last_activity_at = utcnow() - timedelta(minutes=minutes)


def test_an_operators_reply_is_also_e_mailed_to_the_customer_and_shown_as_e_mailed(make_app: Any) -> None:
    with smtp_server() as (inbox, port):
        app, operator = signed_in_operator(
            make_app, smtp_url=f"smtp://127.0.0.1:{port}", mail_from=SENDER, mail_reply_to="team@acme.example"
        )
        session_id = waiting_customer(app)
        url = f"/operator/conversations/{session_id}"
        page = operator.get(url).get_data(as_text=True)
        # the customer wrote just now: offered, not ticked
        assert 'id="email-reply"' in page and "Also e-mail it to <strong>jo@example.com</strong>" in page
        assert 'name="email" value="1">' in page and "their answer goes to team@acme.example" in page
        quiet_for(app, session_id, 20)
        page = operator.get(url).get_data(as_text=True)
        assert 'name="email" value="1" checked>' in page and "last wrote 20.0 min ago" in page
        done = operator.post(
            f"{url}/messages",
            data={"text": "We found it: **posted Monday**.", "email": "1", "csrf_token": csrf_token(page)},
            follow_redirects=True,
        ).get_data(as_text=True)
        assert "Sent in the chat, and e-mailed to jo@example.com" in done and "· e-mailing" in done
        assert app.extensions["helploop"].mail_sender.deliver_now() == {"sent": 1}
    [(_, recipients, message)] = inbox.messages
    assert recipients == ["jo@example.com"] and message["Reply-To"] == "team@acme.example"
    plain = message.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().startswith("We found it: **posted Monday**.")
    assert "> can I talk to a human?" in plain.get_content()
    with app.extensions["helploop"].database.session() as session:
        reply = session.scalars(select(ConversationMessage)).one()
        row = session.scalars(select(ChannelMessage)).one()
        assert (row.status, row.app_message_id) == ("sent", message["Message-ID"])
    polled = operator.get(f"{url}/messages.json").get_json()
    assert polled["delivery"] == {str(reply.id): {"status": "emailed", "error": None}}
    assert "· e-mailed</span>" in operator.get(url).get_data(as_text=True)
    # the Activity page counts it
    activity = operator.get("/operator/activity").get_data(as_text=True)
    assert "Set <code>HELPLOOP_HANDOFF_EMAIL_TO</code>" in activity
    assert (
        'id="email"' in activity
        and "127.0.0.1:" in activity
        and '<tr data-channel="email"><td>E-mail</td><td>1</td>' in activity
    )


def test_a_refused_e_mail_is_marked_on_the_reply(make_app: Any) -> None:
    with smtp_server() as (_, port):
        app, operator = signed_in_operator(make_app, smtp_url=f"smtp://127.0.0.1:{port}", mail_from=SENDER)
        session_id = waiting_customer(app, "nobody@example.com")
        url = f"/operator/conversations/{session_id}"
        page = operator.get(url).get_data(as_text=True)
        operator.post(f"{url}/messages", data={"text": "Hello", "email": "1", "csrf_token": csrf_token(page)})
        assert app.extensions["helploop"].mail_sender.deliver_now() == {"failed": 1}
    page = operator.get(url).get_data(as_text=True)
    assert '<span class="delivery tag" title="550 5.1.1 no such mailbox here">e-mail not sent</span>' in page


def test_without_an_smtp_server_the_page_says_how_and_an_e_mail_is_refused(make_app: Any) -> None:
    app, operator = signed_in_operator(make_app)
    session_id = waiting_customer(app)
    url = f"/operator/conversations/{session_id}"
    page = operator.get(url).get_data(as_text=True)
    assert 'id="email-reply"' not in page and 'id="email-unset"' in page and "HELPLOOP_SMTP_URL" in page
    refused = operator.post(
        f"{url}/messages",
        data={"text": "Hello", "email": "1", "csrf_token": csrf_token(page)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Refused: replies by e-mail are not set up" in refused
    with app.extensions["helploop"].database.session() as session:  # nothing half-done: no reply either
        assert session.scalars(select(ConversationMessage)).all() == []
        assert session.scalars(select(ChannelMessage)).all() == []
    # a phone number is no address: nothing offered, nothing said
    phoned = waiting_customer(app, "+44 20 7946 0018")
    page = operator.get(f"/operator/conversations/{phoned}").get_data(as_text=True)
    assert 'id="email-unset"' not in page and 'id="email-reply"' not in page


def test_a_messaging_apps_chat_is_answered_in_the_app_not_by_e_mail() -> None:
    from admin_ui.operator import email_choice

    settings = load_settings({"smtp_url": "smtp://localhost", "mail_from": SENDER}, environ={})
    widget = Conversation(channel="widget", contact="jo@example.com", last_activity_at=utcnow())
    telegram = Conversation(channel="telegram", contact="jo@example.com", last_activity_at=utcnow())
    assert email_choice(settings, widget)["email"]["address"] == "jo@example.com"
    assert email_choice(settings, telegram) == {"email": None, "email_unset": False}


def test_mail_test_and_doctor_against_the_server(make_app: Any, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from serving.cli import main

    runner = CliRunner()
    with smtp_server(login=("apikey", "secret")) as (inbox, port):
        env = {
            "HELPLOOP_INSTANCE_PATH": str(tmp_path / "instance"),
            "HELPLOOP_SMTP_URL": f"smtp://apikey:secret@127.0.0.1:{port}",
            "HELPLOOP_MAIL_FROM": SENDER,
        }
        sent = runner.invoke(main, ["mail", "test", "--to", "jo@example.com"], env=env)
        assert sent.exit_code == 0, sent.output
        assert f"sent to jo@example.com through apikey@127.0.0.1:{port} (STARTTLS if offered)" in sent.output
        refused = runner.invoke(main, ["mail", "test", "--to", "nobody@example.com"], env=env)
        assert refused.exit_code != 0 and "550 5.1.1 no such mailbox here" in refused.output
        wrong = runner.invoke(
            main,
            ["mail", "test", "--to", "jo@example.com"],
            env={**env, "HELPLOOP_SMTP_URL": f"smtp://apikey:nope@127.0.0.1:{port}"},
        )
        assert wrong.exit_code != 0 and "535" in wrong.output
        bad = runner.invoke(main, ["mail", "test", "--to", "jo"], env=env)
        assert bad.exit_code != 0 and "--to: 'jo' is no e-mail address" in bad.output
    assert [m["Subject"] for _, _, m in inbox.messages] == ["HelpLoop test e-mail"]
    off = runner.invoke(
        main, ["mail", "test", "--to", "jo@example.com"], env={"HELPLOOP_INSTANCE_PATH": str(tmp_path)}
    )
    assert off.exit_code != 0 and "replies by e-mail are not set up" in off.output


def test_doctor_logs_in_without_sending_and_says_when_the_server_is_down(make_app: Any) -> None:
    from serving.doctor import _mail

    with smtp_server(login=("apikey", "secret")) as (inbox, port):
        app = make_app(smtp_url=f"smtp://apikey:secret@127.0.0.1:{port}", mail_from=SENDER)
        helploop = app.extensions["helploop"]
        check = _mail(helploop.settings, helploop.database, utcnow())
        assert check.status == "ok", check
        assert (
            check.detail
            == f"apikey@127.0.0.1:{port} (STARTTLS if offered) answers, login accepted; 0 sent in 24 h"
        )
    assert inbox.messages == []
    down = _mail(helploop.settings, helploop.database, utcnow())
    assert down.status == "fail" and "cannot be reached" in down.detail


@pytest.mark.parametrize("contact", ["jo@example.com"])
def test_erasing_the_conversation_takes_its_e_mails(make_app: Any, contact: str) -> None:
    app, operator = signed_in_operator(make_app, smtp_url="smtp://127.0.0.1:1", mail_from=SENDER)
    session_id = waiting_customer(app, contact)
    url = f"/operator/conversations/{session_id}"
    page = operator.get(url).get_data(as_text=True)
    operator.post(f"{url}/messages", data={"text": "Hello", "email": "1", "csrf_token": csrf_token(page)})
    erased = operator.post(
        f"{url}/erase", data={"confirm": "erase", "csrf_token": csrf_token(page)}, follow_redirects=True
    )
    assert erased.status_code == 200
    with app.extensions["helploop"].database.session() as session:
        assert session.scalars(select(ChannelMessage)).all() == []  # the address went with it


def test_in_the_browser_the_ticked_reply_is_e_mailed_and_marked_as_it_goes(
    browser: Any, make_app: Any
) -> None:
    from tests.serving.conftest import live
    from tests.serving.test_admin_browser import logged_in_page

    with smtp_server() as (inbox, port):
        app, _ = signed_in_operator(make_app, smtp_url=f"smtp://127.0.0.1:{port}", mail_from=SENDER)
        session_id = waiting_customer(app)
        quiet_for(app, session_id, 30)
        with live(app) as base:
            context, page, errors = logged_in_page(
                browser, f"{base}/operator/conversations/{session_id}", "omar"
            )
            assert page.is_checked("#email-reply input[name=email]")  # quiet for 30 minutes: ticked
            page.fill("#reply-text", "Your card is on its way.")
            with page.expect_navigation():
                page.keyboard.press("Control+Enter")
            assert page.inner_text("#live-messages li.live-agent span.delivery") == "· e-mailing"
            assert app.extensions["helploop"].mail_sender.deliver_now() == {"sent": 1}
            # the page's poll marks it without a reload
            page.wait_for_selector(
                "#live-messages li.live-agent span.delivery:text('· e-mailed')", timeout=10_000
            )
            assert errors == []
            context.close()
    [(_, recipients, message)] = inbox.messages
    assert recipients == ["jo@example.com"] and message["Subject"] == "About your question to our team"


def test_the_team_hears_of_a_handoff_by_e_mail_but_not_of_each_live_chat_message() -> None:
    from serving.notify import HandoffNotifier

    outcomes: list[str] = []
    with smtp_server() as (inbox, port):
        notifier = HandoffNotifier(
            "",
            public_url="https://help.acme.example/",
            mailer=mailer(port),
            mail_to=("team@acme.example", "lead@acme.example"),
            backoff_seconds=0,
            on_result=outcomes.append,
        )
        assert notifier.enabled
        notifier.notify(
            session_id="abc123",
            reason="asked",
            message="help, I'm [EMAIL]",
            page="https://shop.example/cards",
        )
        notifier.notify(session_id="abc123", reason="message", message="are you there?")  # seen on the page
        # a message of several lines: the subject is one line (a line break would end the header)
        notifier.notify(session_id="abc124", reason="contact", message="my card\r\nis stuck\nplease call")
        assert notifier.drain(10)
    [(_, recipients, message), (_, _, several)] = inbox.messages
    assert several["Subject"] == "A customer left a contact: “my card is stuck please call”"
    assert recipients == ["team@acme.example", "lead@acme.example"] and outcomes == ["emailed", "emailed"]
    assert message["Subject"] == "A customer asked for a person: “help, I'm [EMAIL]”"
    assert message["Auto-Submitted"] == "auto-generated" and message["From"] == SENDER
    body = message.get_content().replace("\r\n", "\n")  # as it crossed the wire
    assert body == (
        "The customer asked for a person.\n\nLast message: “help, I'm [EMAIL]”\n"
        "On the page: https://shop.example/cards\n"
        "Open the conversation: https://help.acme.example/operator/conversations/abc123\n"
    )


def test_a_refused_notice_fails_at_once_and_an_unreachable_server_is_tried_three_times() -> None:
    from serving.notify import HandoffNotifier

    outcomes: list[str] = []
    with smtp_server() as (inbox, port):
        refused = HandoffNotifier(
            "",
            mailer=mailer(port),
            mail_to=("nobody@acme.example",),
            backoff_seconds=0,
            on_result=outcomes.append,
        )
        refused.notify(session_id="a" * 16, reason="bot", message="x" * 80)
        assert refused.drain(10)
    assert inbox.asked == ["nobody@acme.example"] and outcomes == ["email_failed"]  # 550: not tried again
    tries: list[int] = []
    down = HandoffNotifier(
        "",
        mailer=mailer(free_port()),
        mail_to=("team@acme.example",),
        backoff_seconds=0,
        on_result=outcomes.append,
    )
    assert down.mailer is not None
    send = down.mailer.send_notice
    down.mailer.send_notice = lambda *args: tries.append(1) or send(*args)  # type: ignore[method-assign]
    down.notify(session_id="b" * 16, reason="low_rating", message="rated the chat 1 of 5")
    assert down.drain(10) and len(tries) == 3 and outcomes == ["email_failed", "email_failed"]


def test_a_customer_asking_for_a_person_e_mails_the_team_with_the_message_redacted(make_app: Any) -> None:
    with smtp_server() as (inbox, port):
        app = make_app(
            ratelimit_enabled=False,
            smtp_url=f"smtp://127.0.0.1:{port}",
            mail_from=SENDER,
            handoff_email_to="team@acme.example",
            public_url="https://help.acme.example",
        )
        chat = app.test_client().post(
            "/api/v1/chat", json={"message": "can I talk to a human? write to jo.bloggs@example.com"}
        )
        session_id = chat.get_json()["session_id"]
        assert app.extensions["helploop"].notifier.drain(10)
    [(_, recipients, message)] = inbox.messages
    body = message.get_content()
    assert recipients == ["team@acme.example"] and "jo.bloggs" not in body and "[EMAIL]" in body
    assert f"https://help.acme.example/operator/conversations/{session_id}" in body
    assert message["Subject"].startswith("A customer asked for a person: “can I talk to a human?")
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    activity = operator.get("/operator/activity").get_data(as_text=True)
    assert "low ratings are e-mailed to <code>team@acme.example</code>" in activity


def test_the_team_addresses_are_checked_at_start() -> None:
    on = {"smtp_url": "smtp://localhost", "mail_from": SENDER}
    settings = load_settings(
        {**on, "handoff_email_to": " team@acme.example , lead@acme.example,"}, environ={}
    )
    assert settings.handoff_emails == ("team@acme.example", "lead@acme.example")
    with pytest.raises(SettingsError, match="handoff_email_to is set: set smtp_url too"):
        load_settings({"handoff_email_to": "team@acme.example"}, environ={})
    with pytest.raises(SettingsError, match="'Team <team@acme.example>' is none"):
        load_settings({**on, "handoff_email_to": "Team <team@acme.example>"}, environ={})
