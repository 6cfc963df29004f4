"""Telegram, WhatsApp and Messenger as channels: the webhooks the apps call with a customer's message, and
the clients that send the bot's replies back (core.channels holds the conversations and the outbox).

* **Telegram** (Bot API): ``POST /channels/telegram/webhook``, authenticated by the secret Telegram sends in
  ``X-Telegram-Bot-Api-Secret-Token`` (``helploop channels connect telegram`` registers the webhook with it).
  Answers go out with ``sendMessage`` in Telegram's HTML; "did you mean" choices and 👍 / 👎 under an answer
  are inline buttons, whose presses come back as ``callback_query`` updates (answered in the webhook's own
  response, so the button stops spinning without another call).
* **WhatsApp** (Meta's Cloud API): ``GET /channels/whatsapp/webhook`` answers the subscription's check with
  the verify token; ``POST`` deliveries are authenticated by ``X-Hub-Signature-256`` (HMAC-SHA256 of the
  body with the app secret). Answers are text in WhatsApp's markup; up to three choices are reply buttons,
  more a list. WhatsApp has no thumbs: "that's wrong" typed is the thumbs-down, as in the widget.
* **Messenger** (a Facebook page's chats, Meta's Send API): the same subscription check and signature as
  WhatsApp's, at ``/channels/messenger/webhook``. Answers are text (WhatsApp's markup, which Messenger reads
  too); the choices and 👍 / 👎 under an answer are quick replies. The page's own messages (its echoes) are
  ignored; its "Get started" button (payload ``GET_STARTED``) is a greeting.

What the apps report later about a message they took is kept with it (core.channels.receipt, seen_up_to):
WhatsApp's statuses (delivered, read, or failed with its reason: the 24-hour window had passed, the number
is not on WhatsApp) and Messenger's delivery and read receipts, so the team sees on the conversation page
whether the customer got their reply, and a reply that never arrived is counted as failed.

An update an app delivers twice (it repeats one it got no answer to in time) is answered once. A message
while a team member chats in the conversation goes to them, as in the widget, and their replies are sent to
the app. Photos, voice notes and stickers get ``channel_unsupported_message``. The webhooks have no rate
limit per address (every customer's message comes from the app's few servers); the signature or secret
is what keeps others out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from html import unescape
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core import channels as outbox
from core.channels import Failure, Sent
from core.db import Database
from core.models import ChannelChat, ChannelEvent, Conversation, Turn
from core.registry import NotFoundError, NothingToRate, rate_chat
from core.settings import Settings
from serving.api import answer_message, chat_rated, person_choice, rate_answer, to_live_chat
from serving.app import db_session, state
from serving.channel_text import render, split
from serving.errors import APIError
from serving.mail import Mailer

log = logging.getLogger(__name__)

channels = Blueprint("channels", __name__, url_prefix="/channels")

Post = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]  # (url, body, headers) -> (status, body)

MESSAGE_LIMIT = 4096  # characters of one message on Telegram and on WhatsApp
CALLBACK_LIMIT = 64  # bytes of a Telegram button's callback_data
BODY_LIMIT = 1024  # characters of the text of a WhatsApp message with buttons
BUTTONS = 3  # WhatsApp's reply buttons per message (more choices: a list)
BUTTON_TITLE = 20
LIST_ROWS = 10
ROW_TITLE = 24
ROW_DESCRIPTION = 72
MESSENGER_LIMIT = 2000  # characters of one Messenger message
QUICK_REPLIES = 13
GET_STARTED = "GET_STARTED"  # the payload of a page's "Get started" button, as Meta's examples set it
# Telegram's commands a customer meets first: /start opens every chat with a bot.
COMMANDS = {"/start": "hi", "/help": "what can you do?"}
FEEDBACK = re.compile(r"fb:(\d{1,18}):([01])")
HASHED = "h:"  # a choice whose payload is too long for callback_data: its hash


def http_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    http = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(http, timeout=10) as response:  # noqa: S310 - the app's API address
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def outcome(status: int, body: bytes, what: str) -> Failure | None:
    """None when the app took the message; else why not, final for a refusal (4xx but 408 and 429: the
    customer blocked the bot, the chat is gone, the token is wrong) that trying again cannot mend."""
    if 200 <= status < 300:
        return None
    detail = body[:300].decode("utf-8", errors="replace")
    try:  # the app's own words: Telegram's "description", Meta's "error": {"message"}
        said = json.loads(body)
        error = said.get("error") if isinstance(said, dict) else None
        detail = str(said.get("description") or (error or {}).get("message") or detail)[:300]
    except (ValueError, AttributeError):
        pass
    return Failure(
        f"{what}: HTTP {status} {detail}".strip(), final=400 <= status < 500 and status not in (408, 429)
    )


def taken(status: int, body: bytes, what: str, id_of: Callable[[Any], Any]) -> Failure | Sent | None:
    """``outcome``, with the app's id of the message it took when its answer names one (``id_of`` reads it
    from the JSON; WhatsApp's and Messenger's receipts name it)."""
    failure = outcome(status, body, what)
    if failure is not None:
        return failure
    try:
        app_id = id_of(json.loads(body))
    except (ValueError, TypeError, LookupError, AttributeError):
        return None
    return Sent(str(app_id)) if isinstance(app_id, str | int) and str(app_id) else None


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def hashed(payload: str) -> str:
    return HASHED + hashlib.sha256(payload.encode()).hexdigest()[:32]


class Telegram:
    name = "telegram"

    def __init__(self, settings: Settings, post: Post = http_post) -> None:
        self.base = f"{settings.telegram_api_url.rstrip('/')}/bot{settings.telegram_bot_token}"
        self.secret = settings.telegram_webhook_secret
        self.post = post

    def call(self, method: str, data: dict[str, Any]) -> Failure | None:
        status, body = self.post(f"{self.base}/{method}", _json(data), {"Content-Type": "application/json"})
        return outcome(status, body, method)

    @staticmethod
    def keyboard(payload: dict[str, Any]) -> list[list[dict[str, str]]]:
        rows = []
        for choice in payload.get("choices") or []:
            data = str(choice["payload"])
            callback = data if len(data.encode()) <= CALLBACK_LIMIT else hashed(data)
            rows.append([{"text": str(choice["title"])[:64], "callback_data": callback}])
        if payload.get("thumbs") and payload.get("turn_id"):
            turn = int(payload["turn_id"])
            rows.append(
                [
                    {"text": "👍", "callback_data": f"fb:{turn}:1"},
                    {"text": "👎", "callback_data": f"fb:{turn}:0"},
                ]
            )
        return rows

    def send(self, chat_key: str, payload: dict[str, Any]) -> Failure | None:
        pieces = split(render(str(payload.get("text") or ""), "telegram"), MESSAGE_LIMIT) or ["…"]
        keyboard = self.keyboard(payload)
        for number, piece in enumerate(pieces, start=1):
            if number <= already_sent(payload):
                continue
            data: dict[str, Any] = {
                "chat_id": chat_key,
                "text": piece,
                "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": True},
            }
            if keyboard and number == len(pieces):
                data["reply_markup"] = {"inline_keyboard": keyboard}
            failure = self.call("sendMessage", data)
            if failure is not None and "can't parse entities" in failure.error:
                # Telegram could not read the HTML (a piece cut inside a tag): the words, as plain text
                data.pop("parse_mode")
                data["text"] = unescape(re.sub(r"<[^>]+>", "", piece))
                failure = self.call("sendMessage", data)
            if failure is not None:
                return replace(failure, parts_sent=number - 1)
        return None

    def webhook_info(self) -> dict[str, Any]:
        """Telegram's view of the webhook: its ``url`` (empty: none registered), ``pending_update_count``,
        ``last_error_message``. ValueError when Telegram refuses (a wrong token)."""
        status, body = self.post(f"{self.base}/getWebhookInfo", b"{}", {"Content-Type": "application/json"})
        failure = outcome(status, body, "getWebhookInfo")
        if failure is not None:
            raise ValueError(failure.error)
        return dict(json.loads(body).get("result") or {})

    def connect(self, url: str) -> Failure | None:
        """Register the webhook: Telegram then POSTs every message and button press to ``url``, with the
        secret."""
        return self.call(
            "setWebhook",
            {"url": url, "secret_token": self.secret, "allowed_updates": ["message", "callback_query"]},
        )


class ConnectError(ValueError):
    """Telegram's webhook could not be registered: the reason, in words an operator can act on."""


def connect_telegram(settings: Settings, url: str, post: Post = http_post) -> dict[str, Any]:
    """Register ``url`` as the bot's webhook (``Telegram.connect``) and read back Telegram's view of it: the
    address updates now go to, and how many wait there. ConnectError when the address is not https, Telegram
    cannot be reached, or refuses (a wrong token)."""
    if not url.startswith("https://"):
        raise ConnectError(f"Telegram sends updates to https addresses only, not {url!r}")
    client = Telegram(settings, post)
    try:
        failure = client.connect(url)
        if failure is not None:
            raise ConnectError(f"Telegram refused the webhook: {failure.error}")
        try:
            info = client.webhook_info()
        except ValueError as exc:
            raise ConnectError(f"Telegram took the webhook but would not show it: {exc}") from None
    except OSError as exc:
        raise ConnectError(f"could not reach Telegram at {settings.telegram_api_url}: {exc}") from None
    return {
        "url": str(info.get("url") or ""),
        "pending_update_count": int(info.get("pending_update_count") or 0),
    }


class WhatsApp:
    name = "whatsapp"

    def __init__(self, settings: Settings, post: Post = http_post) -> None:
        self.url = f"{settings.whatsapp_api_url.rstrip('/')}/{settings.whatsapp_phone_number_id}/messages"
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {settings.whatsapp_access_token}",
        }
        self.choose = settings.channel_choose_label
        self.post = post

    def _send(self, data: dict[str, Any]) -> Failure | Sent | None:
        status, body = self.post(
            self.url,
            _json({"messaging_product": "whatsapp", "recipient_type": "individual", **data}),
            self.headers,
        )
        return taken(status, body, "messages", lambda answer: answer["messages"][0]["id"])

    def send(self, chat_key: str, payload: dict[str, Any]) -> Failure | Sent | None:
        """The text (in pieces of 4,096 characters), its choices under the last piece: Sent with the last
        message's id (its statuses are the ones kept). A payload's ``template`` (name, language) is sent as
        that message template instead (its text only describes it for the transcript)."""
        template = payload.get("template")
        if template:
            return self._send(
                {
                    "to": chat_key,
                    "type": "template",
                    "template": {"name": template["name"], "language": {"code": template["language"]}},
                }
            )
        text = render(str(payload.get("text") or ""), "whatsapp")
        choices = list(payload.get("choices") or [])
        pieces = split(text, MESSAGE_LIMIT) or ["…"]
        if choices and len(pieces[-1]) <= BODY_LIMIT:
            body, pieces = pieces[-1], pieces[:-1]  # the last piece carries the buttons
        else:
            body = "👇"
        parts = [{"to": chat_key, "type": "text", "text": {"body": p, "preview_url": False}} for p in pieces]
        if choices:
            parts.append(
                {"to": chat_key, "type": "interactive", "interactive": self.interactive(body, choices)}
            )
        result: Failure | Sent | None = None
        for number, part in enumerate(parts):
            if number < already_sent(payload):
                continue
            result = self._send(part)
            if isinstance(result, Failure):
                return replace(result, parts_sent=number)
        return result

    def interactive(self, body: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        """Reply buttons for up to three choices whose shortened titles differ (WhatsApp refuses two alike),
        else a list."""
        titles = {_short(c["title"], BUTTON_TITLE) for c in choices}
        if len(choices) <= BUTTONS and len(titles) == len(choices):
            buttons = [
                {
                    "type": "reply",
                    "reply": {"id": str(c["payload"])[:256], "title": _short(c["title"], BUTTON_TITLE)},
                }
                for c in choices
            ]
            return {"type": "button", "body": {"text": body}, "action": {"buttons": buttons}}
        rows = []
        for choice in choices[:LIST_ROWS]:
            row = {"id": str(choice["payload"])[:200], "title": _short(choice["title"], ROW_TITLE)}
            if len(str(choice["title"])) > ROW_TITLE:
                row["description"] = _short(choice["title"], ROW_DESCRIPTION)
            rows.append(row)
        return {
            "type": "list",
            "body": {"text": body},
            "action": {
                "button": _short(self.choose, BUTTON_TITLE),
                "sections": [{"title": " ", "rows": rows}],
            },
        }


class Messenger:
    name = "messenger"

    def __init__(self, settings: Settings, post: Post = http_post) -> None:
        self.url = f"{settings.messenger_api_url.rstrip('/')}/me/messages"
        self.headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {settings.messenger_page_access_token}",
        }
        self.human_agent = settings.messenger_human_agent
        self.post = post

    @staticmethod
    def quick_replies(payload: dict[str, Any]) -> list[dict[str, str]]:
        """The choices, then 👍 / 👎 under an answer, as quick replies (at most 13, titles of 20)."""
        replies = [
            {
                "content_type": "text",
                "title": _short(c["title"], BUTTON_TITLE),
                "payload": str(c["payload"])[:1000],
            }
            for c in payload.get("choices") or []
        ]
        if payload.get("thumbs") and payload.get("turn_id"):
            turn = int(payload["turn_id"])
            replies += [
                {"content_type": "text", "title": "👍", "payload": f"fb:{turn}:1"},
                {"content_type": "text", "title": "👎", "payload": f"fb:{turn}:0"},
            ]
        return replies[:QUICK_REPLIES]

    def send(self, chat_key: str, payload: dict[str, Any]) -> Failure | Sent | None:
        pieces = split(render(str(payload.get("text") or ""), "whatsapp"), MESSENGER_LIMIT) or ["…"]
        replies = self.quick_replies(payload)
        # A person's reply on a page with the Human Agent permission: tagged, Messenger takes it for 7 days
        kind = {"messaging_type": "RESPONSE"}
        if self.human_agent and payload.get("from") == "agent":
            kind = {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
        result: Failure | Sent | None = None
        for number, piece in enumerate(pieces, start=1):
            if number <= already_sent(payload):
                continue
            message: dict[str, Any] = {"text": piece}
            if replies and number == len(pieces):
                message["quick_replies"] = replies
            body = {"recipient": {"id": chat_key}, **kind, "message": message}
            status, answer = self.post(self.url, _json(body), self.headers)
            result = taken(status, answer, "messages", lambda said: said["message_id"])
            if isinstance(result, Failure):
                return replace(result, parts_sent=number - 1)
        return result


def already_sent(payload: dict[str, Any]) -> int:
    """How many parts of a message sent in parts the app took on an earlier attempt (core.channels.Failure):
    they are not sent again."""
    return int(payload.get("parts_sent") or 0)


def _short(text: Any, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


Client = Telegram | WhatsApp | Messenger | Mailer


def clients(settings: Settings, post: Post = http_post) -> dict[str, Client]:
    made: dict[str, Client] = {}
    if "telegram" in settings.channels:
        made["telegram"] = Telegram(settings, post)
    if "whatsapp" in settings.channels:
        made["whatsapp"] = WhatsApp(settings, post)
    if "messenger" in settings.channels:
        made["messenger"] = Messenger(settings, post)
    if settings.mail_on:  # replies by e-mail go through the same outbox (core.mail)
        made["email"] = Mailer(settings)
    return made


class ChannelSender:
    """Sends the outbox (core.channels.deliver_due) from a thread of the web process: woken when a webhook
    has queued a reply, and every ``poll_seconds`` for a team member's message or a retry that is due."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        post: Post = http_post,
        poll_seconds: float = 1.0,
        on_result: Callable[[str, int], None] | None = None,
        channels: tuple[str, ...] = outbox.CHANNELS,
    ):
        self.on_result = on_result  # (outcome, count): the metrics
        self.database = database
        self.channels = channels  # the outbox's channels this sender sends (the apps', or the e-mails)
        self.clients = {k: c for k, c in clients(settings, post).items() if k in channels}
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, channel: str, chat_key: str, payload: dict[str, Any]) -> Failure | Sent | None:
        client = self.clients.get(channel)
        if client is None:
            return Failure(f"{channel} is not set up (its settings are empty)", final=True)
        return client.send(chat_key, payload)

    def deliver_now(self) -> Counter[str]:
        """Send what is due now, batch after batch; the outcomes counted."""
        total: Counter[str] = Counter()
        while True:
            with self.database.session() as session:
                outcomes = outbox.deliver_due(session, self.send, channels=self.channels)
            total += outcomes
            for outcome_name, count in outcomes.items():
                if self.on_result is not None:
                    self.on_result(outcome_name, count)
            if sum(outcomes.values()) < outbox.BATCH or outcomes["deferred"]:
                return total

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
                try:
                    self.deliver_now()
                except Exception:  # noqa: BLE001 - e.g. the database is briefly unreachable
                    log.exception("channel sender error")

        name = "helploop-" + ("mail" if self.channels == (outbox.mail.EMAIL,) else "channels")
        self._thread = threading.Thread(target=loop, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()


# ----------------------------------------------------------------------------------------------- webhooks


def _enabled(channel: str) -> Settings:
    settings = state().settings
    if channel not in settings.channels:
        raise APIError(404, "channel_off", f"{channel} is not set up on this HelpLoop")
    return settings


def take_message(channel: str, chat_key: str, text: str, *, event_id: str) -> None:
    """A customer's message from a messaging app: answered once (a repeated delivery is dropped), in the
    chat's conversation; the reply goes to the outbox with the turn."""
    helploop = state()
    if helploop.models.state.production is None:  # before recording it: the app delivers it again
        raise APIError(503, "model_unavailable", "the model is still loading; try again in a few seconds")
    conversation_id = _arrived(channel, chat_key, event_id)
    if conversation_id is None:
        return
    text = command_text(text)[: helploop.settings.max_message_length]
    rating = outbox.typed_rating(text)
    if rating is not None and rated_by_typing(conversation_id, rating):
        _wake()  # the thanks
        return
    try:
        if to_live_chat(text, conversation_id) is None:
            answer_message(
                text, conversation_id, channel=channel, create_unknown_session=True, reply_by_channel=True
            )
    except Exception:
        _forget(channel, event_id)  # not answered: the app's next delivery of it is answered
        raise
    _wake()


def command_text(text: str) -> str:
    """A Telegram command as the words it stands for: ``/start`` (also ``/start@Bot`` and a deep link's
    ``/start ref42``) is a greeting, ``/help`` asks what the bot can do; any other text as it is."""
    words = text.split()
    if words and words[0].startswith("/"):
        command = words[0].split("@", 1)[0].lower()
        if command in COMMANDS:
            return COMMANDS[command]
    return text


def say(channel: str, chat_key: str, text: str, *, event_id: str) -> None:
    """A line to the chat that is no answer (a photo was sent: the bot reads text), once per delivery."""
    if _arrived(channel, chat_key, event_id, line=text) is not None:
        _wake()


def _arrived(channel: str, chat_key: str, event_id: str, *, line: str | None = None) -> str | None:
    """Record a delivered update, once: the id of the chat's conversation (with ``line`` queued to the chat,
    in the same transaction), or None when the update is a repeat."""
    helploop = state()
    session = db_session()
    with helploop.write_lock:
        if not outbox.first_delivery(session, channel=channel, event_id=event_id):
            session.rollback()
            return None
        conversation_id = outbox.conversation_for(
            session,
            channel=channel,
            chat_key=chat_key,
            idle_hours=helploop.settings.channel_conversation_hours,
        )
        if line is not None:
            outbox.queue(session, conversation_id=conversation_id, payload={"text": line})
        session.commit()
    return conversation_id


def _forget(channel: str, event_id: str) -> None:
    session = db_session()
    session.rollback()
    with state().write_lock:
        session.execute(
            delete(ChannelEvent).where(ChannelEvent.channel == channel, ChannelEvent.event_id == event_id)
        )
        session.commit()


def _wake() -> None:
    sender = state().channel_sender
    if sender is not None:
        sender.wake()


def rate(channel: str, chat_key: str, turn_id: int, helpful: bool) -> bool:
    """A thumbs pressed under an answer: recorded when the answer was this chat's (False otherwise); after a
    thumbs-down the bot's line and the intents it offers instead go to the chat."""
    session = db_session()
    with state().write_lock:
        conversation_id = session.scalar(
            select(Turn.conversation_id)
            .join(ChannelChat, ChannelChat.conversation_id == Turn.conversation_id)
            .where(Turn.id == turn_id, ChannelChat.channel == channel, ChannelChat.chat_key == chat_key)
        )
        if conversation_id is not None:  # a press is the customer's last message for Meta's reply window
            outbox.customer_wrote(session, conversation_id=conversation_id)
        session.commit()
    if conversation_id is None:
        return False
    try:
        rated = rate_answer(turn_id, helpful)
    except NotFoundError:
        return False
    if rated.reply is not None:
        settings = state().settings
        choices = [{"title": c.title, "payload": f"/{c.intent}"} for c in rated.others] + person_choice(
            settings
        )
        with state().write_lock:
            outbox.queue(
                session, conversation_id=conversation_id, payload={"text": rated.reply, "choices": choices}
            )
            session.commit()
        _wake()
    return True


def pressed_thumbs(channel: str, chat_key: str, data: str, *, event_id: str) -> bool | None:
    """A pressed 👍 / 👎 (``fb:TURN:1|0``), recorded once: True for a thumbs-up taken (the app may say
    thanks), False otherwise; None when ``data`` is no thumbs."""
    feedback = FEEDBACK.fullmatch(data)
    if feedback is None:
        return None
    session = db_session()
    with state().write_lock:
        first = outbox.first_delivery(session, channel=channel, event_id=event_id)
        session.commit()
    helpful = feedback.group(2) == "1"
    return first and rate(channel, chat_key, int(feedback.group(1)), helpful) and helpful


def pressed_rating(channel: str, chat_key: str, data: str, *, event_id: str, thank: bool) -> bool | None:
    """A rating button pressed under the message that ended a live chat (``rate:CONVERSATION:N``,
    ``core.channels.rating_request``): recorded once, for that conversation when it is this chat's and
    someone from the team chatted in it (pressing again replaces the rating, as in the widget). True when
    recorded (with ``thank``, the thanks go to the chat in the same transaction); None when ``data`` is no
    rating."""
    match = outbox.RATING_PAYLOAD.fullmatch(data)
    if match is None:
        return None
    conversation_id, value = match.group(1), int(match.group(2))
    session = db_session()
    with state().write_lock:
        first = outbox.first_delivery(session, channel=channel, event_id=event_id)
        chat = outbox.chat_of(session, conversation_id=conversation_id)
        if not first or chat is None or (chat.channel, chat.chat_key) != (channel, chat_key):
            session.commit()  # a repeated delivery, or a button of another chat: nothing recorded
            return False
        outbox.customer_wrote(session, conversation_id=conversation_id)  # a press is a message to Meta
        conversation = _rate_live_chat(session, conversation_id, value, thank=thank)
        session.commit()
    if conversation is None:
        return False
    chat_rated(conversation)
    if thank:
        _wake()
    return True


def rated_by_typing(conversation_id: str, value: int) -> bool:
    """A rating typed as the answer to the rating question ("5", "4 out of 5", "★★★★"; ``core.channels.
    typed_rating``): recorded and thanked as a press is. False, and nothing written, when the question was
    not the last thing sent to the chat (the message is then one for the bot)."""
    session = db_session()
    with state().write_lock:
        if not outbox.awaits_rating(session, conversation_id=conversation_id):
            session.rollback()
            return False
        conversation = _rate_live_chat(session, conversation_id, value, thank=True)
        session.commit()
    if conversation is None:
        return False
    chat_rated(conversation)
    return True


def _rate_live_chat(
    session: Session, conversation_id: str, value: int, *, thank: bool
) -> Conversation | None:
    """Rate the conversation's live chat (None when nobody from the team chatted in it), and with ``thank``
    queue the thanks to the chat, in the caller's transaction."""
    try:
        conversation = rate_chat(session, conversation_id=conversation_id, rating=value)
    except (NotFoundError, NothingToRate):
        return None
    if thank:
        outbox.queue(
            session,
            conversation_id=conversation_id,
            payload={"text": state().settings.rating_received_message},
        )
    return conversation


def choice_text(data: str) -> str:
    """What a pressed button says, as the customer's message: its payload, or for a hashed one the payload
    it stands for (an intent's ``/name``, or the person button's label)."""
    if not data.startswith(HASHED):
        return data
    helploop = state()
    production = helploop.models.state.production
    known = [f"/{name}" for name in (production.knowledge if production is not None else {})]
    for payload in [*known, helploop.settings.talk_to_person_label]:
        if hashed(payload) == data:
            return payload
    return ""


@channels.post("/telegram/webhook")
def telegram_webhook() -> Response:
    settings = _enabled("telegram")
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not hmac.compare_digest(given.encode(), settings.telegram_webhook_secret.encode()):
        raise APIError(403, "bad_secret", "X-Telegram-Bot-Api-Secret-Token is missing or wrong")
    update = request.get_json(silent=True)
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        raise APIError(
            400, "invalid_update", "expected a Telegram update with an integer update_id", "update_id"
        )
    event_id = str(update["update_id"])
    query = update.get("callback_query")
    if isinstance(query, dict):
        return _telegram_button(query, event_id, settings)
    message = update.get("message")
    if not isinstance(message, dict):
        return Response(status=200)  # an edit, a member change...: nothing to answer
    chat = message.get("chat") or {}
    if chat.get("type") != "private" or "id" not in chat:
        return Response(status=200)  # a group the bot was added to: it answers customers one to one
    text = message.get("text") or message.get("caption")
    if isinstance(text, str) and text.strip():
        take_message("telegram", str(chat["id"]), text, event_id=event_id)
    else:
        say("telegram", str(chat["id"]), settings.channel_unsupported_message, event_id=event_id)
    return Response(status=200)


def _telegram_button(query: dict[str, Any], event_id: str, settings: Settings) -> Response:
    data = str(query.get("data") or "")
    chat = ((query.get("message") or {}).get("chat")) or {}
    answer: dict[str, Any] = {"method": "answerCallbackQuery", "callback_query_id": str(query.get("id", ""))}
    if chat.get("type") != "private" or "id" not in chat:
        return jsonify(answer)
    chat_key = str(chat["id"])
    thumbs = pressed_thumbs("telegram", chat_key, data, event_id=event_id)
    if thumbs is not None:
        if thumbs:
            answer["text"] = settings.channel_feedback_thanks
        return jsonify(answer)
    rated = pressed_rating("telegram", chat_key, data, event_id=event_id, thank=False)
    if rated is not None:  # thanked in the button's own toast
        if rated:
            answer["text"] = settings.rating_received_message
        return jsonify(answer)
    text = choice_text(data)
    if text:
        take_message("telegram", chat_key, text, event_id=event_id)
    return jsonify(answer)


def meta_subscription(verify_token: str) -> Response:
    """Meta's check when a webhook is set up in the app's dashboard (WhatsApp, Messenger): the verify token,
    and the challenge to echo."""
    token = request.args.get("hub.verify_token", "")
    if request.args.get("hub.mode") != "subscribe" or not hmac.compare_digest(
        token.encode(), verify_token.encode()
    ):
        raise APIError(403, "bad_verify_token", "hub.verify_token is missing or wrong")
    return Response(request.args.get("hub.challenge", ""), mimetype="text/plain")


def meta_delivery(app_secret: str, app: str) -> dict[str, Any]:
    """A delivery from Meta (WhatsApp, Messenger), its ``X-Hub-Signature-256`` (HMAC-SHA256 of the body with
    the app secret) checked: the JSON with its ``entry`` list."""
    raw = request.get_data(cache=True)
    expected = "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(request.headers.get("X-Hub-Signature-256", "").encode(), expected.encode()):
        raise APIError(403, "bad_signature", "X-Hub-Signature-256 is missing or does not match the body")
    delivery = request.get_json(silent=True)
    if not isinstance(delivery, dict) or not isinstance(delivery.get("entry"), list):
        raise APIError(400, "invalid_delivery", f"expected a {app} webhook delivery with 'entry'", "entry")
    return delivery


@channels.get("/whatsapp/webhook")
def whatsapp_subscribe() -> Response:
    return meta_subscription(_enabled("whatsapp").whatsapp_verify_token)


@channels.post("/whatsapp/webhook")
def whatsapp_webhook() -> Response:
    settings = _enabled("whatsapp")
    delivery = meta_delivery(settings.whatsapp_app_secret, "WhatsApp")
    for entry in delivery["entry"]:
        for change in (entry or {}).get("changes") or []:
            value = (change or {}).get("value") or {}
            phone = str((value.get("metadata") or {}).get("phone_number_id", ""))
            if phone != settings.whatsapp_phone_number_id:
                continue  # another number of the same app
            for message in value.get("messages") or []:
                _whatsapp_message(message, settings)
            for status in value.get("statuses") or []:  # a message of ours delivered, read, or failed
                if isinstance(status, dict):
                    _whatsapp_status(status)
    return Response(status=200)


def whatsapp_error(errors: Any) -> str:
    """Why WhatsApp could not deliver a message it had taken, in its own words: its ``errors[0]``'s details
    (e.g. "Message failed to send because more than 24 hours have passed since the customer last replied to
    this number.") or title, and its code."""
    error = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    said = str(details or error.get("message") or error.get("title") or "no reason given")
    code = f" (code {error['code']})" if error.get("code") is not None else ""
    return f"messages: not delivered: {said}{code}"[:500]


def _whatsapp_status(status: dict[str, Any]) -> None:
    app_id, kind = str(status.get("id") or ""), str(status.get("status") or "")
    if not app_id or kind not in ("delivered", "read", "failed"):
        return  # "sent" (to WhatsApp's servers) is what its answer to the send already said
    session = db_session()
    with state().write_lock:
        changed = outbox.receipt(
            session,
            channel="whatsapp",
            app_message_id=app_id,
            status=kind,
            at=_epoch(status.get("timestamp")),
            error=whatsapp_error(status.get("errors")) if kind == "failed" else None,
        )
        session.commit()
    if changed is not None and kind == "failed":
        state().metrics.channel_messages.labels(outcome="undelivered").inc()


def _epoch(value: Any, scale: float = 1.0) -> datetime | None:
    """An app's Unix time (seconds; Messenger's watermarks in milliseconds: ``scale`` 1000) as a UTC time;
    None when it is missing or not a number."""
    try:
        return datetime.fromtimestamp(float(value) / scale, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def whatsapp_text(message: dict[str, Any]) -> str | None:
    """The text of a WhatsApp message: typed, a pressed reply button or list row (its id: the choice's
    payload), a template's quick reply; None for a photo, voice note, sticker, location..."""
    kind = message.get("type")
    if kind == "text":
        return str((message.get("text") or {}).get("body") or "") or None
    if kind == "interactive":
        interactive = message.get("interactive") or {}
        reply = interactive.get("button_reply") or interactive.get("list_reply") or {}
        return str(reply.get("id") or reply.get("title") or "") or None
    if kind == "button":
        button = message.get("button") or {}
        return str(button.get("payload") or button.get("text") or "") or None
    caption = next((m.get("caption") for m in (message.get(kind or "") or {},) if isinstance(m, dict)), None)
    return str(caption) if caption else None


def _whatsapp_message(message: dict[str, Any], settings: Settings) -> None:
    sender, event_id = message.get("from"), message.get("id")
    if not sender or not event_id:
        return
    text = whatsapp_text(message)
    if text and pressed_rating("whatsapp", str(sender), text, event_id=str(event_id), thank=True) is not None:
        return
    if text and text.strip():
        take_message("whatsapp", str(sender), text, event_id=str(event_id))
    else:
        say("whatsapp", str(sender), settings.channel_unsupported_message, event_id=str(event_id))


@channels.get("/messenger/webhook")
def messenger_subscribe() -> Response:
    return meta_subscription(_enabled("messenger").messenger_verify_token)


@channels.post("/messenger/webhook")
def messenger_webhook() -> Response:
    settings = _enabled("messenger")
    delivery = meta_delivery(settings.messenger_app_secret, "Messenger")
    for entry in delivery["entry"]:
        for event in (entry or {}).get("messaging") or []:
            _messenger_event(event or {}, settings)
    return Response(status=200)


def _messenger_event(event: dict[str, Any], settings: Settings) -> None:
    sender = str((event.get("sender") or {}).get("id") or "")
    message, postback = event.get("message"), event.get("postback")
    if not sender:
        return
    _messenger_receipts(event, sender)
    if isinstance(message, dict):
        if message.get("is_echo") or not message.get("mid"):
            return  # the page's own message (the bot's reply, a person's from the page inbox)
        event_id = str(message["mid"])
        payload = str((message.get("quick_reply") or {}).get("payload") or "")
        if payload and pressed_thumbs("messenger", sender, payload, event_id=event_id) is not None:
            return
        if (
            payload
            and pressed_rating("messenger", sender, payload, event_id=event_id, thank=True) is not None
        ):
            return
        text = payload or message.get("text")
    elif isinstance(postback, dict):  # a button of the page's own (its "Get started")
        event_id = str(postback.get("mid") or f"postback-{sender}-{event.get('timestamp')}")
        payload = str(postback.get("payload") or "")
        text = "hi" if payload == GET_STARTED else payload or postback.get("title")
    else:
        return
    if isinstance(text, str) and text.strip():
        take_message("messenger", sender, text, event_id=event_id)
    else:
        say("messenger", sender, settings.channel_unsupported_message, event_id=event_id)


def _messenger_receipts(event: dict[str, Any], sender: str) -> None:
    """The customer's delivery and read receipts: every message sent to them by the watermark (a time)."""
    for kind in ("delivery", "read"):
        said = event.get(kind)
        until = _epoch(said.get("watermark"), 1000) if isinstance(said, dict) else None
        if until is None:
            continue
        session = db_session()
        with state().write_lock:
            outbox.seen_up_to(session, channel="messenger", chat_key=sender, until=until, read=kind == "read")
            session.commit()
