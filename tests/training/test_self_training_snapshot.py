"""The turn log's questions a training run self-trains on (training.build.traffic_questions), on SQLite and
PostgreSQL."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.kb_files import IntentData, KnowledgeBaseData
from core.knowledge_base import import_knowledge_base
from core.models import ReviewItem, ReviewItemTurn, VerifiedPair
from tests.conftest import TOY, add_turn
from training.build import traffic_questions, training_snapshot, verified_pairs


def toy_knowledge() -> KnowledgeBaseData:
    return KnowledgeBaseData(
        {n: IntentData(n, answer=f"About {n}.", examples=list(e)) for n, e in TOY.items()}
    )


def test_traffic_is_the_newest_distinct_unjudged_questions_redacted(db_session: Session) -> None:
    import_knowledge_base(db_session, incoming=toy_knowledge(), source="test")
    add_turn(db_session, "c1", "my courier never came")
    add_turn(db_session, "c1", "My courier never came?")  # the same question, spelled differently
    add_turn(db_session, "c1", "Where is my card")  # a knowledge-base example: labelled already
    unhelpful = add_turn(db_session, "c2", "card for jo@example.com lost")
    unhelpful.helpful = False  # the customer said the answer was wrong: not a label to learn
    reviewed = add_turn(db_session, "c2", "is the courier lost", status="clarify")
    item = ReviewItem(text=reviewed.user_text, reasons=["clarify"])
    db_session.add(item)
    db_session.flush()
    db_session.add(ReviewItemTurn(item_id=item.id, turn_id=reviewed.id, reason="clarify"))
    add_turn(db_session, "c3", "write to me at jo@example.com about the courier")
    add_turn(db_session, "c3", "  ")
    add_turn(db_session, "c3", "thanks a lot", status="small_talk")  # not a question
    add_turn(db_session, "c3", "can I talk to a human", status="asked_for_person")  # nor is this
    add_turn(db_session, "c3", "/card_arrival").served_by = "suggestion"  # a clicked chip
    add_turn(db_session, "c4", "Hi! Is my courier lost? Thanks")  # read as the chat's model read it
    db_session.flush()

    questions = traffic_questions(db_session, exclude=[t for rows in TOY.values() for t in rows], limit=10)
    # newest first; e-mail redacted; greeting and thanks left out; the repeat, the example, the thumbs-down,
    # the reviewed one, the small talk, the request for a person and the chip left out
    assert questions == [
        "Is my courier lost?",
        "write to me at [EMAIL] about the courier",
        "My courier never came?",
    ]
    assert traffic_questions(db_session, exclude=[], limit=1) == ["Is my courier lost?"]
    assert traffic_questions(db_session, exclude=[], limit=0) == []

    snapshot = training_snapshot(db_session, traffic_limit=10)
    assert snapshot.traffic_texts == questions
    assert not {t.casefold() for t in snapshot.traffic_texts} & {
        t.casefold() for t in snapshot.texts + snapshot.evaluation_texts
    }
    assert training_snapshot(db_session).traffic_texts == []  # self-training off: nothing read


def test_an_evaluation_question_asked_as_traffic_is_never_trained_on(db_session: Session) -> None:
    many = {n: [f"{t} {i}" for i in range(3) for t in e] for n, e in TOY.items()}  # enough to hold some out
    kb = KnowledgeBaseData({n: IntentData(n, answer=f"About {n}.", examples=e) for n, e in many.items()})
    import_knowledge_base(db_session, incoming=kb, source="test")
    held = training_snapshot(db_session).evaluation_texts
    assert held, "the knowledge base is big enough for a frozen evaluation set"
    add_turn(db_session, "c1", held[0].upper() + " ?")
    add_turn(db_session, "c1", "something else entirely")
    db_session.flush()
    assert training_snapshot(db_session, traffic_limit=10).traffic_texts == ["something else entirely"]


def test_a_chip_payload_is_never_a_training_question(db_session: Session) -> None:
    """Items routed before a thumbs-down on a clicked chip went to the question behind it may hold "/intent"
    as a member: it is written as no verified pair, and a pair written earlier is not trained on."""
    import_knowledge_base(db_session, incoming=toy_knowledge(), source="test")
    item = ReviewItem(text="/change_pin", reasons=["thumbs_down"])
    db_session.add(item)
    db_session.flush()
    db_session.add_all(
        [
            VerifiedPair(item_id=item.id, text="/change_pin", intent="change_pin", weight=0.99),
            VerifiedPair(item_id=item.id, text="my pin is locked", intent="change_pin", weight=0.99),
        ]
    )
    db_session.flush()
    assert [t for t, _, _ in verified_pairs(db_session)] == ["my pin is locked"]
    snapshot = training_snapshot(db_session)
    assert "/change_pin" not in snapshot.texts and "my pin is locked" in snapshot.texts
