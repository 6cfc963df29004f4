"""What the knowledge base's text says before any model: one question under two intents, the same question
twice in one intent, intents with few examples; and moving an example where it belongs."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from core.kb_checks import question_key, text_findings
from core.kb_files import IntentData, KnowledgeBaseData, KnowledgeBaseFormatError
from core.knowledge_base import (
    flag_again,
    import_knowledge_base,
    keep_example,
    kept_examples,
    latest_kb_version,
    load_knowledge_base,
    move_example,
    version_changes,
)


def knowledge(**intents: list[str]) -> KnowledgeBaseData:
    return KnowledgeBaseData({n: IntentData(n, answer=f"About {n}.", examples=e) for n, e in intents.items()})


def test_spellings_of_one_question_and_questions_that_only_look_alike() -> None:
    assert question_key("Where is my card?") == question_key("  where is   my CARD") == "where is my card"
    assert question_key("Where is my card?!…") == "where is my card"
    for other in ["where is my card from", "where's my card", "where is my card 2", "¿where is my card"]:
        assert question_key(other) != "where is my card"


def test_conflicts_duplicates_and_thin_intents() -> None:
    kb = knowledge(
        card_arrival=[
            "Where is my card?",
            "where is my card",
            "card not here",
            "still waiting",
            "no card yet",
        ],
        lost_card=["where is my card", "I lost my card", "card stolen", "lost it", "cannot find my card"],
        change_pin=["new pin", "change pin"],
    )
    found = text_findings(kb, pairs=[("I LOST my card", "card_arrival", 7), ("new pin", "ghost_intent", 8)])
    assert [(c.question, c.intents) for c in found.conflicts] == [
        ("I lost my card", ["card_arrival", "lost_card"]),
        ("Where is my card?", ["card_arrival", "lost_card"]),
    ]
    places = [(p.intent, p.text, p.source) for p in found.conflicts[0].places]
    assert places == [
        ("lost_card", "I lost my card", "knowledge base"),
        ("card_arrival", "I LOST my card", "verified pair (item #7)"),
    ]
    # A verified pair of an intent that no longer exists is not trained on: no conflict from it.
    assert all("ghost_intent" not in c.intents for c in found.conflicts)
    assert [(d.intent, d.spellings) for d in found.duplicates] == [
        ("card_arrival", ("Where is my card?", "where is my card"))
    ]
    assert [(t.intent, t.examples) for t in found.thin] == [("change_pin", 2)]
    assert [t.intent for t in text_findings(kb, few=6).thin] == ["change_pin", "card_arrival", "lost_card"]
    clean = text_findings(knowledge(a=["x1", "x2", "x3", "x4", "x5"], b=["y1", "y2", "y3", "y4", "y5"]))
    assert clean.conflicts == clean.duplicates == clean.thin == clean.shared_answers == []


def test_one_answer_given_by_several_intents() -> None:
    kb = knowledge(a=["x"], b=["y"], c=["z"], oos=["w"], d=["v"])
    kb.intents["b"].answer = "  about   A. "  # the same text, spaced and cased otherwise
    kb.intents["c"].answer = "About C."
    kb.intents["oos"].answer = ""
    kb.intents["d"].answer = ""  # no answer is not an answer shared
    [shared] = text_findings(kb).shared_answers
    assert (shared.answer, shared.intents) == ("About a.", ("a", "b"))
    assert shared.to_dict() == {"answer": "About a.", "intents": ["a", "b"]}


def seed(session: Session) -> None:
    import_knowledge_base(
        session,
        incoming=knowledge(
            card_arrival=["where is my card", "Lost my card!", "card not here"],
            lost_card=["I lost my card", "lost my card"],
            change_pin=["new pin"],
        ),
        source="test",
    )


def test_moving_an_example_is_a_new_version_and_takes_every_spelling(db_session: Session) -> None:
    seed(db_session)
    before = latest_kb_version(db_session)
    assert before is not None
    result = move_example(
        db_session, text="lost my card", from_intent="card_arrival", to_intent="lost_card", actor="omar"
    )
    kb = load_knowledge_base(db_session)
    assert kb.intents["card_arrival"].examples == ["where is my card", "card not here"]
    assert kb.intents["lost_card"].examples == ["I lost my card", "lost my card"]  # already there: not twice
    version = latest_kb_version(db_session)
    assert version is not None and version.id == result.kb_version_id != before.id
    assert version.source == "example moved from card_arrival to lost_card by omar"
    _, _, changed = version_changes(db_session, version_id=version.id)
    assert [(c.name, c.examples_added, c.examples_removed) for c in changed] == [
        ("card_arrival", [], ["Lost my card!"])
    ]
    removed = move_example(
        db_session, text="card not here", from_intent="card_arrival", to_intent=None, actor="omar"
    )
    assert load_knowledge_base(db_session).intents["card_arrival"].examples == ["where is my card"]
    assert removed.example_count == 4


@pytest.mark.parametrize(
    ("text", "from_intent", "to_intent", "field", "message"),
    [
        ("where is my card", "ghost", "lost_card", "from_intent", "does not exist"),
        ("where is my card", "card_arrival", "ghost", "to_intent", "does not exist"),
        ("where is my card", "card_arrival", "card_arrival", "to_intent", "in that intent already"),
        ("where is my parcel", "card_arrival", "lost_card", "examples", "not an example of 'card_arrival'"),
        ("new pin", "change_pin", "lost_card", "examples", "last example of 'change_pin'"),
    ],
)
def test_a_refused_move_names_the_field_and_changes_nothing(
    db_session: Session, text: str, from_intent: str, to_intent: str, field: str, message: str
) -> None:
    seed(db_session)
    db_session.commit()
    before = load_knowledge_base(db_session).data_hash()
    with pytest.raises(KnowledgeBaseFormatError, match=message) as error:
        move_example(db_session, text=text, from_intent=from_intent, to_intent=to_intent, actor="omar")
    assert error.value.field == field
    db_session.rollback()
    assert load_knowledge_base(db_session).data_hash() == before


def test_keeping_a_flagged_example_and_flagging_it_again(db_session: Session) -> None:
    seed(db_session)
    assert keep_example(db_session, text="LOST my card", intent="card_arrival", actor="omar") is True
    assert keep_example(db_session, text="lost my card.", intent="card_arrival", actor="nina") is False
    [(key, kept)] = kept_examples(db_session).items()
    assert key == ("lost my card", "card_arrival") and (kept.text, kept.kept_by) == ("LOST my card", "omar")
    with pytest.raises(KnowledgeBaseFormatError, match="not an example of 'change_pin'"):
        keep_example(db_session, text="lost my card", intent="change_pin", actor="omar")
    with pytest.raises(KnowledgeBaseFormatError, match="does not exist") as error:
        keep_example(db_session, text="lost my card", intent="ghost", actor="omar")
    assert error.value.field == "intent"
    assert flag_again(db_session, text="Lost my card!", intent="card_arrival") is True
    assert flag_again(db_session, text="Lost my card!", intent="card_arrival") is False
    assert kept_examples(db_session) == {}
