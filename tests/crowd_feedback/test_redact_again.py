"""Migration 0026 (SQLite and PostgreSQL): review items and verified pairs stored before the newer redaction
rules are redacted again; placeholders the older rules wrote stay, and nothing changes a second time."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import migrate
from core.db import make_engine
from core.models import ReviewItem, VerifiedPair
from tests.conftest import insert_row

OLD = "my name is Anna Berg, born 03/04/1985, call [PHONE]"  # as the older rules stored it
NEW = "my name is [NAME], born [DATE_OF_BIRTH], call [PHONE]"


def test_migration_0026_redacts_stored_review_texts_again(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0025")
    with Session(engine) as session:
        item_id = insert_row(session, ReviewItem, text=OLD, status="resolved", cluster_size=1)
        insert_row(session, ReviewItem, text="where is my card", status="pending", cluster_size=1)
        session.add(VerifiedPair(item_id=item_id, text=OLD, intent="card_arrival", weight=0.95))
        session.commit()
    migrate.upgrade(engine)
    with Session(engine) as session:
        assert sorted(i.text for i in session.scalars(select(ReviewItem))) == [NEW, "where is my card"]
        assert session.scalars(select(VerifiedPair.text)).all() == [NEW]
    migrate.downgrade(engine, "0025")
    migrate.upgrade(engine)  # a second pass finds nothing more
    with Session(engine) as session:
        assert session.scalars(select(VerifiedPair.text)).all() == [NEW]
    engine.dispose()


def stored_then_upgraded(database_url: str, revision: str, stored: str) -> tuple[list[str], list[str]]:
    """A resolved item and its verified pair holding ``stored`` (as the rules of ``revision`` left it), then
    every later migration: the item's and the pair's texts, after a check that a second pass changes
    nothing. (The verified pairs' columns are the schema's at these revisions; the item is written with
    the columns it had.)"""
    engine = make_engine(database_url)
    migrate.upgrade(engine, revision)
    with Session(engine) as session:
        item_id = insert_row(session, ReviewItem, text=stored, status="resolved", cluster_size=1)
        session.add(VerifiedPair(item_id=item_id, text=stored, intent="card_arrival", weight=0.9))
        session.commit()
    migrate.upgrade(engine)
    with Session(engine) as session:
        texts = (
            list(session.scalars(select(ReviewItem.text))),
            list(session.scalars(select(VerifiedPair.text))),
        )
    with engine.begin() as connection:
        assert migrate.redact_stored_texts(connection) == 0  # nothing changes twice
    engine.dispose()
    return texts


def test_migration_0027_redacts_the_names_given_without_my_name_is(empty_database_url: str) -> None:
    """Texts stored at 0026 kept a name given in a greeting or a sign-off; 0027 takes it out."""
    stored = "Hi, I'm Sarah, my card [CARD_NUMBER] is blocked. Thanks, Sarah Jones"
    expected = "Hi, I'm [NAME], my card [CARD_NUMBER] is blocked. Thanks, [NAME]"
    assert stored_then_upgraded(empty_database_url, "0026", stored) == ([expected], [expected])


def test_migration_0030_scrubs_cards_typed_next_to_other_digits(empty_database_url: str) -> None:
    """Older rules let a card number typed after other digits into the turn log, comments, live chat and
    review; 0030 takes it out everywhere (turns written with the columns of 0029 only)."""
    from core.models import Conversation, ConversationMessage, Turn, new_uuid
    from core.redaction import scrub_secrets

    typed = "order 12 4111 1111 1111 1111 never came"
    scrubbed = "order 12 [CARD_NUMBER] never came"
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0029")
    with Session(engine) as session:
        # the columns of revision 0029 only (the model names columns added later)
        conversation_id = insert_row(
            session, Conversation, id=new_uuid(), channel="widget", rating_comment=typed
        )
        # What the older rules stored (they found this one card and missed the other).
        turn_id = insert_row(
            session, Turn, conversation_id=conversation_id, user_text=typed, status="answered",
            intent="card_arrival", answer="Soon.", confidence=0.9, candidates=[], member_scores={},
            model_version="v1", latency_ms=1.0, feedback_comment=f"still nothing, {typed}",
        )  # fmt: skip
        other_id = insert_row(  # scrubbed as it was logged: its placeholder stays
            session, Turn, conversation_id=conversation_id,
            user_text=scrub_secrets("card 4111 1111 1111 1111 lost"), status="handoff", intent=None,
            answer="", confidence=0.2, candidates=[], member_scores={}, model_version="v1", latency_ms=1.0,
        )  # fmt: skip
        session.add(ConversationMessage(conversation_id=conversation_id, sender="customer", text=typed))
        item_id = insert_row(session, ReviewItem, text=typed, status="resolved", cluster_size=1)
        session.add(VerifiedPair(item_id=item_id, text=typed, intent="card_arrival", weight=0.9))
        session.commit()
    migrate.upgrade(engine)
    with Session(engine) as session:
        turn = session.get(Turn, turn_id)
        assert turn is not None
        assert (turn.user_text, turn.feedback_comment) == (scrubbed, f"still nothing, {scrubbed}")
        assert session.get(Turn, other_id).user_text == "card [CARD_NUMBER] lost"  # type: ignore[union-attr]
        assert session.get(Conversation, conversation_id).rating_comment == scrubbed  # type: ignore[union-attr]
        assert session.scalars(select(ConversationMessage.text)).all() == [scrubbed]
        assert session.scalars(select(ReviewItem.text)).all() == [scrubbed]
        assert session.scalars(select(VerifiedPair.text)).all() == [scrubbed]
    with engine.begin() as connection:  # nothing changes twice
        assert migrate.scrub_stored_secrets(connection) == 0
        assert migrate.redact_stored_texts(connection) == 0
    engine.dispose()


def test_migration_0032_redacts_first_names_given_in_lower_case(empty_database_url: str) -> None:
    stored = "hi im sarah, my card [CARD_NUMBER] never came. thanks tom"  # as 0031's rules left it
    expected = "hi im [NAME], my card [CARD_NUMBER] never came. thanks [NAME]"
    assert stored_then_upgraded(empty_database_url, "0031", stored) == ([expected], [expected])


def test_migration_0036_redacts_names_given_after_a_clause(empty_database_url: str) -> None:
    stored = "my card [CARD_NUMBER] never came, I am Sarah Jones"  # as 0035's rules left it
    expected = "my card [CARD_NUMBER] never came, I am [NAME]"
    assert stored_then_upgraded(empty_database_url, "0035", stored) == ([expected], [expected])


def test_migration_0037_redacts_names_where_the_sentence_goes_on(empty_database_url: str) -> None:
    stored = "I am John and my card [CARD_NUMBER] never came"  # as 0036's rules left it
    expected = "I am [NAME] and my card [CARD_NUMBER] never came"
    assert stored_then_upgraded(empty_database_url, "0036", stored) == ([expected], [expected])


def test_a_later_redaction_pass_keeps_a_hand_redacted_question_known_for_its_turn(
    empty_database_url: str,
) -> None:
    """An operator redacted a question by hand; newer rules then redact its turn more than the older rules
    did. The recorded automatic redaction follows, so the turn still reads as the hand-redacted question (not
    as a member question of its own under "Also asked")."""
    from core.redaction import redact

    engine = make_engine(empty_database_url)
    migrate.upgrade(engine)
    older = "my name is Anna Berg and I am Grace"  # as older rules left it (no "my name is" rule, say)
    assert redact(older) == "my name is [NAME] and I am Grace"
    with Session(engine) as session:
        session.add(
            ReviewItem(
                text="my name is [NAME] and I am [NAME]",
                status="pending",
                cluster_size=1,
                hand_redacted_from=older,
            )
        )
        session.commit()
    with engine.begin() as connection:
        assert migrate.redact_stored_texts(connection) == 1
        assert migrate.redact_stored_texts(connection) == 0  # nothing changes twice
    with Session(engine) as session:
        item = session.scalars(select(ReviewItem)).one()
        assert item.hand_redacted_from == "my name is [NAME] and I am Grace"
        assert item.shown_text(redact("my name is Anna Berg and I am Grace")) == item.text
    engine.dispose()


def test_a_later_redaction_pass_covers_the_turns_kept_before_a_question(empty_database_url: str) -> None:
    """The next migration with newer rules (it calls redact_stored_texts) redacts review_items.context too:
    reviewers see those texts beside the question."""
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine)
    with Session(engine) as session:
        context = [
            {
                "text": "my name is Anna Berg",
                "status": "small_talk",
                "intent": None,
            },  # as older rules left it
            {"text": "where is my card", "status": "answered", "intent": "card_arrival"},
        ]
        session.add(ReviewItem(text="and now?", status="pending", cluster_size=1, context=context))
        session.add(ReviewItem(text="plain", status="pending", cluster_size=1))
        session.commit()
    with engine.begin() as connection:
        assert migrate.redact_stored_texts(connection) == 1
        assert migrate.redact_stored_texts(connection) == 0  # nothing changes twice
    with Session(engine) as session:
        item = session.scalars(select(ReviewItem).where(ReviewItem.text == "and now?")).one()
        assert item.context == [
            {"text": "my name is [NAME]", "status": "small_talk", "intent": None},
            {"text": "where is my card", "status": "answered", "intent": "card_arrival"},
        ]
    engine.dispose()
