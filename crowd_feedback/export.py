"""Exports of what the crowd produced, and of the turn log, for data people and other tools.

- ``items``: every review item (gold check questions excepted) with its status, label, posterior, reasons, the
  member questions and each judgement (reviewer, label, proposal, answer rating, seconds taken); CSV flattens
  the judgements into one column, JSON Lines keeps them as a list.
- ``pairs``: the verified training pairs (question, intent, weight, item).
- ``answers``: ``item,worker,label`` rows, the format ``helploop crowd aggregate`` and the crowd sets read, so
  the judgements can be re-aggregated offline with any method.
- ``turns``: the turn log for analysis elsewhere (a notebook, a BI tool): each turn's question, the bot's
  status, intent, confidence and top candidates, model version and arm, latency, the customer's thumbs and
  "did you mean" pick, the page's metadata, the web page it was written from; JSON Lines adds every candidate
  and each member's scores.

Only redacted text leaves: review items and pairs hold redacted text, and member questions and the turn log's
questions are redacted on the way out (the turn log keeps originals for operators; an export is a file that
travels). Free-text CSV cells that a spreadsheet would run as a formula (starting with
``=``, ``+``, ``-``, ``@``, tab or carriage return) get a leading apostrophe. The file is written beside its
final name and renamed when complete, so a reader never sees half an export.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Judgement, ReviewItem, ReviewItemTurn, Turn, User, VerifiedPair, as_utc
from core.redaction import redact
from crowd_feedback.review import customer_picks

FORMATS: dict[str, tuple[str, ...]] = {
    "items": ("csv", "jsonl"),
    "pairs": ("csv", "jsonl"),
    "answers": ("csv",),
    "turns": ("csv", "jsonl"),
}
ITEM_COLUMNS = (
    "item",
    "status",
    "text",
    "label",
    "confidence",
    "reasons",
    "asked",
    "bot_intent",
    "bot_confidence",
    "customer_pick",
    "judgements",
    "answers",
    "settled_by",
    "created_at",
    "resolved_at",
)
PAIR_COLUMNS = ("text", "intent", "weight", "item", "created_at")
ANSWER_COLUMNS = ("item", "worker", "label")
TURN_COLUMNS = (
    "turn",
    "conversation",
    "created_at",
    "text",
    "status",
    "intent",
    "confidence",
    "candidates",
    "model_version",
    "served_by",
    "latency_ms",
    "helpful",
    "chosen_intent",
    "metadata",
    "kept_from",
    "context",
    "off_topic",
    "read_as",
    "vague",
    "ruled_out",
    "declined_choices",
    "language",
    "asked_again",
    "page",
)
FREE_TEXT = {"text", "answers", "context", "read_as"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportError(ValueError):
    pass


def check_request(what: str, fmt: str) -> None:
    if what not in FORMATS:
        raise ExportError(f"unknown export {what!r}; choose from {', '.join(FORMATS)}")
    if fmt not in FORMATS[what]:
        raise ExportError(f"{what} exports as {' or '.join(FORMATS[what])}, not {fmt!r}")


def _cell(column: str, value: Any) -> Any:
    if column in FREE_TEXT and isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _iso(value: Any) -> str | None:
    """ISO 8601 in UTC with its offset, on SQLite (which hands back naive UTC) as on PostgreSQL."""
    return as_utc(value).isoformat() if value is not None else None


def _batches(session: Session, query: Any, key: Any, batch_size: int) -> Iterator[list[Any]]:
    """The rows of ``query`` (whose first column is ``key``) in key order, ``batch_size`` at a time: each
    batch starts after the last key of the one before, so a table of millions is never read at once."""
    last = 0
    while batch := list(session.execute(query.where(key > last).order_by(key).limit(batch_size)).all()):
        yield batch
        last = batch[-1][0]


def _items(session: Session, batch_size: int) -> Iterator[dict[str, Any]]:
    query = select(ReviewItem.id, ReviewItem).where(ReviewItem.is_gold.is_(False))
    for rows in _batches(session, query, ReviewItem.id, batch_size):
        batch = [item for _, item in rows]
        ids = [item.id for item in batch]
        judgements: dict[int, list[dict[str, Any]]] = {}
        for judgement, username in session.execute(
            select(Judgement, User.username)
            .join(User, User.id == Judgement.reviewer_id)
            .where(Judgement.item_id.in_(ids))
            .order_by(Judgement.id)
        ):
            judgements.setdefault(judgement.item_id, []).append(
                {
                    "reviewer": username,
                    "label": judgement.label,
                    "new_intent_text": judgement.new_intent_text,
                    "answer_ok": judgement.answer_ok,
                    "seconds": judgement.seconds,
                    "needs_context": judgement.needs_context,
                    "at": _iso(judgement.created_at),
                }
            )
        questions: dict[int, list[str]] = {}
        by_id = {item.id: item for item in batch}
        for item_id, text in session.execute(
            select(ReviewItemTurn.item_id, Turn.user_text)
            .join(Turn, Turn.id == ReviewItemTurn.turn_id)
            .where(ReviewItemTurn.item_id.in_(ids))
            .order_by(Turn.id)
        ):
            questions.setdefault(item_id, []).append(by_id[item_id].shown_text(redact(text)))
        picks = customer_picks(session, item_ids=ids)
        for item in batch:
            yield {
                "item": item.id,
                "status": item.status,
                "text": item.text,
                "label": item.resolved_label,
                "confidence": item.resolved_confidence,
                "reasons": list(item.reasons or []),
                "asked": item.cluster_size,
                "bot_intent": item.bot_intent,
                "bot_confidence": item.bot_confidence,
                # what the item's customers clicked after "did you mean" (None: nothing)
                "customer_pick": picks[item.id].intent if item.id in picks else None,
                "settled_by": item.settled_by,
                "created_at": _iso(item.created_at),
                "resolved_at": _iso(item.resolved_at),
                "questions": list(dict.fromkeys(questions.get(item.id, []))),
                # the turns before the shown question, as reviewers saw them (JSON Lines only)
                "context": [dict(turn) for turn in item.context or []],
                "judgements": judgements.get(item.id, []),
            }


def _pairs(session: Session, batch_size: int) -> Iterator[dict[str, Any]]:
    query = select(VerifiedPair.id, VerifiedPair)
    for rows in _batches(session, query, VerifiedPair.id, batch_size):
        for _, pair in rows:
            yield {
                "text": pair.text,
                "intent": pair.intent,
                "weight": pair.weight,
                "item": pair.item_id,
                "created_at": _iso(pair.created_at),
            }


def _answers(session: Session, batch_size: int) -> Iterator[dict[str, Any]]:
    query = (
        select(Judgement.id, Judgement.item_id, User.username, Judgement.label)
        .join(User, User.id == Judgement.reviewer_id)
        .join(ReviewItem, ReviewItem.id == Judgement.item_id)
        .where(ReviewItem.is_gold.is_(False))
    )
    for rows in _batches(session, query, Judgement.id, batch_size):
        for _, item_id, username, label in rows:
            yield {"item": item_id, "worker": username, "label": label}


def _metadata_text(metadata_filter: dict[str, Any] | None) -> str | None:
    """A turn's page metadata as CSV shows it: ``product:cards|region:uk`` (every pair asked for), or pairs
    joined by `` OR `` when any one would do."""
    if not metadata_filter:
        return None
    pairs = [f"{p['key']}:{p['value']}" for p in metadata_filter.get("metadata", [])]
    return (" OR " if metadata_filter.get("logical_operation") == "OR" else "|").join(pairs)


TURN_FIELDS = (
    Turn.id, Turn.conversation_id, Turn.created_at, Turn.user_text, Turn.status, Turn.intent, Turn.confidence,
    Turn.candidates, Turn.member_scores, Turn.model_version, Turn.served_by, Turn.latency_ms, Turn.helpful,
    Turn.chosen_intent, Turn.metadata_filter, Turn.kept_from, Turn.context_text, Turn.off_topic, Turn.read_as,
    Turn.vague, Turn.ruled_out, Turn.declined_at, Turn.language, Turn.asked_again, Turn.page,
)  # fmt: skip


def _turns(session: Session, batch_size: int) -> Iterator[dict[str, Any]]:
    # Columns, not ORM objects: a log of millions is read a batch at a time, not kept in the session.
    for rows in _batches(session, select(*TURN_FIELDS), Turn.id, batch_size):
        for row in rows:
            yield {
                "turn": row.id,
                "conversation": row.conversation_id,
                "created_at": _iso(row.created_at),
                "text": redact(row.user_text),
                "status": row.status,
                "intent": row.intent,
                "confidence": row.confidence,
                "candidates": list(row.candidates or []),
                "member_scores": dict(row.member_scores or {}),
                "model_version": row.model_version,
                "served_by": row.served_by,
                "latency_ms": row.latency_ms,
                "helpful": row.helpful,
                "chosen_intent": row.chosen_intent,
                "metadata_filter": row.metadata_filter,
                "kept_from": row.kept_from,
                # a follow-up: the earlier question it was read with (bot.follow_up), redacted
                "context": redact(row.context_text) if row.context_text else None,
                "off_topic": bool(row.off_topic),  # handed over below the model's familiarity floor
                # the message as the model read it, misspelt words corrected (bot.spelling), redacted
                "read_as": redact(row.read_as) if row.read_as else None,
                "vague": bool(row.vague),  # a keyword message asked about (bot.keywords)
                "ruled_out": row.ruled_out,  # the intent the customer said it is not about (bot.negation)
                # its choices ("did you mean") answered with "none of these" (bot.choice)
                "declined_choices": row.declined_at is not None,
                "language": row.language,  # declined, and written in another language (bot.language)
                # the answer just given, asked for again: times in a row, with this turn (bot.repetition)
                "asked_again": row.asked_again,
                # the widget's page it was written from: origin and path, redacted when logged (core.pages)
                "page": row.page,
            }


def count_rows(session: Session, what: str) -> int:
    if what == "turns":
        return int(session.scalar(select(func.count()).select_from(Turn)) or 0)
    if what == "items":
        query = select(func.count()).select_from(ReviewItem).where(ReviewItem.is_gold.is_(False))
    elif what == "pairs":
        query = select(func.count()).select_from(VerifiedPair)
    else:
        query = (
            select(func.count())
            .select_from(Judgement)
            .join(ReviewItem, ReviewItem.id == Judgement.item_id)
            .where(ReviewItem.is_gold.is_(False))
        )
    return int(session.scalar(query) or 0)


def _csv_row(what: str, row: dict[str, Any]) -> dict[str, Any]:
    if what == "items":
        flat = {c: row[c] for c in ITEM_COLUMNS if c in row}
        flat["reasons"] = ";".join(row["reasons"])
        flat["judgements"] = len(row["judgements"])
        flat["answers"] = ";".join(f"{j['reviewer']}={j['label']}" for j in row["judgements"])
        return {c: _cell(c, flat.get(c)) for c in ITEM_COLUMNS}
    if what == "turns":
        flat = {c: row.get(c) for c in TURN_COLUMNS}
        flat["candidates"] = ";".join(f"{c['intent']}:{c['probability']:.3f}" for c in row["candidates"][:3])
        flat["metadata"] = _metadata_text(row["metadata_filter"])
        return {c: _cell(c, flat[c]) for c in TURN_COLUMNS}
    return {c: _cell(c, v) for c, v in row.items()}


def write_export(
    session: Session,
    *,
    what: str,
    fmt: str,
    out: str | Path,
    report: Callable[[float, str], None] | None = None,
    batch_size: int = 500,
) -> dict[str, Any]:
    """Write export ``what`` as ``fmt`` to ``out`` (replaced only once complete): rows, bytes, sha256."""
    check_request(what, fmt)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    except OSError as exc:
        raise ExportError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    total = count_rows(session, what)
    rows = {"items": _items, "pairs": _pairs, "answers": _answers, "turns": _turns}[what](session, batch_size)
    columns = {
        "items": ITEM_COLUMNS,
        "pairs": PAIR_COLUMNS,
        "answers": ANSWER_COLUMNS,
        "turns": TURN_COLUMNS,
    }[what]
    written = 0
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns) if fmt == "csv" else None
            if writer is not None:
                writer.writeheader()
            for row in rows:
                if writer is not None:
                    writer.writerow(_csv_row(what, row))
                else:
                    stream.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
                if report is not None and written % batch_size == 0:
                    report(min(written / max(total, 1), 0.99), f"{written} of {total} rows")
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    with out.open("rb") as stream:  # in chunks: an export can be larger than memory wants to hold
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    return {"what": what, "format": fmt, "rows": written, "bytes": out.stat().st_size, "sha256": digest}
