"""Database tests: each runs on SQLite and on the PostgreSQL server (skipped with a reason if absent)."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import bindparam, inspect, select
from sqlalchemy import text as text_sql
from sqlalchemy.orm import Session

from core import migrate
from core.db import make_engine
from core.kb_files import KnowledgeBaseFormatError, read_knowledge_base
from core.knowledge_base import import_knowledge_base, latest_kb_version, load_knowledge_base
from core.models import (
    Conversation,
    ExampleQuestion,
    Intent,
    JSONType,
    KnowledgeBaseVersion,
    ModelVersion,
    ReviewItem,
    Turn,
)
from core.registry import (
    MESSAGE_LIMIT,
    HandoffError,
    MessageError,
    NotFoundError,
    agent_active,
    agent_reply,
    close_handoff,
    conversation_summaries,
    get_or_create_conversation,
    latest_model_version,
    log_turn,
    messages_after,
    record_feedback,
    register_model_version,
    request_handoff,
    waiting_conversations,
)
from core.registry import customer_message as customer_writes
from tests.conftest import DANGLING_PAIR, add_turn, leaving_a_dangling_row

TABLES = {
    "intents",
    "example_questions",
    "kb_versions",
    "conversations",
    "turns",
    "model_versions",
    "deployments",
    "account_events",
    "synonym_groups",
}


def test_migrations_upgrade_and_downgrade(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    assert migrate.current_revision(engine) is None
    assert not migrate.is_up_to_date(engine)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert TABLES <= set(inspect(engine).get_table_names())
    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    assert not TABLES & set(inspect(engine).get_table_names())
    migrate.upgrade(engine)  # and up again
    assert migrate.is_up_to_date(engine)
    engine.dispose()


def test_migrations_that_copy_a_table_keep_the_rows_that_refer_to_it(empty_database_url: str) -> None:
    """On SQLite a batch migration copies a table and drops the old one; with foreign keys enforced, that drop
    deleted every row referring to it (ON DELETE CASCADE): upgrading through 0023 (turns copied) emptied
    review_item_turns, and undoing 0034, 0021 or 0010 (review_items copied) deleted every judgement and
    verified pair. ``core.migrate`` now runs migrations with foreign keys off and checks them after."""
    from core.models import Judgement, ReviewItemTurn, User, VerifiedPair

    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0022")
    with engine.begin() as connection:  # the schema of 0022, not the models'
        at = datetime(2026, 1, 1, tzinfo=UTC)
        connection.execute(
            text_sql(
                "INSERT INTO conversations (id, channel, created_at, last_activity_at)"
                " VALUES ('c', 'widget', :at, :at)"
            ),
            {"at": at},
        )
        connection.execute(
            text_sql(
                "INSERT INTO turns (conversation_id, created_at, user_text, status, answer, confidence,"
                " candidates, member_scores, model_version, latency_ms, served_by) VALUES ('c', :at,"
                " 'where is my card', 'handoff', '', 0.2, '[]', '{}', 'v1', 1.0, 'production')"
            ),
            {"at": at},
        )
        connection.execute(
            text_sql(
                "INSERT INTO review_items (status, reasons, text, cluster_size, uncertainty, queue_key,"
                " bot_answer, bot_confidence, candidates, is_gold, required_judgements, created_at)"
                " VALUES ('resolved', '[]', 'where is my card', 1, 0.8, 0.0, '', 0.2, '[]', :gold, 3, :at)"
            ),
            {"gold": False, "at": at},
        )
        connection.execute(
            text_sql(
                "INSERT INTO review_item_turns (item_id, turn_id, reason) SELECT review_items.id, turns.id, "
                "'handoff' FROM review_items, turns"
            )
        )
    migrate.upgrade(engine)
    with Session(engine) as session:
        item = session.scalars(select(ReviewItem)).one()
        assert len(session.scalars(select(ReviewItemTurn)).all()) == 1
        user = User(username="rita", password_hash="x", role="reviewer")
        session.add(user)
        session.flush()
        session.add(Judgement(item_id=item.id, reviewer_id=user.id, label="card_arrival"))
        session.add(VerifiedPair(item_id=item.id, text=item.text, intent="card_arrival", weight=0.9))
        session.commit()

    def counts() -> tuple[int, ...]:
        with engine.connect() as connection:
            return tuple(
                connection.execute(text_sql(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("review_items", "review_item_turns", "judgements", "verified_pairs")
            )

    assert counts() == (1, 1, 1, 1)
    for revision in ("0033", "0020", "0009"):
        migrate.downgrade(engine, revision)
        assert counts() == (1, 1, 1, 1), revision
    migrate.upgrade(engine)
    assert counts() == (1, 1, 1, 1)
    if engine.dialect.name == "sqlite":  # enforced again once the migrations ran
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    engine.dispose()


def test_a_migration_that_leaves_dangling_references_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite, where foreign keys are off while migrating: a run that leaves a row pointing nowhere fails
    as a whole. A row that pointed nowhere before (foreign keys off at some time) does not stop an upgrade."""
    engine = make_engine(f"sqlite:///{tmp_path / 'dangling.sqlite3'}")
    migrate.upgrade(engine, "0032")
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.exec_driver_sql(DANGLING_PAIR)  # there before
        connection.commit()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    migrate.upgrade(engine, "0033")
    assert migrate.current_revision(engine) == "0033"
    leaving_a_dangling_row(monkeypatch)
    with pytest.raises(
        migrate.MigrationError, match="left 1 rows referring to missing rows in verified_pairs"
    ):
        migrate.upgrade(engine)
    # All of it is undone, the schema changes too (SQLite's driver committed each ALTER as it ran before).
    assert migrate.current_revision(engine) == "0033"
    assert "context" not in {column["name"] for column in inspect(engine).get_columns("review_items")}
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM verified_pairs").scalar_one() == 1
    engine.dispose()


def test_migrations_build_exactly_the_models(empty_database_url: str) -> None:
    """Alembic's autogenerate finds nothing to add, drop or alter after the migrations: no column, index,
    type or nullability of core.models is missing from them (or only in them)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from core.db import Base
    from core.turn_search import not_search_index

    engine = make_engine(empty_database_url)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        # The conversation search's index (migration 0031) is built there, not from the models.
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": not_search_index}
        )
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_migration_0006_turns_json_null_vectors_into_sql_null(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0005")
    columns = (
        "status, reasons, text, embedding, cluster_size, uncertainty, queue_key, bot_answer, bot_confidence,"
        " candidates, is_gold, required_judgements, created_at"
    )
    with engine.begin() as connection:
        for text, embedding in (("json null", "null"), ("a vector", "[0.5, 0.25]")):
            connection.execute(
                text_sql(
                    f"INSERT INTO review_items ({columns}) VALUES ('pending', :reasons, :text, :embedding,"
                    " 1, 0.5, 0.5, '', 0.5, :candidates, :gold, 3, :now)"
                ).bindparams(
                    bindparam("reasons", type_=JSONType),
                    bindparam("embedding", type_=JSONType),
                    bindparam("candidates", type_=JSONType),
                ),
                {
                    "reasons": ["handoff"],
                    "text": text,
                    "embedding": json.loads(embedding),
                    "candidates": [],
                    "gold": False,
                    "now": datetime(2026, 11, 28, tzinfo=UTC),
                },
            )
        assert (
            connection.execute(text_sql("SELECT count(*) FROM review_items WHERE embedding IS NULL")).scalar()
            == 0
        )  # the old mapping stored JSON null
    migrate.upgrade(engine)
    with Session(engine) as session:
        rows = {item.text: item.embedding for item in session.scalars(select(ReviewItem))}
        assert rows == {"json null": None, "a vector": [0.5, 0.25]}
        empty = session.scalars(select(ReviewItem.text).where(ReviewItem.embedding.is_(None))).all()
        assert empty == ["json null"]
    engine.dispose()


def _kb(tmp_path: Path, examples: str, answers: str) -> list[Path]:
    (tmp_path / "examples.csv").write_text("text,label\n" + examples)
    (tmp_path / "answers.csv").write_text("label,answer\n" + answers)
    return [tmp_path / "examples.csv", tmp_path / "answers.csv"]


def test_import_merges_and_records_versions(db_session: Session, tmp_path: Path) -> None:
    first = read_knowledge_base(
        _kb(tmp_path, "hi,greet\nhello,greet\nbye,goodbye\n", "greet,Hi!\ngoodbye,Bye!\n")
    )
    result = import_knowledge_base(db_session, incoming=first, source="test")
    assert (result.intents_created, result.examples_added) == (2, 3)
    db_session.commit()

    second = read_knowledge_base(_kb(tmp_path, "hey there,greet\nhi,greet\n", "greet,Hello again!\n"))
    result = import_knowledge_base(db_session, incoming=second, source="test 2")
    db_session.commit()
    assert (result.intents_created, result.intents_updated, result.examples_added) == (0, 1, 1)
    kb = load_knowledge_base(db_session)
    assert kb.intents["greet"].answer == "Hello again!"
    assert kb.intents["greet"].examples == ["hi", "hello", "hey there"]
    assert kb.intents["goodbye"].examples == ["bye"]
    versions = db_session.scalars(select(KnowledgeBaseVersion).order_by(KnowledgeBaseVersion.id)).all()
    assert [v.example_count for v in versions] == [3, 4]
    assert versions[-1].data_hash == kb.data_hash()
    assert latest_kb_version(db_session).snapshot["intents"][1]["answer"] == "Hello again!"


def test_replace_removes_what_is_not_in_the_new_files(db_session: Session, tmp_path: Path) -> None:
    import_knowledge_base(
        db_session,
        incoming=read_knowledge_base(_kb(tmp_path, "hi,greet\nbye,goodbye\n", "greet,Hi!\ngoodbye,Bye!\n")),
        source="first",
    )
    result = import_knowledge_base(
        db_session,
        incoming=read_knowledge_base(_kb(tmp_path, "good day,greet\n", "greet,Hi!\n")),
        source="replace",
        replace=True,
    )
    assert result.examples_removed == 2 and result.example_count == 1
    assert db_session.scalars(select(Intent.name)).all() == ["greet"]
    assert db_session.scalars(select(ExampleQuestion.text)).all() == ["good day"]
    # Each version that changed something is an ops event (a CI push, an edit, a restore); the same files
    # again change nothing and announce nothing.
    import_knowledge_base(
        db_session,
        incoming=read_knowledge_base(_kb(tmp_path, "good day,greet\n", "greet,Hi!\n")),
        source="again",
        replace=True,
    )
    from core.events import recent_events

    events = recent_events(db_session, kind="knowledge.changed")
    assert [e.text for e in events] == [
        f"Knowledge base version {result.kb_version_id} (replace): 1 intent removed, 1 example added, "
        "2 examples removed; now 1 intent, 1 example.",
        f"Knowledge base version {result.kb_version_id - 1} (first): 2 intents added, 2 examples added; "
        "now 2 intents, 2 examples.",
    ]
    assert events[0].data["path"] == f"/operator/knowledge/versions/{result.kb_version_id}"
    assert events[0].data["intents_removed"] == 1 and events[0].data["examples_removed"] == 2


def test_failed_import_changes_nothing(db_session: Session, tmp_path: Path) -> None:
    import_knowledge_base(
        db_session, incoming=read_knowledge_base(_kb(tmp_path, "hi,greet\n", "greet,Hi!\n")), source="ok"
    )
    db_session.commit()
    before = load_knowledge_base(db_session).to_dict()
    incomplete = read_knowledge_base(
        _kb(tmp_path, "new question,new_intent\nhello,greet\n", "greet,Changed\n")
    )
    savepoint = db_session.begin_nested()
    with pytest.raises(KnowledgeBaseFormatError, match="'new_intent' has no answer"):
        import_knowledge_base(db_session, incoming=incomplete, source="bad")
    savepoint.rollback()
    assert load_knowledge_base(db_session).to_dict() == before
    assert len(db_session.scalars(select(KnowledgeBaseVersion)).all()) == 1


def test_turn_log_and_model_registry(db_session: Session) -> None:
    model = register_model_version(
        db_session,
        version="20261128-000000-abcdef12",
        bundle_path="/models/x",
        data_hash="f" * 64,
        metrics={"accuracy": 0.93, "coverage_at_precision": {"0.99": 0.8}},
        kb_version_id=None,
    )
    assert latest_model_version(db_session).id == model.id
    conversation = get_or_create_conversation(db_session, conversation_id=None, channel="widget")
    same = get_or_create_conversation(db_session, conversation_id=conversation.id, channel="widget")
    assert same.id == conversation.id
    turn = log_turn(
        db_session,
        conversation_id=conversation.id,
        user_text="Where is my card?",
        status="answered",
        intent="card_arrival",
        answer="Soon.",
        confidence=0.97,
        candidates=[{"intent": "card_arrival", "probability": 0.97}, {"intent": "x", "probability": 0.02}],
        member_scores={"nearest_neighbour": [{"intent": "card_arrival", "score": 0.88}]},
        model_version=model.version,
        latency_ms=12.5,
    )
    db_session.commit()
    stored = db_session.get(Turn, turn.id)
    assert stored is not None and stored.candidates[1]["intent"] == "x"
    assert stored.member_scores["nearest_neighbour"][0]["score"] == 0.88
    assert stored.created_at is not None and stored.conversation.channel == "widget"
    assert db_session.get(ModelVersion, model.id).metrics["coverage_at_precision"]["0.99"] == 0.8
    with pytest.raises(ValueError, match="status must be one of"):
        log_turn(
            db_session,
            conversation_id=conversation.id,
            user_text="x",
            status="maybe",
            intent=None,
            answer="",
            confidence=0.5,
            candidates=[],
            member_scores={},
            model_version="v",
            latency_ms=1,
        )
    with pytest.raises(ValueError, match="confidence"):
        log_turn(
            db_session,
            conversation_id=conversation.id,
            user_text="x",
            status="handoff",
            intent=None,
            answer="",
            confidence=1.5,
            candidates=[],
            member_scores={},
            model_version="v",
            latency_ms=1,
        )


def _say(session: Session, conversation_id: str, text: str, status: str, helpful: bool | None = None) -> Turn:
    turn = add_turn(session, conversation_id, text, status=status)
    if helpful is not None:
        record_feedback(session, turn_id=turn.id, helpful=helpful)
    return turn


def test_conversation_inbox_waits_for_a_person_until_handled(db_session: Session) -> None:
    calm, unsure, asked = (
        get_or_create_conversation(db_session, conversation_id=f"conv-{name}", channel="widget").id
        for name in ("calm", "unsure", "asked")
    )
    _say(db_session, calm, "Where is my card?", "answered", helpful=True)
    _say(db_session, unsure, "my card 4111 is stuck in the ATM 100%_sure", "handoff")
    _say(db_session, unsure, "hello??", "answered", helpful=False)
    _say(db_session, asked, "I want a human", "answered")
    request_handoff(db_session, conversation_id=asked)
    with pytest.raises(HandoffError, match="not handed to a person"):
        close_handoff(db_session, conversation_id=calm, actor="omar")
    with pytest.raises(NotFoundError):
        close_handoff(db_session, conversation_id="nope", actor="omar")

    everything, total = conversation_summaries(db_session)
    assert total == 3 and {c.id for c in everything} == {calm, unsure, asked}
    by_id = {c.id: c for c in everything}
    assert (by_id[unsure].turns, by_id[unsure].handoff_turns, by_id[unsure].unhelpful) == (2, 1, 1)
    assert by_id[unsure].last_message == "hello??" and by_id[asked].handoff_requested
    assert by_id[unsure].question is None  # the last message is the question
    waiting, total = conversation_summaries(db_session, waiting_only=True)
    assert total == 2 and {c.id for c in waiting} == {unsure, asked} and all(c.waiting for c in waiting)
    inbox, count = waiting_conversations(db_session)  # the cheap query the inbox and /metrics poll
    assert count == 2 and [c.id for c in inbox] == [c.id for c in waiting]
    assert (
        waiting_conversations(db_session, limit=1)[1] == 2
        and len(waiting_conversations(db_session, limit=1)[0]) == 1
    )
    # Search is a case-insensitive substring of the originals; % and _ are literal characters.
    (found,) = conversation_summaries(db_session, search="ATM")[0]
    assert found.id == unsure and found.match is not None and "atm" in found.match.lower()
    assert found.match_turn is not None  # a turn: the list links to it in the transcript
    assert [c.id for c in conversation_summaries(db_session, search="100%_SURE")[0]] == [unsure]
    assert conversation_summaries(db_session, search="card%stuck")[1] == 0  # not a LIKE wildcard
    page, total = conversation_summaries(db_session, limit=2, offset=2)
    assert total == 3 and len(page) == 1

    close_handoff(db_session, conversation_id=unsure, actor="omar", note="called the customer")
    with pytest.raises(HandoffError, match="already marked handled by omar"):
        close_handoff(db_session, conversation_id=unsure, actor="omar")
    waiting, _ = conversation_summaries(db_session, waiting_only=True)
    assert [c.id for c in waiting] == [asked]
    closed = db_session.get(Conversation, unsure)
    assert closed.handoff_closed_by == "omar" and closed.handoff_note == "called the customer"
    _say(db_session, unsure, "still stuck", "handoff")  # handed off again: back in the inbox
    assert {c.id for c in conversation_summaries(db_session, waiting_only=True)[0]} == {unsure, asked}
    close_handoff(db_session, conversation_id=asked, actor="omar")
    request_handoff(db_session, conversation_id=asked)  # asks again: back in the inbox
    assert {c.id for c in conversation_summaries(db_session, waiting_only=True)[0]} == {unsure, asked}
    assert db_session.get(Conversation, asked).handoff_closed_by is None


def test_live_chat_takes_over_until_the_handoff_is_handled(db_session: Session) -> None:
    calm = get_or_create_conversation(db_session, conversation_id="conv-calm", channel="widget").id
    asked = get_or_create_conversation(db_session, conversation_id="conv-asked", channel="widget").id
    _say(db_session, calm, "Where is my card?", "answered")
    _say(db_session, asked, "I was charged twice", "answered")
    # Nobody writes into a conversation that is not waiting for a person, and the customer cannot write to
    # a person before one has joined.
    with pytest.raises(HandoffError, match="not waiting for a person"):
        agent_reply(db_session, conversation_id=calm, agent="omar", text="hello")
    request_handoff(db_session, conversation_id=asked)
    with pytest.raises(HandoffError, match="no person is chatting"):
        customer_writes(db_session, conversation_id=asked, text="anyone?")
    with pytest.raises(NotFoundError):
        agent_reply(db_session, conversation_id="nope", agent="omar", text="hello")
    with pytest.raises(MessageError, match="empty"):
        agent_reply(db_session, conversation_id=asked, agent="omar", text="   ")
    with pytest.raises(MessageError, match="limit is 2000"):
        agent_reply(db_session, conversation_id=asked, agent="omar", text="x" * (MESSAGE_LIMIT + 1))
    conversation = db_session.get(Conversation, asked)
    assert conversation is not None and not agent_active(conversation)  # refused replies take nothing over

    first = agent_reply(
        db_session, conversation_id=asked, agent="omar", text="  Hi, I'm Omar. Let me look.  "
    )
    assert first.text == "Hi, I'm Omar. Let me look." and first.sender == "agent" and first.agent == "omar"
    assert agent_active(conversation) and conversation.agent == "omar"
    reply = customer_writes(db_session, conversation_id=asked, text="Thanks! Order 123-456")
    assert reply.sender == "customer" and reply.agent is None
    (summary,) = conversation_summaries(db_session, waiting_only=True)[0]
    assert (summary.id, summary.agent, summary.customer_wrote_last) == (asked, "omar", True)
    (waiting,) = waiting_conversations(db_session)[0]
    assert (waiting.id, waiting.customer_wrote_last) == (asked, True)
    # The inbox search covers what the customer wrote to the person too.
    (found,) = conversation_summaries(db_session, search="order 123")[0]
    assert found.id == asked
    assert (found.match, found.match_turn) == ("Thanks! Order 123-456", None)  # the live-chat message
    second = agent_reply(db_session, conversation_id=asked, agent="ana", text="Ana here, refunded.")
    assert conversation.agent == "ana"  # whoever wrote last is chatting
    assert not conversation_summaries(db_session, waiting_only=True)[0][0].customer_wrote_last
    assert [m.id for m in messages_after(db_session, conversation_id=asked)] == [
        first.id,
        reply.id,
        second.id,
    ]
    assert [m.text for m in messages_after(db_session, conversation_id=asked, after=reply.id)] == [
        "Ana here, refunded."
    ]
    assert messages_after(db_session, conversation_id=calm) == []

    assert not waiting_conversations(db_session)[0][0].customer_wrote_last
    close_handoff(db_session, conversation_id=asked, actor="ana", note="refunded")
    assert waiting_conversations(db_session) == ([], 0)
    assert not agent_active(conversation) and conversation.agent is None  # the bot answers again
    with pytest.raises(HandoffError, match="no person is chatting"):
        customer_writes(db_session, conversation_id=asked, text="one more thing")
    with pytest.raises(HandoffError, match="not waiting for a person"):
        agent_reply(db_session, conversation_id=asked, agent="ana", text="still there?")
    assert conversation_summaries(db_session)[0][0].agent is None
    # Asking again reopens the inbox; the messages stay with the conversation, nobody is chatting yet.
    request_handoff(db_session, conversation_id=asked)
    assert not agent_active(conversation) and len(messages_after(db_session, conversation_id=asked)) == 3


def test_the_conversation_list_shows_the_question_behind_a_request_for_a_person(db_session: Session) -> None:
    """In the inbox the last message is mostly "talk to a person", "no" to "did you mean" or "thanks": the
    list also shows the customer's latest question the bot read (not small talk, a request or a pick)."""
    from core.registry import SUGGESTION_ARM

    asked, picked, plain = (
        get_or_create_conversation(db_session, conversation_id=f"conv-{name}", channel="widget").id
        for name in ("asked", "picked", "plain")
    )
    _say(db_session, asked, "how do I top up", "clarify")
    _say(db_session, asked, "thanks", "small_talk")
    _say(db_session, asked, "no", "asked_for_person")
    request_handoff(db_session, conversation_id=asked)
    _say(db_session, picked, "card pin", "clarify")
    chip = add_turn(db_session, picked, "/change_pin", status="answered")
    chip.served_by, chip.intent = SUGGESTION_ARM, "change_pin"
    _say(db_session, plain, "where is my card", "answered")
    db_session.flush()
    by_id = {c.id: c for c in conversation_summaries(db_session)[0]}
    assert (by_id[asked].last_message, by_id[asked].question) == ("no", "how do I top up")
    assert (by_id[picked].last_message, by_id[picked].question) == ("clicked change_pin", "card pin")
    assert (by_id[plain].last_message, by_id[plain].question) == ("where is my card", None)
