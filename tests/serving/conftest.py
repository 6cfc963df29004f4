"""Serving fixtures: a toy bundle (hashing encoder, fast), a migrated SQLite app, a test client."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot.engine import AnsweringEngine, EngineConfig, IntentInfo
from tests.conftest import TOY, HashingEncoder

ANSWERS = {
    "card_arrival": IntentInfo(
        answer="Cards arrive in **5–7 working days**.", title="Where is my card?", follow_ups=["change_pin"]
    ),
    "change_pin": IntentInfo(
        answer="Change it at any ATM.\n- insert card\n- choose *PIN services*", title="Change my PIN"
    ),
    "exchange_rate": IntentInfo(answer="We use the interbank rate.", title="Exchange rates"),
    "terminate_account": IntentInfo(
        answer="<script>alert('x')</script> Go to **Profile → Close account**.", title="Close my account"
    ),
}


@contextlib.contextmanager
def live(app: Any) -> Iterator[str]:
    """``app`` on a real HTTP server on a free port (for clients that need a socket: browsers, SDKs); yields
    its base URL and stops it afterwards."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def build_toy_bundle(directory: Path, *, extra: dict[str, list[str]] | None = None) -> AnsweringEngine:
    data = {**TOY, **(extra or {})}
    texts = [t for rows in data.values() for t in rows]
    labels = [label for label, rows in data.items() for _ in rows]
    engine = AnsweringEngine(
        EngineConfig(cv_folds=3, target_precision=0.9), encoders={"minilm": HashingEncoder()}
    )
    engine.fit(texts, labels, knowledge=ANSWERS)
    engine.save(directory)
    return engine


def hashing_loader(path: str) -> AnsweringEngine:
    engine = AnsweringEngine.load(path, runtime="torch")
    engine.encoders["minilm"] = HashingEncoder()
    return engine


@pytest.fixture(scope="session")
def toy_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bundles")
    first = build_toy_bundle(base / "v1")
    second = build_toy_bundle(base / "v2", extra={"card_arrival": TOY["card_arrival"] + ["lost in the post"]})
    assert first.version != second.version
    return {"v1": base / "v1", "v2": base / "v2"}


@pytest.fixture
def make_app(tmp_path: Path, toy_bundles: dict[str, Path]) -> Iterator[Callable[..., Any]]:
    from core import migrate
    from core.db import Database
    from core.registry import register_model_version
    from core.settings import load_settings
    from serving.app import create_app

    created: list[Any] = []

    def factory(register: bool = True, load: bool = True, **overrides: Any) -> Any:
        config: dict[str, Any] = {
            "environment": "testing",
            "instance_path": str(tmp_path / "instance"),
            "load_models_on_start": False,
            "TESTING": True,
            "model_loader": hashing_loader,
            **overrides,
        }
        settings = load_settings(
            {k: v for k, v in config.items() if k.islower() and k not in ("model_loader", "channel_post")},
            environ={},
        )
        database = Database(settings)
        migrate.upgrade(database.engine)
        if register:
            with database.session() as session:
                for path in toy_bundles.values():
                    manifest = AnsweringEngine.load(path).manifest
                    register_model_version(
                        session,
                        version=manifest["version"],
                        bundle_path=str(path),
                        data_hash=manifest["data_hash"],
                        metrics={},
                        kb_version_id=None,
                    )
        database.dispose()
        app = create_app(config)
        if load:
            app.extensions["helploop"].models.refresh()
        created.append(app)
        return app

    yield factory
    for app in created:
        app.extensions["helploop"].models.stop()
        app.extensions["helploop"].database.dispose()


@pytest.fixture
def app(make_app: Callable[..., Any]) -> Any:
    return make_app()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


class Receiver(BaseHTTPRequestHandler):
    """A webhook's receiving end on a local port: each POST's body (parsed and raw), signature and event
    header, in ``Receiver.received``."""

    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(
            {
                "body": json.loads(raw),
                "raw": raw,
                "signature": self.headers.get("X-HelpLoop-Signature"),
                "event": self.headers.get("X-HelpLoop-Event"),
            }
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    """The URL of a fresh ``Receiver``."""
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()
    thread.join(5)
