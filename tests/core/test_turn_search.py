"""The conversation search's index (migration 0031), on SQLite (FTS5 trigrams kept by triggers) and on
PostgreSQL (a pg_trgm GIN index): it finds what the scan finds, for turns logged before the migration and
after, follows edits and deletions, and the planner uses it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from core import migrate
from core.db import make_engine
from core.models import Conversation, Turn, new_uuid
from core.registry import conversation_summaries, get_or_create_conversation, log_turn
from core.turn_search import PG_INDEX, index_state, rebuild_index, rebuild_index_online, user_text_matches
from tests.conftest import insert_row

BEFORE = ["my card never arrived", "Refund for order #A-100% please", "Où est ma CARTE ?"]
AFTER = ["the CARD was declined abroad", 'he said "cancel" twice', "hi"]


def _log(session: Session, texts: list[str]) -> list[str]:
    """Turns as the revision in place stores them (only the columns named: a later migration's are not
    there yet at 0030)."""
    conversations = []
    for typed in texts:
        conversation = insert_row(session, Conversation, id=new_uuid(), channel="widget")
        insert_row(
            session, Turn, conversation_id=conversation, user_text=typed, status="answered", intent="x",
            answer="", confidence=0.9, candidates=[], member_scores={}, model_version="v1", latency_ms=1.0,
        )  # fmt: skip
        conversations.append(conversation)
    session.commit()
    return conversations


def _found(session: Session, needle: str) -> list[str]:
    condition = user_text_matches(session, needle)
    return sorted(session.scalars(select(Turn.user_text).where(condition)))


def _scanned(session: Session, needle: str) -> list[str]:
    return sorted(t for t in session.scalars(select(Turn.user_text)) if needle.lower() in t.lower())


def test_the_index_finds_what_a_scan_finds_before_and_after_the_migration(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0030")
    with Session(engine) as session:  # at 0030 the models' columns are the schema's
        before = _log(session, BEFORE)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        assert index_state(connection) == "ok"
    with Session(engine) as session:
        after = _log(session, AFTER)
        for needle in ("card", "CARD ", "order #a-100%", '"cancel"', "carte", "ma carte", "hi", "zzz"):
            assert _found(session, needle) == _scanned(session, needle), needle
        assert _found(session, "card") == sorted([BEFORE[0], AFTER[0]])  # both sides of the migration
        summaries, total = conversation_summaries(session, search="card")
        assert total == 2 and {s.id for s in summaries} == {before[0], after[0]}
        # An edited text (the retention job, a scrub) and a deleted turn are followed.
        session.execute(update(Turn).where(Turn.conversation_id == before[0]).values(user_text="[REMOVED]"))
        session.execute(delete(Turn).where(Turn.conversation_id == after[0]))
        session.commit()
        assert _found(session, "card") == []
        assert _found(session, "removed") == ["[REMOVED]"]
    migrate.downgrade(engine, "0030")
    with engine.connect() as connection:
        assert index_state(connection) == "missing"
    with Session(engine) as session:
        assert _found(session, "carte") == [BEFORE[2]]  # without the index: the scan, same results
    engine.dispose()


def test_going_back_before_off_topic_and_context_keeps_the_index(empty_database_url: str) -> None:
    """Migrations 0046 to 0039 go back by dropping a column, which SQLite does by copying the turns
    table (and so dropping the index's triggers): the index is built again, and a turn logged at 0038 is
    found."""
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine)
    with Session(engine) as session:
        _log(session, BEFORE)
    migrate.downgrade(engine, "0038")
    with engine.connect() as connection:
        assert index_state(connection) == "ok"
    with Session(engine) as session:
        _log(session, AFTER)  # at 0038: only the columns it has
        for needle in ("card", "carte", '"cancel"'):
            assert _found(session, needle) == _scanned(session, needle), needle
        assert _found(session, "declined") == [AFTER[0]]
    engine.dispose()


def test_the_search_is_answered_from_the_index(db_session: Session) -> None:
    _log(db_session, BEFORE + AFTER)
    query = select(Turn.id).where(user_text_matches(db_session, "card"))
    sql = str(query.compile(db_session.get_bind(), compile_kwargs={"literal_binds": True}))
    if db_session.get_bind().dialect.name == "sqlite":
        plan = " ".join(str(row[-1]) for row in db_session.execute(text("EXPLAIN QUERY PLAN " + sql)))
        assert "SCAN turns_text VIRTUAL TABLE INDEX" in plan, plan
        assert "SEARCH turns USING INTEGER PRIMARY KEY" in plan, plan  # the turns by id, never scanned
    else:
        db_session.execute(text("SET LOCAL enable_seqscan = off"))  # six rows: a scan would be cheaper
        plan = " ".join(row[0] for row in db_session.execute(text("EXPLAIN " + sql)))
        assert "ix_turns_user_text_trigram" in plan, plan
    assert len(db_session.scalars(query).all()) == 2


def test_a_stale_index_is_reported_and_rebuilt(tmp_path: Any, monkeypatch: Any) -> None:
    """A later migration that rebuilds the turns table on SQLite (batch mode) drops its triggers: doctor says
    so, and `helploop db search-index` builds it again with every turn in it."""
    from click.testing import CliRunner

    from serving.cli import main
    from serving.doctor import run_checks
    from tests.serving.test_doctor import _settings

    settings = _settings(tmp_path)
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER turns_text_insert"))
    in_index = text("SELECT count(*) FROM turns_text WHERE turns_text MATCH '\"card\"'")
    with Session(engine) as session:
        _log(session, ["my card never arrived"])
        assert session.execute(in_index).scalar_one() == 0  # the trigger is gone: not in the index
        with engine.connect() as connection:
            assert index_state(connection) == "stale"
        assert _found(session, "card") == ["my card never arrived"]  # a stale index is not used: the scan
    schema = next(c for c in run_checks(settings) if c.name == "schema")
    assert (schema.status, "run `helploop db search-index`" in schema.detail) == ("warn", True)
    result = CliRunner().invoke(main, ["db", "search-index"], obj={"settings": settings})
    assert result.exit_code == 0, result.output
    assert "search index built (sqlite)" in result.output
    with engine.begin() as connection:
        assert connection.execute(in_index).scalar_one() == 1
        assert index_state(connection) == "ok"
        assert rebuild_index(connection) is True
    assert next(c for c in run_checks(settings) if c.name == "schema").status == "ok"
    # Where no index can be built (an SQLite without FTS5 trigrams; no right to create pg_trgm): said, exit 1.
    monkeypatch.setattr("core.turn_search.create_index", lambda connection: False)
    refused = CliRunner().invoke(main, ["db", "search-index"], obj={"settings": settings})
    assert refused.exit_code == 1 and "no index could be built here" in refused.output
    engine.dispose()


@pytest.mark.postgres
def test_postgres_rebuilds_the_index_beside_the_old_one_without_holding_chat_writes_back(
    empty_postgres_url: str,
) -> None:
    """`helploop db search-index` on a live PostgreSQL: the new index is built CONCURRENTLY, so a chat turn
    logged while the build waits is not held back (a plain CREATE INDEX would queue it behind its lock), an
    invalid leftover of a failed build is reported stale and replaced, and searches use the new index."""
    engine = make_engine(empty_postgres_url + "%20-clock_timeout%3D30000")  # a hung build fails the test
    migrate.upgrade(engine)
    with Session(engine) as session:
        _log(session, BEFORE)
    with engine.begin() as connection:  # what a build that failed half way leaves: an invalid index
        connection.execute(
            text(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{PG_INDEX}'::regclass")
        )
        assert index_state(connection) == "stale"
    # A customer's turn being logged (its transaction still open) when the operator starts the rebuild.
    writer = Session(engine)
    _log_uncommitted(writer, "card lost while the index builds")
    built: list[bool] = []
    thread = threading.Thread(target=lambda: built.append(rebuild_index_online(engine)), daemon=True)
    thread.start()
    try:
        time.sleep(1.0)  # the build is now waiting for the open transaction above
        assert thread.is_alive()
        with Session(engine) as other:  # another chat turn meanwhile: not queued behind the build
            other.execute(text("SET LOCAL lock_timeout = '2s'"))
            _log(other, ["my CARD again, during the build"])
    finally:
        writer.commit()  # the first turn is logged; the build goes on
        writer.close()
    thread.join(timeout=60)
    assert built == [True]
    with engine.connect() as connection:
        assert index_state(connection) == "ok"
        names = (
            connection.execute(
                text(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                    "AND tablename = 'turns' AND indexname LIKE 'ix_turns_user%'"
                )
            )
            .scalars()
            .all()
        )
        assert names == [PG_INDEX]  # the new one took the old one's name; no leftover beside it
    with Session(engine) as session:
        assert _found(session, "card") == sorted(
            [BEFORE[0], "card lost while the index builds", "my CARD again, during the build"]
        )
        session.execute(text("SET LOCAL enable_seqscan = off"))
        sql = str(
            select(Turn.id)
            .where(user_text_matches(session, "card"))
            .compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        )
        assert PG_INDEX in " ".join(row[0] for row in session.execute(text("EXPLAIN " + sql)))
    engine.dispose()


def _log_uncommitted(session: Session, typed: str) -> None:
    conversation = get_or_create_conversation(session, conversation_id=None, channel="widget")
    log_turn(
        session, conversation_id=conversation.id, user_text=typed, status="answered", intent="x",
        answer="", confidence=0.9, candidates=[], member_scores={}, model_version="v1", latency_ms=1.0,
    )  # fmt: skip
    session.flush()  # the row is written and its lock held; the transaction stays open


def test_turns_logged_before_off_topic_existed_are_not_off_topic_and_the_index_still_follows(
    empty_database_url: str,
) -> None:
    """Migration 0040 adds ``turns.off_topic`` (false for the turns already logged) with a plain ADD COLUMN:
    a batch migration copied SQLite's table, and the triggers that keep the search index went with it."""
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0039")
    with Session(engine) as session:
        _log(session, BEFORE)
    migrate.upgrade(engine)
    with Session(engine) as session:
        assert [t.off_topic for t in session.scalars(select(Turn).order_by(Turn.id))] == [False] * len(BEFORE)
        conversation = get_or_create_conversation(session, conversation_id=None, channel="widget")
        log_turn(
            session, conversation_id=conversation.id, user_text="the weather in paris", status="handoff",
            intent=None, answer="", confidence=0.3, candidates=[], member_scores={}, model_version="v2",
            latency_ms=1.0, off_topic=True,
        )  # fmt: skip
        session.commit()
        assert index_state(session.connection()) == "ok"
        assert _found(session, "WEATHER") == _scanned(session, "weather") == ["the weather in paris"]
        assert _found(session, "card") == _scanned(session, "card")
        assert session.scalars(select(Turn.off_topic).where(Turn.model_version == "v2")).all() == [True]
    engine.dispose()


def test_turns_logged_before_read_as_existed_were_read_as_typed_and_the_index_still_follows(
    empty_database_url: str,
) -> None:
    """Migrations 0041 to 0046 add ``turns.read_as`` (None: read as typed), ``turns.vague`` (false),
    ``turns.ruled_out``, ``turns.declined_at``, ``turns.language`` and ``turns.asked_again`` (None) with a
    plain ADD COLUMN, for the same reason as 0040: the search index's triggers stay."""
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0040")
    with Session(engine) as session:
        _log(session, BEFORE)
    migrate.upgrade(engine)
    with Session(engine) as session:
        logged = session.scalars(select(Turn).order_by(Turn.id)).all()
        assert [
            (t.read_as, t.vague, t.ruled_out, t.declined_at, t.language, t.asked_again) for t in logged
        ] == [(None, False, None, None, None, None)] * len(BEFORE)
        conversation = get_or_create_conversation(session, conversation_id=None, channel="widget")
        log_turn(
            session, conversation_id=conversation.id, user_text="my crad hasnt arived", status="answered",
            intent="card_arrival", answer="Soon.", confidence=0.9, candidates=[], member_scores={},
            model_version="v2", latency_ms=1.0, read_as="my card hasnt arrived", ruled_out="change_pin",
        )  # fmt: skip
        log_turn(
            session, conversation_id=conversation.id, user_text="Wo ist meine Karte?", status="off_topic",
            intent=None, answer="Entschuldigung", confidence=0.2, candidates=[], member_scores={},
            model_version="v3", latency_ms=1.0, off_topic=True, language="de",
        )  # fmt: skip
        log_turn(
            session, conversation_id=conversation.id, user_text="where is my card then", status="answered",
            intent="card_arrival", answer="Soon.", confidence=0.9, candidates=[], member_scores={},
            model_version="v4", latency_ms=1.0, asked_again=2,
        )  # fmt: skip
        session.commit()
        assert index_state(session.connection()) == "ok"
        assert _found(session, "crad") == _scanned(session, "crad") == ["my crad hasnt arived"]
        assert _found(session, "Karte") == _scanned(session, "Karte") == ["Wo ist meine Karte?"]
        assert session.execute(
            select(Turn.read_as, Turn.ruled_out, Turn.language, Turn.asked_again)
            .where(Turn.model_version.in_(["v2", "v3", "v4"]))
            .order_by(Turn.id)
        ).all() == [
            ("my card hasnt arrived", "change_pin", None, None),
            (None, None, "de", None),
            (None, None, None, 2),
        ]
        assert _found(session, "then") == _scanned(session, "then") == ["where is my card then"]
    engine.dispose()
