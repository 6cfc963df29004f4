"""Synonyms in the knowledge base: read from HelpLoop JSON and Azure question answering exports, checked
(file, line, field), stored, kept by files that cannot hold them, versioned and restored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.orm import Session

from core.kb_files import KnowledgeBaseFormatError, read_knowledge_base_files
from core.knowledge_base import (
    import_knowledge_base,
    load_knowledge_base,
    read_answer_book,
    read_synonyms,
    restore_kb_version,
    save_synonyms,
)

INTENTS = [
    {"name": "card_arrival", "answer": "Soon.", "examples": ["where is my card", "card not here"]},
    {"name": "atm_fee", "answer": "Free.", "examples": ["fee at the atm", "atm withdrawal fee"]},
]


def kb_json(**extra: Any) -> bytes:
    return json.dumps({"intents": INTENTS, **extra}, indent=1).encode()


def test_helploop_json_and_azure_exports_carry_synonyms() -> None:
    kb = read_knowledge_base_files(
        [
            (
                "kb.json",
                kb_json(synonyms=[["cashpoint", "cash machine", "ATM"], ["plastic", "card", "plastic"]]),
            )
        ]
    )
    assert kb.synonyms == [["cashpoint", "cash machine", "ATM"], ["plastic", "card"]]  # each phrase once
    assert kb.to_dict()["synonyms"] == kb.synonyms  # the JSON export and the version snapshot hold them
    plain = read_knowledge_base_files([("kb.json", kb_json())])
    assert plain.synonyms is None and "synonyms" not in plain.to_dict()  # said nothing: kept on import
    assert plain.data_hash() == kb.data_hash()  # not training data: a retrain has nothing new to learn
    # A question answering project export: assets.synonyms, Azure's {"alterations": [...]}.
    azure = {
        "assets": {
            "qnas": [{"id": 1, "answer": "Soon.", "questions": ["Where is my card?", "card not here"]}],
            "synonyms": [{"alterations": ["qnamaker", "qna maker"]}, {"Alterations": ["ATM", "cashpoint"]}],
        }
    }
    read = read_knowledge_base_files([("project.json", json.dumps(azure).encode())])
    assert read.synonyms == [["qnamaker", "qna maker"], ["ATM", "cashpoint"]]


@pytest.mark.parametrize(
    ("synonyms", "where", "message"),
    [
        (
            [["ATM", "cashpoint"], ["cash machine", "atm"]],
            "kb.json:7: field 'synonyms[1]'",
            "already in the group",
        ),
        ([["ATM"]], "kb.json:3: field 'synonyms[0]'", "needs 2 to 20 different phrases, has 1"),
        ([["ATM", "ATM "]], "kb.json:3: field 'synonyms[0]'", "has 1"),
        ([["ATM", 5]], "kb.json:3: field 'synonyms[0]'", "phrases must be text, not int"),
        (["ATM"], "kb.json:3: field 'synonyms[0]'", "must be a list of phrases, not str"),
        ([["ATM", "x" * 61]], "kb.json:3: field 'synonyms[0]'", "is 61 characters, limit 60"),
        ([["ATM", "?!"]], "kb.json:3: field 'synonyms[0]'", "has no letter or digit"),
    ],
)
def test_bad_synonyms_are_refused_naming_the_file_line_and_field(
    synonyms: Any, where: str, message: str
) -> None:
    text = json.dumps({"synonyms": synonyms, "intents": INTENTS}, indent=1).encode()
    with pytest.raises(KnowledgeBaseFormatError) as caught:
        read_knowledge_base_files([("kb.json", text)])
    assert str(caught.value).startswith(where) and message in str(caught.value), str(caught.value)


def test_synonyms_are_stored_kept_replaced_and_restored(db_session: Session) -> None:
    first = import_knowledge_base(
        db_session,
        incoming=read_knowledge_base_files([("kb.json", kb_json(synonyms=[["cashpoint", "ATM"]]))]),
        source="t",
    )
    assert read_synonyms(db_session) == [["cashpoint", "ATM"]]
    book = read_answer_book(db_session)
    assert book is not None and book.synonyms == (("cashpoint", "ATM"),)  # what the served models read
    # A CSV import cannot hold synonyms: they stay (merged, and replacing the whole knowledge base).
    examples = b"text,label\nwhere is my card,card_arrival\nfee at the atm,atm_fee\n"
    answers = b"label,answer\ncard_arrival,Soon.\natm_fee,Free.\n"
    for replace in (False, True):
        import_knowledge_base(
            db_session,
            incoming=read_knowledge_base_files([("examples.csv", examples), ("answers.csv", answers)]),
            source="csv",
            replace=replace,
        )
        assert read_synonyms(db_session) == [["cashpoint", "ATM"]], replace
    # A merged file's group replaces the groups it shares a phrase with; the others stay.
    save_synonyms(db_session, groups=[["cashpoint", "ATM"], ["plastic", "card"]], actor="omar")
    import_knowledge_base(
        db_session,
        incoming=read_knowledge_base_files([("kb.json", kb_json(synonyms=[["cash machine", "atm"]]))]),
        source="merge",
    )
    assert read_synonyms(db_session) == [["plastic", "card"], ["cash machine", "atm"]]
    # Replaced by a JSON file with "synonyms": [] (none), then the first version restored.
    import_knowledge_base(
        db_session,
        incoming=read_knowledge_base_files([("kb.json", kb_json(synonyms=[]))]),
        source="replace",
        replace=True,
    )
    assert read_synonyms(db_session) == [] and load_knowledge_base(db_session).synonyms == []
    restore_kb_version(db_session, version_id=first.kb_version_id, actor="omar")
    assert read_synonyms(db_session) == [["cashpoint", "ATM"]]
    # A version without synonyms restored is one without them (its snapshot is the whole knowledge base).
    plain = import_knowledge_base(
        db_session,
        incoming=read_knowledge_base_files([("kb.json", kb_json(synonyms=[]))]),
        source="none",
        replace=True,
    )
    save_synonyms(db_session, groups=[["plastic", "card"]], actor="omar")
    restore_kb_version(db_session, version_id=plain.kb_version_id, actor="omar")
    assert read_synonyms(db_session) == []


def test_a_csv_export_carries_the_synonyms_and_reads_back(tmp_path: Any) -> None:
    """synonyms.csv: a group a row, a phrase a cell (or several in one cell, split by |); a bad row is refused
    naming the file and line; the CSV export writes it only when there are groups."""
    from core.kb_files import write_knowledge_base

    kb = read_knowledge_base_files([("kb.json", kb_json(synonyms=[["cashpoint", "cash machine", "ATM"]]))])
    written = write_knowledge_base(kb, "csv", tmp_path / "out")
    assert [p.name for p in written] == ["examples.csv", "answers.csv", "synonyms.csv"]
    assert written[2].read_text() == "synonyms\ncashpoint,cash machine,ATM\n"
    back = read_knowledge_base_files([(p.name, p.read_bytes()) for p in written])
    assert back.synonyms == kb.synonyms and back.data_hash() == kb.data_hash()
    piped = read_knowledge_base_files([("synonyms.csv", b"Synonyms\nplastic|card\n\nFX,exchange rate\n")])
    assert piped.synonyms == [["plastic", "card"], ["FX", "exchange rate"]]
    with pytest.raises(
        KnowledgeBaseFormatError,
        match=r"^synonyms.csv:3: field 'synonyms' 'atm' is already in the group of 'cashpoint'",
    ):
        read_knowledge_base_files([("synonyms.csv", b"synonyms\ncashpoint,ATM\natm,cash machine\n")])
    plain = read_knowledge_base_files([("kb.json", kb_json())])
    assert [p.name for p in write_knowledge_base(plain, "csv", tmp_path / "plain")] == [
        "examples.csv",
        "answers.csv",
    ]
