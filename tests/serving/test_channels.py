"""Telegram and WhatsApp webhooks (serving.channels): authenticated, answered once, replies sent through the
apps' APIs with buttons and thumbs, live chat with the team, and the formatting of answers."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from core.channels import Failure
from core.models import ChannelChat, ChannelMessage, ConversationMessage, Turn, as_utc, utcnow

SECRET = "telegram-webhook-secret-0123456789"
APP_SECRET = "whatsapp-app-secret"
PHONE_ID = "105500"
CHANNELS = {
    "telegram_bot_token": "123456:ABC-token",
    "telegram_webhook_secret": SECRET,
    "telegram_api_url": "https://telegram.test",
    "whatsapp_access_token": "EAAG-token",
    "whatsapp_app_secret": APP_SECRET,
    "whatsapp_phone_number_id": PHONE_ID,
    "whatsapp_verify_token": "verify-me",
    "whatsapp_api_url": "https://graph.test/v21.0",
    "messenger_page_access_token": "EAAP-page-token",
    "messenger_app_secret": "messenger-app-secret",
    "messenger_verify_token": "verify-messenger",
    "messenger_api_url": "https://graph.test/v21.0",
}


class Api:
    """The apps' APIs as the sender sees them: each request (URL, JSON body, headers); scripted statuses."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.statuses: list[int] = []
        self.answer = b'{"ok": false, "description": "Forbidden: bot was blocked by the user"}'
        self.answers: list[bytes] = []  # answered first, one per request, then ``answer``

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        self.requests.append((url, json.loads(body), headers))
        status = self.statuses.pop(0) if self.statuses else 200
        return status, self.answers.pop(0) if self.answers else self.answer

    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, body, _ in self.requests]


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture
def app(make_app: Callable[..., Any], api: Api) -> Any:
    return make_app(channel_post=api, **CHANNELS)


def telegram(client: Any, update: dict[str, Any], secret: str = SECRET) -> Any:
    return client.post(
        "/channels/telegram/webhook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
    )


def text_update(update_id: int, text: str, chat: int = 42, kind: str = "private") -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "from": {"id": chat, "is_bot": False, "first_name": "Ann"},
            "chat": {"id": chat, "type": kind},
            "date": 1764000000,
            "text": text,
        },
    }


def button_update(update_id: int, data: str, chat: int = 42) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "callback_query": {
            "id": f"cb{update_id}",
            "from": {"id": chat},
            "message": {"message_id": 1, "chat": {"id": chat, "type": "private"}},
            "data": data,
        },
    }


def send(app: Any) -> dict[str, int]:
    return dict(app.extensions["helploop"].channel_sender.deliver_now())


def turns(app: Any) -> list[Turn]:
    with app.extensions["helploop"].database.session() as session:
        return list(session.scalars(select(Turn).order_by(Turn.id)).all())


def operator_on(app: Any, conversation_id: str) -> tuple[Any, str]:
    """Operator omar, signed in, and the conversation's page."""
    from tests.serving.test_admin import add_user, login

    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    return operator, f"/operator/conversations/{conversation_id}"


def customer_wrote_ago(app: Any, conversation_id: str, **ago: float) -> None:
    """Move the chat's last customer message back by ``ago`` (timedelta's keywords): time has passed."""
    from datetime import timedelta

    with app.extensions["helploop"].database.session() as session:
        chat = session.scalar(select(ChannelChat).where(ChannelChat.conversation_id == conversation_id))
        assert chat is not None and chat.customer_at is not None
        chat.customer_at = chat.customer_at - timedelta(**ago)


def test_telegram_answers_with_buttons_and_thumbs_and_a_pressed_button_is_the_next_message(
    app: Any, api: Api
) -> None:
    client = app.test_client()
    response = telegram(client, text_update(1, "where is my card"))
    assert response.status_code == 200
    [turn] = turns(app)
    assert turn.intent == "card_arrival" and turn.status == "answered"
    assert send(app) == {"sent": 1}
    [(url, body, headers)] = api.requests
    assert url == "https://telegram.test/bot123456:ABC-token/sendMessage"
    assert headers["Content-Type"] == "application/json"
    assert body["chat_id"] == "42" and body["parse_mode"] == "HTML"
    assert body["text"] == "Cards arrive in <b>5–7 working days</b>."
    assert body["reply_markup"]["inline_keyboard"] == [
        [{"text": "Change my PIN", "callback_data": "/change_pin"}],  # the answer's follow-up
        [
            {"text": "👍", "callback_data": f"fb:{turn.id}:1"},
            {"text": "👎", "callback_data": f"fb:{turn.id}:0"},
        ],
    ]
    # Telegram delivers the same update again (it timed out waiting): answered once.
    assert telegram(client, text_update(1, "where is my card")).status_code == 200
    assert len(turns(app)) == 1 and send(app) == {}
    # The follow-up pressed: the button stops spinning (the webhook's answer) and its intent is answered.
    pressed = telegram(client, button_update(2, "/change_pin"))
    assert pressed.get_json() == {"method": "answerCallbackQuery", "callback_query_id": "cb2"}
    second = turns(app)[1]
    assert second.intent == "change_pin" and second.conversation_id == turn.conversation_id
    send(app)
    text = api.bodies()[1]["text"]
    assert text == "Change it at any ATM.\n\n• insert card\n• choose <i>PIN services</i>"
    # The conversation is Telegram's, and the chat's id is kept beside it, not in it.
    with app.extensions["helploop"].database.session() as session:
        chat = session.scalar(select(ChannelChat))
        assert chat is not None and (chat.channel, chat.chat_key) == ("telegram", "42")
        assert chat.conversation_id == turn.conversation_id and re.fullmatch(
            r"[0-9a-f]{32}", turn.conversation_id
        )


def test_telegram_thumbs_down_rates_the_answer_and_offers_other_intents(app: Any, api: Api) -> None:
    client = app.test_client()
    telegram(client, text_update(10, "where is my card"))
    [turn] = turns(app)
    # Another chat cannot rate this chat's answer.
    other = telegram(client, button_update(11, f"fb:{turn.id}:0", chat=99))
    assert other.status_code == 200 and "text" not in other.get_json()
    assert turns(app)[0].helpful is None
    down = telegram(client, button_update(12, f"fb:{turn.id}:0"))
    assert down.get_json()["method"] == "answerCallbackQuery"
    assert turns(app)[0].helpful is False
    send(app)
    reply = api.bodies()[-1]
    settings = app.extensions["helploop"].settings
    assert reply["text"].startswith(settings.small_talk_not_helpful)
    titles = [row[0]["text"] for row in reply["reply_markup"]["inline_keyboard"]]
    assert titles and "Where is my card?" not in titles and titles[-1] == settings.talk_to_person_label
    # A thumbs-up is thanked in the button's toast.
    up = telegram(client, button_update(13, f"fb:{turn.id}:1"))
    assert up.get_json()["text"] == settings.channel_feedback_thanks and turns(app)[0].helpful is True


def test_telegram_refuses_a_wrong_secret_and_ignores_what_it_does_not_answer(app: Any, api: Api) -> None:
    client = app.test_client()
    refused = telegram(client, text_update(20, "where is my card"), secret="guess")
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "bad_secret"
    no_header = client.post("/channels/telegram/webhook", json=text_update(20, "where is my card"))
    assert no_header.status_code == 403
    bad = telegram(client, {"message": {}})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "update_id"
    assert telegram(client, text_update(21, "where is my card", kind="group")).status_code == 200
    assert telegram(client, {"update_id": 22, "edited_message": {}}).status_code == 200
    assert turns(app) == []
    # A photo: the bot says it reads text; no turn.
    photo = text_update(23, "")
    del photo["message"]["text"]
    photo["message"]["photo"] = [{"file_id": "x"}]
    assert telegram(client, photo).status_code == 200
    assert turns(app) == [] and send(app) == {"sent": 1}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'helploop_channel_messages_total{outcome="sent"} 1.0' in metrics
    assert api.bodies()[0]["text"] == app.extensions["helploop"].settings.channel_unsupported_message
    # /start, the first message of every Telegram chat, is a greeting.
    telegram(client, text_update(24, "/start"))
    [greeting] = turns(app)
    assert greeting.status == "small_talk"
    assert greeting.answer == app.extensions["helploop"].settings.small_talk_greeting


def test_telegram_commands_read_as_the_words_they_stand_for() -> None:
    from serving.channels import command_text

    assert (
        command_text("/start") == command_text("/start@HelpLoopBot") == command_text("/start ref42") == "hi"
    )
    assert command_text("/HELP") == "what can you do?"
    assert command_text("/card_arrival") == "/card_arrival"  # a choice's payload, typed
    assert command_text("where is my card") == "where is my card" and command_text("") == ""


def test_handoff_lines_on_an_app_ask_for_no_contact_details(app: Any) -> None:
    from datetime import timedelta

    from core.models import utcnow
    from serving.api import Availability, handoff_text

    settings = app.extensions["helploop"].settings
    back = utcnow() + timedelta(hours=3)
    away = handoff_text(settings, Availability(online=False, back=back), on_app=True)
    assert away.startswith("Our team is away right now and back ") and "Someone will reply here then." in away
    assert "e-mail" not in away and "e-mail" in handoff_text(settings, Availability(online=False, back=back))
    online = Availability(online=True)
    assert handoff_text(settings, online, on_app=True) == settings.handoff_requested_message


def test_an_apps_refusal_is_read_in_its_own_words() -> None:
    from serving.channels import outcome

    meta = b'{"error": {"message": "(#131047) Re-engagement message", "code": 131047}}'
    failure = outcome(400, meta, "messages")
    assert failure is not None and failure.final
    assert failure.error == "messages: HTTP 400 (#131047) Re-engagement message"
    assert outcome(502, b"<html>Bad gateway</html>", "sendMessage") == Failure(
        "sendMessage: HTTP 502 <html>Bad gateway</html>", final=False
    )
    assert outcome(429, b"[]", "sendMessage") == Failure("sendMessage: HTTP 429 []", final=False)
    assert outcome(200, b"{}", "sendMessage") is None


def test_a_channel_that_is_not_set_up_is_not_found(make_app: Callable[..., Any]) -> None:
    client = make_app().test_client()
    response = telegram(client, text_update(1, "hi"))
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "channel_off"
    assert client.get("/channels/whatsapp/webhook?hub.mode=subscribe").status_code == 404


def test_a_message_before_the_model_is_loaded_is_answered_when_delivered_again(
    make_app: Callable[..., Any], api: Api
) -> None:
    app = make_app(load=False, channel_post=api, **CHANNELS)
    client = app.test_client()
    early = telegram(client, text_update(30, "where is my card"))
    assert early.status_code == 503 and early.get_json()["error"]["code"] == "model_unavailable"
    app.extensions["helploop"].models.refresh()
    assert telegram(client, text_update(30, "where is my card")).status_code == 200
    assert [t.intent for t in turns(app)] == ["card_arrival"]


def test_the_team_chats_with_a_telegram_customer(app: Any, api: Api) -> None:
    from tests.serving.test_admin import add_user, csrf_token, login

    client = app.test_client()
    telegram(client, text_update(40, "can I talk to a human?"))
    [asked] = turns(app)
    assert asked.status == "asked_for_person"
    # Nobody online: the team will reply in the chat (the widget's line asks for an e-mail or phone number).
    settings = app.extensions["helploop"].settings
    assert asked.answer == settings.channel_handoff_offline_message != settings.handoff_offline_message
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    page = f"/operator/conversations/{asked.conversation_id}"
    token = csrf_token(operator.get(page).get_data(as_text=True))
    sent = operator.post(
        f"{page}/messages", data={"csrf_token": token, "text": "Hi, I'm Omar. How can I help?"}
    )
    assert sent.status_code == 302
    # The customer's next message is for Omar: stored in the live chat, no turn, nothing from the bot.
    telegram(client, text_update(41, "my card never came"))
    assert len(turns(app)) == 1
    with app.extensions["helploop"].database.session() as session:
        live = session.scalars(select(ConversationMessage).order_by(ConversationMessage.id)).all()
        assert [(m.sender, m.text) for m in live] == [
            ("agent", "Hi, I'm Omar. How can I help?"),
            ("customer", "my card never came"),
        ]
    shown = operator.get(page).get_data(as_text=True)
    assert "Your replies are sent to the customer on Telegram." in shown and "· sending" in shown
    polled = operator.get(f"{page}/messages.json").get_json()
    [(omar_id, state)] = polled["delivery"].items()
    assert state == {"status": "pending", "error": None} and polled["messages"][0]["delivery"] == "pending"
    send(app)
    assert operator.get(f"{page}/messages.json").get_json()["delivery"][omar_id]["status"] == "sent"
    texts = [body["text"] for body in api.bodies()]
    assert texts[-1] == "Hi, I'm Omar. How can I help?"
    assert len(texts) == 2  # the handoff reply, then Omar's message; nothing for the customer's message
    assert "· sent" in operator.get(page).get_data(as_text=True)
    # The Activity page's card: each app's webhook and its last 24 hours.
    card = operator.get("/operator/activity").get_data(as_text=True)
    assert 'data-channel="telegram"' in card and 'data-channel="whatsapp"' in card
    assert "<code>http://localhost/channels/telegram/webhook</code>" in card
    assert re.search(r'data-channel="telegram">.*?<td>1</td><td>2</td><td>0</td><td>0</td>', card, re.S)
    # A reply the app refuses is marked on the page, with the app's error on hover.
    api.statuses = [403]
    token = csrf_token(operator.get(page).get_data(as_text=True))
    operator.post(f"{page}/messages", data={"csrf_token": token, "text": "Are you still there?"})
    assert send(app) == {"failed": 1}
    shown = operator.get(page).get_data(as_text=True)
    assert 'title="sendMessage: HTTP 403' in shown and "not delivered</span>" in shown


def test_a_blocked_bot_fails_the_message_without_retrying(app: Any, api: Api) -> None:
    client = app.test_client()
    telegram(client, text_update(50, "where is my card"))
    api.statuses = [403]
    assert send(app) == {"failed": 1}
    with app.extensions["helploop"].database.session() as session:
        [message] = session.scalars(select(ChannelMessage)).all()
        assert message.status == "failed" and message.last_error is not None
        assert message.last_error == "sendMessage: HTTP 403 Forbidden: bot was blocked by the user"


def test_telegram_html_it_cannot_read_is_sent_again_as_plain_text(app: Any, api: Api) -> None:
    client = app.test_client()
    telegram(client, text_update(70, "where is my card"))
    api.statuses = [400]
    api.answer = b'{"ok": false, "description": "Bad Request: can\'t parse entities: unclosed tag"}'
    assert send(app) == {"sent": 1}
    first, second = api.bodies()
    assert first["parse_mode"] == "HTML" and first["text"] == "Cards arrive in <b>5–7 working days</b>."
    assert "parse_mode" not in second and second["text"] == "Cards arrive in 5–7 working days."
    assert second["reply_markup"] == first["reply_markup"]


def whatsapp(client: Any, delivery: dict[str, Any], secret: str = APP_SECRET, app: str = "whatsapp") -> Any:
    raw = json.dumps(delivery).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return client.post(
        f"/channels/{app}/webhook",
        data=raw,
        headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"},
    )


def wa_delivery(*messages: dict[str, Any], phone_id: str = PHONE_ID) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": phone_id},
        "messages": list(messages),
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }


def wa_text(message_id: str, text: str, sender: str = "447700900123") -> dict[str, Any]:
    return {
        "from": sender,
        "id": message_id,
        "timestamp": "1764000000",
        "type": "text",
        "text": {"body": text},
    }


def test_whatsapp_subscription_check_and_signature(app: Any) -> None:
    client = app.test_client()
    ok = client.get(
        "/channels/whatsapp/webhook?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444"
    )
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "1158201444"
    wrong = client.get("/channels/whatsapp/webhook?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1")
    assert wrong.status_code == 403 and wrong.get_json()["error"]["code"] == "bad_verify_token"
    forged = whatsapp(client, wa_delivery(wa_text("wamid.1", "where is my card")), secret="not-the-secret")
    assert forged.status_code == 403 and forged.get_json()["error"]["code"] == "bad_signature"
    assert turns(app) == []
    bad = whatsapp(client, {"object": "whatsapp_business_account"})
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "entry"


def test_whatsapp_answers_with_reply_buttons_and_a_pressed_button_is_the_next_message(
    app: Any, api: Api
) -> None:
    client = app.test_client()
    assert whatsapp(client, wa_delivery(wa_text("wamid.A", "where is my card"))).status_code == 200
    whatsapp(client, wa_delivery(wa_text("wamid.A", "where is my card")))  # delivered twice: answered once
    [turn] = turns(app)
    assert turn.intent == "card_arrival"
    assert send(app) == {"sent": 1}
    [(url, body, headers)] = api.requests
    assert url == f"https://graph.test/v21.0/{PHONE_ID}/messages"
    assert headers["Authorization"] == "Bearer EAAG-token"
    assert body["to"] == "447700900123" and body["type"] == "interactive"
    assert body["interactive"] == {
        "type": "button",
        "body": {"text": "Cards arrive in *5–7 working days*."},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "/change_pin", "title": "Change my PIN"}}]},
    }
    pressed = {
        "from": "447700900123",
        "id": "wamid.B",
        "type": "interactive",
        "interactive": {
            "type": "button_reply",
            "button_reply": {"id": "/change_pin", "title": "Change my PIN"},
        },
    }
    whatsapp(client, wa_delivery(pressed))
    assert [t.intent for t in turns(app)] == ["card_arrival", "change_pin"]
    send(app)
    plain = api.bodies()[-1]
    assert (
        plain["type"] == "text"
        and plain["text"]["body"] == "Change it at any ATM.\n\n• insert card\n• choose _PIN services_"
    )
    # Delivery receipts, another number's messages and a voice note.
    receipts = wa_delivery()
    receipts["entry"][0]["changes"][0]["value"]["statuses"] = [{"id": "wamid.X", "status": "read"}]
    assert whatsapp(client, receipts).status_code == 200
    whatsapp(client, wa_delivery(wa_text("wamid.C", "where is my card"), phone_id="999"))
    assert len(turns(app)) == 2 and send(app) == {}
    voice = {"from": "447700900123", "id": "wamid.D", "type": "audio", "audio": {"id": "m1"}}
    whatsapp(client, wa_delivery(voice))
    send(app)
    assert api.bodies()[-1]["text"]["body"] == app.extensions["helploop"].settings.channel_unsupported_message
    assert len(turns(app)) == 2


def wa_statuses(*statuses: dict[str, Any]) -> dict[str, Any]:
    delivery = wa_delivery()
    delivery["entry"][0]["changes"][0]["value"]["statuses"] = list(statuses)
    return delivery


def wa_sent(app_id: str) -> bytes:
    """WhatsApp's answer to a message it took."""
    return json.dumps(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"wa_id": "447700900123"}],
            "messages": [{"id": app_id}],
        }
    ).encode()


def test_whatsapp_statuses_show_the_team_whether_the_customer_got_the_reply(app: Any, api: Api) -> None:
    from tests.serving.test_admin import add_user, csrf_token, login

    client = app.test_client()
    whatsapp(client, wa_delivery(wa_text("wamid.IN1", "can I talk to a human?")))
    api.answers = [wa_sent("wamid.OUT0")]
    assert send(app) == {"sent": 1}  # the handoff line
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    [asked] = turns(app)
    page = f"/operator/conversations/{asked.conversation_id}"

    def reply(text: str, app_id: str) -> str:
        token = csrf_token(operator.get(page).get_data(as_text=True))
        operator.post(f"{page}/messages", data={"csrf_token": token, "text": text})
        api.answers = [wa_sent(app_id)]
        assert send(app) == {"sent": 1}
        [(message_id, _)] = [
            (key, state)
            for key, state in operator.get(f"{page}/messages.json").get_json()["delivery"].items()
            if key not in seen
        ]
        seen.add(message_id)
        return message_id

    def progress(message_id: str) -> dict[str, Any]:
        return dict(operator.get(f"{page}/messages.json").get_json()["delivery"][message_id])

    seen: set[str] = set()
    hello = reply("Hi, I'm Omar. How can I help?", "wamid.OUT1")
    assert progress(hello) == {"status": "sent", "error": None}
    now = str(int(time.time()))
    whatsapp(client, wa_statuses({"id": "wamid.OUT1", "status": "sent", "timestamp": now}))
    assert progress(hello)["status"] == "sent"
    whatsapp(client, wa_statuses({"id": "wamid.OUT1", "status": "delivered", "timestamp": now}))
    assert progress(hello)["status"] == "delivered" and "· delivered" in operator.get(page).get_data(
        as_text=True
    )
    whatsapp(client, wa_statuses({"id": "wamid.OUT1", "status": "read", "timestamp": now}))
    assert progress(hello)["status"] == "read" and "· read</span>" in operator.get(page).get_data(
        as_text=True
    )
    # WhatsApp took the next one, then could not deliver it (the 24-hour window had closed).
    later = reply("Are you still there?", "wamid.OUT2")
    failed = {
        "id": "wamid.OUT2",
        "status": "failed",
        "timestamp": now,
        "recipient_id": "447700900123",
        "errors": [
            {
                "code": 131047,
                "title": "Re-engagement message",
                "message": "Re-engagement message",
                "error_data": {
                    "details": "Message failed to send because more than 24 hours have passed since the "
                    "customer last replied to this number."
                },
            }
        ],
    }
    assert whatsapp(client, wa_statuses(failed)).status_code == 200
    why = (
        "messages: not delivered: Message failed to send because more than 24 hours have passed since the "
        "customer last replied to this number. (code 131047)"
    )
    assert progress(later) == {"status": "failed", "error": why}
    shown = operator.get(page).get_data(as_text=True)
    assert f'title="{why}">not delivered</span>' in shown
    assert progress(hello)["status"] == "read"  # the earlier reply is as it was
    metric = app.extensions["helploop"].metrics.channel_messages.labels(outcome="undelivered")
    assert metric._value.get() == 1
    # The same failure delivered again counts once; a status for a message that is not ours changes nothing.
    whatsapp(client, wa_statuses(failed, {"id": "wamid.ELSEWHERE", "status": "failed", "errors": []}))
    assert metric._value.get() == 1
    card = operator.get("/operator/activity").get_data(as_text=True)
    assert re.search(
        r'data-channel="whatsapp">.*?<td>1</td><td>2</td><td>0</td><td class="warn">1</td>', card, re.S
    )


def test_the_conversation_page_says_until_when_whatsapp_takes_replies(app: Any, api: Api) -> None:
    from tests.serving.test_admin import csrf_token

    client = app.test_client()
    whatsapp(client, wa_delivery(wa_text("wamid.W1", "can I talk to a human?")))
    [asked] = turns(app)
    operator, page = operator_on(app, asked.conversation_id)
    shown = operator.get(page).get_data(as_text=True)
    assert re.search(
        r'<span id="reply-window" class="muted">WhatsApp takes your replies until \d\d \w{3} \d\d:\d\d UTC '
        r"\(2[34]\.\d h from now: 24 hours after the customer&#39;s last message\)\.</span>",
        shown,
    ), shown
    # A day and an hour later (the customer's last message moved back): closed, said in red, and a reply
    # sent anyway is flagged.
    customer_wrote_ago(app, asked.conversation_id, hours=25)
    polled = operator.get(f"{page}/messages.json").get_json()["reply_window"]
    assert polled["open"] is False
    assert polled["text"].startswith("The customer last wrote 25.0 h ago, and WhatsApp takes replies only")
    shown = operator.get(page).get_data(as_text=True)
    assert '<span id="reply-window" class="warn">The customer last wrote 25.0 h ago' in shown
    token = csrf_token(shown)
    answer = operator.post(
        f"{page}/messages", data={"csrf_token": token, "text": "Sorry for the wait"}, follow_redirects=True
    )
    assert (
        "Sent to WhatsApp, but its reply window (24 hours after the customer&#39;s last message) closed at"
        in answer.get_data(as_text=True)
    )
    assert 'id="template-form"' not in shown  # no template set up: none offered
    # The customer writes again: the window is open, as the page's poll says.
    whatsapp(client, wa_delivery(wa_text("wamid.W2", "still there?")))
    assert operator.get(f"{page}/messages.json").get_json()["reply_window"]["open"] is True
    # The customer's number, as the team would type it, finds the conversation.
    listed = operator.get("/operator/conversations?view=all&q=%2B44+7700+900123").get_data(as_text=True)
    assert asked.conversation_id in listed and "or on a messaging app with that number or id" in listed
    # On Telegram there is no window to state.
    telegram(client, text_update(90, "can I talk to a human?"))
    on_telegram = turns(app)[-1].conversation_id
    shown = operator.get(f"/operator/conversations/{on_telegram}").get_data(as_text=True)
    assert 'id="reply-window"' not in shown and "on Telegram." in shown


def test_a_template_asks_a_whatsapp_customer_to_write_back_once_the_window_has_closed(
    make_app: Callable[..., Any], api: Api
) -> None:
    from tests.serving.test_admin import csrf_token

    app = make_app(channel_post=api, **CHANNELS, whatsapp_reopen_template="support_follow_up:en_GB")
    client = app.test_client()
    whatsapp(client, wa_delivery(wa_text("wamid.W1", "can I talk to a human?")))
    [asked] = turns(app)
    operator, page = operator_on(app, asked.conversation_id)
    send(app)
    sent_before = len(api.requests)
    # While the window is open, the template is not offered (hidden) and refused: a reply reaches them.
    shown = operator.get(page).get_data(as_text=True)
    assert '<form method="post" action="' + page + '/template" id="template-form" hidden>' in shown
    refused = operator.post(f"{page}/template", data={"csrf_token": csrf_token(shown)}, follow_redirects=True)
    assert "Refused: WhatsApp takes your replies until" in refused.get_data(as_text=True)
    assert send(app) == {} and len(api.requests) == sent_before
    # A day and an hour later: offered, and sent as the template, in the transcript as such.
    customer_wrote_ago(app, asked.conversation_id, hours=25)
    shown = operator.get(page).get_data(as_text=True)
    assert 'id="template-form">' in shown and "Send the template “support_follow_up”" in shown
    answer = operator.post(f"{page}/template", data={"csrf_token": csrf_token(shown)}, follow_redirects=True)
    assert "Template “support_follow_up” sent" in answer.get_data(as_text=True)
    assert send(app) == {"sent": 1}
    assert api.bodies()[-1] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "447700900123",
        "type": "template",
        "template": {"name": "support_follow_up", "language": {"code": "en_GB"}},
    }
    polled = operator.get(f"{page}/messages.json").get_json()
    assert polled["messages"][-1]["text"].startswith("Sent the WhatsApp template “support_follow_up” (en_GB)")
    # Without a form token: refused, nothing queued.
    assert operator.post(f"{page}/template", data={}).status_code == 400
    # On Telegram, no template: refused.
    telegram(client, text_update(90, "can I talk to a human?"))
    on_telegram = turns(app)[-1].conversation_id
    shown = operator.get(f"/operator/conversations/{on_telegram}").get_data(as_text=True)
    assert 'id="template-form"' not in shown
    refused = operator.post(
        f"/operator/conversations/{on_telegram}/template",
        data={"csrf_token": csrf_token(shown)},
        follow_redirects=True,
    )
    assert "Refused: no WhatsApp template is set up for this conversation" in refused.get_data(as_text=True)
    with app.extensions["helploop"].database.session() as session:
        assert session.scalar(select(func.count()).select_from(ConversationMessage)) == 1


def test_messenger_human_agent_replies_are_tagged_and_taken_for_7_days(
    make_app: Callable[..., Any], api: Api
) -> None:
    from tests.serving.test_admin import csrf_token

    app = make_app(channel_post=api, **CHANNELS, messenger_human_agent=True)
    client = app.test_client()
    messenger(client, m_text("m.1", "can I talk to a human?"))
    [asked] = turns(app)
    operator, page = operator_on(app, asked.conversation_id)
    shown = operator.get(page).get_data(as_text=True)
    assert "7 days after the customer&#39;s last message)" in shown
    # Two days later the window is still open; the team's reply goes tagged, the bot's went as a response.
    customer_wrote_ago(app, asked.conversation_id, days=2)
    polled = operator.get(f"{page}/messages.json").get_json()["reply_window"]
    assert polled["open"] is True
    answer = operator.post(
        f"{page}/messages", data={"csrf_token": csrf_token(shown), "text": "Sorry for the wait"}
    )
    assert answer.status_code == 302
    assert send(app) == {"sent": 2}
    handoff, reply = api.bodies()
    assert handoff["messaging_type"] == "RESPONSE" and "tag" not in handoff
    assert reply["messaging_type"] == "MESSAGE_TAG" and reply["tag"] == "HUMAN_AGENT"
    assert reply["message"] == {"text": "Sorry for the wait"}


def test_messenger_replies_are_not_tagged_without_the_human_agent_permission(app: Any, api: Api) -> None:
    from tests.serving.test_admin import csrf_token

    client = app.test_client()
    messenger(client, m_text("m.1", "can I talk to a human?"))
    operator, page = operator_on(app, turns(app)[0].conversation_id)
    shown = operator.get(page).get_data(as_text=True)
    assert "24 hours after the customer&#39;s last message)" in shown
    operator.post(f"{page}/messages", data={"csrf_token": csrf_token(shown), "text": "Hello"})
    assert send(app) == {"sent": 2}
    assert [body["messaging_type"] for body in api.bodies()] == ["RESPONSE", "RESPONSE"]


def test_messenger_receipts_mark_what_the_customer_got_and_read(app: Any, api: Api) -> None:
    client = app.test_client()
    messenger(client, m_text("m.1", "where is my card"))
    api.answers = [b'{"recipient_id": "PSID77", "message_id": "m_OUT1"}']
    sent_before = time.time()
    assert send(app) == {"sent": 1}

    def message() -> ChannelMessage:
        with app.extensions["helploop"].database.session() as session:
            [row] = session.scalars(select(ChannelMessage)).all()
            return row

    assert message().app_message_id == "m_OUT1" and message().delivered_at is None
    # A watermark from before the send marks nothing; after it, delivered, then read.
    early = {"sender": {"id": "PSID77"}, "delivery": {"watermark": int(sent_before * 1000) - 60_000}}
    messenger(client, early)
    assert message().delivered_at is None
    watermark = int(time.time() * 1000) + 1000
    messenger(client, {"sender": {"id": "PSID77"}, "delivery": {"mids": ["m_OUT1"], "watermark": watermark}})
    assert message().delivered_at is not None and message().read_at is None
    messenger(client, {"sender": {"id": "PSID78"}, "read": {"watermark": watermark}})  # another customer
    assert message().read_at is None
    messenger(client, {"sender": {"id": "PSID77"}, "read": {"watermark": watermark}})
    from core.channels import progress

    assert progress(message()) == "read"


def test_whatsapp_more_than_three_choices_are_a_list_and_long_titles_are_shortened() -> None:
    from core.settings import load_settings
    from serving.channels import WhatsApp

    settings = load_settings({"environment": "testing", **CHANNELS}, environ={})
    choices = [
        {"title": f"Choice number {n} with a long title", "payload": f"/intent_{n}"} for n in range(12)
    ]
    listed = WhatsApp(settings).interactive("Did you mean?", choices)
    assert listed["type"] == "list" and listed["action"]["button"] == settings.channel_choose_label
    rows = listed["action"]["sections"][0]["rows"]
    assert len(rows) == 10 and rows[0]["id"] == "/intent_0"
    assert rows[0]["title"] == "Choice number 0 with a…" and len(rows[0]["title"]) <= 24
    assert rows[0]["description"] == "Choice number 0 with a long title"
    distinct = [{"title": f"Choice {n}", "payload": f"/intent_{n}"} for n in range(3)]
    buttons = WhatsApp(settings).interactive("Did you mean?", distinct)["action"]["buttons"]
    assert [b["reply"]["title"] for b in buttons] == ["Choice 0", "Choice 1", "Choice 2"]
    # Three titles alike in their first 20 characters would be refused as buttons: a list instead.
    declined = ["Card payment declined abroad", "Card payment declined in a shop", "Top-up"]
    similar = [{"title": t, "payload": f"/intent_{n}"} for n, t in enumerate(declined)]
    alike = WhatsApp(settings).interactive("Did you mean?", similar)
    assert alike["type"] == "list" and len(alike["action"]["sections"][0]["rows"]) == 3


def test_a_message_sent_in_parts_starts_again_after_the_parts_the_app_took() -> None:
    """A long message goes in parts; the app takes the first, then fails (HTTP 500: tried again). The next
    attempt sends the rest only: the customer never gets a part twice."""
    from core.settings import load_settings
    from serving.channels import Messenger, Telegram, WhatsApp

    settings = load_settings({"environment": "testing", **CHANNELS}, environ={})
    paragraphs = [f"Paragraph {n}: " + "word " * 380 for n in range(3)]  # about 1,900 characters each
    long = "\n\n".join(paragraphs)
    choices = [{"title": "Change my PIN", "payload": "/change_pin"}]
    for client, text_of in (
        (Telegram, lambda body: body["text"]),
        (WhatsApp, lambda body: body["text"]["body"] if body["type"] == "text" else "(buttons)"),
        (Messenger, lambda body: body["message"]["text"]),
    ):
        api = Api()
        api.answer = b'{"ok": true, "messages": [{"id": "wamid.X"}], "message_id": "m_X"}'
        api.statuses = [200, 500]
        payload: dict[str, Any] = {"text": long, "choices": choices}
        failed = client(settings, api).send("42", payload)
        assert isinstance(failed, Failure) and not failed.final and failed.parts_sent == 1, client
        first = [text_of(body) for body in api.bodies()]
        api.requests.clear()
        assert not isinstance(client(settings, api).send("42", payload | {"parts_sent": 1}), Failure)
        again = [text_of(body) for body in api.bodies()]
        assert first[0].startswith("Paragraph 0") and again[0] == first[1], client
        assert not any(text.startswith("Paragraph 0") for text in again), client
        assert "Paragraph 2" in "".join(again), client


def test_telegram_callback_data_over_64_bytes_is_hashed_and_read_back(app: Any) -> None:
    from serving.channels import Telegram, choice_text, hashed

    long_payload = "/" + "x" * 80
    rows = Telegram.keyboard({"choices": [{"title": "Long", "payload": long_payload}]})
    data = rows[0][0]["callback_data"]
    assert data == hashed(long_payload) and len(data.encode()) <= 64
    with app.test_request_context():
        assert choice_text(hashed("/change_pin")) == "/change_pin"
        assert choice_text(hashed("/no_such_intent")) == ""
        assert choice_text("/card_arrival") == "/card_arrival"


def test_answers_are_formatted_for_each_app() -> None:
    from serving.channel_text import render, split

    answer = (
        "Go to **Profile → Close account** <script>x</script>.\n\n1. Open the app\n2. See [our page](https://b.example/x)"
        " or [mail us](mailto:help@b.example)\n\n| fee | amount |\n|---|---|\n| card | £5 |\n\n"
        "[click](javascript:alert(1)) `code`"
    )
    assert render(answer, "telegram") == (
        "Go to <b>Profile → Close account</b> &lt;script&gt;x&lt;/script&gt;.\n\n"
        '1. Open the app\n2. See <a href="https://b.example/x">our page</a> or '
        '<a href="mailto:help@b.example">mail us</a>\n\n'
        "fee | amount\ncard | £5\n\n"
        "[click](javascript:alert(1)) <code>code</code>"
    )
    assert render(answer, "whatsapp") == (
        "Go to *Profile → Close account* <script>x</script>.\n\n"
        "1. Open the app\n2. See our page (https://b.example/x) or mail us (mailto:help@b.example)\n\n"
        "fee | amount\ncard | £5\n\n"
        "[click](javascript:alert(1)) `code`"
    )
    assert split("para one\n\npara two", 12) == ["para one", "para two"]
    assert all(len(p) <= 10 for p in split("word " * 30, 10))
    with pytest.raises(ValueError):
        render("x", "sms")


class TelegramApi(BaseHTTPRequestHandler):
    """The Telegram Bot API on a local port: records each call; refuses sendMessage to chat 13."""

    calls: list[tuple[str, dict[str, Any]]] = []
    webhook = ""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        TelegramApi.calls.append((self.path, body))
        refused = body.get("chat_id") == "13"
        self.send_response(403 if refused else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        reply: dict[str, Any] = {"ok": True}
        if refused:
            reply = {"ok": False, "description": "Forbidden: bot was blocked by the user"}
        elif self.path.endswith("/setWebhook"):
            TelegramApi.webhook = body["url"]
        elif self.path.endswith("/getWebhookInfo"):
            reply["result"] = {"url": TelegramApi.webhook, "pending_update_count": 0}
        self.wfile.write(json.dumps(reply).encode())

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def telegram_api() -> Iterator[str]:
    TelegramApi.calls, TelegramApi.webhook = [], ""
    server = HTTPServer(("127.0.0.1", 0), TelegramApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_replies_go_over_http_and_the_cli_registers_the_webhook(
    make_app: Callable[..., Any], telegram_api: str, tmp_path: Any
) -> None:
    from core.models import utcnow
    from serving.cli import main
    from serving.doctor import _channels

    settings = {**CHANNELS, "telegram_api_url": telegram_api}
    app = make_app(**settings)
    client = app.test_client()
    telegram(client, text_update(60, "where is my card"))
    telegram(client, text_update(61, "where is my card", chat=13))
    assert send(app) == {"sent": 1, "failed": 1}
    assert [(path, body["chat_id"]) for path, body in TelegramApi.calls] == [
        ("/bot123456:ABC-token/sendMessage", "42"),
        ("/bot123456:ABC-token/sendMessage", "13"),
    ]
    environ = {
        "HELPLOOP_ENVIRONMENT": "testing",
        "HELPLOOP_INSTANCE_PATH": str(tmp_path / "instance"),
        "HELPLOOP_DATABASE_URL": app.extensions["helploop"].settings.database_url,
        **{f"HELPLOOP_{k.upper()}": v for k, v in settings.items()},
    }
    runner = CliRunner()
    status = runner.invoke(main, ["channels"], env=environ)
    assert status.exit_code == 0, status.output
    assert "telegram: webhook https://<this app's address>/channels/telegram/webhook" in status.output
    assert "1 messages sent, 0 waiting, 1 failed (last error: sendMessage: HTTP 403" in status.output
    assert "  after 24 h: replies do not reach the customer (no HELPLOOP_WHATSAPP_REOPEN_TEMPLATE)" in (
        status.output
    )
    assert "  the team's replies are taken for 24 hours (HELPLOOP_MESSENGER_HUMAN_AGENT off)" in status.output
    both = {
        "HELPLOOP_WHATSAPP_REOPEN_TEMPLATE": "support_follow_up:en_GB",
        "HELPLOOP_MESSENGER_HUMAN_AGENT": "1",
    }
    status = runner.invoke(main, ["channels"], env=environ | both)
    assert (
        "  after 24 h: the template support_follow_up (en_GB) asks the customer to write back"
        in status.output
    )
    assert "  the team's replies go with the HUMAN_AGENT tag: taken for 7 days" in status.output
    # `helploop doctor`'s line: the failed message, and no webhook registered yet.
    helploop = app.extensions["helploop"]
    check = _channels(helploop.settings, helploop.database, utcnow())
    assert check.status == "fail" and "1 messages failed in 24 h (last: sendMessage: HTTP 403" in check.detail
    assert "no webhook registered (`helploop channels connect telegram`)" in check.detail
    missing = runner.invoke(main, ["channels", "connect", "telegram"], env=environ)
    assert missing.exit_code == 2 and "HELPLOOP_PUBLIC_URL" in missing.output
    plain = runner.invoke(
        main, ["channels", "connect", "telegram", "--url", "http://bot.example"], env=environ
    )
    assert plain.exit_code == 2 and "https" in plain.output
    connected = runner.invoke(
        main,
        ["channels", "connect", "telegram"],
        env=environ | {"HELPLOOP_PUBLIC_URL": "https://bot.example.com/"},
    )
    assert connected.exit_code == 0, connected.output
    (path, body), (read_back, _) = TelegramApi.calls[-2:]  # registered, then read back as Telegram has it
    assert read_back == "/bot123456:ABC-token/getWebhookInfo"
    assert path == "/bot123456:ABC-token/setWebhook"
    assert body == {
        "url": "https://bot.example.com/channels/telegram/webhook",
        "secret_token": SECRET,
        "allowed_updates": ["message", "callback_query"],
    }
    check = _channels(helploop.settings, helploop.database, utcnow())
    assert check.status == "warn" and "no webhook" not in check.detail  # the failed message is still news


def messenger(client: Any, *events: dict[str, Any], secret: str = "messenger-app-secret") -> Any:
    delivery = {"object": "page", "entry": [{"id": "PAGE1", "time": 1764000000, "messaging": list(events)}]}
    return whatsapp(client, delivery, secret=secret, app="messenger")


def m_text(mid: str, text: str, sender: str = "PSID77", quick: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"mid": mid, "text": text}
    if quick is not None:
        message["quick_reply"] = {"payload": quick}
    return {
        "sender": {"id": sender},
        "recipient": {"id": "PAGE1"},
        "timestamp": 1764000000,
        "message": message,
    }


def test_messenger_answers_with_quick_replies_and_thumbs_and_ignores_its_own_echoes(
    app: Any, api: Api
) -> None:
    client = app.test_client()
    check = client.get(
        "/channels/messenger/webhook?hub.mode=subscribe&hub.verify_token=verify-messenger&hub.challenge=42"
    )
    assert check.status_code == 200 and check.get_data(as_text=True) == "42"
    assert messenger(client, m_text("m.1", "where is my card"), secret="wrong").status_code == 403
    assert messenger(client, m_text("m.1", "where is my card")).status_code == 200
    messenger(client, m_text("m.1", "where is my card"))  # delivered again: answered once
    [turn] = turns(app)
    assert turn.intent == "card_arrival"
    send(app)
    [(url, body, headers)] = api.requests
    assert (
        url == "https://graph.test/v21.0/me/messages" and headers["Authorization"] == "Bearer EAAP-page-token"
    )
    assert body["recipient"] == {"id": "PSID77"} and body["messaging_type"] == "RESPONSE"
    assert body["message"]["text"] == "Cards arrive in *5–7 working days*."
    assert body["message"]["quick_replies"] == [
        {"content_type": "text", "title": "Change my PIN", "payload": "/change_pin"},
        {"content_type": "text", "title": "👍", "payload": f"fb:{turn.id}:1"},
        {"content_type": "text", "title": "👎", "payload": f"fb:{turn.id}:0"},
    ]
    # The page's echo of that reply, a delivery receipt: nothing. A quick reply: its intent is answered.
    echo = m_text("m.2", "Cards arrive in 5–7 working days.")
    echo["message"]["is_echo"] = True
    receipt = {"sender": {"id": "PSID77"}, "delivery": {"mids": ["m.2"]}}
    messenger(client, echo, receipt, m_text("m.3", "Change my PIN", quick="/change_pin"))
    assert [t.intent for t in turns(app)] == ["card_arrival", "change_pin"]
    # 👎 as a quick reply: the answer rated, the question into review, other intents offered; and a press
    # is the customer's last message for the reply window, as Messenger counts it.
    from datetime import timedelta

    with app.extensions["helploop"].database.session() as session:
        chat = session.scalars(select(ChannelChat).where(ChannelChat.chat_key == "PSID77")).one()
        chat.customer_at = (chat.customer_at or utcnow()) - timedelta(hours=30)
    messenger(client, m_text("m.4", "👎", quick=f"fb:{turn.id}:0"))
    with app.extensions["helploop"].database.session() as session:
        chat = session.scalars(select(ChannelChat).where(ChannelChat.chat_key == "PSID77")).one()
        assert chat.customer_at is not None and as_utc(chat.customer_at) > utcnow() - timedelta(minutes=1)
    assert turns(app)[0].helpful is False and len(turns(app)) == 2
    send(app)
    assert api.bodies()[-1]["message"]["text"].startswith(
        app.extensions["helploop"].settings.small_talk_not_helpful
    )
    # "Get started", and a photo.
    started = {
        "sender": {"id": "PSID78"},
        "timestamp": 5,
        "postback": {"title": "Get started", "payload": "GET_STARTED", "mid": "m.5"},
    }
    photo = {"sender": {"id": "PSID78"}, "message": {"mid": "m.6", "attachments": [{"type": "image"}]}}
    messenger(client, started, photo)
    assert turns(app)[-1].status == "small_talk"
    send(app)
    assert (
        api.bodies()[-1]["message"]["text"] == app.extensions["helploop"].settings.channel_unsupported_message
    )
    with app.extensions["helploop"].database.session() as session:
        assert (
            session.scalar(select(ChannelChat.chat_key).where(ChannelChat.channel == "messenger")) == "PSID77"
        )


def chat_with_omar(
    app: Any, client: Any, reach: Callable[[str], Any], operator: Any = None
) -> tuple[Any, str, str]:
    """The customer asks for a person through ``reach`` (one app's webhook), operator omar (signed in now, or
    ``operator``) replies in the chat: omar's client, the conversation's page and id."""
    from tests.serving.test_admin import csrf_token

    reach("can I talk to a human?")
    conversation_id = turns(app)[-1].conversation_id
    if operator is None:
        operator, page = operator_on(app, conversation_id)
    else:
        page = f"/operator/conversations/{conversation_id}"
    token = csrf_token(operator.get(page).get_data(as_text=True))
    operator.post(f"{page}/messages", data={"csrf_token": token, "text": "Hi, Omar here. Sorted?"})
    return operator, page, conversation_id


def mark_handled(operator: Any, page: str) -> None:
    from tests.serving.test_admin import csrf_token

    token = csrf_token(operator.get(page).get_data(as_text=True))
    assert operator.post(f"{page}/close", data={"csrf_token": token, "note": "done"}).status_code == 302


def rating_of(app: Any, conversation_id: str) -> tuple[int | None, str | None]:
    from core.models import Conversation

    with app.extensions["helploop"].database.session() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        return conversation.rating, conversation.rated_agent


def test_a_telegram_customer_rates_the_live_chat_when_it_ends(app: Any, api: Api) -> None:
    """Marked handled on an app, the customer is told the bot answers again and asked to rate the chat with
    five buttons (the widget asks by itself); a press is the rating of that conversation, once a delivery,
    from that chat only, and pressing again replaces it."""
    client = app.test_client()
    operator, page, conversation_id = chat_with_omar(
        app, client, lambda said: telegram(client, text_update(50, said))
    )
    send(app)
    before = len(api.requests)
    mark_handled(operator, page)
    assert send(app) == {"sent": 1}
    [(url, body, _)] = api.requests[before:]
    settings = app.extensions["helploop"].settings
    assert url.endswith("/sendMessage") and body["text"] == settings.channel_handed_back_message
    keyboard = body["reply_markup"]["inline_keyboard"]
    assert [row[0]["text"] for row in keyboard] == ["★★★★★ 5", "★★★★ 4", "★★★ 3", "★★ 2", "★ 1"]
    assert [row[0]["callback_data"] for row in keyboard] == [
        f"rate:{conversation_id}:{n}" for n in (5, 4, 3, 2, 1)
    ]
    assert all(
        len(row[0]["callback_data"].encode()) <= 64 for row in keyboard
    )  # read back as sent, not hashed
    metrics = app.extensions["helploop"].metrics

    def pressed(update_id: int, rating: int, chat: int = 42) -> Any:
        return telegram(
            client, button_update(update_id, f"rate:{conversation_id}:{rating}", chat=chat)
        ).get_json()

    assert pressed(51, 2) == {
        "method": "answerCallbackQuery",
        "callback_query_id": "cb51",
        "text": settings.rating_received_message,  # thanked in the button's toast, nothing sent to the chat
    }
    assert rating_of(app, conversation_id) == (2, "omar")
    assert metrics.chat_ratings.labels(rating="2")._value.get() == 1
    assert "text" not in pressed(51, 2)  # the same press delivered again: counted once
    assert metrics.chat_ratings.labels(rating="2")._value.get() == 1
    assert "text" not in pressed(52, 1, chat=43)  # another chat's press for this conversation: refused
    assert rating_of(app, conversation_id) == (2, "omar")
    pressed(53, 5)  # changed their mind: replaced, as in the widget
    assert rating_of(app, conversation_id) == (5, "omar")
    assert len(turns(app)) == 1  # a press is no question for the bot
    assert send(app) == {}
    shown = operator.get(page).get_data(as_text=True)
    assert 'id="rating"' in shown and "<strong>5 out of 5</strong>" in shown


def test_no_rating_is_asked_for_when_nobody_from_the_team_chatted(app: Any, api: Api) -> None:
    client = app.test_client()
    telegram(client, text_update(60, "can I talk to a human?"))
    conversation_id = turns(app)[-1].conversation_id
    operator, page = operator_on(app, conversation_id)
    send(app)
    mark_handled(operator, page)  # e.g. the team called the customer back
    assert send(app) == {}
    telegram(client, button_update(61, f"rate:{conversation_id}:5"))
    assert rating_of(app, conversation_id) == (None, None)


def test_whatsapp_and_messenger_customers_rate_the_chat_from_a_list_and_quick_replies(
    app: Any, api: Api
) -> None:
    client = app.test_client()
    settings = app.extensions["helploop"].settings
    # WhatsApp: five choices are a list (more than three buttons); the row's id comes back as the rating.
    n = iter(range(100))
    operator, page, conversation_id = chat_with_omar(
        app, client, lambda said: whatsapp(client, wa_delivery(wa_text(f"wamid.R{next(n)}", said)))
    )
    send(app)
    mark_handled(operator, page)
    send(app)
    asked = api.bodies()[-1]["interactive"]
    assert asked["type"] == "list" and asked["body"]["text"] == settings.channel_handed_back_message
    rows = asked["action"]["sections"][0]["rows"]
    assert [r["id"] for r in rows] == [f"rate:{conversation_id}:{k}" for k in (5, 4, 3, 2, 1)]
    chose = {
        "from": "447700900123",
        "id": "wamid.RATE",
        "type": "interactive",
        "interactive": {"type": "list_reply", "list_reply": {"id": rows[3]["id"], "title": rows[3]["title"]}},
    }
    whatsapp(client, wa_delivery(chose))
    whatsapp(client, wa_delivery(chose))  # delivered twice
    assert rating_of(app, conversation_id) == (2, "omar")
    assert send(app) == {"sent": 1}  # the thanks, once
    assert api.bodies()[-1]["text"]["body"] == settings.rating_received_message

    # Messenger: quick replies.
    m = iter(range(100))
    _operator, page, conversation_id = chat_with_omar(
        app, client, lambda said: messenger(client, m_text(f"m.R{next(m)}", said)), operator
    )
    send(app)
    mark_handled(operator, page)
    send(app)
    replies = api.bodies()[-1]["message"]["quick_replies"]
    assert [r["payload"] for r in replies] == [f"rate:{conversation_id}:{k}" for k in (5, 4, 3, 2, 1)]
    messenger(client, m_text("m.RATE", "★★★★ 4", quick=replies[1]["payload"]))
    assert rating_of(app, conversation_id) == (4, "omar")
    send(app)
    assert api.bodies()[-1]["message"]["text"] == settings.rating_received_message


def test_an_operator_connects_telegram_from_the_activity_page(
    make_app: Callable[..., Any], telegram_api: str
) -> None:
    """The button queues a job (Telegram is asked over the network, never in the request); the worker
    registers the webhook at HELPLOOP_PUBLIC_URL with its secret, and the page says where updates go."""
    from tests.serving.test_admin import add_user, csrf_token, login, signed_in_operator
    from training.jobs import Worker

    settings = {**CHANNELS, "telegram_api_url": telegram_api, "public_url": "https://bot.example.com/"}
    app, operator = signed_in_operator(make_app, **settings)
    helploop = app.extensions["helploop"]
    add_user(app, "rita", "reviewer")
    page = operator.get("/operator/activity").get_data(as_text=True)
    assert 'id="telegram-connect"' in page and "Registers the webhook above with Telegram" in page
    connect = {"csrf_token": csrf_token(page)}
    assert operator.post("/operator/activity/telegram/connect", data=connect).status_code == 302
    again = operator.post("/operator/activity/telegram/connect", data=connect, follow_redirects=True)
    assert "Connecting Telegram already: job 1." in again.get_data(as_text=True)  # one at a time
    assert "Connecting (job 1, queued)" in again.get_data(as_text=True)
    assert TelegramApi.calls == []  # nothing asked of Telegram inside the request
    assert Worker(helploop.database, helploop.settings, worker_id="test").run_once() == 1
    path, body = TelegramApi.calls[0]
    assert path == "/bot123456:ABC-token/setWebhook"
    assert body == {
        "url": "https://bot.example.com/channels/telegram/webhook",
        "secret_token": SECRET,
        "allowed_updates": ["message", "callback_query"],
    }
    assert TelegramApi.calls[1][0] == "/bot123456:ABC-token/getWebhookInfo"  # read back, as Telegram has it
    page = operator.get("/operator/activity").get_data(as_text=True)
    assert re.search(
        r"Connected by omar \S+ \S+ UTC: Telegram sends updates to "
        r"<code>https://bot.example.com/channels/telegram/webhook</code>\.",
        page,
    )
    jobs = operator.get("/operator/exports").get_data(as_text=True)
    assert "Telegram sends updates to <code" in jobs
    # Reviewers may not; without CSRF it is refused.
    reviewer = app.test_client()
    login(reviewer, "rita")
    own = {"csrf_token": csrf_token(reviewer.get("/account").get_data(as_text=True))}
    assert reviewer.post("/operator/activity/telegram/connect", data=own).status_code == 403
    assert operator.post("/operator/activity/telegram/connect", data={}).status_code == 400


def test_telegram_cannot_be_connected_without_a_public_https_address(make_app: Callable[..., Any]) -> None:
    from tests.serving.test_admin import csrf_token, signed_in_operator

    app, operator = signed_in_operator(make_app, **CHANNELS)  # no HELPLOOP_PUBLIC_URL
    page = operator.get("/operator/activity").get_data(as_text=True)
    assert 'disabled title="set HELPLOOP_PUBLIC_URL' in page
    refused = operator.post(
        "/operator/activity/telegram/connect", data={"csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Refused: Telegram sends updates to https addresses only" in refused
    from core.models import Job

    with app.extensions["helploop"].database.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_connecting_telegram_names_what_went_wrong(api: Api) -> None:
    from core.settings import load_settings
    from serving.channels import ConnectError, connect_telegram

    settings = load_settings({"environment": "testing", **CHANNELS}, environ={})
    with pytest.raises(ConnectError, match="https addresses only"):
        connect_telegram(settings, "http://bot.example.com/channels/telegram/webhook", api)
    api.statuses, api.answer = [401], b'{"ok": false, "description": "Unauthorized"}'
    with pytest.raises(ConnectError, match="Telegram refused the webhook: setWebhook: HTTP 401"):
        connect_telegram(settings, "https://bot.example.com/channels/telegram/webhook", api)

    def unreachable(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        raise OSError("connection refused")

    with pytest.raises(
        ConnectError, match="could not reach Telegram at https://telegram.test: connection refused"
    ):
        connect_telegram(settings, "https://bot.example.com/channels/telegram/webhook", unreachable)
    api.answers = [
        b'{"ok": true}',
        b'{"ok": true, "result": {"url": "https://x/", "pending_update_count": 3}}',
    ]
    api.statuses = []
    assert connect_telegram(settings, "https://x/", api) == {"url": "https://x/", "pending_update_count": 3}


def test_no_rating_is_asked_for_once_whatsapps_reply_window_has_closed(app: Any, api: Api) -> None:
    """WhatsApp takes messages only within 24 hours of the customer's last one: marked handled after that,
    the rating question is not queued to fail; the page says why."""
    from datetime import timedelta

    from core.models import ChannelChat, utcnow

    client = app.test_client()
    n = iter(range(100))
    operator, page, conversation_id = chat_with_omar(
        app, client, lambda said: whatsapp(client, wa_delivery(wa_text(f"wamid.W{next(n)}", said)))
    )
    send(app)
    with app.extensions["helploop"].database.session() as session:
        chat = session.query(ChannelChat).filter_by(conversation_id=conversation_id).one()
        chat.customer_at = utcnow() - timedelta(hours=25)
    sent_before = len(api.bodies())
    from tests.serving.test_admin import csrf_token

    token = csrf_token(operator.get(page).get_data(as_text=True))
    done = operator.post(f"{page}/close", data={"csrf_token": token}, follow_redirects=True)
    assert "The customer was not asked to rate the chat: WhatsApp takes messages only within 24 hours" in (
        done.get_data(as_text=True)
    )
    assert send(app) == {} and len(api.bodies()) == sent_before


def test_a_rating_typed_as_the_answer_to_the_rating_question_is_the_rating(app: Any, api: Api) -> None:
    """Customers type "5" or "4 out of 5" under the rating question as often as they press a button: as
    their next message it is the rating (thanked, no question for the bot); any other time it is a message
    for the bot, as before."""
    client = app.test_client()
    settings = app.extensions["helploop"].settings
    n = iter(range(700, 800))
    operator, page, conversation_id = chat_with_omar(
        app, client, lambda said: telegram(client, text_update(next(n), said))
    )
    send(app)
    telegram(client, text_update(next(n), "5"))  # during the live chat: a message for omar
    assert rating_of(app, conversation_id) == (None, None)
    mark_handled(operator, page)
    send(app)
    before = len(turns(app))
    telegram(client, text_update(next(n), "4 out of 5!"))
    assert rating_of(app, conversation_id) == (4, "omar")
    assert len(turns(app)) == before  # no question for the bot
    assert send(app) == {"sent": 1} and api.bodies()[-1]["text"] == settings.rating_received_message
    assert app.extensions["helploop"].metrics.chat_ratings.labels(rating="4")._value.get() == 1
    telegram(client, text_update(next(n), "5"))  # rated already: a message for the bot
    assert rating_of(app, conversation_id) == (4, "omar") and len(turns(app)) == before + 1

    # Another customer writes something else first: the bot answers it, and a "2" after that is no rating
    m = iter(range(800, 900))
    _operator, page, other = chat_with_omar(
        app, client, lambda said: telegram(client, text_update(next(m), said, chat=77)), operator
    )
    send(app)
    mark_handled(operator, page)
    send(app)
    telegram(client, text_update(next(m), "where is my card", chat=77))
    telegram(client, text_update(next(m), "2", chat=77))
    assert rating_of(app, other) == (None, None)
    assert [t.user_text for t in turns(app)][-2:] == ["where is my card", "2"]


def test_marked_handled_with_others_a_whatsapp_customer_past_the_window_is_not_asked_either(
    app: Any, api: Api
) -> None:
    from datetime import timedelta

    from core.models import ChannelChat, utcnow
    from tests.serving.test_admin import csrf_token

    client = app.test_client()
    n = iter(range(100))
    operator, _page, conversation_id = chat_with_omar(
        app, client, lambda said: whatsapp(client, wa_delivery(wa_text(f"wamid.B{next(n)}", said)))
    )
    send(app)
    with app.extensions["helploop"].database.session() as session:
        chat = session.query(ChannelChat).filter_by(conversation_id=conversation_id).one()
        chat.customer_at = utcnow() - timedelta(hours=25)
    sent_before = len(api.bodies())
    inbox = operator.get("/operator/conversations").get_data(as_text=True)
    done = operator.post(
        "/operator/conversations/handled",
        data={"ids": [conversation_id], "csrf_token": csrf_token(inbox)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Marked 1 conversation handled: it has left the inbox." in done
    assert "1 on WhatsApp or Messenger past the reply window was not asked to rate the chat." in done
    assert send(app) == {} and len(api.bodies()) == sent_before
    assert rating_of(app, conversation_id) == (None, None)
