"""The HTTP latency benchmark's conversations (no server): each message goes in the current conversation, a
new one every N messages, and a message alone carries no session id."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("http_latency.py")


class Reply:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body

    def read(self) -> bytes:
        return json.dumps(self.body).encode()


class Server:
    """Answers every chat message with the session it came in, or a new one; the 4th request fails."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.made = 0

    def request(self, method: str, path: str, body: str, headers: dict[str, str]) -> None:
        assert (method, path, headers) == ("POST", "/api/v1/chat", {"Content-Type": "application/json"})
        self.sent.append(json.loads(body))

    def getresponse(self) -> Reply:
        if len(self.sent) == 4:
            return Reply(503, {"error": {"code": "model_unavailable"}})
        session = self.sent[-1].get("session_id")
        if session is None:
            self.made += 1
            session = f"s{self.made}"
        return Reply(200, {"session_id": session})


def test_messages_go_in_conversations_of_the_length_asked(bench: Any) -> None:
    server = Server()
    talk = bench.Conversations(server, 3)
    statuses = [talk.ask(f"q{i}")[0] for i in range(7)]
    assert statuses == [200, 200, 200, 503, 200, 200, 200]
    # q3 opens the second conversation and fails: q4 then opens one of its own (no session to continue)
    assert [m.get("session_id") for m in server.sent] == [None, "s1", "s1", None, None, "s2", None]
    assert [m["message"] for m in server.sent] == [f"q{i}" for i in range(7)]


def test_a_length_of_one_sends_every_message_alone(bench: Any) -> None:
    server = Server()
    talk = bench.Conversations(server, 1)
    for i in range(3):
        status, ms = talk.ask(f"q{i}")
        assert status == 200 and ms >= 0
    assert all("session_id" not in m for m in server.sent)
