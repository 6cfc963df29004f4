"""Knowledge-base domain functions: session first, keyword-only arguments; the caller owns the transaction."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload

from core.events import emit
from core.kb_checks import question_key
from core.kb_files import (
    MAX_ANSWER_LENGTH,
    MAX_EXAMPLE_LENGTH,
    OUT_OF_SCOPE,
    IntentData,
    KnowledgeBaseData,
    KnowledgeBaseFormatError,
    Origin,
    check_intent_name,
    check_metadata,
    check_note,
    check_text,
    read_knowledge_base_files,
    validate_complete,
)
from core.models import (
    ExampleQuestion,
    ImportUpload,
    Intent,
    Job,
    KeptExample,
    KnowledgeBaseVersion,
    SynonymGroup,
)


@dataclass
class ImportResult:
    kb_version_id: int
    data_hash: str
    intents_created: int
    intents_updated: int
    examples_added: int
    examples_removed: int
    intent_count: int
    example_count: int
    # Intents of a page or document imported again that it no longer has: removed, or kept because they
    # hold more than the page gave them (more examples) or another intent offers them as a follow-up.
    gone_removed: list[str] = field(default_factory=list)
    gone_kept: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """What an import did, as the admin API and an import job report it."""
        return {
            "version": self.kb_version_id,
            "data_hash": self.data_hash,
            "intents_created": self.intents_created,
            "intents_updated": self.intents_updated,
            "examples_added": self.examples_added,
            "examples_removed": self.examples_removed,
            "intents": self.intent_count,
            "examples": self.example_count,
            "gone_removed": list(self.gone_removed),
            "gone_kept": list(self.gone_kept),
        }

    def gone_text(self) -> str:
        """A sentence on the questions a page or document no longer has, or ""."""

        def names(found: list[str]) -> str:
            return ", ".join(found[:10]) + (" …" if len(found) > 10 else "")

        parts = []
        if self.gone_removed:
            parts.append(
                f"removed {_count(len(self.gone_removed), 'intent')} its page or document no longer has "
                f"({names(self.gone_removed)})"
            )
        if self.gone_kept:
            parts.append(
                f"kept {_count(len(self.gone_kept), 'intent')} its page or document no longer has, with more "
                f"examples than it gave or offered as a follow-up: delete by hand if the question is gone "
                f"({names(self.gone_kept)})"
            )
        text = "; ".join(parts)
        return f"{text[:1].upper()}{text[1:]}." if text else ""


def load_knowledge_base(session: Session) -> KnowledgeBaseData:
    kb = KnowledgeBaseData()
    rows = session.scalars(select(Intent).options(selectinload(Intent.examples)).order_by(Intent.name))
    for row in rows:
        kb.intents[row.name] = IntentData(
            name=row.name,
            title=row.title,
            answer=row.answer,
            examples=[e.text for e in row.examples],
            follow_ups=list(row.follow_ups or []),
            reviewer_note=row.reviewer_note or "",
            metadata=dict(row.metadata_ or {}),
            origin=Origin("<database>", None),
            source=row.source,
        )
    kb.synonyms = read_synonyms(session)
    return kb


def read_synonyms(session: Session) -> list[list[str]]:
    """The knowledge base's synonym groups, as written, in order."""
    return [list(g) for g in session.scalars(select(SynonymGroup.phrases).order_by(SynonymGroup.id))]


def _merge(
    existing: KnowledgeBaseData, incoming: KnowledgeBaseData
) -> tuple[KnowledgeBaseData, list[str], list[str]]:
    """``incoming`` merged into ``existing``, and the intents of its pages and documents that they no longer
    have: removed, and kept (see :func:`_gone`)."""
    merged = KnowledgeBaseData(
        {
            name: IntentData(
                name=i.name,
                title=i.title,
                answer=i.answer,
                examples=list(i.examples),
                follow_ups=list(i.follow_ups),
                reviewer_note=i.reviewer_note,
                metadata=dict(i.metadata),
                origin=i.origin,
                source=i.source,
            )
            for name, i in existing.intents.items()
        }
    )
    # a group of the incoming files replaces the groups it shares a phrase with
    incoming_phrases = {p.lower() for group in incoming.synonyms or [] for p in group}
    merged.synonyms = [
        *(g for g in existing.synonyms or [] if not {p.lower() for p in g} & incoming_phrases),
        *(incoming.synonyms or []),
    ]
    for name, new in incoming.intents.items():
        if name not in merged.intents:
            merged.intents[name] = new
            continue
        target = merged.intents[name]
        target.origin = new.origin
        if target.source is None and new.source and set(target.examples) <= set(new.examples):
            target.source = new.source  # made by this page before sources were kept, and still only that
        if new.answer:
            target.answer = new.answer
        if new.title:
            target.title = new.title
        if new.follow_ups:
            target.follow_ups = list(new.follow_ups)
        if new.reviewer_note:
            target.reviewer_note = new.reviewer_note
        if new.metadata:
            target.metadata = dict(new.metadata)
        for text in new.examples:
            if text not in target.examples:
                target.examples.append(text)
    removed, kept = _gone(merged, incoming)
    return merged, removed, kept


def _gone(merged: KnowledgeBaseData, incoming: KnowledgeBaseData) -> tuple[list[str], list[str]]:
    """A page or document imported again is the page as it is now: its intents that it no longer has are
    removed from ``merged`` (Azure question answering's refresh of a source), unless they hold more than it
    gave them (an example added by hand or by an import) or another intent offers them as a follow-up;
    those are kept and named, for a person to decide. Intents written by hand or imported from knowledge-base
    files have no source and are never touched."""
    sources = {i.source for i in incoming.intents.values() if i.source}
    gone = [n for n, i in merged.intents.items() if i.source in sources and n not in incoming.intents]
    followed = {f for n, i in merged.intents.items() if n not in gone for f in i.follow_ups}
    removed = [n for n in gone if len(merged.intents[n].examples) <= 1 and n not in followed]
    for name in removed:
        del merged.intents[name]
    return removed, [n for n in gone if n not in removed]


def upload_source(*, by: str, names: Sequence[str], replace: bool) -> str:
    """How a version made from uploaded files names its source: "imported by omar: help.pdf, faq.csv"."""
    return f"{'replaced' if replace else 'imported'} by {by}: " + ", ".join(names)


def import_knowledge_base(
    session: Session, *, incoming: KnowledgeBaseData, source: str, replace: bool = False
) -> ImportResult:
    """Merge (or with ``replace`` swap in) a knowledge base and record a new version.

    Validates the whole result first; on any error nothing has been written (the caller rolls back anyway).
    """
    merged, gone_removed, gone_kept = (
        (incoming, [], []) if replace else _merge(load_knowledge_base(session), incoming)
    )
    validate_complete(merged)
    if merged.synonyms is None:  # files without synonyms (Rasa, CSV without synonyms.csv) leave them be
        merged.synonyms, synonyms_changed = read_synonyms(session), False
    else:
        synonyms_changed = _write_synonyms(session, merged.synonyms)

    rows = {row.name: row for row in session.scalars(select(Intent).options(selectinload(Intent.examples)))}
    created = updated = added = removed = 0
    deleted = len(set(rows) - set(merged.intents))
    for name in sorted(set(rows) - set(merged.intents)):
        removed += len(rows[name].examples)
        session.delete(rows[name])
    for name, data in merged.intents.items():
        row = rows.get(name)
        if row is None:
            row = Intent(
                name=name,
                title=data.title,
                answer=data.answer,
                follow_ups=list(data.follow_ups),
                reviewer_note=data.reviewer_note,
                metadata_=dict(data.metadata),
                source=data.source,
            )
            session.add(row)
            created += 1
        elif (
            row.title,
            row.answer,
            list(row.follow_ups or []),
            row.reviewer_note or "",
            dict(row.metadata_ or {}),
        ) != (data.title, data.answer, data.follow_ups, data.reviewer_note, data.metadata):
            row.title, row.answer, row.follow_ups = data.title, data.answer, list(data.follow_ups)
            row.reviewer_note = data.reviewer_note
            row.metadata_ = dict(data.metadata)
            updated += 1
        if row.source != data.source:
            row.source = data.source  # where it came from: no content, so no update counted
        wanted = list(dict.fromkeys(data.examples))
        have = {e.text: e for e in row.examples}
        for text, example in have.items():
            if text not in wanted:
                row.examples.remove(example)
                removed += 1
        for text in wanted:
            if text not in have:
                row.examples.append(ExampleQuestion(text=text))
                added += 1
    session.flush()
    version = KnowledgeBaseVersion(
        data_hash=merged.data_hash(),
        source=source[:500],
        intent_count=len(merged.intents),
        example_count=merged.example_count,
        snapshot=merged.to_dict(),
    )
    session.add(version)
    session.flush()
    changes = [
        f"{_count(created, 'intent')} added" if created else "",
        f"{_count(deleted, 'intent')} removed" if deleted else "",
        f"{_count(updated, 'intent')} with a new title, answer, follow-ups, reviewer note or metadata"
        if updated
        else "",
        f"{_count(added, 'example')} added" if added else "",
        f"{_count(removed, 'example')} removed" if removed else "",
        f"synonyms now {_count(len(merged.synonyms), 'group')}" if synonyms_changed else "",
    ]
    if any(changes):
        emit(
            session,
            "knowledge.changed",
            f"Knowledge base version {version.id} ({source[:200]}): "
            f"{', '.join(c for c in changes if c)}; now {_count(version.intent_count, 'intent')}, "
            f"{_count(version.example_count, 'example')}.",
            path=f"/operator/knowledge/versions/{version.id}",
            data={
                "version": version.id,
                "source": version.source,
                "intents_added": created,
                "intents_removed": deleted,
                "intents_updated": updated,
                "examples_added": added,
                "examples_removed": removed,
                "synonym_groups": len(merged.synonyms),
                "intents": version.intent_count,
                "examples": version.example_count,
            },
        )
    return ImportResult(
        kb_version_id=version.id,
        data_hash=version.data_hash,
        intents_created=created,
        intents_updated=updated,
        examples_added=added,
        examples_removed=removed,
        intent_count=len(merged.intents),
        example_count=merged.example_count,
        gone_removed=gone_removed,
        gone_kept=gone_kept,
    )


def _write_synonyms(session: Session, groups: list[list[str]]) -> bool:
    """Make the stored synonym groups ``groups`` (checked by the caller); True when they changed."""
    if read_synonyms(session) == groups:
        return False
    session.execute(delete(SynonymGroup))
    session.add_all(SynonymGroup(phrases=list(group)) for group in groups)
    session.flush()
    return True


def save_synonyms(session: Session, *, groups: list[list[str]], actor: str) -> ImportResult:
    """Replace the knowledge base's synonym groups (already checked: core.kb_files.check_synonyms) and record
    the knowledge base as a new version: the served models read them at once, without retraining."""
    kb = load_knowledge_base(session)
    kb.synonyms = groups
    return import_knowledge_base(session, incoming=kb, source=f"synonyms edited by {actor}", replace=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def latest_kb_version(session: Session) -> KnowledgeBaseVersion | None:
    return session.scalars(
        select(KnowledgeBaseVersion).order_by(KnowledgeBaseVersion.id.desc()).limit(1)
    ).first()


def count_intents(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Intent)) or 0)


# ------------------------------------------------------------------------------- editing, one intent


@dataclass(frozen=True)
class AnswerBook:
    """What the bot says for each intent (title, answer, follow-ups) in the newest knowledge-base version: the
    serving processes apply it to the loaded models, so an edited answer is live without retraining."""

    kb_version_id: int | None
    intents: dict[str, tuple[str, str, tuple[str, ...]]]
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # intents that have any
    synonyms: tuple[tuple[str, ...], ...] = ()  # the synonym groups (bot.synonyms), as written


def read_answer_book(session: Session, *, known_version: int | None = None) -> AnswerBook | None:
    """The answer book, or None when the newest knowledge-base version is still ``known_version`` (one cheap
    query: serving processes poll this)."""
    version = session.scalar(select(func.max(KnowledgeBaseVersion.id)))
    if version is not None and version == known_version:
        return None
    rows = session.execute(
        select(Intent.name, Intent.title, Intent.answer, Intent.follow_ups, Intent.metadata_)
    ).all()
    return AnswerBook(
        version,
        {
            name: (title or "", answer or "", tuple(follow_ups or ()))
            for name, title, answer, follow_ups, _ in rows
        },
        {name: dict(metadata) for name, _, _, _, metadata in rows if metadata},
        tuple(tuple(group) for group in read_synonyms(session)),
    )


def intent_revision(intent: IntentData) -> str:
    """A short digest of one intent's content: an edit form carries it, so that a save made on top of someone
    else's newer save is refused instead of silently undoing it."""
    blob = json.dumps(intent.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def save_intent(
    session: Session,
    *,
    name: str,
    title: str,
    answer: str,
    examples: Sequence[str],
    follow_ups: Sequence[str] = (),
    reviewer_note: str = "",
    metadata: str | dict[str, str] | None = None,
    actor: str,
    create: bool,
    revision: str | None = None,
) -> ImportResult:
    """Create (``create``) or replace one intent and record a new knowledge-base version. Every field is
    checked as an import checks it; raises KnowledgeBaseFormatError (nothing written) naming the field.
    ``revision`` (an edit): the ``intent_revision`` the editor started from; refused if the intent changed
    since. ``metadata`` None keeps the intent's metadata; as text, ``key:value|key:value`` or a pair a
    line."""
    where = f"<intent {name}>"
    name = check_intent_name(where, None, "name", name)
    kb = load_knowledge_base(session)
    if create and name in kb.intents:
        raise KnowledgeBaseFormatError(where, None, "name", f"intent {name!r} already exists")
    if not create and name not in kb.intents:
        raise KnowledgeBaseFormatError(where, None, "name", f"intent {name!r} does not exist")
    if not create and revision is not None and revision != intent_revision(kb.intents[name]):
        raise KnowledgeBaseFormatError(
            where,
            None,
            "revision",
            f"intent {name!r} was changed by someone else since you opened it: reload it and apply your "
            "change again",
        )
    title = " ".join((title or "").split())
    if len(title) > 200:
        raise KnowledgeBaseFormatError(where, None, "title", f"is {len(title)} characters, limit 200")
    if answer.strip() or name != OUT_OF_SCOPE:
        answer = check_text(where, None, "answer", answer, limit=MAX_ANSWER_LENGTH)
    cleaned = [
        check_text(where, None, "examples", text, limit=MAX_EXAMPLE_LENGTH)
        for text in examples
        if text.strip()
    ]
    if not cleaned:
        raise KnowledgeBaseFormatError(where, None, "examples", f"intent {name!r} needs an example question")
    follow = [f.strip() for f in follow_ups if f.strip()]
    if name in follow:
        raise KnowledgeBaseFormatError(where, None, "follow_ups", "an intent cannot suggest itself")
    kb.intents[name] = IntentData(
        name=name,
        title=title,
        answer=answer.strip(),
        examples=list(dict.fromkeys(cleaned)),
        follow_ups=list(dict.fromkeys(follow)),
        reviewer_note=check_note(where, None, "reviewer_note", reviewer_note),
        metadata=(
            (kb.intents[name].metadata if name in kb.intents else {})
            if metadata is None
            else check_metadata(
                where,
                None,
                "metadata",
                "|".join(metadata.splitlines()) if isinstance(metadata, str) else metadata,
            )
        ),
        origin=Origin(where, None),
        source=kb.intents[name].source if name in kb.intents else None,
    )
    verb = "created" if create else "edited"
    return import_knowledge_base(
        session, incoming=kb, source=f"intent {name} {verb} by {actor}", replace=True
    )


def delete_intent(session: Session, *, name: str, actor: str) -> ImportResult:
    """Remove one intent (and its examples); refused while another intent suggests it as a follow-up, or when
    it is the last one."""
    kb = load_knowledge_base(session)
    where = f"<intent {name}>"
    if name not in kb.intents:
        raise KnowledgeBaseFormatError(where, None, "name", f"intent {name!r} does not exist")
    users = sorted(other.name for other in kb.intents.values() if name in other.follow_ups)
    if users:
        raise KnowledgeBaseFormatError(
            where,
            None,
            "follow_ups",
            f"intent {name!r} is a follow-up of {', '.join(users)}: remove it there first",
        )
    del kb.intents[name]
    return import_knowledge_base(
        session, incoming=kb, source=f"intent {name} deleted by {actor}", replace=True
    )


def move_example(
    session: Session, *, text: str, from_intent: str, to_intent: str | None, actor: str
) -> ImportResult:
    """Move one example question to another intent (``to_intent`` None: remove it), as a new knowledge-base
    version: the fix for a question filed under the wrong intent, or under two. Every spelling of the
    question in ``from_intent`` goes (case, spacing and closing punctuation aside); refused when it is not
    there (someone changed the intent since), or when it is the intent's last example."""
    kb = load_knowledge_base(session)
    where = f"<intent {from_intent}>"
    source = kb.intents.get(from_intent)
    if source is None:
        raise KnowledgeBaseFormatError(where, None, "from_intent", f"intent {from_intent!r} does not exist")
    if to_intent is not None and to_intent not in kb.intents:
        raise KnowledgeBaseFormatError(where, None, "to_intent", f"intent {to_intent!r} does not exist")
    if to_intent == from_intent:
        raise KnowledgeBaseFormatError(where, None, "to_intent", "the example is in that intent already")
    key = question_key(text)
    moving = [example for example in source.examples if question_key(example) == key]
    if not moving:
        raise KnowledgeBaseFormatError(
            where, None, "examples", f"{text!r} is not an example of {from_intent!r} (any more)"
        )
    if len(moving) == len(source.examples):
        raise KnowledgeBaseFormatError(
            where, None, "examples", f"{text!r} is the last example of {from_intent!r}: add another first"
        )
    source.examples = [example for example in source.examples if question_key(example) != key]
    if to_intent is not None:
        target = kb.intents[to_intent]
        if all(question_key(example) != key for example in target.examples):
            target.examples.append(moving[0])
        what = f"example moved from {from_intent} to {to_intent} by {actor}"
    else:
        what = f"example removed from {from_intent} by {actor}"
    return import_knowledge_base(session, incoming=kb, source=what, replace=True)


def is_example(session: Session, *, text: str, intent: str) -> bool | None:
    """Whether ``text``, in any spelling (``question_key``), is an example of ``intent``; None when there is
    no such intent. Reads that intent's examples only."""
    intent_id = session.scalar(select(Intent.id).where(Intent.name == intent))
    if intent_id is None:
        return None
    key = question_key(text)
    examples = session.scalars(select(ExampleQuestion.text).where(ExampleQuestion.intent_id == intent_id))
    return any(question_key(example) == key for example in examples)


def keep_example(session: Session, *, text: str, intent: str, actor: str) -> bool:
    """An operator's "keep as it is" on a flagged example: the knowledge-base check stops listing it while it
    stays under ``intent``. Refused when it is not an example of ``intent``; False when it was kept
    already (nothing changes)."""
    key = question_key(text)
    where = f"<intent {intent}>"
    found = is_example(session, text=text, intent=intent)
    if found is None:
        raise KnowledgeBaseFormatError(where, None, "intent", f"intent {intent!r} does not exist")
    if not found:
        raise KnowledgeBaseFormatError(where, None, "text", f"{text!r} is not an example of {intent!r}")
    kept = session.scalars(
        select(KeptExample).where(KeptExample.question_key == key, KeptExample.intent == intent)
    ).first()
    if kept is not None:
        return False
    session.add(KeptExample(question_key=key, text=text, intent=intent, kept_by=actor))
    session.flush()
    return True


def flag_again(session: Session, *, text: str, intent: str) -> bool:
    """Undo ``keep_example``; False when it was not kept."""
    kept = session.scalars(
        select(KeptExample).where(
            KeptExample.question_key == question_key(text), KeptExample.intent == intent
        )
    ).first()
    if kept is None:
        return False
    session.delete(kept)
    session.flush()
    return True


def kept_examples(session: Session) -> dict[tuple[str, str], KeptExample]:
    """Every kept example by (question key, intent)."""
    return {(k.question_key, k.intent): k for k in session.scalars(select(KeptExample))}


def filed_elsewhere(session: Session, *, texts: Sequence[str], intent: str) -> list[tuple[str, str]]:
    """Which of ``texts`` the knowledge base has as an example of an intent other than ``intent``:
    [(text, that intent)]. Spellings are matched as ``question_key`` does (case, spacing, closing
    punctuation)."""
    keys = {question_key(text): text for text in texts}
    if not keys:
        return []
    spellings = {variant for text in texts for variant in (text.lower(), " ".join(text.split()).lower())}
    spellings |= {key + end for key in keys for end in ("", "?", ".", "!")}
    rows = session.execute(
        select(ExampleQuestion.text, Intent.name)
        .join(Intent, Intent.id == ExampleQuestion.intent_id)
        .where(func.lower(ExampleQuestion.text).in_(sorted(spellings)), Intent.name != intent)
        .order_by(Intent.name)
    ).all()
    found: dict[tuple[str, str], None] = {}
    for text, name in rows:
        if question_key(text) in keys:
            found[(keys[question_key(text)], name)] = None
    return list(found)


def get_kb_version(session: Session, *, version_id: int) -> KnowledgeBaseVersion:
    version = session.get(KnowledgeBaseVersion, version_id)
    if version is None:
        raise KnowledgeBaseFormatError(
            f"<version {version_id}>", None, None, f"knowledge-base version {version_id} does not exist"
        )
    return version


def list_kb_versions(session: Session, *, limit: int) -> list[KnowledgeBaseVersion]:
    """The newest ``limit`` versions, newest first."""
    return list(
        session.scalars(select(KnowledgeBaseVersion).order_by(KnowledgeBaseVersion.id.desc()).limit(limit))
    )


def restore_kb_version(session: Session, *, version_id: int, actor: str) -> ImportResult:
    """Make an earlier knowledge-base version the current one again (from its snapshot), as a new version:
    the undo of a bad import or edit. Nothing in between is lost, it stays in the history."""
    version = get_kb_version(session, version_id=version_id)
    snapshot = json.dumps(version.snapshot, ensure_ascii=False).encode("utf-8")
    incoming = read_knowledge_base_files([(f"version-{version_id}.json", snapshot)])
    incoming.synonyms = incoming.synonyms or []  # a snapshot is the whole knowledge base: none means none
    return import_knowledge_base(
        session, incoming=incoming, source=f"version {version_id} restored by {actor}", replace=True
    )


@dataclass
class IntentChange:
    """How one intent differs between two knowledge-base versions."""

    name: str
    change: str  # "added", "removed" or "changed"
    fields: list[str]  # of title, answer, follow_ups, reviewer_note
    examples_added: list[str]
    examples_removed: list[str]


def compare_snapshots(before: dict[str, Any] | None, after: dict[str, Any]) -> list[IntentChange]:
    """What changed from one knowledge-base snapshot (``KnowledgeBaseData.to_dict``) to another, by intent
    name; unchanged intents are left out. ``before`` None: everything in ``after`` is added."""
    old = {i["name"]: i for i in (before or {}).get("intents", [])}
    new = {i["name"]: i for i in after.get("intents", [])}
    changes = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        was, now = (a or {}).get("examples", []), (b or {}).get("examples", [])
        was_set, now_set = set(was), set(now)
        added = [e for e in now if e not in was_set]
        removed = [e for e in was if e not in now_set]
        change = "added" if a is None else "removed" if b is None else "changed"
        fields = [
            f
            for f in ("title", "answer", "follow_ups", "reviewer_note", "metadata")
            if a and b and a.get(f, "") != b.get(f, "")  # a snapshot leaves out an empty reviewer note
        ]
        if change != "changed" or fields or added or removed:
            changes.append(IntentChange(name, change, fields, added, removed))
    return changes


def synonym_changes(
    before: dict[str, Any] | None, after: dict[str, Any]
) -> tuple[list[list[str]], list[list[str]]]:
    """The synonym groups in ``after`` and not in ``before`` (snapshots), and those in ``before`` only."""
    was = [list(g) for g in (before or {}).get("synonyms", [])]
    now = [list(g) for g in after.get("synonyms", [])]
    return [g for g in now if g not in was], [g for g in was if g not in now]


def version_changes(
    session: Session, *, version_id: int, against: str = "previous"
) -> tuple[KnowledgeBaseVersion, KnowledgeBaseVersion | None, list[IntentChange]]:
    """Version ``version_id`` next to the one before it (``against="previous"``: what that change did) or
    next to the newest version (``against="current"``: what restoring it would do). Returns (version, the
    version compared with or None, the changes from that one to ``version_id``)."""
    version = get_kb_version(session, version_id=version_id)
    if against == "current":
        newest = latest_kb_version(session)
        assert newest is not None
        return version, newest, compare_snapshots(newest.snapshot, version.snapshot)
    previous = session.scalars(
        select(KnowledgeBaseVersion)
        .where(KnowledgeBaseVersion.id < version_id)
        .order_by(KnowledgeBaseVersion.id.desc())
        .limit(1)
    ).first()
    return version, previous, compare_snapshots(previous.snapshot if previous else None, version.snapshot)


def intent_examples(
    session: Session,
    *,
    names: Sequence[str],
    per_intent: int = 2,
    exclude: str = "",
    rank: Callable[[str, str], Any] | None = None,
) -> dict[str, list[str]]:
    """A few example questions of each named intent, for reviewers choosing between intents: those first
    that ``rank(name, text)`` orders first (the review pages pass the model's view of how typical each is),
    else the shortest (they say the most in one line). ``exclude``: a question never shown as an example of
    anything (the one being reviewed: a gold item is a knowledge-base example, and must not be answered by
    its own copy)."""
    if not names:
        return {}
    skip = " ".join(exclude.split()).casefold()
    rows = session.execute(
        select(Intent.name, ExampleQuestion.text)
        .join(ExampleQuestion, ExampleQuestion.intent_id == Intent.id)
        .where(Intent.name.in_(list(names)))
    ).all()
    found: dict[str, list[str]] = {}
    for name, text in rows:
        if " ".join(text.split()).casefold() != skip:
            found.setdefault(name, []).append(text)
    order = rank or _shortest_first
    return {name: sorted(texts, key=partial(order, name))[:per_intent] for name, texts in found.items()}


def _shortest_first(_name: str, text: str) -> tuple[int, str]:
    return len(text), text


def reviewer_notes(session: Session, *, names: Sequence[str] | None = None) -> dict[str, str]:
    """The reviewer note of each named intent (of every intent with ``names`` None) that has one."""
    query = select(Intent.name, Intent.reviewer_note).where(Intent.reviewer_note != "")
    if names is not None:
        if not names:
            return {}
        query = query.where(Intent.name.in_(list(names)))
    return {name: note for name, note in session.execute(query).all() if note}


# ------------------------------------------------------------------------------ files for import jobs


def store_uploads(session: Session, *, job_id: int, files: Sequence[tuple[str, bytes]]) -> list[int]:
    """Keep uploaded files for the import job ``job_id`` (core.models.ImportUpload), in their order."""
    rows = [
        ImportUpload(job_id=job_id, position=position, name=name, content=content)
        for position, (name, content) in enumerate(files)
    ]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def uploaded_files(session: Session, *, job_id: int) -> list[tuple[str, bytes]]:
    """The files uploaded for the import job ``job_id``, as (name, content) in the order they were chosen."""
    rows = session.scalars(
        select(ImportUpload).where(ImportUpload.job_id == job_id).order_by(ImportUpload.position)
    )
    return [(row.name, row.content) for row in rows]


def drop_uploads(session: Session, *, job_id: int) -> int:
    """Delete the files of the import job ``job_id``, and those of any job that has ended or is gone (one
    cancelled before a worker took it); returns how many rows went."""
    ended = select(Job.id).where(Job.status.in_(("succeeded", "failed", "cancelled")))
    live = select(Job.id)
    result = session.execute(
        delete(ImportUpload).where(
            (ImportUpload.job_id == job_id)
            | ImportUpload.job_id.in_(ended)
            | ImportUpload.job_id.not_in(live)
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
