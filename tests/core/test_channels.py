"""Messaging-app channels (core.channels): a chat's conversation, updates answered once, the outbox sent in
order per chat with retries, erasure, purging (both databases)."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import channels
from core.channels import (
    MAX_ATTEMPTS,
    RETRY_SECONDS,
    Failure,
    Sent,
    conversation_for,
    deliver_due,
    first_delivery,
)
from core.models import ChannelChat, ChannelEvent, ChannelMessage, Conversation, as_utc, utcnow
from core.registry import agent_reply, request_handoff
from core.settings import SettingsError, load_settings
from tests.conftest import at_once


class App:
    """A messaging app's API: records each message sent, answers with the scripted outcomes."""

    def __init__(self, *outcomes: Failure | Sent | BaseException | None) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, channel: str, chat_key: str, payload: dict[str, Any]) -> Failure | Sent | None:
        self.sent.append((channel, chat_key, payload))
        result = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(result, BaseException):
            raise result
        return result


def test_a_chat_keeps_its_conversation_until_it_has_been_quiet(db_session: Session) -> None:
    now = utcnow()
    first = conversation_for(db_session, channel="telegram", chat_key="42", idle_hours=24, now=now)
    assert conversation_for(db_session, channel="telegram", chat_key="42", idle_hours=24, now=now) == first
    # Another chat, and the same id on the other app, are other conversations.
    assert conversation_for(db_session, channel="telegram", chat_key="43", idle_hours=24, now=now) != first
    assert conversation_for(db_session, channel="whatsapp", chat_key="42", idle_hours=24, now=now) != first
    conversation = db_session.get(Conversation, first)
    assert conversation is not None and conversation.channel == "telegram"
    assert re.fullmatch(r"[0-9a-f]{32}", first)  # a random id, as the widget's: not the app's id of the chat
    # A day later: a new conversation, the old one kept.
    later = now + timedelta(hours=25)
    second = conversation_for(db_session, channel="telegram", chat_key="42", idle_hours=24, now=later)
    assert second != first
    chats = db_session.scalars(select(ChannelChat).where(ChannelChat.chat_key == "42")).all()
    assert {(c.channel, c.conversation_id) for c in chats} >= {("telegram", first), ("telegram", second)}
    # ...unless a person is chatting in it: the live chat goes on however long it has been.
    request_handoff(db_session, conversation_id=second)
    agent_reply(db_session, conversation_id=second, agent="omar", text="Hello, I'm Omar")
    much_later = later + timedelta(days=3)
    assert (
        conversation_for(db_session, channel="telegram", chat_key="42", idle_hours=24, now=much_later)
        == second
    )
    with pytest.raises(ValueError, match="unknown channel"):
        conversation_for(db_session, channel="fax", chat_key="1", idle_hours=24)


def test_the_reply_window_runs_from_the_customers_last_message(db_session: Session) -> None:
    now = utcnow()
    chat = conversation_for(db_session, channel="whatsapp", chat_key="447700900009", idle_hours=24, now=now)
    window = channels.reply_window(db_session, conversation_id=chat)
    assert window is not None and (window.channel, window.hours) == ("whatsapp", 24)
    assert window.closes_at == now + timedelta(hours=24)
    assert window.open(now + timedelta(hours=23, minutes=59)) and not window.open(now + timedelta(hours=24))
    # The customer writes again 20 hours later: the window runs from then.
    later = now + timedelta(hours=20)
    assert (
        conversation_for(db_session, channel="whatsapp", chat_key="447700900009", idle_hours=24, now=later)
        == chat
    )
    window = channels.reply_window(db_session, conversation_id=chat)
    assert window is not None and window.closes_at == later + timedelta(hours=24)
    # Telegram has no window; a widget conversation is no chat.
    telegram = conversation_for(db_session, channel="telegram", chat_key="7", idle_hours=24)
    assert channels.reply_window(db_session, conversation_id=telegram) is None
    messenger = conversation_for(db_session, channel="messenger", chat_key="PSID9", idle_hours=24, now=now)
    window = channels.reply_window(db_session, conversation_id=messenger)
    assert window is not None and window.closes_at == now + timedelta(hours=24)
    assert window.span == "24 hours"
    # A Messenger page with the Human Agent permission: the team's replies are taken for 7 days; WhatsApp's
    # window is the same either way, and Telegram still has none.
    window = channels.reply_window(db_session, conversation_id=messenger, human_agent=True)
    assert window is not None and window.closes_at == now + timedelta(days=7) and window.span == "7 days"
    window = channels.reply_window(db_session, conversation_id=chat, human_agent=True)
    assert window is not None and window.hours == 24
    assert channels.reply_window(db_session, conversation_id=telegram, human_agent=True) is None
    assert channels.span_text(48) == "2 days" and channels.span_text(36) == "36 hours"


def test_an_operator_finds_a_customers_chat_by_their_number_as_typed(db_session: Session) -> None:
    from core.registry import conversation_summaries

    on_whatsapp = conversation_for(db_session, channel="whatsapp", chat_key="447700900123", idle_hours=24)
    on_telegram = conversation_for(db_session, channel="telegram", chat_key="123456", idle_hours=24)
    conversation_for(db_session, channel="whatsapp", chat_key="15550001111", idle_hours=24)

    def found(search: str) -> set[str]:
        rows, total = conversation_summaries(db_session, search=search)
        assert total == len(rows)
        return {row.id for row in rows}

    for typed in ("+44 7700 900123", "447700900123", "07700 900123", "(0)7700-900-123", "7700.900.123"):
        assert found(typed) == {on_whatsapp}, typed
    # Shorter than 8 digits: only an id that is exactly it (an order number finds no chat by chance).
    assert found("123456") == {on_telegram}
    assert found("900123") == set()
    # Not a number: words only.
    assert channels.chats_matching("card 447700900123") is None and channels.chats_matching("12345") is None
    assert found("where is my card") == set()


def test_a_repeated_delivery_is_seen_once(db_session: Session) -> None:
    assert first_delivery(db_session, channel="telegram", event_id="1001") is True
    assert first_delivery(db_session, channel="telegram", event_id="1001") is False
    assert first_delivery(db_session, channel="whatsapp", event_id="1001") is True  # another app's ids
    assert first_delivery(db_session, channel="telegram", event_id="1002") is True
    assert db_session.scalar(select(func.count()).select_from(ChannelEvent)) == 3


def test_a_team_members_reply_goes_to_the_chat_and_a_widget_conversation_sends_nothing(
    db_session: Session,
) -> None:
    on_app = conversation_for(db_session, channel="whatsapp", chat_key="447700900123", idle_hours=24)
    widget = Conversation(channel="widget")
    db_session.add(widget)
    db_session.flush()
    for conversation_id in (on_app, widget.id):
        request_handoff(db_session, conversation_id=conversation_id)
        reply = agent_reply(
            db_session, conversation_id=conversation_id, agent="omar", text="I'll look into it"
        )
        if conversation_id == on_app:
            reply_id = reply.id
    [message] = db_session.scalars(select(ChannelMessage)).all()
    assert (message.conversation_id, message.channel, message.chat_key) == (
        on_app,
        "whatsapp",
        "447700900123",
    )
    assert message.payload == {"text": "I'll look into it", "from": "agent", "message_id": reply_id}
    assert message.status == "pending"
    assert channels.queue(db_session, conversation_id=widget.id, payload={"text": "x"}) is None


def _queue(session: Session, conversation_id: str, *texts: str) -> list[int]:
    ids = []
    for text in texts:
        message = channels.queue(session, conversation_id=conversation_id, payload={"text": text})
        assert message is not None
        ids.append(message.id)
    return ids


def test_the_outbox_is_sent_in_order_and_a_failing_chat_waits_while_others_go_on(db_session: Session) -> None:
    ann = conversation_for(db_session, channel="telegram", chat_key="1", idle_hours=24)
    bob = conversation_for(db_session, channel="telegram", chat_key="2", idle_hours=24)
    _queue(db_session, ann, "a1", "a2")
    _queue(db_session, bob, "b1", "b2")
    now = utcnow()
    app = App(Failure("HTTP 502 Bad Gateway"))  # Ann's first message fails once
    outcomes = deliver_due(db_session, app, now=now)
    assert [(chat, payload["text"]) for _, chat, payload in app.sent] == [
        ("1", "a1"),
        ("2", "b1"),
        ("2", "b2"),
    ]
    assert outcomes == {"retry": 1, "deferred": 1, "sent": 2}
    rows = {m.payload["text"]: m for m in db_session.scalars(select(ChannelMessage))}
    assert rows["a1"].status == "pending" and rows["a1"].last_error == "HTTP 502 Bad Gateway"
    assert as_utc(rows["a1"].next_attempt_at) == now + timedelta(seconds=RETRY_SECONDS[0])
    assert rows["a2"].attempts == 0  # deferred, not tried: it must not overtake a1
    assert rows["b1"].status == rows["b2"].status == "sent"
    # Before the retry is due nothing of Ann's goes (a2 waits behind a1); then both, in order.
    assert deliver_due(db_session, app, now=now + timedelta(seconds=1)) == {}
    assert deliver_due(db_session, app, now=now + timedelta(seconds=RETRY_SECONDS[0])) == {"sent": 2}
    assert [payload["text"] for _, _, payload in app.sent[3:]] == ["a1", "a2"]


def test_a_refusal_fails_at_once_and_errors_are_retried_until_the_last_attempt(db_session: Session) -> None:
    chat = conversation_for(db_session, channel="telegram", chat_key="9", idle_hours=24)
    [blocked] = _queue(db_session, chat, "blocked")
    app = App(Failure("HTTP 403 Forbidden: bot was blocked by the user", final=True))
    assert deliver_due(db_session, app) == {"failed": 1}
    message = db_session.get(ChannelMessage, blocked)
    assert message is not None and message.status == "failed" and message.attempts == 1
    [flaky] = _queue(db_session, chat, "flaky")
    now = utcnow()
    app = App(*[ConnectionResetError("reset")] * MAX_ATTEMPTS)
    for attempt in range(MAX_ATTEMPTS):
        outcomes = deliver_due(db_session, app, now=now)
        message = db_session.get(ChannelMessage, flaky)
        assert message is not None and message.attempts == attempt + 1
        if attempt + 1 < MAX_ATTEMPTS:
            assert outcomes == {"retry": 1} and message.last_error == "ConnectionResetError: reset"
            now = as_utc(message.next_attempt_at)
    assert outcomes == {"failed": 1} and message.status == "failed"
    counts = channels.counts(db_session, since=utcnow() - timedelta(days=1))
    assert (counts["telegram"].failed, counts["telegram"].pending, counts["telegram"].chats) == (2, 0, 1)
    assert counts["telegram"].last_error == "ConnectionResetError: reset"
    assert counts["whatsapp"].failed == 0


def test_a_retry_of_a_message_sent_in_parts_is_told_the_parts_the_app_took(db_session: Session) -> None:
    chat = conversation_for(db_session, channel="messenger", chat_key="PSID5", idle_hours=24)
    [message_id] = _queue(db_session, chat, "a long answer")
    now = utcnow()
    app = App(Failure("messages: HTTP 500", parts_sent=2), None)
    assert deliver_due(db_session, app, now=now) == {"retry": 1}
    message = db_session.get(ChannelMessage, message_id)
    assert message is not None and message.payload["parts_sent"] == 2 and message.status == "pending"
    # A failure of the first part of the rest does not forget the two taken before.
    app.outcomes = [Failure("messages: HTTP 502", parts_sent=0), None]
    assert deliver_due(db_session, app, now=now + timedelta(seconds=RETRY_SECONDS[0])) == {"retry": 1}
    assert db_session.get(ChannelMessage, message_id).payload["parts_sent"] == 2  # type: ignore[union-attr]
    assert deliver_due(db_session, app, now=now + timedelta(seconds=RETRY_SECONDS[1] + 20)) == {"sent": 1}
    assert [payload.get("parts_sent") for _, _, payload in app.sent] == [None, 2, 2]


def test_a_claimed_batch_whose_worker_died_is_sent_again_later(db_session: Session) -> None:
    chat = conversation_for(db_session, channel="telegram", chat_key="5", idle_hours=24)
    [only] = _queue(db_session, chat, "hello")
    now = utcnow()
    claimed = channels._claim(db_session, now, 10)  # a worker claims it, then dies before sending
    assert [m.id for m in claimed] == [only]
    app = App()
    assert deliver_due(db_session, app, now=now + timedelta(seconds=5)) == {}
    assert deliver_due(db_session, app, now=now + timedelta(seconds=channels.CLAIM_SECONDS)) == {"sent": 1}


class Died(BaseException):
    """The worker's process ends mid-send (killed): no ``except Exception`` catches it."""


def test_each_outcome_is_kept_as_it_comes_so_a_worker_that_dies_sends_nothing_twice(
    db_session: Session,
) -> None:
    chat = conversation_for(db_session, channel="whatsapp", chat_key="447700900001", idle_hours=24)
    first, second = _queue(db_session, chat, "one", "two")
    now = utcnow()
    app = App(Sent("wamid.1"), Died())
    with pytest.raises(Died):
        deliver_due(db_session, app, now=now)
    db_session.rollback()  # what the dead worker had not committed is gone
    kept = db_session.scalars(
        select(ChannelMessage).order_by(ChannelMessage.id).execution_options(populate_existing=True)
    ).all()
    assert [(m.id, m.status, m.app_message_id) for m in kept] == [
        (first, "sent", "wamid.1"),
        (second, "pending", None),
    ]
    # After the claim runs out, only the message whose send was cut off goes again.
    retry = App(Sent("wamid.2"))
    assert deliver_due(db_session, retry, now=now + timedelta(seconds=channels.CLAIM_SECONDS)) == {"sent": 1}
    assert [payload["text"] for _, _, payload in retry.sent] == ["two"]


def test_receipts_mark_a_message_delivered_read_or_failed_and_never_go_back(db_session: Session) -> None:
    chat = conversation_for(db_session, channel="whatsapp", chat_key="447700900002", idle_hours=24)
    got, early, refused, unnamed = _queue(db_session, chat, "got it", "read first", "too late", "no id")
    now = utcnow()
    app = App(Sent("wamid.A"), Sent("wamid.B"), Sent("wamid.C"), None)
    assert deliver_due(db_session, app, now=now) == {"sent": 4}

    def progress(message_id: int) -> str:
        message = db_session.get(ChannelMessage, message_id)
        assert message is not None
        return channels.progress(message)

    assert [progress(i) for i in (got, early, refused, unnamed)] == ["sent"] * 4
    at = now + timedelta(seconds=3)
    receipt = channels.receipt
    assert receipt(db_session, channel="whatsapp", app_message_id="wamid.A", status="delivered", at=at)
    assert progress(got) == "delivered"
    # Read reported before delivered (they can cross): read, and delivered as of then; a late
    # "delivered" and a second "read" change nothing.
    assert receipt(db_session, channel="whatsapp", app_message_id="wamid.B", status="read", at=at)
    message = db_session.get(ChannelMessage, early)
    assert message is not None and as_utc(message.delivered_at) == as_utc(message.read_at) == at
    assert receipt(db_session, channel="whatsapp", app_message_id="wamid.B", status="delivered") is None
    assert receipt(db_session, channel="whatsapp", app_message_id="wamid.B", status="read") is None
    assert progress(early) == "read"
    # A failure after the send: failed, with the app's reason; a failure after delivery is not believed.
    why = "messages: not delivered: more than 24 hours have passed (code 131047)"
    failed = receipt(db_session, channel="whatsapp", app_message_id="wamid.C", status="failed", error=why)
    assert failed is not None and failed.status == "failed" and failed.last_error == why
    assert progress(refused) == "failed"
    assert receipt(db_session, channel="whatsapp", app_message_id="wamid.A", status="failed") is None
    assert progress(got) == "delivered"
    # Another app's id, an unknown one: nothing.
    assert receipt(db_session, channel="messenger", app_message_id="wamid.A", status="read") is None
    assert receipt(db_session, channel="whatsapp", app_message_id="wamid.Z", status="read") is None
    with pytest.raises(ValueError, match="unknown receipt"):
        receipt(db_session, channel="whatsapp", app_message_id="wamid.A", status="seen")
    counts = channels.counts(db_session, since=now - timedelta(days=1))["whatsapp"]
    assert (counts.sent, counts.failed, counts.last_error) == (3, 1, why)


def test_messenger_watermarks_mark_every_message_sent_by_then(db_session: Session) -> None:
    chat = conversation_for(db_session, channel="messenger", chat_key="PSID1", idle_hours=24)
    other = conversation_for(db_session, channel="messenger", chat_key="PSID2", idle_hours=24)
    now = utcnow()
    [first] = _queue(db_session, chat, "first")
    [elsewhere] = _queue(db_session, other, "to another customer")
    deliver_due(db_session, App(Sent("m_1"), Sent("m_2")), now=now)
    [later] = _queue(db_session, chat, "later")
    deliver_due(db_session, App(Sent("m_3")), now=now + timedelta(minutes=1))
    seen = channels.seen_up_to
    until = now + timedelta(seconds=30)
    assert seen(db_session, channel="messenger", chat_key="PSID1", until=until, read=False) == 1
    assert seen(db_session, channel="messenger", chat_key="PSID1", until=until, read=False) == 0
    rows = {m.id: channels.progress(m) for m in db_session.scalars(select(ChannelMessage))}
    assert rows == {first: "delivered", elsewhere: "sent", later: "sent"}
    # Read up to after the later one: both read (the later one delivered as of then).
    assert (
        seen(db_session, channel="messenger", chat_key="PSID1", until=now + timedelta(minutes=2), read=True)
        == 2
    )
    rows = {m.id: channels.progress(m) for m in db_session.scalars(select(ChannelMessage))}
    assert rows == {first: "read", elsewhere: "sent", later: "read"}
    message = db_session.get(ChannelMessage, first)
    assert message is not None and as_utc(message.delivered_at) == until


def test_a_message_counts_as_sent_when_the_app_answered_not_when_the_look_began(db_session: Session) -> None:
    """A look's sends can take seconds (a slow app): a Messenger watermark between the look's start and a
    later send must not mark that send delivered."""
    chat = conversation_for(db_session, channel="messenger", chat_key="PSID5", idle_hours=24)
    first, second = _queue(db_session, chat, "quick", "after a slow one")
    # The look starts; before each send its budget is checked; the first answers at 0.2 s, the second at 6 s.
    ticks = iter([0.0, 0.1, 0.2, 0.3, 6.0])
    now = utcnow()
    deliver_due(db_session, App(Sent("m_1"), Sent("m_2")), now=now, clock=lambda: next(ticks))
    sent = {m.id: as_utc(m.sent_at) for m in db_session.scalars(select(ChannelMessage))}
    assert sent == {first: now + timedelta(seconds=0.2), second: now + timedelta(seconds=6)}
    until = now + timedelta(seconds=3)
    assert (
        channels.seen_up_to(db_session, channel="messenger", chat_key="PSID5", until=until, read=False) == 1
    )
    message = db_session.get(ChannelMessage, second)
    assert message is not None and channels.progress(message) == "sent"


def test_a_message_another_sender_claimed_meanwhile_is_left_to_it(db_session: Session) -> None:
    """Two web processes on SQLite read the same due rows; the one that claims a row second finds it taken
    (its attempts moved on) and leaves that chat alone."""
    chat = conversation_for(db_session, channel="telegram", chat_key="6", idle_hours=24)
    other = conversation_for(db_session, channel="telegram", chat_key="8", idle_hours=24)
    first, _ = _queue(db_session, chat, "one", "two")
    [third] = _queue(db_session, other, "three")
    now = utcnow()
    due = channels._due(db_session, now, 10)
    assert [m.payload["text"] for m in due] == ["one", "two", "three"]
    # Another process claims the first row after this one has read it.
    db_session.execute(
        ChannelMessage.__table__.update()
        .where(ChannelMessage.id == first)
        .values(attempts=1, next_attempt_at=now + timedelta(seconds=60))
    )
    taken = channels._take(db_session, due, now)
    assert [m.id for m in taken] == [third]  # "two" must not overtake "one", taken by the other process
    assert channels._due(db_session, now, 10) == []  # as read now: "one" claimed, "three" claimed


def test_erasing_a_conversation_deletes_its_chat_id_and_messages(db_session: Session) -> None:
    from crowd_feedback.retention import erase_conversation

    chat = conversation_for(db_session, channel="whatsapp", chat_key="447700900123", idle_hours=24)
    _queue(db_session, chat, "one", "two")
    erase_conversation(db_session, conversation_id=chat, actor="omar")
    assert db_session.scalar(select(func.count()).select_from(ChannelChat)) == 0
    assert db_session.scalar(select(func.count()).select_from(ChannelMessage)) == 0


def test_purge_keeps_what_is_still_needed(db_session: Session) -> None:
    now = utcnow()
    chat = conversation_for(db_session, channel="telegram", chat_key="7", idle_hours=24)
    first_delivery(db_session, channel="telegram", event_id="old", now=now - timedelta(hours=25))
    first_delivery(db_session, channel="telegram", event_id="new", now=now - timedelta(hours=1))
    old_sent, old_pending, recent_sent = _queue(db_session, chat, "old sent", "old pending", "recent sent")
    for message_id, status in ((old_sent, "sent"), (old_pending, "pending"), (recent_sent, "sent")):
        message = db_session.get(ChannelMessage, message_id)
        assert message is not None
        message.status = status
        if message_id != recent_sent:
            message.created_at = now - timedelta(days=8)
    db_session.flush()
    assert channels.purge_old(db_session, now=now) == {"events": 1, "sent": 1, "failed": 0}
    assert {m.id for m in db_session.scalars(select(ChannelMessage))} == {old_pending, recent_sent}
    assert [e.event_id for e in db_session.scalars(select(ChannelEvent))] == ["new"]


def test_channel_settings_are_checked(tmp_path: Path) -> None:
    base = {"environment": "testing", "instance_path": str(tmp_path)}
    assert load_settings(base, environ={}).channels == ()
    with pytest.raises(SettingsError, match="telegram_webhook_secret"):
        load_settings(base | {"telegram_bot_token": "123:abc"}, environ={})
    with pytest.raises(SettingsError, match="telegram_webhook_secret"):
        load_settings(
            base | {"telegram_bot_token": "123:abc", "telegram_webhook_secret": "short"}, environ={}
        )
    telegram = load_settings(
        base | {"telegram_bot_token": "123:abc", "telegram_webhook_secret": "s" * 32}, environ={}
    )
    assert telegram.channels == ("telegram",)
    with pytest.raises(SettingsError, match="all four"):
        load_settings(base | {"whatsapp_access_token": "EAAG"}, environ={})
    whatsapp = {
        "whatsapp_access_token": "EAAG",
        "whatsapp_app_secret": "app-secret",
        "whatsapp_phone_number_id": "1055",
        "whatsapp_verify_token": "verify-me",
    }
    assert load_settings(base | whatsapp, environ={}).channels == ("whatsapp",)
    with pytest.raises(SettingsError, match="Messenger needs all three"):
        load_settings(base | {"messenger_page_access_token": "EAAP"}, environ={})
    messenger = {
        "messenger_page_access_token": "EAAP",
        "messenger_app_secret": "s",
        "messenger_verify_token": "v",
    }
    assert load_settings(base | whatsapp | messenger, environ={}).channels == ("whatsapp", "messenger")
    production = {"environment": "production", "instance_path": str(tmp_path), "secret_key": "k" * 40}
    with pytest.raises(SettingsError, match="whatsapp_app_secret is a placeholder"):
        load_settings(production | whatsapp | {"whatsapp_app_secret": "change-me"}, environ={})
    with pytest.raises(SettingsError, match="channel_conversation_hours"):
        load_settings(base | {"channel_conversation_hours": 0}, environ={})
    with pytest.raises(SettingsError, match="telegram_api_url"):
        load_settings(base | {"telegram_api_url": "ftp://x"}, environ={})
    # WhatsApp's reopening template: its name, with or without a language (English when not given).
    assert load_settings(
        base | {"whatsapp_reopen_template": "support_follow_up"}, environ={}
    ).whatsapp_template == (
        "support_follow_up",
        "en",
    )
    env = {"HELPLOOP_WHATSAPP_REOPEN_TEMPLATE": "follow_up_2:en_GB"}
    assert load_settings(base, environ=env).whatsapp_template == ("follow_up_2", "en_GB")
    assert load_settings(base, environ={}).whatsapp_template is None
    for wrong in ("Support Follow-Up", "follow_up:english", "follow_up:"):
        with pytest.raises(SettingsError, match="whatsapp_reopen_template must be a template's name"):
            load_settings(base | {"whatsapp_reopen_template": wrong}, environ={})


@pytest.mark.postgres
def test_workers_sending_at_once_send_each_message_once_and_in_order(postgres_schema_url: str) -> None:
    """Four senders look at once on PostgreSQL: each message is sent once, each chat's in order."""
    from core.db import make_engine

    engine = make_engine(postgres_schema_url)
    tables = (ChannelMessage.__table__, ChannelChat.__table__, ChannelEvent.__table__)
    with Session(engine) as session:
        for table in tables:
            session.execute(table.delete())
        expected: dict[str, list[str]] = {}
        made = []
        for chat in range(4):
            conversation = conversation_for(session, channel="telegram", chat_key=str(chat), idle_hours=24)
            made.append(conversation)
            texts = [f"{chat}-{n}" for n in range(5)]
            _queue(session, conversation, *texts)
            expected[str(chat)] = texts
        session.commit()
    lock = threading.Lock()
    sent: dict[str, list[str]] = {}

    def send(channel: str, chat_key: str, payload: dict[str, Any]) -> None:
        with lock:
            sent.setdefault(chat_key, []).append(payload["text"])

    for _ in range(4):  # a look that lost the claim lock sends nothing; the next ones take the rest
        at_once(engine, 4, lambda session: deliver_due(session, send, limit=7))
    # and two deliveries of one update at once: one of them is answered
    seen: list[bool] = []
    at_once(
        engine, 2, lambda session: seen.append(first_delivery(session, channel="telegram", event_id="77"))
    )
    with Session(engine) as session:
        statuses = session.scalars(select(ChannelMessage.status)).all()
        for table in tables:
            session.execute(table.delete())
        session.execute(Conversation.__table__.delete().where(Conversation.id.in_(made)))
        session.commit()
    engine.dispose()
    assert sent == expected and set(statuses) == {"sent"}
    assert sorted(seen) == [False, True]


@pytest.mark.postgres
def test_first_messages_from_a_new_chat_at_once_start_one_conversation(postgres_schema_url: str) -> None:
    """Two web processes take a new chat's first two messages at the same instant on PostgreSQL (each
    transaction held open a moment, as answering the message does): both land in one conversation."""
    import time

    from core.db import make_engine

    engine = make_engine(postgres_schema_url)
    found: list[str] = []

    def first_message(session: Session) -> None:
        found.append(conversation_for(session, channel="whatsapp", chat_key="447700900123", idle_hours=24))
        time.sleep(0.3)  # the answer is being written; the other message arrives meanwhile

    at_once(engine, 2, first_message)
    with Session(engine) as session:
        chats = session.scalars(select(ChannelChat).where(ChannelChat.chat_key == "447700900123")).all()
        made = {chat.conversation_id for chat in chats}
        session.execute(ChannelChat.__table__.delete())
        session.execute(Conversation.__table__.delete().where(Conversation.id.in_(made | set(found))))
        session.commit()
    engine.dispose()
    assert len(found) == 2 and len(set(found)) == 1
    assert len(chats) == 1 and made == set(found)


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("5", 5),
        (" 4/5 ", 4),
        ("4 out of 5!", 4),
        ("3 of 5 stars", 3),
        ("Five stars", 5),
        ("one", 1),
        ("1 star.", 1),
        ("★★★★", 4),
        ("⭐️⭐️⭐️⭐️⭐️", 5),
        ("★★ 2", 2),
        ("6", None),
        ("0", None),
        ("★★★★★★", None),
        ("★★ 5", None),
        ("5 minutes", None),
        ("my card ends in 5", None),
        ("45", None),
        ("", None),
    ],
)
def test_a_rating_typed_instead_of_pressed(text: str, rating: int | None) -> None:
    assert channels.typed_rating(text) == rating
