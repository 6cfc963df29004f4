"""Editing the knowledge base one intent at a time: validated like an import, a new version per save, and the
answer book the serving processes follow."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.kb_files import IntentData, KnowledgeBaseData, KnowledgeBaseFormatError
from core.knowledge_base import (
    delete_intent,
    import_knowledge_base,
    latest_kb_version,
    load_knowledge_base,
    read_answer_book,
    restore_kb_version,
    reviewer_notes,
    save_intent,
    version_changes,
)
from core.models import KnowledgeBaseVersion


def seed(session: Session) -> None:
    kb = KnowledgeBaseData(
        {
            "card_arrival": IntentData(
                "card_arrival", "Where is my card?", "5-7 days.", ["where is my card"], ["change_pin"]
            ),
            "change_pin": IntentData("change_pin", "Change my PIN", "At any ATM.", ["new pin", "change pin"]),
        }
    )
    import_knowledge_base(session, incoming=kb, source="test")


def add_lost_card(session: Session) -> None:
    save_intent(
        session,
        name="lost_card",
        title="",
        answer="Freeze it.",
        examples=["lost card"],
        actor="omar",
        create=True,
    )


def versions(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(KnowledgeBaseVersion)) or 0)


def test_create_edit_and_the_answer_book(db_session: Session) -> None:
    seed(db_session)
    book = read_answer_book(db_session)
    assert book is not None and book.kb_version_id == latest_kb_version(db_session).id
    assert book.intents["card_arrival"] == ("Where is my card?", "5-7 days.", ("change_pin",))
    assert (
        read_answer_book(db_session, known_version=book.kb_version_id) is None
    )  # unchanged: one cheap query

    created = save_intent(
        db_session,
        name="metal_card",
        title="  Metal   card ",
        answer="Not yet.",
        examples=["metal card?", "  ", "metal card?", "a  metal   card"],
        follow_ups=["card_arrival"],
        actor="omar",
        create=True,
    )
    assert created.intents_created == 1 and created.examples_added == 2
    intent = load_knowledge_base(db_session).intents["metal_card"]
    assert (intent.title, intent.examples, intent.follow_ups) == (
        "Metal card",
        ["metal card?", "a metal card"],
        ["card_arrival"],
    )
    assert latest_kb_version(db_session).source == "intent metal_card created by omar"

    edited = save_intent(
        db_session,
        name="change_pin",
        title="Change your PIN",
        answer="At any of our ATMs.",
        examples=["change pin", "reset my pin"],
        actor="omar",
        create=False,
    )
    assert (edited.intents_updated, edited.examples_added, edited.examples_removed) == (1, 1, 1)
    assert load_knowledge_base(db_session).intents["change_pin"].examples == ["change pin", "reset my pin"]
    newer = read_answer_book(db_session, known_version=book.kb_version_id)
    assert newer is not None and newer.kb_version_id == edited.kb_version_id
    assert newer.intents["change_pin"] == ("Change your PIN", "At any of our ATMs.", ())
    assert set(newer.intents) == {"card_arrival", "change_pin", "metal_card"}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"name": "card_arrival", "create": True}, "name", "intent 'card_arrival' already exists"),
        ({"name": "nope", "create": False}, "name", "intent 'nope' does not exist"),
        ({"name": "metal card", "create": True}, "name", "must start with a letter or digit"),
        ({"answer": "  "}, "answer", "is empty"),
        ({"examples": ["", " "]}, "examples", "needs an example question"),
        ({"examples": ["x" * 1001]}, "examples", "is 1001 characters, limit 1000"),
        ({"title": "t" * 201}, "title", "is 201 characters, limit 200"),
        ({"follow_ups": ["nowhere"]}, "follow_ups", "suggests unknown intent 'nowhere'"),
        ({"follow_ups": ["change_pin"]}, "follow_ups", "an intent cannot suggest itself"),
    ],
)
def test_a_bad_save_names_the_field_and_writes_nothing(
    db_session: Session, changes: dict[str, object], field: str, message: str
) -> None:
    seed(db_session)
    db_session.commit()  # a savepoint: the failed save below rolls back to here
    before = versions(db_session)
    arguments: dict[str, object] = {
        "name": "change_pin",
        "title": "Change my PIN",
        "answer": "At any ATM.",
        "examples": ["new pin"],
        "actor": "omar",
        "create": False,
        **changes,
    }
    with pytest.raises(KnowledgeBaseFormatError, match=message) as error:
        save_intent(db_session, **arguments)  # type: ignore[arg-type]
    assert error.value.field == field
    db_session.rollback()
    assert versions(db_session) == before
    assert load_knowledge_base(db_session).intents["change_pin"].examples == ["new pin", "change pin"]


def test_delete_is_refused_while_another_intent_suggests_it(db_session: Session) -> None:
    seed(db_session)
    with pytest.raises(KnowledgeBaseFormatError, match="is a follow-up of card_arrival"):
        delete_intent(db_session, name="change_pin", actor="omar")
    with pytest.raises(KnowledgeBaseFormatError, match="does not exist"):
        delete_intent(db_session, name="nope", actor="omar")
    result = delete_intent(db_session, name="card_arrival", actor="omar")
    assert result.examples_removed == 1 and set(load_knowledge_base(db_session).intents) == {"change_pin"}
    assert latest_kb_version(db_session).source == "intent card_arrival deleted by omar"
    with pytest.raises(KnowledgeBaseFormatError, match="has no intents"):
        delete_intent(db_session, name="change_pin", actor="omar")


def test_a_save_on_top_of_someone_elses_newer_save_is_refused(db_session: Session) -> None:
    from core.knowledge_base import intent_revision

    seed(db_session)
    opened = intent_revision(load_knowledge_base(db_session).intents["change_pin"])
    common = {"name": "change_pin", "title": "Change my PIN", "examples": ["new pin"], "actor": "a"}
    save_intent(db_session, answer="First edit.", create=False, revision=opened, **common)  # type: ignore[arg-type]
    with pytest.raises(
        KnowledgeBaseFormatError, match="changed by someone else since you opened it"
    ) as error:
        save_intent(db_session, answer="Second edit.", create=False, revision=opened, **common)  # type: ignore[arg-type]
    assert error.value.field == "revision"
    assert load_knowledge_base(db_session).intents["change_pin"].answer == "First edit."
    fresh = intent_revision(load_knowledge_base(db_session).intents["change_pin"])
    assert fresh != opened
    save_intent(db_session, answer="Second edit.", create=False, revision=fresh, **common)  # type: ignore[arg-type]
    assert load_knowledge_base(db_session).intents["change_pin"].answer == "Second edit."


def test_intent_examples_for_reviewers_shortest_first_never_the_question_itself(db_session: Session) -> None:
    from core.knowledge_base import intent_examples

    seed(db_session)
    save_intent(
        db_session,
        name="change_pin",
        title="Change my PIN",
        answer="At any ATM.",
        examples=["how can I change my PIN number please", "new pin", "change pin", "pin?"],
        actor="t",
        create=False,
    )
    shown = intent_examples(db_session, names=["change_pin", "card_arrival", "nope"], exclude="  PIN? ")
    assert shown == {"change_pin": ["new pin", "change pin"], "card_arrival": ["where is my card"]}
    assert intent_examples(db_session, names=[]) == {}
    longest = intent_examples(db_session, names=["change_pin"], rank=lambda _name, text: (-len(text), text))
    assert longest == {"change_pin": ["how can I change my PIN number please", "change pin"]}


def test_restoring_a_version_makes_its_content_current_as_a_new_version(db_session: Session) -> None:
    seed(db_session)
    first = latest_kb_version(db_session)
    assert first is not None
    original = load_knowledge_base(db_session).data_hash()
    add_lost_card(db_session)
    delete_intent(db_session, name="card_arrival", actor="omar")
    assert sorted(load_knowledge_base(db_session).intents) == ["change_pin", "lost_card"]
    result = restore_kb_version(db_session, version_id=first.id, actor="omar")
    kb = load_knowledge_base(db_session)
    assert sorted(kb.intents) == ["card_arrival", "change_pin"] and kb.data_hash() == original
    assert kb.intents["card_arrival"].follow_ups == ["change_pin"]
    latest = latest_kb_version(db_session)
    assert latest is not None and latest.id == result.kb_version_id and versions(db_session) == 4
    assert latest.source == f"version {first.id} restored by omar" and latest.data_hash == original
    with pytest.raises(KnowledgeBaseFormatError, match="does not exist"):
        restore_kb_version(db_session, version_id=first.id + 100, actor="omar")
    assert versions(db_session) == 4


def test_what_a_version_changed_and_what_restoring_it_would_do(db_session: Session) -> None:
    seed(db_session)
    first = latest_kb_version(db_session)
    assert first is not None
    save_intent(
        db_session,
        name="change_pin",
        title="Change my PIN",
        answer="In the app.",
        examples=["change pin", "forgot my pin"],
        actor="omar",
        create=False,
    )
    add_lost_card(db_session)
    latest = latest_kb_version(db_session)
    assert latest is not None
    shown, previous, changes = version_changes(db_session, version_id=first.id + 1)
    assert previous is not None and previous.id == first.id
    assert [(c.name, c.change, c.fields, c.examples_added, c.examples_removed) for c in changes] == [
        ("change_pin", "changed", ["answer"], ["forgot my pin"], ["new pin"])
    ]
    _, none_before, everything = version_changes(db_session, version_id=first.id)
    assert none_before is None and [(c.name, c.change) for c in everything] == [
        ("card_arrival", "added"),
        ("change_pin", "added"),
    ]
    # Restoring the first version would remove lost_card and undo the PIN edit.
    _, current, undo = version_changes(db_session, version_id=first.id, against="current")
    assert current is not None and current.id == latest.id
    assert [(c.name, c.change, c.fields, c.examples_added, c.examples_removed) for c in undo] == [
        ("change_pin", "changed", ["answer"], ["new pin"], ["forgot my pin"]),
        ("lost_card", "removed", [], [], ["lost card"]),
    ]
    assert version_changes(db_session, version_id=latest.id, against="current")[2] == []
    with pytest.raises(KnowledgeBaseFormatError, match="does not exist"):
        version_changes(db_session, version_id=latest.id + 1)


def test_a_reviewer_note_is_saved_versioned_kept_by_merges_and_read_for_reviewers(
    db_session: Session,
) -> None:
    from core.events import recent_events

    seed(db_session)
    assert reviewer_notes(db_session) == {}
    before = latest_kb_version(db_session)
    note = "Only a card that has not arrived yet.\nA broken card is card_not_working."
    result = save_intent(
        db_session,
        name="card_arrival",
        title="Where is my card?",
        answer="5-7 days.",
        examples=["where is my card"],
        follow_ups=["change_pin"],
        reviewer_note=f"  {note}\r\n",
        actor="omar",
        create=False,
    )
    # A note alone is a change: a new version, one intent updated, said in the ops event.
    assert (result.intents_updated, result.examples_added, result.examples_removed) == (1, 0, 0)
    assert result.data_hash != before.data_hash
    assert reviewer_notes(db_session) == {"card_arrival": note}
    assert reviewer_notes(db_session, names=["change_pin"]) == {}
    assert reviewer_notes(db_session, names=[]) == {}
    _, _, changes = version_changes(db_session, version_id=result.kb_version_id)
    assert [(c.name, c.change, c.fields) for c in changes] == [("card_arrival", "changed", ["reviewer_note"])]
    [event] = recent_events(db_session, kind="knowledge.changed", limit=1)
    assert "1 intent with a new title, answer, follow-ups, reviewer note or metadata" in event.text
    # Importing the intent again without a note (a merge) keeps it; the answer book never carries it.
    incoming = KnowledgeBaseData({"card_arrival": IntentData("card_arrival", examples=["my card is late"])})
    import_knowledge_base(db_session, incoming=incoming, source="test merge")
    assert load_knowledge_base(db_session).intents["card_arrival"].reviewer_note == note
    assert read_answer_book(db_session).intents["card_arrival"] == (
        "Where is my card?",
        "5-7 days.",
        ("change_pin",),
    )
    with pytest.raises(KnowledgeBaseFormatError) as caught:
        save_intent(
            db_session,
            name="change_pin",
            title="",
            answer="At any ATM.",
            examples=["new pin"],
            reviewer_note="n" * 2001,
            actor="omar",
            create=False,
        )
    assert (caught.value.field, caught.value.message) == ("reviewer_note", "is 2001 characters, limit 2000")
