"""Knowledge-base domain functions: session first, keyword-only arguments; the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from core.kb_files import (
    IntentData,
    KnowledgeBaseData,
    Origin,
    validate_complete,
)
from core.models import ExampleQuestion, Intent, KnowledgeBaseVersion


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
            origin=Origin("<database>", None),
        )
    return kb


def _merge(existing: KnowledgeBaseData, incoming: KnowledgeBaseData, *, replace: bool) -> KnowledgeBaseData:
    if replace:
        return incoming
    merged = KnowledgeBaseData(
        {
            name: IntentData(
                name=i.name,
                title=i.title,
                answer=i.answer,
                examples=list(i.examples),
                follow_ups=list(i.follow_ups),
                origin=i.origin,
            )
            for name, i in existing.intents.items()
        }
    )
    for name, new in incoming.intents.items():
        if name not in merged.intents:
            merged.intents[name] = new
            continue
        target = merged.intents[name]
        target.origin = new.origin
        if new.answer:
            target.answer = new.answer
        if new.title:
            target.title = new.title
        if new.follow_ups:
            target.follow_ups = list(new.follow_ups)
        for text in new.examples:
            if text not in target.examples:
                target.examples.append(text)
    return merged


def import_knowledge_base(
    session: Session, *, incoming: KnowledgeBaseData, source: str, replace: bool = False
) -> ImportResult:
    """Merge (or with ``replace`` swap in) a knowledge base and record a new version.

    Validates the whole result first; on any error nothing has been written (the caller rolls back anyway).
    """
    existing = load_knowledge_base(session)
    merged = _merge(existing, incoming, replace=replace)
    validate_complete(merged)

    rows = {row.name: row for row in session.scalars(select(Intent).options(selectinload(Intent.examples)))}
    created = updated = added = removed = 0
    for name in sorted(set(rows) - set(merged.intents)):
        removed += len(rows[name].examples)
        session.delete(rows[name])
    for name, data in merged.intents.items():
        row = rows.get(name)
        if row is None:
            row = Intent(name=name, title=data.title, answer=data.answer, follow_ups=list(data.follow_ups))
            session.add(row)
            created += 1
        elif (row.title, row.answer, list(row.follow_ups or [])) != (
            data.title,
            data.answer,
            data.follow_ups,
        ):
            row.title, row.answer, row.follow_ups = data.title, data.answer, list(data.follow_ups)
            updated += 1
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
    return ImportResult(
        kb_version_id=version.id,
        data_hash=version.data_hash,
        intents_created=created,
        intents_updated=updated,
        examples_added=added,
        examples_removed=removed,
        intent_count=len(merged.intents),
        example_count=merged.example_count,
    )


def latest_kb_version(session: Session) -> KnowledgeBaseVersion | None:
    return session.scalars(
        select(KnowledgeBaseVersion).order_by(KnowledgeBaseVersion.id.desc()).limit(1)
    ).first()


def count_intents(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Intent)) or 0)
