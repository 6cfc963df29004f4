"""Personal data in the turn log: redaction after the retention period (a scheduled job) and erasure on
request (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.models import Conversation, ConversationMessage, Job, ReviewItem, Turn, VerifiedPair, utcnow
from core.registry import (
    NotFoundError,
    agent_reply,
    customer_message,
    leave_contact,
    record_feedback,
    request_handoff,
)
from core.settings import Settings, SettingsError
from core.turn_search import compact_index, user_text_matches
from crowd_feedback.jobs import retention_params
from crowd_feedback.retention import erase_conversation, redact_old_turns
from crowd_feedback.review import ReviewPolicy, route_turn
from serving.job_kinds import install as install_job_kinds
from tests.conftest import add_turn
from training.jobs import schedule_due

NOW = utcnow()


def say(session: Session, conversation: str, text: str, *, days_ago: float, status: str = "answered") -> Turn:
    return add_turn(session, conversation, text, status=status, created_at=NOW - timedelta(days=days_ago))


def test_old_originals_are_redacted_in_batches_and_only_once(db_session: Session) -> None:
    old = [
        say(db_session, "c1", f"mail me at jo{i}@example.com about order 12345", days_ago=40 + i)
        for i in range(5)
    ]
    record_feedback(db_session, turn_id=old[0].id, helpful=False, comment="call +44 20 7946 0958 now")
    old[1].context_text = "my address is jo@example.com"  # a follow-up read with the question before it
    old[2].read_as = "mail me at jo2@example.com about order 12345"  # misspelt words corrected
    recent = say(db_session, "c2", "mail me at new@example.com", days_ago=5)
    plain = say(db_session, "c1", "where is my card", days_ago=60)
    db_session.commit()
    progress: list[float] = []
    summary = redact_old_turns(
        db_session, before=NOW - timedelta(days=30), batch_size=2, report=lambda f, _s: progress.append(f)
    )
    assert summary["turns"] == 6 and summary["turns_with_personal_data"] == 5
    assert progress[:3] == pytest.approx([0.3, 0.6, 0.9])  # three batches of at most two
    merging = progress[3:]  # SQLite's index merge, after the batches; none on PostgreSQL
    assert progress == sorted(progress) and all(0.9 < p <= 0.99 for p in merging)
    assert len(set(merging)) == len(merging)  # each step moves it on
    db_session.expire_all()
    for turn in old:
        stored = db_session.get(Turn, turn.id)
        assert stored.user_text == "mail me at [EMAIL] about order 12345" and stored.redacted_at is not None
    assert db_session.get(Turn, old[0].id).feedback_comment == "call [PHONE] now"
    assert db_session.get(Turn, old[1].id).context_text == "my address is [EMAIL]"
    assert db_session.get(Turn, old[2].id).read_as == "mail me at [EMAIL] about order 12345"
    assert db_session.get(Turn, plain.id).user_text == "where is my card"  # nothing personal: unchanged
    assert db_session.get(Turn, recent.id).user_text == "mail me at new@example.com"  # within the period
    assert db_session.get(Turn, recent.id).redacted_at is None
    again = redact_old_turns(db_session, before=NOW - timedelta(days=30))
    assert again["turns"] == 0  # marked turns are never read again
    if db_session.get_bind().dialect.name == "sqlite":
        # The search index was merged into one segment: the originals' entries, kept by FTS5 as deleted
        # until a merge, are gone with it; and the search finds the redacted text, not the original.
        segments = text("SELECT count(DISTINCT segid) FROM turns_text_idx")
        assert db_session.execute(segments).scalar_one() == 1
    texts = select(Turn.user_text)
    assert db_session.scalars(texts.where(user_text_matches(db_session, "jo1@example"))).all() == []
    assert len(db_session.scalars(texts.where(user_text_matches(db_session, "[EMAIL] about"))).all()) == 5


def test_retention_forgets_contacts_of_conversations_idle_since_the_cutoff(db_session: Session) -> None:
    say(db_session, "idle", "help", days_ago=40)
    say(db_session, "active", "help", days_ago=1)
    for name, days_ago in (("idle", 40), ("active", 1)):
        leave_contact(db_session, conversation_id=name, contact="jo@example.com")
        db_session.get(Conversation, name).last_activity_at = NOW - timedelta(days=days_ago)
    db_session.commit()
    summary = redact_old_turns(db_session, before=NOW - timedelta(days=30))
    assert summary["contacts_cleared"] == 1
    db_session.expire_all()
    assert db_session.get(Conversation, "idle").contact is None
    assert db_session.get(Conversation, "active").contact == "jo@example.com"


def test_live_chat_messages_are_redacted_after_the_period_and_erased_with_the_conversation(
    db_session: Session,
) -> None:
    say(db_session, "chat", "I was charged twice", days_ago=40)
    request_handoff(db_session, conversation_id="chat")
    old = [
        agent_reply(db_session, conversation_id="chat", agent="omar", text="Is jo@example.com your e-mail?"),
        customer_message(db_session, conversation_id="chat", text="yes, or call +44 20 7946 0958"),
    ]
    for message in old:
        message.created_at = NOW - timedelta(days=40)
    recent = customer_message(db_session, conversation_id="chat", text="new@example.com now")
    # A secret is not kept even in the live chat the operator reads (the rest is, until the period ends).
    secret = customer_message(
        db_session, conversation_id="chat", text="my pin is 4321 and card 4111111111111111"
    )
    assert secret.text == "my pin is [SECRET] and card [CARD_NUMBER]"
    db_session.commit()
    summary = redact_old_turns(db_session, before=NOW - timedelta(days=30), batch_size=1)
    assert summary["live_chat_messages"] == 2
    db_session.expire_all()
    assert [db_session.get(ConversationMessage, m.id).text for m in old] == [
        "Is [EMAIL] your e-mail?",  # both sides: the operator's reply quoted the customer's address
        "yes, or call [PHONE]",
    ]
    assert db_session.get(ConversationMessage, recent.id).text == "new@example.com now"
    assert redact_old_turns(db_session, before=NOW - timedelta(days=30))["live_chat_messages"] == 0

    erase_conversation(db_session, conversation_id="chat", actor="omar")
    db_session.commit()
    assert db_session.scalar(select(func.count()).select_from(ConversationMessage)) == 0


def test_erasing_a_conversation_keeps_what_is_shared_or_settled(db_session: Session) -> None:
    policy = ReviewPolicy(audit_rate=0.0)
    vector = [1.0, 0.0, 0.0]
    mine = say(db_session, "forget-me", "my card 4111 1111 1111 1111 is lost", days_ago=1, status="handoff")
    alone = route_turn(db_session, turn=mine, reasons=["handoff"], embedding=vector, policy=policy)
    second = say(db_session, "forget-me", "how do I change my pin", days_ago=1, status="handoff")
    shared = route_turn(
        db_session, turn=second, reasons=["handoff"], embedding=[0.0, 1.0, 0.0], policy=policy
    )
    other = say(db_session, "someone-else", "how do I change my pin", days_ago=1, status="handoff")
    assert (
        route_turn(db_session, turn=other, reasons=["handoff"], embedding=[0.0, 1.0, 0.0], policy=policy)
        == shared
    )
    settled_turn = say(db_session, "forget-me", "exchange rate please", days_ago=2, status="handoff")
    settled = route_turn(
        db_session, turn=settled_turn, reasons=["handoff"], embedding=[0.0, 0.0, 1.0], policy=policy
    )
    settled.status, settled.resolved_label = "resolved", "exchange_rate"
    db_session.add(VerifiedPair(item_id=settled.id, text=settled.text, intent="exchange_rate", weight=0.95))
    ids = (alone.id, shared.id, settled.id)
    assert shared.context == [
        {
            "text": "my card [CARD_NUMBER] is lost",
            "status": "handoff",
            "intent": None,
            "chosen_intent": None,
            "helpful": None,
            "clicked": False,
        }
    ]
    db_session.commit()

    erased = erase_conversation(db_session, conversation_id="forget-me", actor="omar")
    db_session.commit()
    assert erased == {"turns": 3, "review_items": 1}
    assert db_session.get(Conversation, "forget-me") is None
    assert (
        db_session.scalar(select(func.count()).select_from(Turn).where(Turn.conversation_id == "forget-me"))
        == 0
    )
    assert db_session.get(ReviewItem, ids[0]) is None  # fed only by this conversation, still pending
    assert db_session.get(ReviewItem, ids[1]).status == "pending"  # someone else asks it too
    assert [t.turn_id for t in db_session.get(ReviewItem, ids[1]).turns] == [other.id]
    assert db_session.get(ReviewItem, ids[1]).context is None  # the erased customer's earlier words
    assert db_session.get(ReviewItem, ids[2]).status == "resolved"  # settled: redacted text, kept
    assert db_session.scalars(select(VerifiedPair)).one().intent == "exchange_rate"
    with pytest.raises(NotFoundError):
        erase_conversation(db_session, conversation_id="forget-me", actor="omar")


def test_the_worker_schedules_retention_daily_only_when_a_period_is_set(
    db_session: Session, tmp_path: Any
) -> None:
    install_job_kinds()
    keep = Settings(instance_path=str(tmp_path))
    assert retention_params(keep) is None and schedule_due(db_session, keep, now=NOW) == []
    month = Settings(instance_path=str(tmp_path), turn_retention_days=30)
    (job,) = schedule_due(db_session, month, now=NOW)
    assert (job.kind, job.params, job.created_by) == ("retention", {"days": 30}, "schedule")
    assert schedule_due(db_session, month, now=NOW + timedelta(hours=23)) == []  # once a day
    (later,) = schedule_due(db_session, month, now=NOW + timedelta(hours=25))
    assert later.id != job.id
    kinds = db_session.scalars(select(Job.kind).where(Job.kind == "retention")).all()
    assert len(kinds) == 2
    with pytest.raises(SettingsError, match="turn_retention_days"):
        Settings(instance_path=str(tmp_path), turn_retention_days=-1)


def test_erasing_a_conversation_with_a_choice_after_that_is_wrong(db_session: Session) -> None:
    """A "that's wrong" turn points at the answer it rated (turns.rated_turn_id): both go in one erasure."""
    from tests.crowd_feedback.test_choices import answered_then_wrong

    rated = answered_then_wrong(db_session, "where is my card", picked="card_arrival")
    db_session.commit()
    assert erase_conversation(db_session, conversation_id=rated.conversation_id, actor="omar") == {
        "turns": 2,
        "review_items": 0,
    }
    db_session.commit()
    assert db_session.scalar(select(func.count()).where(Turn.id == rated.id)) == 0


def index_segments(engine: Any) -> int:
    with engine.connect() as connection:
        return int(
            connection.exec_driver_sql("SELECT count(DISTINCT segid) FROM turns_text_idx").scalar_one()
        )


@pytest.mark.parametrize("merge", ["inline", "job"])
def test_an_erased_conversation_leaves_no_copy_in_the_sqlite_files(tmp_path: Any, merge: str) -> None:
    """Deleting rows is not enough on SQLite: free pages, the write-ahead log's older frames and the search
    index's deleted entries would keep the text. After an erasure (zeroed by secure_delete, the index merged,
    the log checkpointed and emptied) the customer's words are in no byte of the database's files. The CLI
    merges the index after the erasure ("inline"); the web app leaves it to a ``search_compact`` job
    ("job")."""
    from core.db import Database, checkpoint, make_engine
    from core.migrate import upgrade
    from core.registry import get_or_create_conversation
    from crowd_feedback.jobs import compact_search_job

    path = tmp_path / "helploop.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    marker = "zanzibar-quokka-7781"

    def on_disk() -> bool:
        files = [path, path.with_name(path.name + "-wal")]
        return any(marker.encode() in f.read_bytes() for f in files if f.exists())

    with Session(engine) as session:
        for name in ("erase-me", "keep-me"):
            get_or_create_conversation(session, conversation_id=name, channel="widget")
            for i in range(30):  # other rows, so the merge has more than the erased ones to keep
                say(session, name, f"message {i} from {name}", days_ago=1)
        say(session, "erase-me", f"my code word is {marker}, card never came", days_ago=1)
        request_handoff(session, conversation_id="erase-me")
        agent_reply(session, conversation_id="erase-me", agent="omar", text="Hello, how can I help?")
        customer_message(session, conversation_id="erase-me", text=f"again: {marker}")
        session.commit()
    assert checkpoint(engine) and on_disk()  # the check can see it: it is there before
    with Session(engine) as session:
        erase_conversation(session, conversation_id="erase-me", actor="omar")
        session.commit()
        assert index_segments(engine) > 1  # the deletions' own segment, until a merge takes them all
        if merge == "inline":
            assert compact_index(session) >= 1
    if merge == "job":
        database = Database(Settings(database_url=f"sqlite:///{path}", environment="testing"))
        steps: list[str] = []
        result = compact_search_job(
            database, database.settings, {"conversations": ["erase-me"]}, lambda _, s: steps.append(s)
        )
        database.dispose()
        assert result["conversations"] == ["erase-me"] and result["checkpointed"] is True
        assert result["steps"] >= 1
        assert steps[-2:] == ["checkpoint", "done"]
        assert steps[:-2] == ["merging the search index"] * (1 + result["steps"])  # a start, then each step
    assert checkpoint(engine)
    assert not on_disk()
    # The index is merged into one segment: FTS5 drops the deleted entries only then. (Its trigrams are not
    # the text as one string, so the byte check above cannot see them.)
    assert index_segments(engine) == 1
    with Session(engine) as session:  # the rest is intact and still found
        found = select(Turn.conversation_id).where(user_text_matches(session, "from keep-me"))
        assert set(session.scalars(found)) == {"keep-me"}
    engine.dispose()


def test_the_index_merges_in_steps_that_each_let_go_of_the_write_lock(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FTS5's optimize would hold the write lock for the whole rewrite (about a second per 300,000 turns),
    and every chat turn to be logged would wait. Merged a few pages a step, each its own transaction, another
    connection writes between any two steps without waiting, and the end is one segment as optimize leaves."""
    import sqlite3

    from core import turn_search
    from core.db import make_engine
    from core.migrate import upgrade
    from core.registry import get_or_create_conversation

    path = tmp_path / "helploop.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with Session(engine) as session:
        get_or_create_conversation(session, conversation_id="c", channel="widget")
        for batch in range(6):  # one segment per transaction
            for i in range(40):
                say(session, "c", f"question {batch}-{i} about card number {i * 7919}", days_ago=1)
            session.commit()
        session.execute(text("DELETE FROM turns WHERE id % 3 = 0"))
        session.commit()
    assert index_segments(engine) > 2
    monkeypatch.setattr(turn_search, "MERGE_STEP_PAGES", 1)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)  # would fail at once on a held lock
    shares: list[float] = []

    def between_steps(share: float) -> None:
        shares.append(share)
        other.execute("BEGIN IMMEDIATE")  # the write lock, as logging a turn takes it
        other.execute("ROLLBACK")

    with Session(engine) as session:
        steps = compact_index(session, progress=between_steps)
        assert compact_index(session) == 0  # nothing left to merge
    other.close()
    assert steps == len(shares) > 1
    assert shares == sorted(shares) and 0 < shares[-1] <= 1.0
    assert index_segments(engine) == 1
    with Session(engine) as session:
        found = session.scalars(select(Turn.id).where(user_text_matches(session, "about card")))
        assert len(list(found)) == 160  # 240 logged, 80 deleted
    engine.dispose()


def test_every_sqlite_connection_zeroes_what_it_deletes() -> None:
    """Set on each connection, not left to the build's default (Debian's SQLite has it on, others not)."""
    import sqlite3

    from core.db import configure_sqlite_connection

    connection = sqlite3.connect(":memory:")
    connection.execute("PRAGMA secure_delete=OFF")
    configure_sqlite_connection(connection, None)
    assert connection.execute("PRAGMA secure_delete").fetchone() == (1,)
    connection.close()
