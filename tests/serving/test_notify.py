"""Handoff notifications: the webhook's payload, signature, retries, and when the app sends one."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from bot.engine import AnsweringEngine
from core.registry import agent_reply
from core.settings import Settings, SettingsError
from core.webhooks import signature
from serving.notify import HandoffNotifier
from tests.conftest import add_turn
from tests.serving.conftest import Receiver, hashing_loader


def test_payload_signature_and_link() -> None:
    sent: list[tuple[str, bytes, dict[str, str]]] = []
    outcomes: list[str] = []
    notifier = HandoffNotifier(
        "https://hooks.example.com/x",
        secret="s3cret",
        public_url="https://bot.example.com/",
        post=lambda url, body, headers: sent.append((url, body, headers)) or 200,
        on_result=outcomes.append,
    )
    notifier.notify(session_id="abc123", reason="bot", message="my card [CARD_NUMBER] is stuck")
    assert notifier.drain(5)
    ((url, body, headers),) = sent
    payload = json.loads(body)
    assert url == "https://hooks.example.com/x" and outcomes == ["sent"]
    assert payload["event"] == "handoff" and payload["reason"] == "bot" and payload["session_id"] == "abc123"
    assert payload["url"] == "https://bot.example.com/operator/conversations/abc123"
    assert payload["text"].startswith("The bot could not answer") and "[CARD_NUMBER]" in payload["text"]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-HelpLoop-Signature"] == expected == signature("s3cret", body)


def test_failures_are_retried_then_counted() -> None:
    calls: list[int] = []
    outcomes: list[str] = []

    def flaky(url: str, body: bytes, headers: dict[str, str]) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("connection refused")
        return 503 if len(calls) == 2 else 204

    notifier = HandoffNotifier(
        "https://hooks.example.com/x", post=flaky, backoff_seconds=0, on_result=outcomes.append
    )
    notifier.notify(session_id="a", reason="asked", message="help")
    assert notifier.drain(5) and len(calls) == 3 and outcomes == ["sent"]  # third attempt got through
    calls.clear()
    down = HandoffNotifier(
        "https://hooks.example.com/x",
        post=lambda *_: 500,
        attempts=2,
        backoff_seconds=0,
        on_result=outcomes.append,
    )
    down.notify(session_id="a", reason="asked", message="help")
    assert down.drain(5) and outcomes == ["sent", "failed"]
    silent = HandoffNotifier("", post=lambda *_: pytest.fail("no URL, no request"))
    silent.notify(session_id="a", reason="asked", message="help")
    assert not silent.enabled and silent.drain(1)


def test_settings_refuse_a_webhook_that_is_not_http(tmp_path: Any) -> None:
    with pytest.raises(SettingsError, match="handoff_webhook_url must be an http"):
        Settings(instance_path=str(tmp_path), handoff_webhook_url="file:///etc/passwd")


def handoff_loader(path: str) -> AnsweringEngine:
    engine = hashing_loader(path)
    engine.gate.threshold = 2.0  # never confident enough: every in-scope message is clarify or handoff
    return engine


def test_the_app_notifies_once_per_handoff_over_http(make_app: Any, receiver: str) -> None:
    app = make_app(
        ratelimit_enabled=False,
        handoff_webhook_url=receiver,
        handoff_webhook_secret="s3cret",
        public_url="https://bot.example.com",
        model_loader=handoff_loader,
    )
    helploop = app.extensions["helploop"]
    client = app.test_client()
    first = client.post(
        "/api/v1/chat",
        json={"message": "zzz qqq mail jo@example.com", "page": "https://shop.example.com/cards?ref=mail"},
    ).get_json()
    assert first["status"] == "handoff"
    again = client.post(
        "/api/v1/chat", json={"message": "zzz qqq still there?", "session_id": first["session_id"]}
    ).get_json()
    assert again["status"] == "handoff"
    client.post(f"/api/v1/sessions/{first['session_id']}/handoff")  # already waiting: not news
    client.post(f"/api/v1/sessions/{first['session_id']}/contact", json={"contact": "jo@example.com"})
    with helploop.database.session() as session:  # a conversation the bot answered, then the customer asks
        calm = {"session_id": add_turn(session, None, "where is my card").conversation_id}
        add_turn(session, calm["session_id"], "/card_arrival").served_by = "suggestion"  # a clicked chip
    client.post(f"/api/v1/sessions/{calm['session_id']}/handoff")
    assert helploop.notifier.drain(10)
    reasons = [(r["body"]["reason"], r["body"]["session_id"]) for r in Receiver.received]
    assert reasons == [
        ("bot", first["session_id"]),
        ("contact", first["session_id"]),
        ("asked", calm["session_id"]),
    ]
    assert (
        Receiver.received[2]["body"]["message"] == "where is my card"
    )  # typed, not the chip's "/card_arrival"
    # the page the widget chat is on, for the bot's handoff and the contact alike; none for an API chat
    assert [r["body"]["page"] for r in Receiver.received] == ["https://shop.example.com/cards"] * 2 + [None]
    assert "(on https://shop.example.com/cards)" in Receiver.received[0]["body"]["text"]
    bodies = json.dumps([r["body"] for r in Receiver.received])
    assert "jo@example.com" not in bodies and "[EMAIL]" in bodies  # only redacted text leaves
    assert (
        Receiver.received[0]["body"]["url"]
        == f"https://bot.example.com/operator/conversations/{first['session_id']}"
    )
    assert all(r["signature"].startswith("sha256=") for r in Receiver.received)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'helploop_handoff_notifications_total{outcome="sent"} 3.0' in metrics

    # Live chat: the team hears when the customer writes after an operator did, not of every message.
    with helploop.database.session() as session:
        agent_reply(session, conversation_id=first["session_id"], agent="omar", text="Hi, Omar here")
    for text in ("my mail is jo@example.com", "hello?"):
        reply = client.post("/api/v1/chat", json={"message": text, "session_id": first["session_id"]})
        assert reply.get_json()["status"] == "agent"
    with helploop.database.session() as session:
        agent_reply(session, conversation_id=first["session_id"], agent="omar", text="Got it")
    client.post("/api/v1/chat", json={"message": "thanks", "session_id": first["session_id"]})
    assert helploop.notifier.drain(10)
    live = [r["body"] for r in Receiver.received[3:]]
    assert [(b["reason"], b["message"]) for b in live] == [
        ("message", "my mail is [EMAIL]"),
        ("message", "thanks"),
    ]
    # An unhappy rating of the live chat reaches the team too (redacted); a happy one does not.
    client.post(f"/api/v1/sessions/{first['session_id']}/rating", json={"rating": 5})
    client.post(
        f"/api/v1/sessions/{first['session_id']}/rating",
        json={"rating": 1, "comment": "slow, call me on +44 20 7946 0958"},
    )
    assert helploop.notifier.drain(10)
    (low,) = [r["body"] for r in Receiver.received[5:]]
    assert (low["reason"], low["message"]) == (
        "low_rating",
        "rated the chat 1 of 5: slow, call me on [PHONE]",
    )
    assert low["text"].startswith("A customer was unhappy with a live chat.")
