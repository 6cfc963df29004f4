"""Importing Azure AI Language question answering / QnA Maker exports (TSV, JSON, zipped)."""

import io
import json
import zipfile
from pathlib import Path

import pytest

from core.kb_files import (
    KnowledgeBaseFormatError,
    read_knowledge_base,
    read_knowledge_base_files,
    validate_complete,
)

COLUMNS = "Question Answer Source Metadata SuggestedQuestions IsContextOnly Prompts QnaId SourceDisplayName"
HEADER = "\t".join(COLUMNS.split()) + "\n"
PROMPTS = json.dumps(
    [
        {"displayOrder": 1, "qnaId": 3, "displayText": "Card is lost"},
        {"displayOrder": 0, "qnaId": 2, "displayText": "Card not arrived"},
    ]
)


def row(question: str, answer: str, qna_id: int, *, prompts: str = "[]", metadata: str = "") -> str:
    context_only = "false" if prompts != "[]" else "true"
    cells = [question, answer, "Editorial", metadata, "[]", context_only, prompts, str(qna_id), "Editorial"]
    return "\t".join(cells) + "\n"


PROBLEM = "What happened to it?\\nPick one below."
ARRIVAL = "Cards arrive within **5 working days**."
# As Language Studio exports a multi-turn project: one row per question, a line break in an answer as \n.
MULTI_TURN_TSV = (
    HEADER
    + row("My card has a problem", PROBLEM, 1, prompts=PROMPTS, metadata="area:cards")
    + row("Something is wrong with my card", PROBLEM, 1, prompts=PROMPTS, metadata="area:cards")
    + row("Where is my new card?", ARRIVAL, 2)
    + row("My card has not arrived", ARRIVAL, 2)
    + row("I lost my card", "Freeze it in the app, then order a new one.", 3)
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_multi_turn_tsv_export_becomes_intents_with_follow_ups(tmp_path: Path) -> None:
    kb = read_knowledge_base([write(tmp_path / "Editorial.tsv", MULTI_TURN_TSV)])
    validate_complete(kb)
    assert sorted(kb.intents) == ["i_lost_my_card", "my_card_has_a_problem", "where_is_my_new_card"]
    problem = kb.intents["my_card_has_a_problem"]
    assert problem.examples == ["My card has a problem", "Something is wrong with my card"]
    assert problem.answer == "What happened to it?\nPick one below."
    assert problem.title == "My card has a problem"  # no prompt points to it: its first question
    # Follow-ups in the prompts' display order; their titles are the prompts' texts.
    assert problem.follow_ups == ["where_is_my_new_card", "i_lost_my_card"]
    arrival = kb.intents["where_is_my_new_card"]
    assert arrival.title == "Card not arrived" and kb.intents["i_lost_my_card"].title == "Card is lost"
    assert arrival.examples == ["Where is my new card?", "My card has not arrived"]
    assert arrival.answer == "Cards arrive within **5 working days**."
    assert arrival.follow_ups == []


def test_an_older_tsv_without_ids_groups_questions_by_answer(tmp_path: Path) -> None:
    text = (
        "Question\tAnswer\tSource\tMetadata\n"
        "How do I reset my PIN?\tUse the app: Card > PIN.\tfaq.html\t\n"
        "Forgot my PIN\tUse the app: Card > PIN.\tfaq.html\t\n"
        "What are your fees?\tSee the fees page.\tfaq.html\ttopic:fees\n"
    )
    kb = read_knowledge_base([write(tmp_path / "kb.tsv", text)])
    assert {name: i.examples for name, i in kb.intents.items()} == {
        "how_do_i_reset_my_pin": ["How do I reset my PIN?", "Forgot my PIN"],
        "what_are_your_fees": ["What are your fees?"],
    }


def test_qna_maker_json_and_a_language_project_export(tmp_path: Path) -> None:
    qna_maker = {
        "qnaDocuments": [
            {
                "id": 7,
                "answer": "Top up by bank transfer or card.",
                "source": "Editorial",
                "questions": ["How do I top up?", "Add money"],
                "metadata": [{"name": "area", "value": "topup"}],
                "context": {
                    "isContextOnly": False,
                    "prompts": [{"displayOrder": 0, "qnaId": 8, "displayText": "Fees"}],
                },
            },
            {
                "id": 8,
                "answer": "Top-ups are free.",
                "questions": ["Top-up fees"],
                "context": {"prompts": []},
            },
        ]
    }
    kb = read_knowledge_base([write(tmp_path / "qnamaker.json", json.dumps(qna_maker, indent=2))])
    assert kb.intents["how_do_i_top_up"].follow_ups == ["top_up_fees"]
    assert kb.intents["top_up_fees"].title == "Fees"
    language = {
        "api-version": "2021-10-01",
        "Metadata": {"ProjectName": "bank", "Language": "en"},
        "Assets": {
            "Qnas": [
                {
                    "Id": 1,
                    "Answer": "We support EUR, GBP and USD.",
                    "Questions": ["Which currencies?", "Do you have EUR?"],
                    "Dialog": {"IsContextOnly": False, "Prompts": []},
                    "ActiveLearningSuggestions": [],
                }
            ],
            "Synonyms": [],
        },
    }
    kb = read_knowledge_base([write(tmp_path / "project.json", json.dumps(language, indent=2))])
    validate_complete(kb)
    assert kb.intents["which_currencies"].examples == ["Which currencies?", "Do you have EUR?"]
    assert kb.intents["which_currencies"].answer == "We support EUR, GBP and USD."


def test_a_zipped_export_is_read_as_its_files() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bank/Editorial.tsv", MULTI_TURN_TSV)
        archive.writestr("bank/readme.txt", "not a knowledge base")
    kb = read_knowledge_base_files([("bank.zip", buffer.getvalue())])
    assert len(kb.intents) == 3 and kb.intents["i_lost_my_card"].origin is not None
    assert kb.intents["i_lost_my_card"].origin.file == "bank.zip/bank/Editorial.tsv"
    with pytest.raises(KnowledgeBaseFormatError, match="not a valid zip"):
        read_knowledge_base_files([("bank.zip", b"PK nonsense")])
    with pytest.raises(KnowledgeBaseFormatError, match="bank.xlsx: not a readable Excel workbook"):
        read_knowledge_base_files([("bank.xlsx", b"PK\x03\x04\xff\xfe binary")])
    with pytest.raises(KnowledgeBaseFormatError, match="save the workbook as .xlsx"):
        read_knowledge_base_files([("bank.xls", b"\xd0\xcf\x11\xe0 old binary")])


def test_two_qnas_with_the_same_first_question_get_their_ids(tmp_path: Path) -> None:
    text = (
        HEADER
        + "Opening hours?\tNine to five.\t\t\t\t\t\t11\t\nOpening hours?\tTen to four.\t\t\t\t\t\t12\t\n"
    )
    kb = read_knowledge_base([write(tmp_path / "kb.tsv", text)])
    assert sorted(kb.intents) == ["opening_hours_11", "opening_hours_12"]
    # Without ids (grouped by answer) the suffix is a short digest, and the name stays within the limit.
    long_question = "what are the opening hours of the branch on the high street near the station please"
    text = f"Question\tAnswer\n{long_question}\tNine to five.\n{long_question}\tTen to four.\n"
    kb = read_knowledge_base([write(tmp_path / "old.tsv", text)])
    names = sorted(kb.intents)
    assert len(names) == 2 and all(n.startswith("what_are_the_opening_hours") and len(n) <= 70 for n in names)
    assert [kb.intents[n].examples for n in names] == [[long_question], [long_question]]


@pytest.mark.parametrize(
    ("content", "line", "field", "message"),
    [
        (HEADER + 'Lost card\tFreeze it.\t\t\t\t\t[{"qnaId": 99}]\t1\t\n', 2, "prompts", "QnA '99'"),
        (HEADER + 'Lost card\tFreeze it.\t\t\t\t\t[{"qnaId": \t1\t\n', 2, "Prompts", "not valid JSON"),
        (
            HEADER + "Lost card\tFreeze it.\t\t\t\t\t\t1\t\nLost it\tCall us.\t\t\t\t\t\t1\t\n",
            3,
            "Answer",
            "different answer",
        ),
        (HEADER + "\tFreeze it.\t\t\t\t\t\t1\t\n", 2, "examples", "is empty"),
        ("Q\tA\nLost card\tFreeze it.\n", 1, None, "no Question and Answer columns"),
    ],
)
def test_bad_tsv_names_file_line_and_field(
    tmp_path: Path, content: str, line: int, field: str | None, message: str
) -> None:
    path = write(tmp_path / "kb.tsv", content)
    with pytest.raises(KnowledgeBaseFormatError) as caught:
        read_knowledge_base([path])
    assert (caught.value.file, caught.value.line, caught.value.field) == (str(path), line, field)
    assert message in caught.value.message


def test_a_title_over_the_limit_is_refused_in_every_format(tmp_path: Path) -> None:
    long_title = "x" * 201
    path = write(
        tmp_path / "kb.json",
        json.dumps(
            {"intents": [{"name": "a", "title": long_title, "answer": "b", "examples": ["c"]}]}, indent=1
        ),
    )
    with pytest.raises(KnowledgeBaseFormatError, match="201 characters, limit 200") as caught:
        read_knowledge_base([path])
    assert caught.value.field == "intents[0].title" and caught.value.line == 5
    answers = write(tmp_path / "answers.csv", f"label,answer,title\na,b,{long_title}\n")
    with pytest.raises(KnowledgeBaseFormatError, match="limit 200") as caught:
        read_knowledge_base([answers])
    assert (caught.value.line, caught.value.field) == (2, "title")
    # A long first question becomes a shortened title, not an error.
    question = "why " * 80
    kb = read_knowledge_base([write(tmp_path / "kb.tsv", HEADER + f"{question}\tBecause.\t\t\t\t\t\t1\t\n")])
    (intent,) = kb.intents.values()
    assert len(intent.title) <= 200 and intent.title.endswith("…")
