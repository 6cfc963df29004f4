import io
import json
from pathlib import Path
from typing import Any

import pytest

from core.kb_files import (
    KnowledgeBaseFormatError,
    knowledge_base_archive,
    read_knowledge_base,
    read_knowledge_base_files,
    read_labelled_csv,
    validate_complete,
    write_knowledge_base,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def csv_pair(tmp_path: Path) -> list[Path]:
    examples = write(
        tmp_path / "examples.csv",
        'text,label\nWhere is my card?,card_arrival\n"My card, still not here",card_arrival\n'
        "I lost my card,lost_card\n",
    )
    answers = write(
        tmp_path / "answers.csv",
        "label,answer,title,follow_ups\ncard_arrival,Cards arrive in **5 days**.,Card arrival,lost_card\n"
        "lost_card,Freeze it in the app.,,\n",
    )
    return [examples, answers]


def test_reads_examples_and_answers_csv(csv_pair: list[Path]) -> None:
    kb = read_knowledge_base(csv_pair)
    validate_complete(kb)
    assert sorted(kb.intents) == ["card_arrival", "lost_card"]
    arrival = kb.intents["card_arrival"]
    assert arrival.examples == ["Where is my card?", "My card, still not here"]
    assert arrival.answer == "Cards arrive in **5 days**."
    assert arrival.title == "Card arrival"
    assert arrival.follow_ups == ["lost_card"]
    texts, labels = kb.training_pairs()
    assert len(texts) == 3 and labels.count("card_arrival") == 2


@pytest.mark.parametrize("fmt", ["csv", "json", "rasa"])
def test_export_then_import_round_trips(csv_pair: list[Path], tmp_path: Path, fmt: str) -> None:
    kb = read_knowledge_base(csv_pair)
    files = write_knowledge_base(kb, fmt, tmp_path / f"out-{fmt}" / ("kb.json" if fmt == "json" else ""))
    again = read_knowledge_base(files)
    assert again.to_dict() == kb.to_dict()
    assert again.data_hash() == kb.data_hash()


def test_rasa_files_with_entities_and_multiline_answers(tmp_path: Path) -> None:
    nlu = write(
        tmp_path / "nlu.yml",
        'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hey\n    - hello there\n'
        "- intent: book_flight\n  examples: |\n    - fly to [Berlin](city)\n"
        '    - a flight to [Paris]{"entity": "city"} please\n'
        "- synonym: savings\n  examples: |\n    - pink pig\n",
    )
    domain = write(
        tmp_path / "domain.yml",
        'version: "3.1"\nintents:\n- greet\n- book_flight\nresponses:\n  utter_greet:\n  - text: |\n'
        "      Hello!\n      How can I help?\n    buttons:\n    - title: Book\n      payload: /book_flight\n"
        "  utter_book_flight:\n  - text: Where to?\n  utter_goodbye:\n  - text: Bye\n",
    )
    kb = read_knowledge_base([nlu, domain])
    assert kb.intents["book_flight"].examples == ["fly to Berlin", "a flight to Paris please"]
    assert kb.intents["greet"].answer == "Hello!\nHow can I help?"
    assert kb.intents["greet"].follow_ups == ["book_flight"]
    with pytest.raises(KnowledgeBaseFormatError, match="'goodbye' has no example questions"):
        validate_complete(kb)


def test_json_knowledge_base(tmp_path: Path) -> None:
    data = {
        "intents": [
            {"name": "a", "answer": "A.", "examples": ["first", "second"], "follow_ups": ["b"]},
            {"name": "b", "title": "Bee", "answer": "B.", "examples": ["third"]},
        ]
    }
    kb = read_knowledge_base([write(tmp_path / "kb.json", json.dumps(data, indent=2))])
    validate_complete(kb)
    assert kb.intents["b"].title == "Bee" and kb.intents["a"].follow_ups == ["b"]


@pytest.mark.parametrize(
    ("name", "content", "line", "field", "message"),
    [
        ("e.csv", "text,label\nok,a\n,a\n", 3, "text", "is empty"),
        ("e.csv", "text,label\nok,a\nfine,has space\n", 3, "label", "no spaces"),
        ("e.csv", "text,label\nok,a\nx,a,extra\n", 3, None, "has 3 columns"),
        ("e.csv", "sentence,category\nok,a\n", 1, None, "neither 'text,label'"),
        ("e.csv", "", 1, None, "file is empty"),
        ("e.csv", "text,label\n" + "x" * 1001 + ",a\n", 2, "text", "limit 1000"),
        ("a.csv", "label,answer\na,\n", 2, "answer", "is empty"),
        ("a.csv", "label,answer\na,One.\na,Two.\n", 3, "answer", "already has a different answer"),
        (
            "k.json",
            '{"intents": [\n  {"name": "a",\n   "examples": ["x", 5]}\n]}',
            3,
            "intents[0].examples[1]",
            "must be text",
        ),
        ("k.json", '{"intents": [\n  {"answer": "A"}\n]}', 2, "intents[0].name", "is missing"),
        ("k.json", '{"intents": [\n  {"name": "a",,}\n]}', 2, None, "not valid JSON"),
        (
            "nlu.yml",
            "nlu:\n- intent: a\n  examples: |\n    - good\n    bad line\n",
            5,
            "examples",
            "must start with '- '",
        ),
        (
            "nlu.yml",
            "nlu:\n- intent: a\n  examples: |\n    - good\n  - broken: [\n",
            None,
            None,
            "not valid YAML",
        ),
        ("kb.txt", "whatever", None, None, "unknown file type"),
        # Text no database stores (PostgreSQL refuses NUL; a lone surrogate is not UTF-8) or that hides a
        # control character: refused at read time, naming the field.
        ("a.csv", "label,answer\na,One\x00two\n", 2, "answer", "NUL character (U+0000)"),
        ("e.csv", "text,label\nring\x07 me,a\n", 2, "text", "control character (U+0007)"),
        (
            "k.json",
            '{"intents": [{"name": "a", "answer": "x\\ud800"}]}',
            1,
            "intents[0].answer",
            "lone surrogate",
        ),
        ("k.json", '{"intents": [{"name": "a\\u0000b"}]}', 1, "intents[0].name", "NUL character"),
        ("k.json", '{"intents": [{"name": "a", "title": "T\\u001b"}]}', 1, "intents[0].title", "U+001B"),
        # Nested past the parsers' recursion limit: a format error, not a crash.
        ("k.json", '{"intents": ' + "[" * 5000 + "]" * 5000 + "}", None, None, "nested too deeply"),
        ("nlu.yml", "nlu: " + "[" * 5000 + "]" * 5000, None, None, "nested too deeply"),
    ],
)
def test_bad_files_name_file_line_and_field(
    tmp_path: Path, name: str, content: str, line: int | None, field: str | None, message: str
) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(KnowledgeBaseFormatError) as caught:
        read_knowledge_base([path])
    error = caught.value
    assert error.file == str(path)
    if line is not None:
        assert error.line == line
    assert error.field == field
    assert message in error.message
    assert str(path) in str(error)


def test_missing_file_and_incomplete_knowledge_base(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseFormatError, match="file not found"):
        read_knowledge_base([tmp_path / "nope.csv"])
    kb = read_knowledge_base([write(tmp_path / "e.csv", "text,label\nhello,greet\n")])
    with pytest.raises(KnowledgeBaseFormatError, match="'greet' has no answer") as caught:
        validate_complete(kb)
    assert caught.value.line == 2
    kb = read_knowledge_base([write(tmp_path / "e2.csv", "text,label\nnonsense,oos\n")])
    validate_complete(kb)  # out-of-scope examples need no answer


def test_unknown_follow_up_is_refused(tmp_path: Path) -> None:
    kb = read_knowledge_base(
        [
            write(tmp_path / "e.csv", "text,label\nhi,greet\n"),
            write(tmp_path / "a.csv", "label,answer,follow_ups\ngreet,Hello,missing_intent\n"),
        ]
    )
    with pytest.raises(KnowledgeBaseFormatError, match="unknown intent 'missing_intent'"):
        validate_complete(kb)


def test_read_labelled_csv(tmp_path: Path) -> None:
    texts, labels = read_labelled_csv(
        write(tmp_path / "t.csv", "text,label\nHi there,greet\nbye,reverted?\n")
    )
    assert texts == ["Hi there", "bye"] and labels == ["greet", "reverted?"]
    with pytest.raises(KnowledgeBaseFormatError, match="has no rows"):
        read_labelled_csv(write(tmp_path / "empty.csv", "text,label\n"))


@pytest.mark.parametrize("fmt", ["csv", "json", "rasa"])
def test_archives_read_back_from_memory(csv_pair: list[Path], fmt: str) -> None:
    import io
    import zipfile

    kb = read_knowledge_base(csv_pair)
    name, content = knowledge_base_archive(kb, fmt)
    if fmt == "json":
        assert name == "knowledge_base.json"
        files = [(name, content)]
    else:
        assert name == f"knowledge_base_{fmt}.zip"
        archive = zipfile.ZipFile(io.BytesIO(content))
        files = [(n, archive.read(n)) for n in archive.namelist()]
        assert len(files) == 2
    assert read_knowledge_base_files(files).data_hash() == kb.data_hash()


def test_uploaded_bytes_that_are_not_utf8_are_refused_by_name() -> None:
    with pytest.raises(KnowledgeBaseFormatError) as caught:
        read_knowledge_base_files([("answers.csv", "label,answer\nx,caf\u00e9\n".encode("latin-1"))])
    assert caught.value.file == "answers.csv" and caught.value.line == 2
    assert caught.value.message == "not UTF-8 text (byte 0xe9: invalid continuation byte)"
    with pytest.raises(KnowledgeBaseFormatError, match="no files given"):
        read_knowledge_base_files([])


def test_json_export_to_a_new_folder_named_with_a_slash(csv_pair: list[Path], tmp_path: Path) -> None:
    kb = read_knowledge_base(csv_pair)
    (written,) = write_knowledge_base(kb, "json", f"{tmp_path}/new/")
    assert written == tmp_path / "new" / "knowledge_base.json" and written.is_file()
    (plain,) = write_knowledge_base(kb, "json", tmp_path / "kb.json")
    assert plain == tmp_path / "kb.json" and read_knowledge_base([plain]).data_hash() == kb.data_hash()


@pytest.fixture
def noted_pair(tmp_path: Path) -> list[Path]:
    examples = write(
        tmp_path / "noted-examples.csv", "text,label\nWhere is my card?,card_arrival\nPIN?,change_pin\n"
    )
    answers = write(
        tmp_path / "noted-answers.csv",
        "label,answer,title,follow_ups,reviewer_note\n"
        "card_arrival,Cards arrive in 5 days.,Card arrival,,"
        '"Only a card not yet received,\nnot a broken one."\n'
        "change_pin,At any ATM.,,,\n",
    )
    return [examples, answers]


@pytest.mark.parametrize("fmt", ["csv", "json", "rasa"])
def test_reviewer_notes_round_trip_and_change_the_hash_only_when_set(
    noted_pair: list[Path], csv_pair: list[Path], tmp_path: Path, fmt: str
) -> None:
    kb = read_knowledge_base(noted_pair)
    assert kb.intents["card_arrival"].reviewer_note == "Only a card not yet received,\nnot a broken one."
    assert kb.intents["change_pin"].reviewer_note == ""
    # A snapshot leaves an empty note out: knowledge bases without notes keep the hash they had before.
    assert "reviewer_note" not in kb.intents["change_pin"].to_dict()
    plain = read_knowledge_base(csv_pair)
    assert all("reviewer_note" not in i.to_dict() for i in plain.intents.values())
    files = write_knowledge_base(kb, fmt, tmp_path / f"out-{fmt}" / ("kb.json" if fmt == "json" else ""))
    again = read_knowledge_base(files)
    assert again.to_dict() == kb.to_dict()
    assert again.data_hash() == kb.data_hash()
    again.intents["card_arrival"].reviewer_note = ""
    assert again.data_hash() != kb.data_hash()


def test_a_too_long_reviewer_note_is_refused_by_file_line_and_field(tmp_path: Path) -> None:
    long_note = "x" * 2001
    answers = write(
        tmp_path / "answers.csv",
        f"label,answer,reviewer_note\ncard_arrival,Soon.,ok\nlost_card,Freeze.,{long_note}\n",
    )
    with pytest.raises(KnowledgeBaseFormatError) as caught:
        read_knowledge_base([answers])
    assert (caught.value.line, caught.value.field) == (3, "reviewer_note")
    assert caught.value.message == "is 2001 characters, limit 2000"
    kb_json = write(
        tmp_path / "kb.json",
        json.dumps(
            {"intents": [{"name": "a", "answer": "x", "examples": ["y"], "reviewer_note": ["no"]}]}, indent=1
        ),
    )
    with pytest.raises(KnowledgeBaseFormatError) as caught:
        read_knowledge_base([kb_json])
    assert caught.value.field == "intents[0].reviewer_note" and caught.value.line == 9
    assert caught.value.message == "must be a single value"


def test_spreadsheet_headers_as_people_write_them(tmp_path: Path) -> None:
    """An FAQ sheet (question,answer: each answer an intent named after its first question), 'intent' for
    'label', and examples with their intent's answer on the same rows."""
    faq = write(
        tmp_path / "faq.csv",
        'Question,Answer\nWhere is my card?,"It ships in 5 days.\nTrack it in the app."\n'
        'My card has not come,"It ships in 5 days.\nTrack it in the app."\n'
        "How do I close my account?,Settings \\n Close account.\n",
    )
    kb = read_knowledge_base([faq])
    assert {name: (i.examples, i.answer, i.title) for name, i in kb.intents.items()} == {
        "where_is_my_card": (
            ["Where is my card?", "My card has not come"],
            "It ships in 5 days.\nTrack it in the app.",  # a line break in a quoted CSV cell is one
            "Where is my card?",
        ),
        "how_do_i_close_my_account": (
            ["How do I close my account?"],
            "Settings \\n Close account.",  # in CSV these two characters are text (TSV exports mean a break)
            "How do I close my account?",
        ),
    }
    validate_complete(kb)

    kb = read_knowledge_base(
        [
            write(tmp_path / "e.csv", "Question,Intent\nhi there,greet\n"),
            write(tmp_path / "a.csv", "intent,answer\ngreet,Hello!\n"),
        ]
    )
    assert (kb.intents["greet"].examples, kb.intents["greet"].answer) == (["hi there"], "Hello!")

    both = write(tmp_path / "b.csv", "text,label,answer\nhi,greet,Hello!\nhey,greet,\n,bye,Goodbye.\n")
    kb = read_knowledge_base([both])
    assert (kb.intents["greet"].examples, kb.intents["greet"].answer) == (["hi", "hey"], "Hello!")
    assert (kb.intents["bye"].examples, kb.intents["bye"].answer) == ([], "Goodbye.")
    for content, line, field, message in (
        (
            "text,label,answer\nhi,greet,Hello!\nhey,greet,Hi!\n",
            3,
            "answer",
            "already has a different answer",
        ),
        ("text,label,answer\nhi,greet,Hello!\n,greet,\n", 3, "text", "needs a text or an answer"),
        ("utterance,category\nhi,greet\n", 1, None, "'question,answer' (an FAQ: each answer an intent)"),
    ):
        with pytest.raises(KnowledgeBaseFormatError) as caught:
            read_knowledge_base([write(tmp_path / "bad.csv", content)])
        assert (caught.value.line, caught.value.field) == (line, field) and message in caught.value.message


def workbook(sheets: dict[str, list[list[Any]]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_excel_workbooks_read_each_sheet_as_a_csv_file_with_that_header() -> None:
    content = workbook(
        {
            "FAQ": [["Question", "Answer"], ["Where is my card?", "It ships in 5 days."], [None, None]],
            "Examples": [["text", "intent", None], ["card still not here", "where_is_my_card", None]],
            "Answers": [["intent", "answer", "title"], ["refund", "Refunds take 3 days.", "Refunds"]],
            "Empty": [],
            "Refund examples": [["text", "intent"], ["money back please", "refund"], [12, "refund"]],
        }
    )
    kb = read_knowledge_base_files([("help.xlsx", content)])
    assert {n: (i.examples, i.answer, i.title) for n, i in kb.intents.items()} == {
        "where_is_my_card": (
            ["Where is my card?", "card still not here"],
            "It ships in 5 days.",
            "Where is my card?",
        ),
        "refund": (["money back please", "12"], "Refunds take 3 days.", "Refunds"),  # 12, not 12.0
    }
    assert kb.intents["refund"].origin is not None
    validate_complete(kb)

    for sheets, where, message in (
        ({"Answers": [["intent", "answer"], ["refund", None]]}, "help.xlsx[Answers]:2", "answer"),
        (
            {"S": [["text", "intent"], ["hi", "greet", "stray"]]},
            "help.xlsx[S]:2",
            "beyond the header's columns",
        ),
        ({"S": [["what", "ever"], ["hi", "greet"]]}, "help.xlsx[S]:1", "neither 'text,label'"),
        ({"Empty": []}, "help.xlsx", "the workbook's sheets are all empty"),
    ):
        with pytest.raises(KnowledgeBaseFormatError) as caught:
            read_knowledge_base_files([("help.xlsx", workbook(sheets))])
        assert str(caught.value).startswith(where) and message in str(caught.value), str(caught.value)
