"""Intent metadata (Azure question answering's): read from every format that can hold it, kept through
exports, stored and versioned, edited one intent at a time, and handed to the serving processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from core.kb_files import (
    IntentData,
    KnowledgeBaseData,
    KnowledgeBaseFormatError,
    read_knowledge_base,
    read_knowledge_base_files,
    write_knowledge_base,
)
from core.knowledge_base import (
    import_knowledge_base,
    latest_kb_version,
    load_knowledge_base,
    read_answer_book,
    restore_kb_version,
    save_intent,
    version_changes,
)
from tests.core.test_kb_azure import HEADER, MULTI_TURN_TSV, row


def test_azure_tsv_metadata_becomes_the_intents_metadata(tmp_path: Path) -> None:
    (tmp_path / "kb.tsv").write_text(MULTI_TURN_TSV, encoding="utf-8")
    kb = read_knowledge_base([tmp_path / "kb.tsv"])
    assert kb.intents["my_card_has_a_problem"].metadata == {"area": "cards"}
    assert kb.intents["where_is_my_new_card"].metadata == {}
    (tmp_path / "many.tsv").write_text(
        HEADER + row("Where is my card?", "Soon.", 1, metadata="Area:Cards|Product: Gold  Card"),
        encoding="utf-8",
    )
    # Lower case, as Azure keeps metadata; spaces inside a value are one space.
    assert read_knowledge_base([tmp_path / "many.tsv"]).intents["where_is_my_card"].metadata == {
        "area": "cards",
        "product": "gold card",
    }


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("area", "'area' is not 'key:value'"),
        ("my area:cards", "must be 1-100 characters without spaces"),
        ("area:cards|area:loans", "key 'area' appears twice"),
        ("area:", "the value of 'area' must be 1-500 characters"),
        ("|".join(f"k{i}:v" for i in range(21)), "has 21 keys, limit 20"),
    ],
)
def test_bad_tsv_metadata_is_refused_by_file_line_and_field(tmp_path: Path, cell: str, message: str) -> None:
    path = tmp_path / "kb.tsv"
    path.write_text(HEADER + row("Q one", "A.", 1) + row("Q two", "B.", 2, metadata=cell), encoding="utf-8")
    with pytest.raises(KnowledgeBaseFormatError) as caught:
        read_knowledge_base([path])
    assert (caught.value.line, caught.value.field) == (3, "Metadata")
    assert message in caught.value.message
    assert str(caught.value).startswith(f"{path}:3: field 'Metadata'")


def test_one_qna_with_two_sets_of_metadata_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kb.tsv"
    path.write_text(
        HEADER
        + row("Q one", "A.", 1, metadata="area:cards")
        + row("Q again", "A.", 1, metadata="area:loans"),
        encoding="utf-8",
    )
    with pytest.raises(KnowledgeBaseFormatError, match="QnA 1 has other metadata on line 2"):
        read_knowledge_base([path])


def test_azure_json_metadata_in_both_export_shapes() -> None:
    language_studio = {
        "assets": {
            "qnas": [
                {
                    "id": 1,
                    "answer": "Soon.",
                    "questions": ["Where is my card?"],
                    "metadata": {"Area": "Cards"},
                },
                {"id": 2, "answer": "At an ATM.", "questions": ["Change my PIN"]},
            ]
        }
    }
    qna_maker = {
        "qnaDocuments": [
            {
                "id": 7,
                "answer": "Soon.",
                "questions": ["Where is my card?"],
                "metadata": [{"name": "area", "value": "cards"}, {"name": "tier", "value": "gold"}],
            }
        ]
    }
    first = read_knowledge_base_files([("kb.json", json.dumps(language_studio).encode())])
    assert first.intents["where_is_my_card"].metadata == {"area": "cards"}
    assert first.intents["change_my_pin"].metadata == {}
    second = read_knowledge_base_files([("kb.json", json.dumps(qna_maker).encode())])
    assert second.intents["where_is_my_card"].metadata == {"area": "cards", "tier": "gold"}
    broken = {"qnaDocuments": [{"id": 1, "answer": "A.", "questions": ["Q"], "metadata": [{"name": "x"}]}]}
    with pytest.raises(KnowledgeBaseFormatError) as caught:
        read_knowledge_base_files([("kb.json", json.dumps(broken, indent=1).encode())])
    assert caught.value.field == "qnas[0].metadata" and "a name and a value" in caught.value.message
    assert caught.value.line is not None


def metadata_kb() -> KnowledgeBaseData:
    return KnowledgeBaseData(
        {
            "card_arrival": IntentData(
                "card_arrival",
                "Card arrival",
                "5-7 days.",
                ["where is my card"],
                metadata={"product": "cards"},
            ),
            "exchange_rate": IntentData(
                "exchange_rate",
                "Exchange rate",
                "Mid-market.",
                ["what rate do you use"],
                metadata={"product": "fx", "region": "uk"},
            ),
            "change_pin": IntentData("change_pin", "Change PIN", "At any ATM.", ["new pin"]),
        }
    )


@pytest.mark.parametrize("fmt", ["json", "csv", "rasa"])
def test_every_export_format_keeps_the_metadata(tmp_path: Path, fmt: str) -> None:
    kb = metadata_kb()
    written = write_knowledge_base(kb, fmt, tmp_path / ("kb.json" if fmt == "json" else "out"))
    again = read_knowledge_base(written)
    assert {n: i.metadata for n, i in again.intents.items()} == {n: i.metadata for n, i in kb.intents.items()}
    assert again.data_hash() == kb.data_hash()


def test_a_knowledge_base_without_metadata_keeps_its_hash() -> None:
    """A snapshot leaves empty metadata out, so knowledge bases stored before metadata hash as they did."""
    kb = metadata_kb()
    bare = KnowledgeBaseData(
        {n: IntentData(n, i.title, i.answer, list(i.examples)) for n, i in kb.intents.items()}
    )
    assert "metadata" not in json.dumps(bare.to_dict())
    kb.intents["card_arrival"].metadata = {}
    kb.intents["exchange_rate"].metadata = {}
    assert kb.data_hash() == bare.data_hash()


def test_metadata_is_stored_versioned_edited_and_served(db_session: Session) -> None:
    import_knowledge_base(db_session, incoming=metadata_kb(), source="test")
    first = latest_kb_version(db_session)
    assert first is not None
    stored = load_knowledge_base(db_session)
    assert stored.intents["exchange_rate"].metadata == {"product": "fx", "region": "uk"}
    assert stored.intents["change_pin"].metadata == {}
    book = read_answer_book(db_session)
    assert book is not None
    assert book.metadata == {
        "card_arrival": {"product": "cards"},
        "exchange_rate": {"product": "fx", "region": "uk"},
    }
    # The edit form's text: one "key: value" a line.
    save_intent(
        db_session,
        name="change_pin",
        title="Change PIN",
        answer="At any ATM.",
        examples=["new pin"],
        metadata="Product: Cards\n\nregion: UK",
        actor="omar",
        create=False,
    )
    assert load_knowledge_base(db_session).intents["change_pin"].metadata == {
        "product": "cards",
        "region": "uk",
    }
    latest = latest_kb_version(db_session)
    assert latest is not None
    _, _, changes = version_changes(db_session, version_id=latest.id)
    assert [(c.name, c.fields) for c in changes] == [("change_pin", ["metadata"])]
    # A save without the field (None) keeps the metadata; bad metadata is refused and nothing is written.
    save_intent(
        db_session,
        name="change_pin",
        title="Change your PIN",
        answer="At any ATM.",
        examples=["new pin"],
        actor="omar",
        create=False,
    )
    assert load_knowledge_base(db_session).intents["change_pin"].metadata == {
        "product": "cards",
        "region": "uk",
    }
    with pytest.raises(KnowledgeBaseFormatError) as caught:
        save_intent(
            db_session,
            name="change_pin",
            title="Change your PIN",
            answer="At any ATM.",
            examples=["new pin"],
            metadata="just words",
            actor="omar",
            create=False,
        )
    assert caught.value.field == "metadata"
    assert load_knowledge_base(db_session).intents["change_pin"].metadata == {
        "product": "cards",
        "region": "uk",
    }
    # A merge that brings no metadata keeps it; one that brings some replaces it.
    import_knowledge_base(
        db_session,
        incoming=KnowledgeBaseData({"card_arrival": IntentData("card_arrival", examples=["card late"])}),
        source="merge",
    )
    assert load_knowledge_base(db_session).intents["card_arrival"].metadata == {"product": "cards"}
    import_knowledge_base(
        db_session,
        incoming=KnowledgeBaseData(
            {
                "card_arrival": IntentData(
                    "card_arrival", examples=["card late"], metadata={"product": "debit"}
                )
            }
        ),
        source="merge",
    )
    assert load_knowledge_base(db_session).intents["card_arrival"].metadata == {"product": "debit"}
    restore_kb_version(db_session, version_id=first.id, actor="omar")  # the undo brings the metadata back
    restored = load_knowledge_base(db_session)
    assert restored.intents["card_arrival"].metadata == {"product": "cards"}
    assert restored.intents["change_pin"].metadata == {}
