"""core.mail: the SMTP address and sender settings, and a live-chat reply queued as an e-mail to the address
the customer left (on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import channels, mail
from core.mail import MailSettingsError, SmtpServer, check_sender, email_address, parse_smtp_url, queue_email
from core.models import ChannelMessage, utcnow
from core.registry import MessageError, agent_reply, customer_message, leave_contact
from core.settings import SettingsError, load_settings
from tests.conftest import add_turn

SENDER = "Acme support <help@acme.example>"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://smtp.example.com", SmtpServer("smtp.example.com", 587, "starttls")),
        ("smtp://smtp.example.com:2525", SmtpServer("smtp.example.com", 2525, "starttls")),
        ("smtps://smtp.example.com", SmtpServer("smtp.example.com", 465, "ssl")),
        # this machine's own relay may offer no STARTTLS: nothing leaves the machine
        ("smtp://localhost:25", SmtpServer("localhost", 25, "starttls_if_offered")),
        ("smtp://127.0.0.1:1025/", SmtpServer("127.0.0.1", 1025, "starttls_if_offered")),
        ("smtp://[::1]:25", SmtpServer("::1", 25, "starttls_if_offered")),
        (
            "smtp://apikey:p%40ss%3Aword@smtp.example.com:587",
            SmtpServer("smtp.example.com", 587, "starttls", "apikey", "p@ss:word"),
        ),
        (
            "smtps://help%40acme.example:secret@mail.acme.example",
            SmtpServer("mail.acme.example", 465, "ssl", "help@acme.example", "secret"),
        ),
    ],
)
def test_an_smtp_address_names_the_server_its_encryption_and_login(url: str, expected: SmtpServer) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://smtp.example.com", "must start with smtp://"),
        ("smtp.example.com:587", "must start with smtp://"),
        ("smtp://", "names no server"),
        ("smtp://smtp.example.com:99999", "no number from 1 to 65535"),
        ("smtp://smtp.example.com:abc", "no number from 1 to 65535"),
        ("smtp://smtp.example.com/inbox", "no path, query or fragment"),
        ("smtp://smtp.example.com?tls=off", "no path, query or fragment"),
    ],
)
def test_an_unusable_smtp_address_is_refused_with_the_reason(url: str, said: str) -> None:
    with pytest.raises(MailSettingsError, match=said):
        parse_smtp_url(url)


def test_the_server_is_described_without_its_password() -> None:
    server = parse_smtp_url("smtp://apikey:hunter2@smtp.example.com")
    assert server.describe() == "apikey@smtp.example.com:587 (STARTTLS)"
    assert "hunter2" not in server.describe()
    assert parse_smtp_url("smtp://localhost:25").describe() == "localhost:25 (STARTTLS if offered)"


def test_a_sender_is_an_address_with_an_optional_name_and_no_second_header() -> None:
    assert check_sender(" Support <help@example.com> ", "mail_from") == "Support <help@example.com>"
    assert check_sender("help@example.com", "mail_from") == "help@example.com"
    for bad in ("Support", "help@", "help@example.com\nBcc: all@example.com", ""):
        with pytest.raises(MailSettingsError, match="mail_from must be an e-mail address"):
            check_sender(bad, "mail_from")


def test_the_settings_are_checked_at_start() -> None:
    on = load_settings(environ={"HELPLOOP_SMTP_URL": "smtp://localhost:25", "HELPLOOP_MAIL_FROM": SENDER})
    assert on.mail_on and on.mail_subject == "About your question to our team"
    assert not load_settings(environ={}).mail_on
    with pytest.raises(SettingsError, match="set mail_from too"):
        load_settings(environ={"HELPLOOP_SMTP_URL": "smtp://localhost:25"})
    with pytest.raises(SettingsError, match="must start with smtp://"):
        load_settings(environ={"HELPLOOP_SMTP_URL": "smtp.example.com", "HELPLOOP_MAIL_FROM": SENDER})
    with pytest.raises(SettingsError, match="mail_reply_to must be an e-mail address"):
        load_settings(
            environ={
                "HELPLOOP_SMTP_URL": "smtp://localhost",
                "HELPLOOP_MAIL_FROM": SENDER,
                "HELPLOOP_MAIL_REPLY_TO": "the team",
            },
        )
    # a subject is one header line: a line break in it would start another header
    folded = load_settings(environ={"HELPLOOP_MAIL_SUBJECT": "Your\r\nBcc: x@example.com"})
    assert folded.mail_subject == "Your Bcc: x@example.com"
    with pytest.raises(SettingsError, match="mail_subject must be 1 to 200 characters, not 0"):
        load_settings(environ={"HELPLOOP_MAIL_SUBJECT": "  "})


def test_only_an_e_mail_contact_is_an_address_to_write_to() -> None:
    assert email_address(" jo@example.com ") == "jo@example.com"
    assert email_address("+44 20 7946 0018") is None
    assert email_address(None) is None


def waiting_with_contact(session: Session, name: str, contact: str) -> None:
    add_turn(session, name, "my card never arrived, where is it?", status="handoff")
    leave_contact(session, conversation_id=name, contact=contact)


def test_a_reply_is_queued_as_an_e_mail_quoting_the_customer_and_threaded(db_session: Session) -> None:
    waiting_with_contact(db_session, "c1", "jo@example.com")
    first = agent_reply(db_session, conversation_id="c1", agent="omar", text="It was posted on **Monday**.")
    queued = queue_email(
        db_session, message=first, contact="jo@example.com", subject="About your question", sender=SENDER
    )
    assert (queued.channel, queued.chat_key, queued.status) == ("email", "jo@example.com", "pending")
    payload = queued.payload
    assert payload["text"] == "It was posted on **Monday**."
    assert payload["message_id"] == first.id and payload["subject"] == "About your question"
    assert payload["message_header"].endswith("@acme.example>") and payload["references"] == []
    assert payload["quote"] == "my card never arrived, where is it?"  # the customer's words before the reply
    # the customer answers in the chat; the next e-mail quotes that and answers the first one
    customer_message(db_session, conversation_id="c1", text="Thanks, and the PIN?")
    second = agent_reply(db_session, conversation_id="c1", agent="omar", text="The PIN comes apart.")
    later = queue_email(db_session, message=second, contact="jo@example.com", subject="S", sender=SENDER)
    assert later.payload["quote"] == "Thanks, and the PIN?"
    assert later.payload["references"] == [payload["message_header"]]
    assert later.payload["message_header"] != payload["message_header"]


def test_no_e_mail_is_queued_without_an_e_mail_address(db_session: Session) -> None:
    waiting_with_contact(db_session, "c2", "+44 20 7946 0018")
    reply = agent_reply(db_session, conversation_id="c2", agent="omar", text="Hello")
    with pytest.raises(MessageError, match="left no e-mail address"):
        queue_email(db_session, message=reply, contact="+44 20 7946 0018", subject="S", sender=SENDER)
    assert db_session.scalars(select(ChannelMessage)).all() == []


def test_an_e_mailed_reply_shows_how_far_it_got_and_is_counted_apart(db_session: Session) -> None:
    waiting_with_contact(db_session, "c3", "jo@example.com")
    rows = []
    for text in ("one", "two", "three"):
        reply = agent_reply(db_session, conversation_id="c3", agent="omar", text=text)
        rows.append(
            (
                reply.id,
                queue_email(db_session, message=reply, contact="jo@example.com", subject="S", sender=SENDER),
            )
        )
    rows[1][1].status = "sent"
    rows[2][1].status, rows[2][1].last_error = "failed", "550 5.1.1 no such mailbox"
    db_session.flush()
    assert channels.delivery(db_session, conversation_id="c3") == {
        rows[0][0]: ("email_pending", None),
        rows[1][0]: ("emailed", None),
        rows[2][0]: ("email_failed", "550 5.1.1 no such mailbox"),
    }
    figures = channels.counts(db_session, since=utcnow() - timedelta(hours=1))[mail.EMAIL]
    assert (figures.pending, figures.sent, figures.failed) == (1, 1, 1)
    assert figures.last_error == "550 5.1.1 no such mailbox"
    assert figures.chats == 0 and figures.channel == "email"
    assert channels.counts(db_session, since=utcnow() - timedelta(hours=1))["telegram"].sent == 0
    # erasing the conversation takes its e-mails (and the address) along
    assert channels.erase(db_session, conversation_id="c3") == 3


def test_the_e_mails_and_the_apps_messages_are_sent_by_senders_of_their_own(db_session: Session) -> None:
    """A slow or unreachable mail server must not hold up the bot's answers on the messaging apps: each
    sender claims only its channels (the web process runs one for the apps and one for the e-mails)."""
    on_app = channels.conversation_for(db_session, channel="telegram", chat_key="7", idle_hours=24)
    channels.queue(db_session, conversation_id=on_app, payload={"text": "the bot's answer"})
    waiting_with_contact(db_session, "c4", "jo@example.com")
    reply = agent_reply(db_session, conversation_id="c4", agent="omar", text="by e-mail")
    queue_email(db_session, message=reply, contact="jo@example.com", subject="S", sender=SENDER)
    seen: list[str] = []

    def send(channel: str, chat_key: str, payload: dict[str, object]) -> None:
        seen.append(channel)

    assert channels.deliver_due(db_session, send, channels=channels.CHANNELS) == {"sent": 1}
    assert seen == ["telegram"]
    assert channels.deliver_due(db_session, send, channels=(mail.EMAIL,)) == {"sent": 1}
    assert seen == ["telegram", "email"]
