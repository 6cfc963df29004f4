"""Telegram as a channel under gunicorn (committed config), on loopback, against a local stand-in for
Telegram's Bot API: how fast the webhook answers Telegram, how long until the reply reaches the API, and
that every update is answered exactly once, also when Telegram delivers each one twice at once.

Same run, same messages (BANKING77 test questions): (1) the widget's POST /api/v1/chat one at a time, the
reference; (2) Telegram updates one at a time: the webhook's answer and the reply's arrival at the API;
(3) ``--clients`` chats at once, each update delivered twice at the same moment (Telegram repeats an update
it got no answer to in time): every update must give one turn and one sendMessage. Uses the bundle saved by
bench/accuracy.py (bench/results/model) or any ``--model``; the embedded default database (SQLite) unless
``--database-url`` is given. Rate limiting is off for the run.

    .venv/bin/python bench/channels.py [--model DIR] [--requests 200] [--clients 8] [--database-url URL]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sqlalchemy import func, select  # noqa: E402

from bench.http_latency import deploy_bundle, migrated_database, server_env, start_gunicorn  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402
from core.models import ChannelMessage, Turn  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))
SECRET = "bench-webhook-secret-0123456789"
TOKEN = "123456:bench"
TARGETS = {"delivered_p50_ms": 100.0, "missing_replies": 0, "extra_replies": 0}


class FakeTelegram(BaseHTTPRequestHandler):
    """Telegram's Bot API: each sendMessage's chat and arrival time."""

    arrivals: dict[str, list[float]] = {}
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with FakeTelegram.lock:
            FakeTelegram.arrivals.setdefault(str(body.get("chat_id")), []).append(time.perf_counter())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true, "result": {}}')

    def log_message(self, *_: Any) -> None:
        pass


def update(update_id: int, chat: int, text: str) -> bytes:
    message = {"message_id": update_id, "chat": {"id": chat, "type": "private"}, "date": 0, "text": text}
    return json.dumps({"update_id": update_id, "message": message}).encode()


def post(
    connection: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, float]:
    started = time.perf_counter()
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
    response = connection.getresponse()
    response.read()
    return response.status, (time.perf_counter() - started) * 1000


def wait_for(chat: str, count: int, timeout: float = 10.0) -> float | None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        with FakeTelegram.lock:
            seen = FakeTelegram.arrivals.get(chat, [])
            if len(seen) >= count:
                return seen[count - 1]
        time.sleep(0.001)
    return None


def percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p99_ms": round(float(np.percentile(values, 99)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=ROOT / "bench" / "results" / "model")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if not (args.model / "manifest.json").is_file():
        sys.exit(
            f"error: no bundle at {args.model}; run bench/accuracy.py first (it saves one), or pass --model"
        )
    texts, _ = read_labelled_csv(args.data / "test.csv")
    rng = np.random.default_rng(0)
    messages = [texts[i] for i in rng.choice(len(texts), size=2 * args.requests, replace=False)]

    api = ThreadingHTTPServer(("127.0.0.1", 0), FakeTelegram)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    env = server_env(
        "helploop-channels-", workers=args.workers, threads=args.threads, database_url=args.database_url
    )
    env["HELPLOOP_TELEGRAM_BOT_TOKEN"] = TOKEN
    env["HELPLOOP_TELEGRAM_WEBHOOK_SECRET"] = SECRET
    env["HELPLOOP_TELEGRAM_API_URL"] = f"http://127.0.0.1:{api.server_port}"
    database = migrated_database(env)
    manifest = deploy_bundle(database, args.model, reason="channels")
    server, port = start_gunicorn(env)
    hook = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    results: dict[str, Any] = {
        "model": manifest["version"],
        "requests": args.requests,
        "clients": args.clients,
        "workers": args.workers,
        "threads": args.threads,
        "database": args.database_url or "sqlite (embedded default)",
    }
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for n, message in enumerate(messages[:20]):  # warm every worker and thread
            post(connection, "/channels/telegram/webhook", update(900_000 + n, 900_000 + n, message), hook)
            post(connection, "/api/v1/chat", json.dumps({"message": message}).encode(), {})
        sequential = messages[: args.requests]

        # (1) the widget's chat, one at a time: the reference
        chat_ms = []
        for message in sequential:
            status, ms = post(connection, "/api/v1/chat", json.dumps({"message": message}).encode(), {})
            assert status == 200, status
            chat_ms.append(ms)
        # (2) Telegram, one at a time: the webhook's answer, and the reply's arrival at the API
        webhook_ms, delivered_ms, missing = [], [], 0
        for n, message in enumerate(sequential):
            chat = 1_000 + n
            started = time.perf_counter()
            status, ms = post(connection, "/channels/telegram/webhook", update(n + 1, chat, message), hook)
            assert status == 200, status
            webhook_ms.append(ms)
            arrived = wait_for(str(chat), 1)
            if arrived is None:
                missing += 1
            else:
                delivered_ms.append((arrived - started) * 1000)
        results["widget_chat"] = percentiles(chat_ms)
        results["telegram_webhook"] = percentiles(webhook_ms)
        results["telegram_reply_delivered"] = percentiles(delivered_ms)

        # (3) chats at once, each update delivered twice at the same moment
        concurrent = messages[args.requests :]
        barrier = threading.Barrier(2 * args.clients)
        failures: list[int] = []
        spans: list[float] = []

        def client(index: int, copy: int) -> None:
            local = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            barrier.wait()
            started = time.perf_counter()
            for n in range(index, len(concurrent), args.clients):
                body = update(100_000 + n, 50_000 + n, concurrent[n])
                status, _ = post(local, "/channels/telegram/webhook", body, hook)
                if status != 200:
                    failures.append(status)
            spans.append(time.perf_counter() - started)

        threads = [
            threading.Thread(target=client, args=(index, copy))
            for index in range(args.clients)
            for copy in (0, 1)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for n in range(len(concurrent)):
            wait_for(str(50_000 + n), 1, timeout=10)
        time.sleep(2.0)  # a second reply, were there one, would have arrived by now
        with FakeTelegram.lock:
            replies = [len(FakeTelegram.arrivals.get(str(50_000 + n), [])) for n in range(len(concurrent))]
        with database.session() as session:
            turns = int(session.scalar(select(func.count()).select_from(Turn)) or 0)
            pending = int(
                session.scalar(
                    select(func.count()).select_from(ChannelMessage).where(ChannelMessage.status != "sent")
                )
                or 0
            )
        results["concurrent"] = {
            "updates": len(concurrent),
            "deliveries": 2 * len(concurrent),
            "http_errors": len(failures),
            "updates_per_second": round(2 * len(concurrent) / max(spans), 1),
            "missing_replies": sum(r == 0 for r in replies) + missing,
            "extra_replies": sum(max(r - 1, 0) for r in replies),
            "messages_not_sent": pending,
        }
        results["turns_logged"] = turns
        results["turns_expected"] = 20 * 2 + 2 * args.requests + len(concurrent)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        api.shutdown()
        database.dispose()
        shutil.rmtree(env["HELPLOOP_INSTANCE_PATH"], ignore_errors=True)

    concurrent_results = results["concurrent"]
    print(f"{'measure':<44} {'p50 ms':>8} {'p99 ms':>8}")
    for key, label in (
        ("widget_chat", "widget POST /api/v1/chat (reference)"),
        ("telegram_webhook", "Telegram webhook answered"),
        ("telegram_reply_delivered", "Telegram reply reached the API"),
    ):
        print(f"{label:<44} {results[key]['p50_ms']:>8} {results[key]['p99_ms']:>8}")
    c = concurrent_results
    print(
        f"{args.clients} chats at once, each update delivered twice: {c['updates_per_second']} deliveries/s, "
        f"{c['missing_replies']} missing replies, {c['extra_replies']} extra replies, "
        f"{c['http_errors']} HTTP errors; turns logged {results['turns_logged']} "
        f"of {results['turns_expected']}"
    )
    results["targets"] = TARGETS
    results["met"] = {
        "delivered_p50_ms": results["telegram_reply_delivered"]["p50_ms"] <= TARGETS["delivered_p50_ms"],
        "missing_replies": c["missing_replies"] == TARGETS["missing_replies"],
        "extra_replies": c["extra_replies"] == TARGETS["extra_replies"],
    }
    print("targets met:", results["met"])
    args.out.mkdir(parents=True, exist_ok=True)
    name = "channels_postgresql.json" if args.database_url.startswith("postgresql") else "channels.json"
    (args.out / name).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
