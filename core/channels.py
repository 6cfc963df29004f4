"""Messaging apps (Telegram, WhatsApp, Messenger) as channels: which conversation a chat is in, updates
answered once, and an outbox of the messages to send them.

A customer writing to the company's Telegram bot or WhatsApp number is a conversation like the widget's: the
bot answers from the knowledge base, the turn is logged and routed to review, and a person can take it over.
What differs is the way back. The widget asks for its replies; a messaging app is sent them by calling its
API. So the reply (and any live-chat message from the team) is written to ``channel_messages`` in the same
transaction as the turn or message it carries, and a worker sends it (``deliver_due``), in order per chat,
with retries: a slow or failing app never holds up the webhook's answer to the app, and nothing is lost
when it is down.

The app's id of the chat (a Telegram chat id, a WhatsApp phone number) is personal data. It is kept in
``channel_chats`` beside the conversation's id (a random one, as the widget's), never in it, so it does not
reach page addresses, exports or reviewers; erasing the conversation deletes it.
"""

from __future__ import annotations

import hashlib
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core import mail, registry  # module imports: core.registry queues the team's replies here
from core.models import ChannelChat, ChannelEvent, ChannelMessage, Conversation, as_utc, utcnow

CHANNELS = ("telegram", "whatsapp", "messenger")
NAMES = {"telegram": "Telegram", "whatsapp": "WhatsApp", "messenger": "Messenger"}
# A rating button of the question sent when a live chat ends (``rating_request``): the conversation it rates
# and 1-5. Within Telegram's 64 bytes of callback_data for the ids conversations here have (32 characters).
RATING_PAYLOAD = re.compile(r"rate:([A-Za-z0-9_-]{8,40}):([1-5])")
# Meta's apps take replies only within 24 hours of the customer's last message; a person's replies on a
# Messenger page with the Human Agent permission, within 7 days (sent with the HUMAN_AGENT tag).
REPLY_WINDOW_HOURS = {"whatsapp": 24, "messenger": 24}
HUMAN_AGENT_HOURS = 24 * 7
RETRY_SECONDS = (10, 60, 300, 900)  # wait after the 1st, 2nd, ... failed attempt: a reply is awaited
MAX_ATTEMPTS = len(RETRY_SECONDS) + 1
BATCH = 50
LOOK_BUDGET_SECONDS = 10.0  # sends per look stop after this long (the watcher thread has other watches)
FAILURES_PER_LOOK = 3  # the app is likely down: the rest wait for the next look
CLAIM_SECONDS = 120  # a claimed batch is due again after this (its worker died mid-way)
EVENT_KEEP_HOURS = 24  # the apps repeat a delivery within minutes; a day is ample
SENT_KEEP_DAYS = 7
FAILED_KEEP_DAYS = 30
# pg_advisory_xact_lock's key for claiming messages (any fixed 64-bit number; "Channels" in ASCII): one
# worker claims at a time, so two never send one chat's messages out of order.
CLAIM_LOCK_KEY = 0x4368616E6E656C73
CHAT_LOCK_SPACE = 0x43686174  # "Chat": conversation_for holds a chat with (this, a hash of the chat)


@dataclass(frozen=True)
class Failure:
    """A message the app did not take: why, and whether trying again can help (a network error, HTTP 429
    or 5xx) or not (the customer blocked the bot, the chat does not exist: HTTP 4xx)."""

    error: str
    final: bool = False
    # Of a message sent in parts (longer than the app takes), how many the app had taken before this failure:
    # the next attempt starts after them (payload "parts_sent"), so the customer never gets a part twice.
    parts_sent: int = 0


@dataclass(frozen=True)
class Sent:
    """A message the app took, with its own id for it (which its delivery and read receipts name)."""

    app_message_id: str


# (channel, chat_key, payload) -> None or Sent: taken; Failure: not
Send = Callable[[str, str, dict[str, Any]], "Failure | Sent | None"]


def conversation_for(
    session: Session, *, channel: str, chat_key: str, idle_hours: float, now: datetime | None = None
) -> str:
    """The id of the conversation a message from this chat belongs to: the chat's latest, unless it has been
    quiet for ``idle_hours`` and nobody from the team is chatting in it; else a new one (flushed). The chat's
    ``customer_at`` becomes ``now`` (its reply window opens again: ``reply_window``)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    now = now or utcnow()
    _lock_chat(session, channel, chat_key)
    latest = session.scalars(
        select(ChannelChat)
        .where(ChannelChat.channel == channel, ChannelChat.chat_key == chat_key)
        .order_by(ChannelChat.id.desc())
        .limit(1)
    ).first()
    if latest is not None:
        conversation = session.get(Conversation, latest.conversation_id)
        if conversation is not None:
            if registry.agent_active(conversation) or as_utc(
                conversation.last_activity_at
            ) >= now - timedelta(hours=idle_hours):
                latest.customer_at = now
                return conversation.id
    conversation = Conversation(channel=channel, created_at=now, last_activity_at=now)
    session.add(conversation)
    session.flush()
    session.add(
        ChannelChat(
            channel=channel,
            chat_key=chat_key,
            conversation_id=conversation.id,
            created_at=now,
            customer_at=now,
        )
    )
    session.flush()
    return conversation.id


def _lock_chat(session: Session, channel: str, chat_key: str) -> None:
    """On PostgreSQL, hold this chat until the transaction ends: two first messages from a new chat answered
    by two web processes at once would otherwise each find no conversation and start one (the second then
    waits here and finds the first's). SQLite: the web process's write lock holds them apart already."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(f"{channel}:{chat_key}".encode(), digest_size=4).digest()
    # The two-key form: a key space apart from the claim lock's single key. Two chats sharing a hash only
    # wait for each other.
    session.execute(
        text("SELECT pg_advisory_xact_lock(:space, :key)"),
        {"space": CHAT_LOCK_SPACE, "key": int.from_bytes(digest, "big", signed=True)},
    )


def first_delivery(session: Session, *, channel: str, event_id: str, now: datetime | None = None) -> bool:
    """Record an update the app delivered: True the first time, False when it is a repeat (the app timed out
    waiting and sent it again, or sent it twice at once). The caller commits before answering it."""
    key = (channel, event_id[:128])
    if session.get(ChannelEvent, key) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(ChannelEvent(channel=key[0], event_id=key[1], received_at=now or utcnow()))
    except IntegrityError:  # the same update, being answered by another request
        return False
    return True


SUFFIX_DIGITS = 8  # a number this long matches the chats whose id ends with it (a phone number typed without
# its country code); shorter, only an id that is exactly it (an order number must not find chats by chance)


def chats_matching(number: str) -> Select[Any] | None:
    """The conversations of the chats whose app id is ``number`` as people type it: a WhatsApp number with
    or without ``+``, spaces, dashes, brackets, or in its national form ("+44 7700 900123", "07700 900123"
    both find 447700900123), a Telegram chat id, a Messenger id. None when it is no number (a letter, or
    fewer than 6 digits)."""
    digits = re.sub(r"[\s+()./-]", "", number)
    if not digits.isdigit() or len(digits) < 6:
        return None
    significant = digits.lstrip("0") or digits
    if len(significant) < SUFFIX_DIGITS:
        return select(ChannelChat.conversation_id).where(ChannelChat.chat_key == digits)
    return select(ChannelChat.conversation_id).where(
        ChannelChat.chat_key.endswith(significant, autoescape=True)
    )


def customer_wrote(session: Session, *, conversation_id: str, now: datetime | None = None) -> None:
    """The customer did something in the chat that is no message to answer (pressed 👍 / 👎): for Meta's
    apps it counts as their last message all the same, so the reply window opens again from ``now``."""
    session.execute(
        update(ChannelChat)
        .where(ChannelChat.conversation_id == conversation_id)
        .values(customer_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )


def chat_of(session: Session, *, conversation_id: str) -> ChannelChat | None:
    return session.scalar(select(ChannelChat).where(ChannelChat.conversation_id == conversation_id))


@dataclass(frozen=True)
class ReplyWindow:
    """Meta's rule for a chat on WhatsApp or Messenger: the team's replies reach the customer only within
    ``hours`` of the customer's last message (``customer_at``); later, the app refuses them (Messenger) or
    takes them and reports them failed (WhatsApp), until the customer writes again."""

    channel: str
    hours: int
    customer_at: datetime

    @property
    def closes_at(self) -> datetime:
        return self.customer_at + timedelta(hours=self.hours)

    @property
    def span(self) -> str:
        return span_text(self.hours)

    def open(self, now: datetime) -> bool:
        return now < self.closes_at


def span_text(hours: int) -> str:
    """A reply window's length in words: "24 hours", "7 days"."""
    return f"{hours // 24} days" if hours > 24 and hours % 24 == 0 else f"{hours} hours"


def window_hours(channel: str, *, human_agent: bool = False) -> int | None:
    """How long after the customer's last message the app takes the team's replies (None: no limit);
    ``human_agent``: the Messenger page sends them with the HUMAN_AGENT tag (``messenger_human_agent``)."""
    if channel == "messenger" and human_agent:
        return HUMAN_AGENT_HOURS
    return REPLY_WINDOW_HOURS.get(channel)


def reply_window(session: Session, *, conversation_id: str, human_agent: bool = False) -> ReplyWindow | None:
    """The conversation's reply window for the team; None when its app has none (Telegram, the widget) or
    the chat predates the record of the customer's last message. ``human_agent``: as ``window_hours``."""
    chat = chat_of(session, conversation_id=conversation_id)
    if chat is None or chat.customer_at is None:
        return None
    hours = window_hours(chat.channel, human_agent=human_agent)
    return None if hours is None else ReplyWindow(chat.channel, hours, as_utc(chat.customer_at))


def queue(
    session: Session, *, conversation_id: str, payload: dict[str, Any], now: datetime | None = None
) -> ChannelMessage | None:
    """Put a message to the conversation's chat in the outbox (None: the conversation is not on a messaging
    app). ``payload``: ``text`` (Markdown), optional ``choices`` ([{"title", "payload"}]: buttons that send
    ``payload`` back as the customer's message) and ``turn_id`` (the answer's thumbs)."""
    chat = chat_of(session, conversation_id=conversation_id)
    if chat is None:
        return None
    message = ChannelMessage(
        conversation_id=conversation_id,
        channel=chat.channel,
        chat_key=chat.chat_key,
        payload=payload,
        status="pending",
        attempts=0,
        created_at=now or utcnow(),
    )
    session.add(message)
    session.flush()
    return message


def telegram_webhook_address(public_url: str) -> str:
    """This app's Telegram webhook at its public address (registered by ``helploop channels connect telegram``
    or the Activity page's button)."""
    return public_url.rstrip("/") + "/channels/telegram/webhook"


def rating_request(conversation_id: str, text: str) -> dict[str, Any]:
    """The message that ends a live chat on a messaging app: ``text`` (the bot answers again; how was it?)
    with five buttons, 5 to 1, each sending back ``rate:<conversation>:<n>`` (the widget's five stars)."""
    return {
        "text": text,
        "choices": [
            {"title": f"{'★' * n} {n}", "payload": f"rate:{conversation_id}:{n}"} for n in range(5, 0, -1)
        ],
    }


NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
# "5", "4/5", "4 out of 5", "five stars", "3 of 5 stars"
TYPED_RATING = re.compile(
    r"([1-5]|one|two|three|four|five)(?:\s*(?:/|out of|of)\s*(?:5|five))?(?:\s*stars?)?"
)
STARS = "★⭐🌟"


def typed_rating(text: str) -> int | None:
    """A rating of the live chat typed instead of pressed: "5", "4/5", "4 out of 5", "five stars", "★★★★"
    (also "★★★★ 4", a button's label copied): 1-5, or None for anything else. Read only as the answer to
    the rating question (``awaits_rating``): any other time a "5" is a message for the bot."""
    said = text.strip().lower().replace("\ufe0f", "").rstrip(".! ")
    plain = "".join(said.split())
    stars = sum(character in STARS for character in plain)
    if stars:
        rest = "".join(character for character in plain if character not in STARS)
        return stars if stars <= 5 and rest in ("", str(stars)) else None
    match = TYPED_RATING.fullmatch(said)
    if match is None:
        return None
    value = match.group(1)
    return NUMBER_WORDS.get(value) or int(value)


def awaits_rating(session: Session, *, conversation_id: str) -> bool:
    """Whether the last thing sent to the chat is this conversation's rating question (``rating_request``)
    and it is not rated yet: the customer's next message may be their answer to it. Once they have written
    anything else to the bot, its reply is the last thing sent, and a number is a question again."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.handoff_closed_at is None or conversation.rating is not None:
        return False
    last = session.scalar(
        select(ChannelMessage.payload)
        .where(ChannelMessage.conversation_id == conversation_id, ChannelMessage.channel.in_(CHANNELS))
        .order_by(ChannelMessage.id.desc())
        .limit(1)
    )
    choices = (last or {}).get("choices") or []
    return any(
        (match := RATING_PAYLOAD.fullmatch(str(choice.get("payload") or ""))) is not None
        and match.group(1) == conversation_id
        for choice in choices
        if isinstance(choice, dict)
    )


def _claim(
    session: Session, now: datetime, limit: int, channels: tuple[str, ...] | None = None
) -> list[ChannelMessage]:
    """The pending messages to send now (of ``channels``; None: all), oldest first: each chat's from its
    oldest pending message while they are due (a later message never overtakes one waiting for its retry).
    Their attempts are counted and they are claimed until ``now + CLAIM_SECONDS``."""
    if session.get_bind().dialect.name == "postgresql":
        key = CLAIM_LOCK_KEY ^ (zlib.crc32(",".join(sorted(channels)).encode()) if channels else 0)
        locked = session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key})
        if not locked:  # another worker is claiming these channels: it takes these
            return []
    return _take(session, _due(session, now, limit, channels), now)


def _due(
    session: Session, now: datetime, limit: int, channels: tuple[str, ...] | None = None
) -> list[ChannelMessage]:
    """Each chat's pending messages from its oldest, while they are due, oldest first (as read now)."""
    query = select(ChannelMessage).where(ChannelMessage.status == "pending")
    if channels is not None:
        query = query.where(ChannelMessage.channel.in_(channels))
    pending = session.scalars(
        query.order_by(ChannelMessage.id).limit(limit).execution_options(populate_existing=True)
    ).all()
    blocked: set[tuple[str, str]] = set()
    due = []
    for message in pending:
        chat = (message.channel, message.chat_key)
        if chat in blocked:
            continue
        if message.next_attempt_at is not None and as_utc(message.next_attempt_at) > now:
            blocked.add(chat)  # waiting for a retry, or claimed by a worker now: the chat's later ones wait
            continue
        due.append(message)
    return due


def _take(session: Session, due: list[ChannelMessage], now: datetime) -> list[ChannelMessage]:
    """Claim ``due``: each only if nobody claimed it since it was read (its attempts unchanged). On SQLite,
    where web processes are not held apart by a lock, another process's sender may have read the same rows;
    a chat with a message taken by another stops there, so its later ones never overtake it."""
    until = now + timedelta(seconds=CLAIM_SECONDS)
    blocked: set[tuple[str, str]] = set()
    claimed = []
    for message in due:
        chat = (message.channel, message.chat_key)
        if chat in blocked:
            continue
        taken = session.execute(
            update(ChannelMessage)
            .where(
                ChannelMessage.id == message.id,
                ChannelMessage.status == "pending",
                ChannelMessage.attempts == message.attempts,
            )
            .values(attempts=message.attempts + 1, next_attempt_at=until),
            execution_options={"synchronize_session": False},
        )
        if int(getattr(taken, "rowcount", 0) or 0) != 1:
            blocked.add(chat)
            continue
        set_committed_value(message, "attempts", message.attempts + 1)
        set_committed_value(message, "next_attempt_at", until)
        claimed.append(message)
    return claimed


def deliver_due(
    session: Session,
    send: Send,
    *,
    now: datetime | None = None,
    limit: int = BATCH,
    clock: Callable[[], float] = time.monotonic,
    channels: tuple[str, ...] | None = None,
) -> Counter[str]:
    """Send the outbox's due messages. Claim them (committed), then send each outside any transaction and
    record its outcome at once (committed: the app's receipts for it may come within a second, and a worker
    that dies mid-way leaves no sent message to send again): sent; tried again after 10 s, 1, 5 and 15
    minutes; or failed (at once when the app says it never will take it). After a chat's message fails, that
    chat's later ones wait for it (``deferred``, no attempt counted); after ``FAILURES_PER_LOOK`` failures,
    or ``LOOK_BUDGET_SECONDS``, the rest wait for the next look. ``channels``: only theirs (the e-mails have
    a sender of their own, so a slow mail server never holds up the apps' answers). Returns the outcomes
    counted."""
    now = now or utcnow()
    claimed = [(m.id, m.channel, m.chat_key, dict(m.payload)) for m in _claim(session, now, limit, channels)]
    session.commit()
    outcomes: Counter[str] = Counter()
    failed_chats: set[tuple[str, str]] = set()
    done: set[int] = set()
    started = clock()
    for message_id, channel, chat_key, payload in claimed:
        if (channel, chat_key) in failed_chats:
            continue
        if outcomes["retry"] + outcomes["failed"] >= FAILURES_PER_LOOK:
            break
        if clock() - started >= LOOK_BUDGET_SECONDS:
            break
        result: Failure | Sent | None
        try:
            result = send(channel, chat_key, payload)
        except Exception as exc:  # noqa: BLE001 - any error is a failed attempt, retried
            result = Failure(f"{type(exc).__name__}: {exc}"[:500])
        if isinstance(result, Failure):
            failed_chats.add((channel, chat_key))
        done.add(message_id)
        message = session.get(ChannelMessage, message_id)
        if message is None:  # erased meanwhile
            continue
        returned = now + timedelta(seconds=clock() - started)  # Messenger's receipts compare times with it
        outcomes[_record(message, result, now, sent_at=returned)] += 1
        session.commit()
    for message_id, channel, chat_key, _ in claimed:
        message = session.get(ChannelMessage, message_id)
        if message_id in done or message is None:
            continue
        message.attempts -= 1
        retry = (channel, chat_key) in failed_chats
        message.next_attempt_at = now + timedelta(seconds=RETRY_SECONDS[0]) if retry else now
        outcomes["deferred"] += 1
    session.flush()
    return outcomes


def _record(
    message: ChannelMessage, result: Failure | Sent | None, now: datetime, *, sent_at: datetime
) -> str:
    """A send's outcome on its message: ``sent`` (at ``sent_at``, when the app answered: a look's sends
    take up to ``LOOK_BUDGET_SECONDS``), ``retry`` (counted from the look's ``now``) or ``failed``."""
    if not isinstance(result, Failure):
        message.status, message.sent_at, message.next_attempt_at = "sent", sent_at, None
        if isinstance(result, Sent):
            message.app_message_id = result.app_message_id[:200]
        return "sent"
    message.last_error = result.error
    if result.parts_sent > int(message.payload.get("parts_sent") or 0):
        message.payload = {**message.payload, "parts_sent": result.parts_sent}  # a new dict: saved
    if result.final or message.attempts >= MAX_ATTEMPTS:
        message.status, message.next_attempt_at = "failed", None
        return "failed"
    message.next_attempt_at = now + timedelta(seconds=RETRY_SECONDS[message.attempts - 1])
    return "retry"


def delivery(session: Session, *, conversation_id: str) -> dict[int, tuple[str, str | None]]:
    """The team's live-chat messages sent on by the outbox (to a messaging app, or by e-mail: ``core.mail``),
    by their id: how far each got (``progress``; an e-mail's as ``core.mail.PROGRESS`` names it) and the
    last error."""
    rows = session.scalars(
        select(ChannelMessage)
        .where(ChannelMessage.conversation_id == conversation_id)
        .order_by(ChannelMessage.id)
    ).all()
    return {
        int(m.payload["message_id"]): (
            mail.PROGRESS[m.status] if m.channel == mail.EMAIL else progress(m),
            m.last_error,
        )
        for m in rows
        if isinstance(m.payload.get("message_id"), int)
    }


def progress(message: ChannelMessage) -> str:
    """How far a message got: pending (waiting to be sent, or for a retry), sent (the app took it), delivered
    (on the customer's phone), read, or failed (the app refused it, or reported later that it could not
    deliver it)."""
    if message.status == "sent":
        if message.read_at is not None:
            return "read"
        if message.delivered_at is not None:
            return "delivered"
    return message.status


# WhatsApp's statuses for a message, in the order they happen; one may arrive before an earlier one.
RECEIPTS = ("sent", "delivered", "read", "failed")


def receipt(
    session: Session,
    *,
    channel: str,
    app_message_id: str,
    status: str,
    at: datetime | None = None,
    error: str | None = None,
) -> ChannelMessage | None:
    """What the app reported later about a message it took (WhatsApp's ``statuses``): delivered to the
    customer's phone, read, or failed (its error kept: outside the 24-hour window, the number is not on
    WhatsApp). A receipt never undoes a later one (a "delivered" after "read"), and a failure counts only
    for a message not yet delivered. Returns the message changed, None when there is none (another app's,
    purged, or a receipt for an earlier piece of a long message) or nothing changed."""
    if status not in RECEIPTS:
        raise ValueError(f"unknown receipt {status!r}: one of {', '.join(RECEIPTS)}")
    message = session.scalars(
        select(ChannelMessage)
        .where(ChannelMessage.channel == channel, ChannelMessage.app_message_id == app_message_id[:200])
        .order_by(ChannelMessage.id.desc())
        .limit(1)
    ).first()
    if message is None or message.status != "sent":
        return None
    at = at or utcnow()
    if status == "failed":
        if message.delivered_at is not None:
            return None
        message.status, message.last_error = "failed", (error or "the app could not deliver it")[:500]
    elif status == "delivered" and message.delivered_at is None:
        message.delivered_at = at
    elif status == "read" and message.read_at is None:
        message.read_at = at
        message.delivered_at = message.delivered_at or at
    else:
        return None
    session.flush()
    return message


def seen_up_to(session: Session, *, channel: str, chat_key: str, until: datetime, read: bool) -> int:
    """Messenger's receipts, which name no message but a time (its watermark): every message sent to the chat
    by ``until`` has been delivered (``read`` False) or read. Returns the messages marked."""
    column = ChannelMessage.read_at if read else ChannelMessage.delivered_at
    marked = session.scalars(
        select(ChannelMessage).where(
            ChannelMessage.channel == channel,
            ChannelMessage.chat_key == chat_key,
            ChannelMessage.status == "sent",
            ChannelMessage.sent_at <= until,
            column.is_(None),
        )
    ).all()
    for message in marked:
        if read:
            message.read_at = until
        message.delivered_at = message.delivered_at or until
    session.flush()
    return len(marked)


def purge_old(session: Session, *, now: datetime | None = None) -> dict[str, int]:
    """Delete what is no longer needed: delivered updates' ids after a day, sent messages after a week,
    failed ones after a month (their text is the bot's answer or a team member's message)."""
    now = now or utcnow()
    removed = {}
    quick = {"synchronize_session": False}  # no datetime compared in Python (SQLite's are naive)
    events = session.execute(
        delete(ChannelEvent).where(ChannelEvent.received_at < now - timedelta(hours=EVENT_KEEP_HOURS)),
        execution_options=quick,
    )
    removed["events"] = int(getattr(events, "rowcount", 0) or 0)
    for status, days in (("sent", SENT_KEEP_DAYS), ("failed", FAILED_KEEP_DAYS)):
        result = session.execute(
            delete(ChannelMessage).where(
                ChannelMessage.status == status, ChannelMessage.created_at < now - timedelta(days=days)
            ),
            execution_options=quick,
        )
        removed[status] = int(getattr(result, "rowcount", 0) or 0)
    return removed


def erase(session: Session, *, conversation_id: str) -> int:
    """A conversation erased: its chat's id and its unsent and kept messages go. Returns the rows deleted."""
    chats = session.execute(delete(ChannelChat).where(ChannelChat.conversation_id == conversation_id))
    messages = session.execute(
        delete(ChannelMessage).where(ChannelMessage.conversation_id == conversation_id)
    )
    return int(getattr(chats, "rowcount", 0) or 0) + int(getattr(messages, "rowcount", 0) or 0)


@dataclass(frozen=True)
class ChannelCounts:
    channel: str
    chats: int  # conversations on it since ``since``
    pending: int
    sent: int  # since ``since``
    failed: int  # since ``since``
    last_error: str | None  # of the newest failed message


def counts(session: Session, *, since: datetime) -> dict[str, ChannelCounts]:
    """Per channel (and ``email``: core.mail): its conversations and its outbox since ``since`` (pending
    ones whenever queued)."""
    chats = dict(
        session.execute(
            select(ChannelChat.channel, func.count())
            .where(ChannelChat.created_at >= since)
            .group_by(ChannelChat.channel)
        ).all()
    )
    by_status: dict[tuple[str, str], int] = {}
    for channel, status, count in session.execute(
        select(ChannelMessage.channel, ChannelMessage.status, func.count())
        .where((ChannelMessage.status == "pending") | (ChannelMessage.created_at >= since))
        .group_by(ChannelMessage.channel, ChannelMessage.status)
    ).all():
        by_status[(channel, status)] = count
    result = {}
    for channel in (*CHANNELS, mail.EMAIL):  # the replies by e-mail go through the same outbox
        last_error = session.scalar(
            select(ChannelMessage.last_error)
            .where(ChannelMessage.channel == channel, ChannelMessage.status == "failed")
            .where(ChannelMessage.created_at >= since)
            .order_by(ChannelMessage.id.desc())
            .limit(1)
        )
        result[channel] = ChannelCounts(
            channel=channel,
            chats=int(chats.get(channel, 0)),
            pending=by_status.get((channel, "pending"), 0),
            sent=by_status.get((channel, "sent"), 0),
            failed=by_status.get((channel, "failed"), 0),
            last_error=last_error,
        )
    return result
