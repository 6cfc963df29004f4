"""The channels benchmark's parts (no gunicorn): the stand-in for Telegram's API counts each reply per chat,
a reply that never comes is missing after the wait, and the updates it sends are Telegram's shape."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("channels.py")


def test_replies_are_counted_per_chat_and_a_missing_one_times_out(bench: Any) -> None:
    bench.FakeTelegram.arrivals = {}
    api = ThreadingHTTPServer(("127.0.0.1", 0), bench.FakeTelegram)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", api.server_port, timeout=5)
        for chat in ("7", "7", "8"):
            status, _ = bench.post(
                connection, "/botT/sendMessage", json.dumps({"chat_id": chat, "text": "hi"}).encode(), {}
            )
            assert status == 200
    finally:
        api.shutdown()
        api.server_close()
    assert {chat: len(times) for chat, times in bench.FakeTelegram.arrivals.items()} == {"7": 2, "8": 1}
    assert bench.wait_for("7", 2) is not None and bench.wait_for("8", 1) is not None
    assert bench.wait_for("8", 2, timeout=0.05) is None and bench.wait_for("9", 1, timeout=0.05) is None


def test_updates_are_telegram_private_messages(bench: Any) -> None:
    update = json.loads(bench.update(12, 34, "where is my card"))
    assert update == {
        "update_id": 12,
        "message": {
            "message_id": 12,
            "chat": {"id": 34, "type": "private"},
            "date": 0,
            "text": "where is my card",
        },
    }
    assert bench.percentiles([1.0, 2.0, 3.0, 100.0]) == {"p50_ms": 2.5, "p99_ms": 97.1}
