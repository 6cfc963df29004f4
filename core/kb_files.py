"""Knowledge-base files: CSV (examples + answers), JSON, Rasa ``nlu.yml`` + ``domain.yml``, and the exports of
Azure AI Language question answering / QnA Maker (TSV or JSON, also zipped as Language Studio downloads them),
a company's FAQ page saved as HTML or written in Markdown (``core.faq_pages``), and its help documents as Word
files or PDFs (``core.documents``).

Readers never touch the database. They return a :class:`KnowledgeBaseData` or raise
:class:`KnowledgeBaseFormatError` naming the file, the line and the field, so an import can refuse a bad
file before anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.documents import DocumentError, read_docx_faq, read_pdf_faq
from core.faq_pages import FaqEntry, FaqPageError, read_html_faq, read_markdown_faq
from core.text import unstorable_text

PageProgress = Callable[[str, int, int], None]  # (file, pages read, pages) while a PDF is read

OUT_OF_SCOPE = "oos"
INTENT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][^\s/\\,|]{0,99}$")
MAX_EXAMPLE_LENGTH = 1000
MAX_ANSWER_LENGTH = 10_000
# A note for reviewers: when this intent is the right label and when it is not (shown in review, never to
# customers).
MAX_NOTE_LENGTH = 2000
MAX_TITLE_LENGTH = 200
MAX_SOURCE_LENGTH = 1000  # an intent's source (core.models.Intent.source): a file name or a web address
# Metadata: key-value pairs per intent (Azure question answering's metadata), which a query can filter on
# ("product: savings" answers only from that product's intents). Keys and values are kept lower case, as
# Azure keeps them, so a filter matches whatever case it is written in.
MAX_METADATA_PAIRS = 20
MAX_METADATA_KEY = 100
MAX_METADATA_VALUE = 500
_METADATA_KEY = re.compile(r"^[^\s:|]+$")
# A zipped upload (Language Studio's export): at most this many files and bytes once unpacked.
MAX_ZIP_MEMBERS = 100
MAX_ZIP_BYTES = 50 * 1024 * 1024
RASA_VERSION = "3.1"
# Rasa entity annotations: [text](entity), [text]{"entity": ...}
_RASA_ENTITY = re.compile(r"\[([^\]]+)\](\([^)]*\)|\{[^}]*\})")


class KnowledgeBaseFormatError(ValueError):
    """A knowledge-base file is malformed; names where, so the user can fix it."""

    def __init__(self, file: str, line: int | None, field: str | None, message: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        where = file if line is None else f"{file}:{line}"
        what = f" field '{field}'" if field else ""
        super().__init__(f"{where}:{what} {message}")


@dataclass
class Origin:
    file: str
    line: int | None


@dataclass
class IntentData:
    name: str
    title: str = ""
    answer: str = ""
    examples: list[str] = field(default_factory=list)
    follow_ups: list[str] = field(default_factory=list)
    reviewer_note: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    origin: Origin | None = None
    answer_origin: Origin | None = None
    # The FAQ page, document or web address it was imported from (core.models.Intent.source); no content.
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "answer": self.answer,
            "examples": list(self.examples),
            "follow_ups": list(self.follow_ups),
        }
        if self.reviewer_note:
            # Only when set: a knowledge base without notes keeps the hash it had before notes existed.
            data["reviewer_note"] = self.reviewer_note
        if self.metadata:  # likewise
            data["metadata"] = dict(sorted(self.metadata.items()))
        if self.source:  # likewise; kept in snapshots and the JSON export, left out of the content hash
            data["source"] = self.source
        return data


@dataclass
class KnowledgeBaseData:
    intents: dict[str, IntentData] = field(default_factory=dict)
    # Groups of phrases that mean the same here ("cashpoint", "ATM"; bot.synonyms), as written; None: the
    # files said nothing of synonyms (a CSV, a Rasa file), so an import keeps those the knowledge base has.
    # Not training data: they apply to the served models at once, and leave data_hash as it is.
    synonyms: list[list[str]] | None = None

    def intent(self, name: str, origin: Origin) -> IntentData:
        if name not in self.intents:
            self.intents[name] = IntentData(name=name, origin=origin)
        return self.intents[name]

    @property
    def example_count(self) -> int:
        return sum(len(i.examples) for i in self.intents.values())

    def training_pairs(self) -> tuple[list[str], list[str]]:
        texts: list[str] = []
        labels: list[str] = []
        for intent in self.intents.values():
            for text in intent.examples:
                texts.append(text)
                labels.append(intent.name)
        return texts, labels

    def answers(self) -> dict[str, str]:
        return {name: i.answer for name, i in self.intents.items()}

    def sources(self) -> list[tuple[str, int]]:
        """The pages, documents and web addresses its intents came from, each with how many, by name."""
        counts = Counter(i.source for i in self.intents.values() if i.source)
        return sorted(counts.items(), key=lambda item: item[0].casefold())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"intents": [self.intents[name].to_dict() for name in sorted(self.intents)]}
        if self.synonyms:  # a knowledge base without any has the form (and snapshots) it always had
            data["synonyms"] = [list(group) for group in self.synonyms]
        return data

    def data_hash(self) -> str:
        canonical = {
            "intents": [
                {
                    **{k: v for k, v in self.intents[n].to_dict().items() if k != "source"},
                    "examples": sorted(self.intents[n].examples),
                }
                for n in sorted(self.intents)
            ]
        }
        blob = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# Control characters a knowledge base has no use for (tab, line feed and carriage return are whitespace).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _refuse_unreadable(file: str, line: int | None, fieldname: str, value: str) -> None:
    """A text no database can store (NUL, a lone surrogate) or holding an invisible control character."""
    problem = unstorable_text(value)
    control = _CONTROL.search(value)
    if problem is None and control is not None:
        problem = f"contains a control character (U+{ord(control.group()):04X})"
    if problem is not None:
        raise KnowledgeBaseFormatError(file, line, fieldname, problem)


def _check_name(file: str, line: int | None, fieldname: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise KnowledgeBaseFormatError(file, line, fieldname, "intent name is missing")
    _refuse_unreadable(file, line, fieldname, value)
    name = value.strip()
    if not INTENT_NAME_PATTERN.match(name):
        raise KnowledgeBaseFormatError(
            file,
            line,
            fieldname,
            f"intent name {name!r} must start with a letter or digit, have no spaces, '/', '\\', ',' or '|' "
            "(at most 100 characters)",
        )
    return name


def check_note(file: str, line: int | None, fieldname: str, value: Any) -> str:
    """A reviewer note: text of at most MAX_NOTE_LENGTH characters; empty is allowed (no note)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise KnowledgeBaseFormatError(file, line, fieldname, f"must be text, not {type(value).__name__}")
    _refuse_unreadable(file, line, fieldname, value)
    note = value.strip().replace("\r\n", "\n")
    if len(note) > MAX_NOTE_LENGTH:
        raise KnowledgeBaseFormatError(
            file, line, fieldname, f"is {len(note)} characters, limit {MAX_NOTE_LENGTH}"
        )
    return note


def check_title(file: str, line: int | None, fieldname: str, value: Any) -> str:
    """An intent's title (what customers see in "did you mean"): one line of at most MAX_TITLE_LENGTH
    characters; empty is allowed (the name, humanised, stands in)."""
    if value is None:
        return ""
    if not isinstance(value, str | int | float):
        raise KnowledgeBaseFormatError(file, line, fieldname, f"must be text, not {type(value).__name__}")
    _refuse_unreadable(file, line, fieldname, str(value))
    title = " ".join(str(value).split())
    if len(title) > MAX_TITLE_LENGTH:
        raise KnowledgeBaseFormatError(
            file, line, fieldname, f"is {len(title)} characters, limit {MAX_TITLE_LENGTH}"
        )
    return title


def check_metadata(file: str, line: int | None, fieldname: str, value: Any) -> dict[str, str]:
    """An intent's metadata: an object of key -> value (or QnA Maker's list of ``{"name", "value"}``), or
    the text form ``key:value|key:value``. Keys have no spaces, ':' or '|'; both are lower-cased."""
    if value in (None, ""):
        return {}
    pairs: list[tuple[Any, Any]]
    if isinstance(value, str):
        pairs = []
        for part in value.split("|"):
            if not part.strip():
                continue
            if ":" not in part:
                raise KnowledgeBaseFormatError(
                    file, line, fieldname, f"{part.strip()!r} is not 'key:value' (pairs are separated by '|')"
                )
            key, _, text = part.partition(":")
            pairs.append((key, text))
    elif isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = []
        for entry in value:
            lowered = {str(k).lower(): v for k, v in entry.items()} if isinstance(entry, dict) else {}
            name = lowered.get("name", lowered.get("key"))
            if name is None or "value" not in lowered:
                raise KnowledgeBaseFormatError(
                    file, line, fieldname, "each entry of a metadata list must have a name and a value"
                )
            pairs.append((name, lowered["value"]))
    else:
        raise KnowledgeBaseFormatError(
            file, line, fieldname, f"must be an object of key: value, not {type(value).__name__}"
        )
    metadata: dict[str, str] = {}
    for raw_key, raw_value in pairs:
        if not isinstance(raw_key, str | int | float) or not isinstance(raw_value, str | int | float | bool):
            raise KnowledgeBaseFormatError(file, line, fieldname, "keys and values must be text")
        key, text = str(raw_key).strip().lower(), " ".join(str(raw_value).split()).lower()
        _refuse_unreadable(file, line, fieldname, key + text)
        if not key or not _METADATA_KEY.match(key) or len(key) > MAX_METADATA_KEY:
            raise KnowledgeBaseFormatError(
                file,
                line,
                fieldname,
                f"key {key!r} must be 1-{MAX_METADATA_KEY} characters without spaces, ':' or '|'",
            )
        if not text or "|" in text or len(text) > MAX_METADATA_VALUE:
            raise KnowledgeBaseFormatError(
                file,
                line,
                fieldname,
                f"the value of {key!r} must be 1-{MAX_METADATA_VALUE} characters without '|'",
            )
        if key in metadata and metadata[key] != text:
            raise KnowledgeBaseFormatError(file, line, fieldname, f"key {key!r} appears twice")
        metadata[key] = text
    if len(metadata) > MAX_METADATA_PAIRS:
        raise KnowledgeBaseFormatError(
            file, line, fieldname, f"has {len(metadata)} keys, limit {MAX_METADATA_PAIRS}"
        )
    return dict(sorted(metadata.items()))


def metadata_text(metadata: dict[str, str], *, between: str = "|", colon: str = ":") -> str:
    """The text form ``key:value|key:value`` (CSV columns, the knowledge list's search); ``between`` and
    ``colon`` give the other forms people read (the edit form's ``key: value`` a line, review's tags)."""
    return between.join(f"{key}{colon}{value}" for key, value in sorted(metadata.items()))


def _check_text(file: str, line: int | None, fieldname: str, value: Any, *, limit: int) -> str:
    if not isinstance(value, str):
        raise KnowledgeBaseFormatError(file, line, fieldname, f"must be text, not {type(value).__name__}")
    _refuse_unreadable(file, line, fieldname, value)
    text = " ".join(value.split()) if fieldname in {"text", "examples"} else value.strip()
    if not text:
        raise KnowledgeBaseFormatError(file, line, fieldname, "is empty")
    if len(text) > limit:
        raise KnowledgeBaseFormatError(file, line, fieldname, f"is {len(text)} characters, limit {limit}")
    return text


# Public names for callers outside this module that validate one field the way an import does.
check_intent_name = _check_name
check_text = _check_text


# Synonyms (bot.synonyms reads them): a group's phrases, its size, and how many groups.
MAX_SYNONYM_PHRASE = 60
MAX_SYNONYM_GROUP = 20
MAX_SYNONYM_GROUPS = 2000


def _phrase_key(phrase: str) -> str:
    """How phrases are compared (as bot.synonyms reads them): lower case, single spaces."""
    return " ".join(phrase.lower().replace("’", "'").split())


def check_synonym_group(file: str, line: int | None, fieldname: str, value: Any) -> list[str]:
    """One group of synonyms: a list of 2 to MAX_SYNONYM_GROUP different phrases (Azure's
    ``{"alterations": [...]}`` too), each at most MAX_SYNONYM_PHRASE characters of words."""
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        if "alterations" not in lowered:
            raise KnowledgeBaseFormatError(file, line, fieldname, "must be a list of phrases ('alterations')")
        value = lowered["alterations"]
    if not isinstance(value, list):
        raise KnowledgeBaseFormatError(
            file, line, fieldname, f"must be a list of phrases, not {type(value).__name__}"
        )
    group: list[str] = []
    for phrase in value:
        if not isinstance(phrase, str):
            raise KnowledgeBaseFormatError(
                file, line, fieldname, f"phrases must be text, not {type(phrase).__name__}"
            )
        _refuse_unreadable(file, line, fieldname, phrase)
        text = " ".join(phrase.split())
        if not text:
            raise KnowledgeBaseFormatError(file, line, fieldname, "holds an empty phrase")
        if len(text) > MAX_SYNONYM_PHRASE:
            raise KnowledgeBaseFormatError(
                file,
                line,
                fieldname,
                f"phrase {text[:40]!r} is {len(text)} characters, limit {MAX_SYNONYM_PHRASE}",
            )
        if not any(c.isalnum() for c in text):
            raise KnowledgeBaseFormatError(file, line, fieldname, f"phrase {text!r} has no letter or digit")
        if _phrase_key(text) not in {_phrase_key(p) for p in group}:
            group.append(text)
    if not 2 <= len(group) <= MAX_SYNONYM_GROUP:
        raise KnowledgeBaseFormatError(
            file, line, fieldname, f"needs 2 to {MAX_SYNONYM_GROUP} different phrases, has {len(group)}"
        )
    return group


def check_synonyms(file: str, groups: list[tuple[int | None, str, Any]]) -> list[list[str]]:
    """The groups (each with its line and field), checked one by one and together: a phrase belongs to one
    group only (it would otherwise be read two ways), and at most MAX_SYNONYM_GROUPS groups."""
    if len(groups) > MAX_SYNONYM_GROUPS:
        raise KnowledgeBaseFormatError(
            file, None, "synonyms", f"has {len(groups)} groups, limit {MAX_SYNONYM_GROUPS}"
        )
    checked: list[list[str]] = []
    seen: dict[str, str] = {}
    for line, fieldname, value in groups:
        group = check_synonym_group(file, line, fieldname, value)
        for phrase in group:
            if _phrase_key(phrase) in seen:
                raise KnowledgeBaseFormatError(
                    file,
                    line,
                    fieldname,
                    f"{phrase!r} is already in the group of {seen[_phrase_key(phrase)]!r}",
                )
        seen.update({_phrase_key(p): group[0] for p in group})
        checked.append(group)
    return checked


def _read_synonyms(file: str, node: yaml.Node, kb: KnowledgeBaseData) -> None:
    """A file's ``synonyms``: added to the groups read so far (from other files), checked with them."""
    groups = [
        (_line(n), f"synonyms[{i}]", _plain(n)) for i, n in enumerate(_sequence(file, node, "synonyms"))
    ]
    before = [(None, "synonyms", g) for g in kb.synonyms or []]
    kb.synonyms = check_synonyms(file, [*before, *groups])


def _add_example(kb: KnowledgeBaseData, intent: str, text: str, origin: Origin) -> None:
    entry = kb.intent(intent, origin)
    if text not in entry.examples:
        entry.examples.append(text)


def _set_answer(kb: KnowledgeBaseData, intent: str, answer: str, origin: Origin) -> None:
    entry = kb.intent(intent, origin)
    if entry.answer and entry.answer != answer and entry.answer_origin is not None:
        first = entry.answer_origin
        raise KnowledgeBaseFormatError(
            origin.file,
            origin.line,
            "answer",
            f"intent {intent!r} already has a different answer from {first.file}:{first.line}",
        )
    entry.answer = answer
    entry.answer_origin = origin


# ---------------------------------------------------------------------------------------------- CSV


def _header(reader: Any, file: str, kind: str) -> list[str]:
    """The first row of a CSV or TSV file, or an error naming the file (empty, or not ``kind`` at all)."""
    try:
        return list(next(reader))
    except StopIteration:
        raise KnowledgeBaseFormatError(file, 1, None, "file is empty") from None
    except csv.Error as exc:
        raise KnowledgeBaseFormatError(file, 1, None, f"not valid {kind}: {exc}") from None


# Other names a spreadsheet's header may give the columns (Rasa and most NLU tools say "intent").
CSV_COLUMN_ALIASES = {"intent": "label", "example": "text", "utterance": "text"}


def _read_csv(path: Path, text: str, kb: KnowledgeBaseData) -> None:
    reader = csv.reader(io.StringIO(text, newline=""))
    _read_table(str(path), reader, _header(reader, str(path), "CSV"), kb, kind="CSV")


def _read_table(file: str, reader: Any, header: list[str], kb: KnowledgeBaseData, *, kind: str) -> None:
    """The rows after ``header`` (``reader``: an iterator of string lists with the current row's number in
    ``line_num``, as csv.reader has): examples, answers, both, or question-and-answer rows."""
    columns = [c.strip().lower() for c in header]
    if columns[:1] == ["synonyms"]:  # synonyms.csv: a group a row, a phrase a cell
        _read_synonym_rows(file, reader, kb, kind=kind)
        return
    columns = [
        CSV_COLUMN_ALIASES.get(c, c) if CSV_COLUMN_ALIASES.get(c, c) not in columns else c for c in columns
    ]
    if "label" in columns and "question" in columns and "text" not in columns:
        columns[columns.index("question")] = "text"  # question,intent: examples
    if "label" in columns and ("text" in columns or "answer" in columns):
        pass  # examples, answers, or both on the same rows (text,label,answer: the answer on any of them)
    elif "question" in columns and "answer" in columns:  # an FAQ sheet: no intent names at all
        _read_qna_rows(file, reader, header, kb, kind=kind)
        return
    else:
        raise KnowledgeBaseFormatError(
            file,
            1,
            None,
            f"header {header!r} is neither 'text,label' (examples), 'label,answer' (answers) nor "
            "'question,answer' (an FAQ: each answer an intent); 'intent' may stand for 'label'",
        )
    index = {name: columns.index(name) for name in columns}
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise KnowledgeBaseFormatError(
                    file, line, None, f"has {len(row)} columns, the header has {len(columns)}"
                )
            origin = Origin(file, line)
            label = _check_name(file, line, "label", row[index["label"]])
            both = "text" in index and "answer" in index  # either cell may be empty, not both
            if both and not row[index["text"]].strip() and not row[index["answer"]].strip():
                raise KnowledgeBaseFormatError(file, line, "text", "needs a text or an answer")
            if "text" in index and (row[index["text"]].strip() or not both):
                text_value = _check_text(file, line, "text", row[index["text"]], limit=MAX_EXAMPLE_LENGTH)
                _add_example(kb, label, text_value, origin)
            if "answer" in index and (row[index["answer"]].strip() or not both):
                answer = _check_text(file, line, "answer", row[index["answer"]], limit=MAX_ANSWER_LENGTH)
                _set_answer(kb, label, answer, origin)
                entry = kb.intent(label, origin)
                if "title" in index and row[index["title"]].strip():
                    entry.title = check_title(file, line, "title", row[index["title"]])
                if "follow_ups" in index and row[index["follow_ups"]].strip():
                    entry.follow_ups = [
                        _check_name(file, line, "follow_ups", part)
                        for part in row[index["follow_ups"]].split("|")
                        if part.strip()
                    ]
                if "reviewer_note" in index and row[index["reviewer_note"]].strip():
                    entry.reviewer_note = check_note(file, line, "reviewer_note", row[index["reviewer_note"]])
                if "metadata" in index and row[index["metadata"]].strip():
                    entry.metadata = check_metadata(file, line, "metadata", row[index["metadata"]])
    except csv.Error as exc:
        raise KnowledgeBaseFormatError(file, reader.line_num, None, f"not valid {kind}: {exc}") from None


def _read_synonym_rows(file: str, reader: Any, kb: KnowledgeBaseData, *, kind: str) -> None:
    """A ``synonyms`` table: each row one group, each cell a phrase ("cashpoint", "cash machine", "ATM"; a
    cell may also hold several separated by ``|``), added to the groups read so far and checked with them."""
    groups: list[tuple[int | None, str, Any]] = [(None, "synonyms", g) for g in kb.synonyms or []]
    try:
        for row in reader:
            phrases = [p.strip() for cell in row for p in cell.split("|") if p.strip()]
            if phrases:
                groups.append((reader.line_num, "synonyms", phrases))
    except csv.Error as exc:
        raise KnowledgeBaseFormatError(file, reader.line_num, None, f"not valid {kind}: {exc}") from None
    kb.synonyms = check_synonyms(file, groups)


# --------------------------------------------------------------------------------------------- Excel

MAX_SHEET_ROWS = 200_000  # rows read from one worksheet (a compressed workbook can unpack to far more)


class _SheetRows:
    """A worksheet's rows as strings, numbered as the sheet numbers them (``line_num``, as csv.reader's), each
    as wide as the header: cells past it must be empty."""

    def __init__(self, file: str, sheet: Any) -> None:
        self.file = file
        self.line_num = 0
        self.width: int | None = None
        self._rows = iter(sheet.iter_rows(values_only=True))

    def __iter__(self) -> _SheetRows:
        return self

    def __next__(self) -> list[str]:
        values = [_cell_text(v) for v in next(self._rows)]
        self.line_num += 1
        if self.line_num > MAX_SHEET_ROWS:
            raise KnowledgeBaseFormatError(self.file, self.line_num, None, f"more than {MAX_SHEET_ROWS} rows")
        if self.width is None:  # the header: its trailing empty cells are no columns
            while values and not values[-1].strip():
                values.pop()
            self.width = len(values)
            return values
        if any(v.strip() for v in values[self.width :]):
            raise KnowledgeBaseFormatError(
                self.file, self.line_num, None, "has values beyond the header's columns"
            )
        return (values + [""] * self.width)[: self.width]


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 12 typed in a cell, not "12.0"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _read_xlsx(path: Path, content: bytes, kb: KnowledgeBaseData) -> None:
    """Every worksheet that has rows, read as a CSV file with the same header would be (a workbook may hold
    examples on one sheet and answers on another); errors name the sheet: ``faq.xlsx[Answers]:12``."""
    import openpyxl

    file = str(path)
    try:
        book = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zip, XML and its own errors for a file that is no workbook
        raise KnowledgeBaseFormatError(file, None, None, f"not a readable Excel workbook ({exc})") from None
    try:
        read = 0
        for sheet in book.worksheets:
            name = f"{file}[{sheet.title}]"
            reader = _SheetRows(name, sheet)
            header = next(reader, None)
            if not header:
                continue  # an empty sheet
            _read_table(name, reader, header, kb, kind="Excel sheet")
            read += 1
    finally:
        book.close()
    if not read:
        raise KnowledgeBaseFormatError(file, None, None, "the workbook's sheets are all empty")


# ------------------------------------------------------------------------------- JSON / YAML nodes


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _plain(node: yaml.Node) -> Any:
    """A node as plain Python values (a mapping or list as dict and list)."""
    return yaml.safe_load(yaml.serialize(node))


def _scalar(file: str, node: yaml.Node, fieldname: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise KnowledgeBaseFormatError(file, _line(node), fieldname, "must be a single value")
    return _plain(node) if node.tag != "tag:yaml.org,2002:str" else node.value


def _mapping(file: str, node: yaml.Node, fieldname: str | None) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise KnowledgeBaseFormatError(file, _line(node), fieldname, "must be an object / mapping")
    result: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        result[str(key_node.value)] = value_node
    return result


def _sequence(file: str, node: yaml.Node, fieldname: str) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        raise KnowledgeBaseFormatError(file, _line(node), fieldname, "must be a list")
    return list(node.value)


def _texts(file: str, node: yaml.Node, where: str, key: str) -> list[tuple[str, int]]:
    """The questions of a list field (``where``.``key``), each checked as an example and with its line."""
    return [
        (
            _check_text(
                file, _line(n), f"{where}.{key}[{i}]", _scalar(file, n, key), limit=MAX_EXAMPLE_LENGTH
            ),
            _line(n),
        )
        for i, n in enumerate(_sequence(file, node, key))
    ]


TOO_DEEP = "nested too deeply to be a knowledge base"  # past the JSON or YAML parser's recursion


def _compose(path: Path, text: str, *, is_json: bool) -> yaml.Node:
    file = str(path)
    if is_json:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise KnowledgeBaseFormatError(file, exc.lineno, None, f"not valid JSON: {exc.msg}") from None
        except RecursionError:
            raise KnowledgeBaseFormatError(file, None, None, TOO_DEEP) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise KnowledgeBaseFormatError(file, line, None, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise KnowledgeBaseFormatError(file, None, None, TOO_DEEP) from None
    if node is None:
        raise KnowledgeBaseFormatError(file, 1, None, "file is empty")
    return node


def _read_helploop_json(path: Path, root: yaml.Node, kb: KnowledgeBaseData) -> None:
    file = str(path)
    top = _mapping(file, root, None)
    if "intents" not in top:
        raise KnowledgeBaseFormatError(file, _line(root), "intents", "is missing")
    for number, item in enumerate(_sequence(file, top["intents"], "intents")):
        where = f"intents[{number}]"
        entry = _mapping(file, item, where)
        if "name" not in entry:
            raise KnowledgeBaseFormatError(file, _line(item), f"{where}.name", "is missing")
        name_node = entry["name"]
        name = _check_name(file, _line(name_node), f"{where}.name", _scalar(file, name_node, "name"))
        origin = Origin(file, _line(item))
        intent = kb.intent(name, origin)
        if "answer" in entry:
            node = entry["answer"]
            answer = _check_text(
                file, _line(node), f"{where}.answer", _scalar(file, node, "answer"), limit=MAX_ANSWER_LENGTH
            )
            _set_answer(kb, name, answer, Origin(file, _line(node)))
        if "title" in entry:
            node = entry["title"]
            intent.title = check_title(file, _line(node), f"{where}.title", _scalar(file, node, "title"))
        for text, line in _texts(file, entry.get("examples", _EMPTY_SEQ), where, "examples"):
            _add_example(kb, name, text, Origin(file, line))
        if "follow_ups" in entry:
            intent.follow_ups = [
                _check_name(file, _line(n), f"{where}.follow_ups", _scalar(file, n, "follow_ups"))
                for n in _sequence(file, entry["follow_ups"], f"{where}.follow_ups")
            ]
        if "reviewer_note" in entry:
            node = entry["reviewer_note"]
            intent.reviewer_note = check_note(
                file, _line(node), f"{where}.reviewer_note", _scalar(file, node, f"{where}.reviewer_note")
            )
        if "metadata" in entry:
            node = entry["metadata"]
            intent.metadata = check_metadata(file, _line(node), f"{where}.metadata", _plain(node))
        if "source" in entry:
            node = entry["source"]
            source = _scalar(file, node, f"{where}.source")
            if source is not None:
                intent.source = _check_text(
                    file, _line(node), f"{where}.source", source, limit=MAX_SOURCE_LENGTH
                )
    if "synonyms" in top:  # [["cashpoint", "ATM"], ...] (or Azure's [{"alterations": [...]}, ...])
        _read_synonyms(file, top["synonyms"], kb)


_EMPTY_SEQ = yaml.SequenceNode(tag="tag:yaml.org,2002:seq", value=[])
_READABLE = {".csv", ".tsv", ".json", ".yml", ".yaml", ".html", ".htm", ".md", ".markdown", ".docx", ".pdf"}
IMPORT_SUFFIXES = _READABLE | {".xlsx", ".zip"}  # what an import reads, by the file name's suffix


def _read_rasa_nlu(path: Path, top: dict[str, yaml.Node], kb: KnowledgeBaseData) -> None:
    file = str(path)
    for item in _sequence(file, top["nlu"], "nlu"):
        entry = _mapping(file, item, "nlu")
        if "intent" not in entry:
            continue  # synonyms, regexes and lookup tables carry no training examples for us
        name_node = entry["intent"]
        name = _check_name(file, _line(name_node), "intent", _scalar(file, name_node, "intent"))
        kb.intent(name, Origin(file, _line(item)))
        if "examples" not in entry:
            raise KnowledgeBaseFormatError(file, _line(item), "examples", f"intent {name!r} has no examples")
        node = entry["examples"]
        block = _scalar(file, node, "examples")
        if not isinstance(block, str):
            raise KnowledgeBaseFormatError(file, _line(node), "examples", "must be a '- ' list in a block")
        # A literal block ("|") starts on the line after its indicator.
        first_line = _line(node) + (1 if getattr(node, "style", None) in {"|", ">"} else 0)
        for offset, raw in enumerate(block.splitlines()):
            if not raw.strip():
                continue
            stripped = raw.strip()
            if not stripped.startswith("- "):
                raise KnowledgeBaseFormatError(
                    file, first_line + offset, "examples", "each example must start with '- '"
                )
            text = _RASA_ENTITY.sub(r"\1", stripped[2:])
            text = _check_text(file, first_line + offset, "examples", text, limit=MAX_EXAMPLE_LENGTH)
            _add_example(kb, name, text, Origin(file, first_line + offset))


def _read_rasa_domain(path: Path, top: dict[str, yaml.Node], kb: KnowledgeBaseData) -> None:
    file = str(path)
    responses = _mapping(file, top["responses"], "responses") if "responses" in top else {}
    for key, node in responses.items():
        if not key.startswith("utter_"):
            continue
        name = _check_name(file, _line(node), "responses", key[len("utter_") :])
        variants = _sequence(file, node, key)
        if not variants:
            raise KnowledgeBaseFormatError(file, _line(node), key, "has no response")
        first = _mapping(file, variants[0], key)
        if "text" not in first:
            raise KnowledgeBaseFormatError(file, _line(variants[0]), f"{key}.text", "is missing")
        answer_node = first["text"]
        answer = _check_text(
            file,
            _line(answer_node),
            f"{key}.text",
            _scalar(file, answer_node, "text"),
            limit=MAX_ANSWER_LENGTH,
        )
        origin = Origin(file, _line(answer_node))
        _set_answer(kb, name, answer, origin)
        follow_ups: list[str] = []
        if "buttons" in first:
            for button in _sequence(file, first["buttons"], f"{key}.buttons"):
                payload_node = _mapping(file, button, f"{key}.buttons").get("payload")
                payload = str(_scalar(file, payload_node, "payload")) if payload_node is not None else ""
                if payload.startswith("/"):
                    follow_ups.append(_check_name(file, _line(button), f"{key}.buttons", payload[1:]))
        if follow_ups:
            kb.intent(name, origin).follow_ups = follow_ups
        if "metadata" in first:
            metadata = _mapping(file, first["metadata"], f"{key}.metadata")
            title_node = metadata.get("helploop_title")
            if title_node is not None:
                kb.intent(name, origin).title = check_title(
                    file,
                    _line(title_node),
                    f"{key}.metadata.helploop_title",
                    _scalar(file, title_node, "title"),
                )
            tags_node = metadata.get("helploop_metadata")
            if tags_node is not None:
                kb.intent(name, origin).metadata = check_metadata(
                    file,
                    _line(tags_node),
                    f"{key}.metadata.helploop_metadata",
                    _plain(tags_node),
                )
            note_node = metadata.get("helploop_reviewer_note")
            if note_node is not None:
                kb.intent(name, origin).reviewer_note = check_note(
                    file,
                    _line(note_node),
                    f"{key}.metadata.helploop_reviewer_note",
                    _scalar(file, note_node, "helploop_reviewer_note"),
                )


# ------------------------------------------------------------ Azure question answering / QnA Maker
# One question-and-answer pair (QnA) becomes one intent: its questions are the examples, its answer the
# answer, its follow-up prompts the follow-ups. Azure has no intent names, so the name comes from the first
# question ("How do I reset my PIN?" -> how_do_i_reset_my_pin), with the QnA id added when two QnAs would
# share one; the title is the text a follow-up prompt shows for the QnA, or else its first question. Its
# metadata becomes the intent's metadata (queries filter on it). Sources and active-learning suggestions have
# no HelpLoop counterpart and are left out.

_AZURE_LISTS = ("qnalist", "qnadocuments", "qnas")


@dataclass
class _Qna:
    key: str
    origin: Origin
    answer: str = ""
    answer_origin: Origin | None = None
    questions: list[str] = field(default_factory=list)
    prompts: list[tuple[int, str, str, Origin]] = field(default_factory=list)  # order, target, text
    metadata: dict[str, str] = field(default_factory=dict)


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    name = ""
    for word in re.findall(r"[a-z0-9]+", ascii_text):
        if name and len(name) + len(word) + 1 > 60:
            break
        name = f"{name}_{word}" if name else word[:60]
    return name or "qna"


def _short_title(text: str) -> str:
    if len(text) <= MAX_TITLE_LENGTH:
        return text
    return text[: MAX_TITLE_LENGTH - 1].rsplit(" ", 1)[0] + "…"


def _azure_prompts(file: str, line: int, fieldname: str, prompts: Any) -> list[tuple[int, str, str, Origin]]:
    if prompts in (None, ""):
        return []
    if not isinstance(prompts, list):
        raise KnowledgeBaseFormatError(file, line, fieldname, "must be a list of prompts")
    result = []
    for position, prompt in enumerate(prompts):
        where = f"{fieldname}[{position}]"
        if not isinstance(prompt, dict):
            raise KnowledgeBaseFormatError(file, line, where, "must be an object")
        lowered = {str(k).lower(): v for k, v in prompt.items()}
        target = lowered.get("qnaid")
        if target in (None, "", 0) and lowered.get("qna"):
            raise KnowledgeBaseFormatError(
                file, line, where, "a follow-up written inline ('qna') is not supported: export the project"
            )
        if target in (None, ""):
            raise KnowledgeBaseFormatError(file, line, f"{where}.qnaId", "is missing")
        order = lowered.get("displayorder", position)
        text = str(lowered.get("displaytext") or "").strip()
        result.append(
            (
                int(order) if str(order).lstrip("-").isdigit() else position,
                str(target),
                text,
                Origin(file, line),
            )
        )
    return result


def _add_qnas(file: str, qnas: dict[str, _Qna], kb: KnowledgeBaseData) -> None:
    """The QnAs of one file as intents (all checked before any is added)."""

    def short(key: str) -> str:  # a QnA id as a name suffix: itself when short, else a digest of it
        return (
            key if re.fullmatch(r"[A-Za-z0-9]{1,12}", key) else hashlib.sha256(key.encode()).hexdigest()[:8]
        )

    base = {key: _slug(qna.questions[0]) if qna.questions else "qna" for key, qna in qnas.items()}
    counts = Counter(base.values())
    names = {
        key: f"{slug}_{short(key)}" if counts[slug] > 1 or slug in kb.intents else slug
        for key, slug in base.items()
    }
    titles: dict[str, str] = {}
    for qna in qnas.values():
        for _, target, text, origin in sorted(qna.prompts, key=lambda p: p[0]):
            if target not in qnas:
                raise KnowledgeBaseFormatError(
                    origin.file,
                    origin.line,
                    "prompts",
                    f"a follow-up prompt points to QnA {target!r}, which is not in the file",
                )
            if text:
                titles.setdefault(target, check_title(origin.file, origin.line, "prompts.displayText", text))
    for key, qna in qnas.items():
        name = _check_name(file, qna.origin.line, "id", names[key])
        if not qna.questions:
            raise KnowledgeBaseFormatError(file, qna.origin.line, "questions", f"QnA {key!r} has no question")
        intent = kb.intent(name, qna.origin)
        for question in qna.questions:
            _add_example(kb, name, question, qna.origin)
        _set_answer(kb, name, qna.answer, qna.answer_origin or qna.origin)
        intent.title = titles.get(key) or _short_title(qna.questions[0])
        follow_ups = [names[target] for _, target, _, _ in sorted(qna.prompts, key=lambda p: p[0])]
        intent.follow_ups = [f for f in dict.fromkeys(follow_ups) if f != name]
        intent.metadata = dict(qna.metadata)


def _read_azure_tsv(path: Path, text: str, kb: KnowledgeBaseData) -> None:
    """A QnA Maker / Language Studio TSV export: one row per question; the rows of one QnA share its QnaId
    (or, in the older two-column files without one, its answer)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    _read_qna_rows(str(path), reader, _header(reader, str(path), "TSV"), kb, kind="TSV")


def _read_qna_rows(file: str, reader: Any, header: list[str], kb: KnowledgeBaseData, *, kind: str) -> None:
    """Question-and-answer rows (a QnA Maker TSV export, or an FAQ spreadsheet saved as CSV): each answer (or
    each QnaId) becomes an intent, its rows' questions the examples."""
    columns = [c.strip().lower() for c in header]
    if "question" not in columns or "answer" not in columns:
        raise KnowledgeBaseFormatError(
            file,
            1,
            None,
            f"header {header!r} has no Question and Answer columns (a QnA Maker / question "
            "answering TSV export)",
        )
    index = {name: columns.index(name) for name in columns}
    qnas: dict[str, _Qna] = {}
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            row = row + [""] * (len(columns) - len(row))
            origin = Origin(file, line)
            raw_answer = row[index["answer"]]
            if kind == "TSV":  # TSV cannot hold a line break: the exports write one as the two characters \n
                raw_answer = raw_answer.replace("\\n", "\n")
            answer = _check_text(file, line, "Answer", raw_answer, limit=MAX_ANSWER_LENGTH)
            key = row[index["qnaid"]].strip() if "qnaid" in index else ""
            key = key or f"answer:{answer}"
            qna = qnas.setdefault(key, _Qna(key=key, origin=origin))
            if qna.answer and qna.answer != answer:
                raise KnowledgeBaseFormatError(
                    file, line, "Answer", f"QnA {key} has a different answer on line {qna.origin.line}"
                )
            qna.answer, qna.answer_origin = answer, qna.answer_origin or origin
            question = _check_text(file, line, "examples", row[index["question"]], limit=MAX_EXAMPLE_LENGTH)
            if question not in qna.questions:
                qna.questions.append(question)
            raw_prompts = row[index["prompts"]].strip() if "prompts" in index else ""
            if raw_prompts and not qna.prompts:
                try:
                    parsed = json.loads(raw_prompts)
                except json.JSONDecodeError as exc:
                    raise KnowledgeBaseFormatError(
                        file, line, "Prompts", f"not valid JSON: {exc.msg}"
                    ) from None
                qna.prompts = _azure_prompts(file, line, "Prompts", parsed)
            raw_metadata = row[index["metadata"]].strip() if "metadata" in index else ""
            if raw_metadata:
                metadata = check_metadata(file, line, "Metadata", raw_metadata)
                if qna.metadata and qna.metadata != metadata:
                    raise KnowledgeBaseFormatError(
                        file, line, "Metadata", f"QnA {key} has other metadata on line {qna.origin.line}"
                    )
                qna.metadata = metadata
    except csv.Error as exc:
        raise KnowledgeBaseFormatError(file, reader.line_num, None, f"not valid {kind}: {exc}") from None
    _add_qnas(file, qnas, kb)


def _read_faq_page(path: Path, text: str, kb: KnowledgeBaseData, *, markdown: bool, source: str) -> None:
    """An FAQ page saved as HTML, or an FAQ in Markdown (core.faq_pages): each question an intent with the
    question as its example, as an FAQ sheet's rows are."""
    file = str(path)
    try:
        entries = read_markdown_faq(text) if markdown else read_html_faq(text)
    except FaqPageError as exc:
        raise KnowledgeBaseFormatError(file, exc.line, exc.field_name, exc.message) from None
    _add_faq_entries(file, entries, kb, lambda line: (file, line), source=source)


def _add_faq_entries(
    file: str,
    entries: list[FaqEntry],
    kb: KnowledgeBaseData,
    where: Callable[[int | None], tuple[str, int | None]],
    *,
    source: str,
) -> None:
    """Each question an intent, named and titled after it, the question its one example, from ``source``
    (importing the same source again removes the questions it no longer has: core.knowledge_base);
    ``where`` turns an entry's ``line`` into the (file, line) its errors name."""
    before = set(kb.intents)
    qnas: dict[str, _Qna] = {}
    for position, entry in enumerate(entries):
        name, line = where(entry.line)
        origin = Origin(name, line)
        question = _check_text(name, line, "question", entry.question, limit=MAX_EXAMPLE_LENGTH)
        answer = _check_text(name, line, "answer", entry.answer, limit=MAX_ANSWER_LENGTH)
        qnas[str(position + 1)] = _Qna(str(position + 1), origin, answer, origin, [question])
    _add_qnas(file, qnas, kb)
    for name in set(kb.intents) - before:
        kb.intents[name].source = source[:MAX_SOURCE_LENGTH]


DOCUMENTS = {".docx": "paragraph", ".pdf": "page"}


def _read_document(
    path: Path, content: bytes, kb: KnowledgeBaseData, progress: PageProgress | None, *, source: str
) -> None:
    """A Word document or a PDF (core.documents), read as an FAQ page is; errors name the paragraph or the
    page of the question: ``help.docx[paragraph 12]``, ``manual.pdf[page 3]``."""
    file = str(path)
    unit = DOCUMENTS[path.suffix.lower()]

    def where(number: int | None) -> tuple[str, int | None]:
        return (file if number is None else f"{file}[{unit} {number}]", None)

    try:
        if unit == "page":
            entries = read_pdf_faq(
                content, progress=None if progress is None else lambda done, of: progress(file, done, of)
            )
        else:
            entries = read_docx_faq(content)
    except DocumentError as exc:
        raise KnowledgeBaseFormatError(file, None, None, str(exc)) from None
    except FaqPageError as exc:
        raise KnowledgeBaseFormatError(where(exc.line)[0], None, exc.field_name, exc.message) from None
    _add_faq_entries(file, entries, kb, where, source=source)


def _azure_synonyms(top: dict[str, yaml.Node], file: str) -> yaml.Node | None:
    """A question answering project export's ``assets.synonyms`` (keys in any case), or None."""
    lowered = {k.lower(): v for k, v in top.items()}
    if "synonyms" in lowered:
        return lowered["synonyms"]
    if "assets" in lowered:
        return _azure_synonyms(_mapping(file, lowered["assets"], "assets"), file)
    return None


def _azure_list(top: dict[str, yaml.Node], file: str) -> yaml.Node | None:
    lowered = {k.lower(): v for k, v in top.items()}
    for key in _AZURE_LISTS:
        if key in lowered:
            return lowered[key]
    if "assets" in lowered:
        return _azure_list(_mapping(file, lowered["assets"], "assets"), file)
    return None


def _read_azure_json(path: Path, qna_list: yaml.Node, kb: KnowledgeBaseData) -> None:
    """QnA Maker's downloaded knowledge base (``qnaList`` / ``qnaDocuments``) or a question answering project
    export (``assets.qnas``); keys in any case."""
    file = str(path)
    qnas: dict[str, _Qna] = {}
    for position, item in enumerate(_sequence(file, qna_list, "qnas")):
        where = f"qnas[{position}]"
        entry = {k.lower(): v for k, v in _mapping(file, item, where).items()}
        origin = Origin(file, _line(item))
        key = str(_scalar(file, entry["id"], f"{where}.id")) if "id" in entry else str(position + 1)
        if key in qnas:
            raise KnowledgeBaseFormatError(file, _line(item), f"{where}.id", f"QnA id {key} appears twice")
        if "answer" not in entry:
            raise KnowledgeBaseFormatError(file, _line(item), f"{where}.answer", "is missing")
        node = entry["answer"]
        answer = _check_text(
            file, _line(node), f"{where}.answer", _scalar(file, node, "answer"), limit=MAX_ANSWER_LENGTH
        )
        qna = _Qna(key=key, origin=origin, answer=answer, answer_origin=Origin(file, _line(node)))
        for text, _ in _texts(file, entry.get("questions", _EMPTY_SEQ), where, "questions"):
            if text not in qna.questions:
                qna.questions.append(text)
        dialog = entry.get("dialog") or entry.get("context")
        if dialog is not None:
            prompts = {k.lower(): v for k, v in _mapping(file, dialog, f"{where}.dialog").items()}.get(
                "prompts"
            )
            if prompts is not None:
                value = _plain(prompts)
                qna.prompts = _azure_prompts(file, _line(prompts), f"{where}.dialog.prompts", value)
        if "metadata" in entry:
            node = entry["metadata"]
            qna.metadata = check_metadata(file, _line(node), f"{where}.metadata", _plain(node))
        qnas[key] = qna
    _add_qnas(file, qnas, kb)


def _unzip(name: str, content: bytes) -> list[tuple[str, bytes]]:
    """The knowledge-base files inside a zip (Language Studio's export), each named ``zip/member``."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile:
        raise KnowledgeBaseFormatError(name, None, None, "not a valid zip file") from None
    with archive:
        members = [
            m
            for m in archive.infolist()
            if not m.is_dir()
            and Path(m.filename).suffix.lower() in _READABLE
            and "__MACOSX" not in m.filename
        ]
        if not members:
            raise KnowledgeBaseFormatError(
                name, None, None, "the zip holds no .tsv, .csv, .json, .yml, .html, .md, .docx or .pdf file"
            )
        if len(members) > MAX_ZIP_MEMBERS or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise KnowledgeBaseFormatError(
                name,
                None,
                None,
                f"the zip holds more than {MAX_ZIP_MEMBERS} files or "
                f"{MAX_ZIP_BYTES // (1024 * 1024)} MB: unpack it and import the files",
            )
        return [(f"{name}/{m.filename}", archive.read(m)) for m in sorted(members, key=lambda m: m.filename)]


def read_knowledge_base(
    paths: Sequence[str | Path], *, progress: PageProgress | None = None
) -> KnowledgeBaseData:
    """Read and merge knowledge-base files. Raises on the first problem, before anything is stored."""
    if not paths:
        raise KnowledgeBaseFormatError("<arguments>", None, None, "no files given")
    files: list[tuple[str, bytes]] = []
    for raw_path in paths:
        path = Path(raw_path)
        if not path.is_file():
            raise KnowledgeBaseFormatError(str(path), None, None, "file not found")
        files.append((str(path), path.read_bytes()))
    return read_knowledge_base_files(files, progress=progress)


def read_knowledge_base_files(
    files: Sequence[tuple[str, bytes]],
    *,
    progress: PageProgress | None = None,
    sources: dict[str, str] | None = None,
) -> KnowledgeBaseData:
    """Read and merge knowledge-base files given as (name, content) pairs, e.g. uploads: the name's suffix
    says the format, as for files on disk. Raises on the first problem, naming the file, line and field.
    ``progress(file, pages_read, pages)`` follows the reading of a PDF, the one slow format. The intents of
    an FAQ page or a document have the file's name as their source, or ``sources[name]`` (a web address)."""
    kb = KnowledgeBaseData()
    if not files:
        raise KnowledgeBaseFormatError("<arguments>", None, None, "no files given")
    unpacked: list[tuple[str, bytes]] = []
    for name, content in files:
        unpacked += _unzip(name, content) if Path(name).suffix.lower() == ".zip" else [(name, content)]
    for name, content in unpacked:
        path = Path(name)
        file = str(path)
        if path.suffix.lower() == ".xlsx":
            _read_xlsx(path, content, kb)
            continue
        source = (sources or {}).get(name) or path.name
        if path.suffix.lower() in DOCUMENTS:
            _read_document(path, content, kb, progress, source=source)
            continue
        if path.suffix.lower() == ".doc":
            raise KnowledgeBaseFormatError(
                file, None, None, "Word 97-2003 documents (.doc) are not read: save the document as .docx"
            )
        if path.suffix.lower() == ".xls":
            raise KnowledgeBaseFormatError(
                file,
                None,
                None,
                "Excel 97-2003 files (.xls) are not read: save the workbook as .xlsx (or CSV)",
            )
        text = utf8_text(file, content)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            _read_csv(path, text, kb)
        elif suffix == ".tsv":
            _read_azure_tsv(path, text, kb)
        elif suffix in {".html", ".htm", ".md", ".markdown"}:
            _read_faq_page(path, text, kb, markdown=suffix in {".md", ".markdown"}, source=source)
        elif suffix in {".json", ".yml", ".yaml"}:
            root = _compose(path, text, is_json=suffix == ".json")
            top = _mapping(file, root, None)
            azure = _azure_list(top, file)
            if azure is not None:
                _read_azure_json(path, azure, kb)
                alterations = _azure_synonyms(top, file)
                if alterations is not None:
                    _read_synonyms(file, alterations, kb)
            elif "nlu" in top:
                _read_rasa_nlu(path, top, kb)
            elif "responses" in top:
                _read_rasa_domain(path, top, kb)
            elif (
                "intents" in top
                and isinstance(top["intents"], yaml.SequenceNode)
                and all(isinstance(n, yaml.MappingNode) for n in top["intents"].value)
            ):
                _read_helploop_json(path, root, kb)
            elif "intents" in top:
                continue  # a Rasa domain without responses: intent names only, nothing to import
            else:
                raise KnowledgeBaseFormatError(
                    file,
                    1,
                    None,
                    "expected a HelpLoop knowledge base ('intents'), Rasa NLU ('nlu'), a Rasa domain "
                    "('responses') or an Azure question answering export ('qnaList', 'assets')",
                )
        elif suffix in {".xlsx", ".xls"}:
            raise KnowledgeBaseFormatError(
                file,
                None,
                None,
                "Excel files are not read: export the project as TSV instead (or save as CSV)",
            )
        else:
            raise KnowledgeBaseFormatError(
                file,
                None,
                None,
                f"unknown file type {suffix or '(none)'}: use .csv, .xlsx, .json, .yml, .yaml, .tsv, .zip, "
                ".html (an FAQ page), .md, or a help document as .docx or .pdf",
            )
    return kb


def validate_complete(kb: KnowledgeBaseData) -> None:
    """A knowledge base the engine can be trained on: every intent has examples and an answer."""
    if not kb.intents:
        raise KnowledgeBaseFormatError("<knowledge base>", None, None, "has no intents")
    for intent in kb.intents.values():
        origin = intent.origin or Origin("<knowledge base>", None)
        if not intent.examples:
            raise KnowledgeBaseFormatError(
                origin.file, origin.line, "examples", f"intent {intent.name!r} has no example questions"
            )
        if not intent.answer and intent.name != OUT_OF_SCOPE:
            raise KnowledgeBaseFormatError(
                origin.file, origin.line, "answer", f"intent {intent.name!r} has no answer"
            )
        for follow_up in intent.follow_ups:
            if follow_up not in kb.intents:
                raise KnowledgeBaseFormatError(
                    origin.file,
                    origin.line,
                    "follow_ups",
                    f"intent {intent.name!r} suggests unknown intent {follow_up!r}",
                )


# ------------------------------------------------------------------------------------------ export


class _LiteralDumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str_presenter)


def write_knowledge_base(kb: KnowledgeBaseData, fmt: str, out: str | Path) -> list[Path]:
    """Write ``kb`` as csv (directory), json (file) or rasa (directory); returns the written files."""
    out_path = Path(out)
    intents = [kb.intents[name] for name in sorted(kb.intents)]
    if fmt == "json":
        # A directory (existing, or named with a trailing slash) gets knowledge_base.json inside it.
        folder = out_path.is_dir() or str(out).endswith(("/", os.sep))
        target = out_path / "knowledge_base.json" if folder else out_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(kb.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return [target]
    out_path.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        examples_path, answers_path = out_path / "examples.csv", out_path / "answers.csv"
        with examples_path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for intent in intents:
                writer.writerows([text, intent.name] for text in intent.examples)
        with answers_path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["label", "answer", "title", "follow_ups", "reviewer_note", "metadata"])
            for intent in intents:
                if intent.answer:
                    writer.writerow(
                        [
                            intent.name,
                            intent.answer,
                            intent.title,
                            "|".join(intent.follow_ups),
                            intent.reviewer_note,
                            metadata_text(intent.metadata),
                        ]
                    )
        if not kb.synonyms:
            return [examples_path, answers_path]
        synonyms_path = out_path / "synonyms.csv"  # a group a row, a phrase a cell
        with synonyms_path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["synonyms"])
            writer.writerows(kb.synonyms)
        return [examples_path, answers_path, synonyms_path]
    if fmt == "rasa":
        nlu = {
            "version": RASA_VERSION,
            "nlu": [
                {"intent": i.name, "examples": "".join(f"- {text}\n" for text in i.examples)} for i in intents
            ],
        }
        responses: dict[str, list[dict[str, Any]]] = {}
        for intent in intents:
            if not intent.answer:
                continue
            response: dict[str, Any] = {"text": intent.answer}
            # Rasa keeps response metadata as-is: the title, reviewer note and metadata survive a round trip.
            metadata: dict[str, Any] = {
                "helploop_title": intent.title,
                "helploop_reviewer_note": intent.reviewer_note,
                "helploop_metadata": dict(intent.metadata),
            }
            if any(metadata.values()):
                response["metadata"] = {key: value for key, value in metadata.items() if value}
            if intent.follow_ups:
                response["buttons"] = [
                    {"title": kb.intents[f].title or f, "payload": f"/{f}"}
                    for f in intent.follow_ups
                    if f in kb.intents
                ]
            responses[f"utter_{intent.name}"] = [response]
        domain = {"version": RASA_VERSION, "intents": [i.name for i in intents], "responses": responses}
        nlu_path, domain_path = out_path / "nlu.yml", out_path / "domain.yml"
        for target, data in ((nlu_path, nlu), (domain_path, domain)):
            target.write_text(
                yaml.dump(data, Dumper=_LiteralDumper, sort_keys=False, allow_unicode=True, width=1000),
                encoding="utf-8",
            )
        return [nlu_path, domain_path]
    raise ValueError(f"unknown export format {fmt!r}: use csv, json or rasa")


def knowledge_base_archive(kb: KnowledgeBaseData, fmt: str) -> tuple[str, bytes]:
    """``kb`` as one downloadable file: (file name, content). JSON is one file; CSV and Rasa are two files
    each, so they come zipped (the names inside are the ones ``write_knowledge_base`` writes)."""
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory(prefix="helploop-kb-") as folder:
        written = write_knowledge_base(kb, fmt, folder)
        if fmt == "json":
            return "knowledge_base.json", written[0].read_bytes()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in written:
                archive.write(path, path.name)
        return f"knowledge_base_{fmt}.zip", buffer.getvalue()


def utf8_text(file: str, content: bytes) -> str:
    """The file's text; a KnowledgeBaseFormatError naming the line and the byte where it stops being UTF-8
    (a file saved as Latin-1 or Windows-1252 by a spreadsheet, say)."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if content.startswith(b"\xef\xbb\xbf") else 0)
        line = content[:start].count(b"\n") + 1
        raise KnowledgeBaseFormatError(
            file, line, None, f"not UTF-8 text (byte 0x{content[start]:02x}: {exc.reason})"
        ) from None


def read_labelled_csv(path: str | Path) -> tuple[list[str], list[str]]:
    """Read a ``text,label`` CSV (evaluation data), with the same checks as an import."""
    kb_rows: list[tuple[str, str]] = []
    file = str(path)
    p = Path(path)
    if not p.is_file():
        raise KnowledgeBaseFormatError(file, None, None, "file not found")
    with io.StringIO(utf8_text(file, p.read_bytes()), newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if "text" not in fields or "label" not in fields:
                raise KnowledgeBaseFormatError(file, 1, None, "header must contain 'text' and 'label'")
            reader.fieldnames = fields
            for row in reader:
                line = reader.line_num
                text = _check_text(file, line, "text", row.get("text") or "", limit=MAX_EXAMPLE_LENGTH)
                label = _check_name(file, line, "label", row.get("label") or "")
                kb_rows.append((text, label))
        except csv.Error as exc:  # a field past the csv module's limit (128 KiB)
            raise KnowledgeBaseFormatError(  # the underlying reader's line: DictReader's lags a row
                file, max(reader.reader.line_num, 1), None, f"not valid CSV: {exc}"
            ) from None
    if not kb_rows:
        raise KnowledgeBaseFormatError(file, None, None, "has no rows")
    return [t for t, _ in kb_rows], [label for _, label in kb_rows]
