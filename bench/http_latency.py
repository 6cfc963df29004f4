"""HTTP latency and throughput of the chat API under gunicorn (committed config), on loopback.

Same run, same messages: (1) bare encode() in-process, the floor; (2) sequential POST /api/v1/chat, p50/p99;
(3) throughput with 8 concurrent clients. Every response must be logged as a turn: the script counts them.
Uses the BANKING77 bundle saved by bench/accuracy.py (bench/results/model); the embedded default database
(SQLite) unless --database-url is given. Rate limiting is switched off for the run (it would answer 429).

With --conversation N every client asks its messages in conversations of N (the session id of the first
reply sent with the next N - 1): what the chat looks up in a conversation's turns (the choices still open, the
question before a follow-up, the answer just given, bot.repetition) is then in the measure. The default, 1,
sends every message alone, as the figures before that option were measured.

With --busy-month the database first gets bench/admin_pages.py's synthetic month (200,000 turns, 5,000 review
items, the demo knowledge base): the same measures on a long log, with pending items for routing to cluster
against (then pass the demo's bundle as --model: its intents are the knowledge base's).

    .venv/bin/python bench/http_latency.py [--model DIR] [--requests 400] [--clients 8] [--database-url URL]
                                           [--busy-month] [--conversation N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sqlalchemy import func, select  # noqa: E402

from bot.engine import AnsweringEngine  # noqa: E402
from bot.runtime import configure_inference_threads  # noqa: E402
from core.db import Database  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402
from core.models import ModelVersion, Turn  # noqa: E402
from core.registry import register_model_version, set_deployment  # noqa: E402
from core.settings import load_settings  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))
TARGETS = {"p50_ms": 15.0, "p99_ms": 50.0, "requests_per_second": 150.0}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(prefix: str, *, workers: int, threads: int, database_url: str = "") -> dict[str, str]:
    """The environment of a benchmarked server: a fresh instance folder, rate limiting off (it would answer
    429), one torch thread, no access log."""
    env = {
        **os.environ,
        "HELPLOOP_INSTANCE_PATH": tempfile.mkdtemp(prefix=prefix),
        "HELPLOOP_RATELIMIT_ENABLED": "false",
        "HELPLOOP_TORCH_THREADS": "1",
        "HELPLOOP_ACCESS_LOG": "",
        "HELPLOOP_WORKERS": str(workers),
        "HELPLOOP_THREADS": str(threads),
    }
    if database_url:
        env["HELPLOOP_DATABASE_URL"] = database_url
    return env


def migrated_database(env: dict[str, str]) -> Database:
    helploop = str(Path(sys.executable).parent / "helploop")
    done = subprocess.run([helploop, "db", "upgrade"], env=env, capture_output=True, text=True)
    if done.returncode != 0:  # e.g. the PostgreSQL database named in the URL does not exist yet
        raise SystemExit(f"helploop db upgrade failed:\n{done.stderr.strip()[-2000:]}")
    return Database(load_settings(environ=env))


def deploy_bundle(database: Database, model: Path, *, reason: str) -> dict[str, Any]:
    """Register the bundle at ``model`` and make it production; its manifest."""
    manifest: dict[str, Any] = json.loads((model / "manifest.json").read_text())
    with database.session() as session:
        if session.scalar(select(ModelVersion.id).where(ModelVersion.version == manifest["version"])):
            raise SystemExit(
                f"the database at {database.engine.url.render_as_string(hide_password=True)} already holds "
                f"model {manifest['version']} (an earlier run: its turns would be counted too); give the "
                "bench an empty database (dropdb and createdb)"
            )
        register_model_version(
            session,
            version=manifest["version"],
            bundle_path=str(model),
            data_hash=manifest["data_hash"],
            metrics={},
            kb_version_id=None,
        )
        set_deployment(session, production_version=manifest["version"], actor="bench", reason=reason)
    return manifest


def start_gunicorn(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """gunicorn with the committed config on a free loopback port, in a process group of its own (stop it
    with ``os.killpg``); returns once /readyz answers 200 (at most 120 s)."""
    port = free_port()
    env["HELPLOOP_BIND"] = f"127.0.0.1:{port}"
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    server = subprocess.Popen(
        [gunicorn, "-c", str(ROOT / "serving" / "gunicorn.conf.py"), "serving:create_app()"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return server, port
        except OSError:
            pass
        time.sleep(0.5)
    os.killpg(server.pid, signal.SIGTERM)
    raise SystemExit("gunicorn did not become ready within 120 s")


def post(
    connection: http.client.HTTPConnection, message: str, session_id: str | None = None
) -> tuple[int, float, str | None]:
    """POST one message (in the conversation ``session_id``, or alone): the status, the milliseconds, and the
    reply's session id."""
    body = json.dumps({"message": message, **({"session_id": session_id} if session_id else {})})
    started = time.perf_counter()
    connection.request("POST", "/api/v1/chat", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    replied = json.loads(payload).get("session_id") if response.status == 200 else None
    return response.status, elapsed, replied


class Conversations:
    """One client's conversations: each message is sent in the current one, a new one every ``length``."""

    def __init__(self, connection: http.client.HTTPConnection, length: int) -> None:
        self.connection, self.length, self.sent, self.session_id = connection, length, 0, None

    def ask(self, message: str) -> tuple[int, float]:
        if self.sent % self.length == 0:
            self.session_id = None
        status, ms, replied = post(self.connection, message, self.session_id)
        self.session_id, self.sent = replied, self.sent + 1
        return status, ms


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=ROOT / "bench" / "results" / "model")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--conversation",
        type=int,
        default=1,
        help="messages per conversation (1: each alone; writes http_latency_conversations.json otherwise)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--busy-month",
        action="store_true",
        help="first fill the database with bench/admin_pages.py's month (200,000 turns, 5,000 review items): "
        "does a long log move chat latency? (writes http_latency_busy_month.json)",
    )
    args = parser.parse_args()
    if args.conversation < 1:
        sys.exit(f"error: --conversation must be 1 or more, not {args.conversation}")
    if not (args.model / "manifest.json").is_file():
        sys.exit(f"error: no bundle at {args.model}; run bench/accuracy.py first (it saves one)")
    test_texts, _ = read_labelled_csv(args.data / "test.csv")
    rng = np.random.default_rng(0)
    messages = [test_texts[i] for i in rng.choice(len(test_texts), size=args.requests, replace=False)]

    env = server_env(
        "helploop-http-", workers=args.workers, threads=args.threads, database_url=args.database_url
    )
    instance = Path(env["HELPLOOP_INSTANCE_PATH"])
    database = migrated_database(env)
    if args.busy_month:
        from bench.admin_pages import fill

        fill(database, turns=200_000, items=5_000, seed=0)
    manifest = deploy_bundle(database, args.model, reason="http latency")
    with database.session() as session:
        before = int(session.scalar(select(func.count()).select_from(Turn)) or 0)

    server, port = start_gunicorn(env)
    results: dict[str, Any] = {
        "model": manifest["version"],
        "requests": args.requests,
        "clients": args.clients,
        "workers": args.workers,
        "threads": args.threads,
        "database": args.database_url or "sqlite (embedded default)",
        "messages_per_conversation": args.conversation,
    }
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for message in messages[:30]:  # warm every worker and thread
            post(connection, message)

        # (1) the floor: bare encode() in this process, same runtime as the server (ONNX when exported)
        configure_inference_threads(1)
        engine = AnsweringEngine.load(args.model, threads=1)
        encoder = engine.main_encoder()
        for message in messages[:20]:
            encoder.encode([message])
        floor = []
        for message in messages:
            started = time.perf_counter()
            encoder.encode([message])
            floor.append((time.perf_counter() - started) * 1000)
        results["encode_floor"] = {
            "runtime": engine.runtime,
            "p50_ms": float(np.percentile(floor, 50)),
            "p99_ms": float(np.percentile(floor, 99)),
        }

        # (2) sequential requests, on a fresh connection (the server may have closed the warm-up one as idle
        # while the floor was measured)
        connection.close()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        sequential = []
        statuses = []
        talk = Conversations(connection, args.conversation)
        for message in messages:
            status, ms = talk.ask(message)
            statuses.append(status)
            sequential.append(ms)
        results["sequential"] = {
            "p50_ms": float(np.percentile(sequential, 50)),
            "p99_ms": float(np.percentile(sequential, 99)),
            "errors": int(sum(s != 200 for s in statuses)),
        }

        # (3) throughput with concurrent clients
        per_client = args.requests // args.clients
        ok = [0] * args.clients
        latencies: list[float] = []
        lock = threading.Lock()

        def client(index: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            talk = Conversations(conn, args.conversation)
            local = []
            for message in messages[index * per_client : (index + 1) * per_client]:
                status, ms = talk.ask(message)
                local.append(ms)
                ok[index] += status == 200
            with lock:
                latencies.extend(local)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        results["concurrent"] = {
            "requests": per_client * args.clients,
            "ok": sum(ok),
            "seconds": elapsed,
            "requests_per_second": sum(ok) / elapsed,
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)

    with database.session() as session:
        logged = int(session.scalar(select(func.count()).select_from(Turn)) or 0) - before
    database.dispose()
    expected = 30 + args.requests + results["concurrent"]["requests"]
    results["turns_before"] = before
    results["turns_logged"] = logged
    results["turns_expected"] = expected
    results["targets"] = TARGETS
    shutil.rmtree(instance, ignore_errors=True)

    seq, conc, floor_r = results["sequential"], results["concurrent"], results["encode_floor"]
    mark = lambda good: "ok" if good else "MISS"  # noqa: E731
    rows = [
        (f"bare encode() p50 ({floor_r['runtime']})", f"{floor_r['p50_ms']:.2f} ms", ""),
        (
            "sequential POST /api/v1/chat p50",
            f"{seq['p50_ms']:.2f} ms",
            f"<= 15 ms {mark(seq['p50_ms'] <= 15)}",
        ),
        (
            "sequential POST /api/v1/chat p99",
            f"{seq['p99_ms']:.2f} ms",
            f"<= 50 ms {mark(seq['p99_ms'] <= 50)}",
        ),
        (
            f"throughput, {args.clients} clients",
            f"{conc['requests_per_second']:.1f} r/s",
            f">= 150 {mark(conc['requests_per_second'] >= 150)}",
        ),
        ("concurrent p50 / p99", f"{conc['p50_ms']:.1f} / {conc['p99_ms']:.1f} ms", ""),
        (
            "turns logged / responses",
            f"{logged} / {expected}",
            mark(logged == expected and seq["errors"] == 0),
        ),
    ]
    alone = "each message alone" if args.conversation == 1 else f"conversations of {args.conversation}"
    print(f"{alone}; {results['database']}")
    print(f"{'measure':<40}{'value':>18}  target")
    print("-" * 72)
    for name, value, target in rows:
        print(f"{name:<40}{value:>18}  {target}")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "http_latency_busy_month.json" if args.busy_month else "http_latency.json"
    if args.conversation > 1:
        name = name.replace(".json", "_conversations.json")
    (args.out / name).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
