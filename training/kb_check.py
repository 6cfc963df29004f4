"""The knowledge-base check: what the text says (``core.kb_checks``: one question under two intents, the same
question twice, intents with few examples) and what the production model says of the examples it was
calibrated on (``bot.label_issues``: examples it reads as another intent, intents it mixes up). Read on the
Knowledge page, by ``helploop kb check`` and ``GET /api/v1/admin/knowledge/check``.

The model's view comes from the held-out rows of its bundle, so the check costs no encoding: a second or so
for ten thousand examples. It describes the knowledge base the model was built on: an example moved or
removed since drops out of the list at once, one added since waits for the next build."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from bot.engine import AnsweringEngine, BundleError
from bot.label_issues import Confusion, LabelIssue, confused_intents, find_label_issues
from core.kb_checks import (
    FEW_EXAMPLES,
    Conflict,
    Duplicate,
    SharedAnswer,
    ThinIntent,
    question_key,
    text_findings,
)
from core.kb_files import KnowledgeBaseData
from core.knowledge_base import kept_examples, load_knowledge_base
from core.models import ExampleQuestion, Intent, KeptExample, KnowledgeBaseVersion, VerifiedPair
from training.build import MIN_PAIR_WEIGHT, verified_pairs

log = logging.getLogger(__name__)


@dataclass
class KbCheck:
    conflicts: list[Conflict]
    duplicates: list[Duplicate]
    thin: list[ThinIntent]
    shared_answers: list[SharedAnswer]
    per_intent: dict[str, int]  # examples of each intent
    model_version: str | None = None
    # None: no model view (``model_note`` says why); else the issues among the examples still in the KB.
    label_issues: list[LabelIssue] | None = None
    confusions: list[Confusion] | None = None
    checked_examples: int = 0  # examples of the current KB the model has a held-out row for
    # Flagged, but an operator chose to keep them as they are (not counted as warnings).
    kept: list[LabelIssue] = field(default_factory=list)
    kept_by: dict[tuple[str, str], str] = field(default_factory=dict)  # (question key, intent): who kept it
    # Flagged rows that are the crowd's verified pairs, not examples: (question key, intent) -> review item.
    pair_issues: dict[tuple[str, str], int] = field(default_factory=dict)
    model_note: str = ""
    few: int = FEW_EXAMPLES

    @property
    def intents(self) -> int:
        return len(self.per_intent)

    @property
    def examples(self) -> int:
        return sum(self.per_intent.values())

    @property
    def errors(self) -> int:
        """Findings that make training contradict itself."""
        return len(self.conflicts)

    @property
    def warnings(self) -> int:
        return len(self.thin) + len(self.label_issues or [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "intents": self.intents,
            "examples": self.examples,
            "errors": self.errors,
            "warnings": self.warnings,
            "conflicts": [c.to_dict() for c in self.conflicts],
            "duplicates": [d.to_dict() for d in self.duplicates],
            "shared_answers": [a.to_dict() for a in self.shared_answers],
            "few_examples": {"below": self.few, "intents": [t.to_dict() for t in self.thin]},
            "examples_per_intent": dict(sorted(self.per_intent.items())),
            "model": {
                "version": self.model_version,
                "note": self.model_note,
                "checked_examples": self.checked_examples,
                "label_issues": None
                if self.label_issues is None
                else [
                    {
                        **issue.to_dict(),
                        "verified_pair_item": self.pair_issues.get((question_key(issue.text), issue.given)),
                    }
                    for issue in self.label_issues
                ],
                "confusions": None if self.confusions is None else [c.to_dict() for c in self.confusions],
                "kept": [
                    {**issue.to_dict(), "kept_by": self.kept_by.get((question_key(issue.text), issue.given))}
                    for issue in self.kept
                ],
            },
        }


def check_knowledge_base(
    kb: KnowledgeBaseData,
    *,
    pairs: Iterable[tuple[str, str, int]] = (),
    engine: AnsweringEngine | None = None,
    few: int = FEW_EXAMPLES,
) -> KbCheck:
    """``pairs``: verified (text, intent, item id) that training adds; ``engine``: the model whose held-out
    rows judge the examples (None: text checks only)."""
    pairs = list(pairs)
    found = text_findings(kb, pairs=pairs, few=few)
    report = KbCheck(
        conflicts=found.conflicts,
        duplicates=found.duplicates,
        thin=found.thin,
        shared_answers=found.shared_answers,
        per_intent={name: len(i.examples) for name, i in kb.intents.items()},
        few=few,
    )
    if engine is None:
        report.model_note = "no model to compare with"
        return report
    report.model_version = engine.version
    try:
        rows = engine.held_out
    except BundleError as exc:
        log.warning("knowledge-base check without the model: %s", exc)
        report.model_note = f"the model's held-out rows cannot be read: {exc}"
        return report
    if rows is None:
        report.model_note = "the model was built before held-out rows were kept: retrain to check examples"
        return report
    examples = {(question_key(text), name) for name, i in kb.intents.items() for text in i.examples}
    pair_items = {(question_key(text), intent): item_id for text, intent, item_id in pairs}
    current = examples | set(pair_items)
    rows_current = [
        (question_key(t), label) in current for t, label in zip(rows.texts, rows.labels, strict=True)
    ]
    report.checked_examples = sum(rows_current)
    report.label_issues = [
        issue for issue in find_label_issues(rows, engine.labels) if rows_current[issue.row]
    ]
    # A flagged verified pair is not a knowledge-base example: it is settled on its review item, not here.
    report.pair_issues = {
        key: pair_items[key]
        for key in ((question_key(i.text), i.given) for i in report.label_issues)
        if key not in examples and key in pair_items
    }
    report.confusions = [
        c for c in confused_intents(rows, engine.labels) if c.first in kb.intents and c.second in kb.intents
    ]
    return report


def check_current_knowledge_base(
    session: Session, *, engine: AnsweringEngine | None, min_pair_weight: float = MIN_PAIR_WEIGHT
) -> KbCheck:
    """The check of the knowledge base in the database, with the verified pairs training would add; the
    examples operators kept as they are are listed apart (``kept``), not as warnings.

    The overview and the Knowledge page read it on every load, and it reads every example (a second or so
    for ten thousand): the last report is kept per database and given again while nothing it depends on has
    changed (``_inputs``: the knowledge-base version and its rows, the verified pairs, the kept examples, the
    model)."""
    bind = session.get_bind()
    database = str((bind.engine if isinstance(bind, Connection) else bind).url)
    inputs = _inputs(session, engine, min_pair_weight)
    with _LAST_LOCK:
        last = _LAST.get(database)
    if last is not None and last[0] == inputs:
        return copy.deepcopy(last[1])
    report = check_knowledge_base(
        load_knowledge_base(session),
        pairs=verified_pairs(session, min_weight=min_pair_weight),
        engine=engine,
    )
    if report.label_issues:
        kept = kept_examples(session)
        report.kept = [i for i in report.label_issues if (question_key(i.text), i.given) in kept]
        report.kept_by = {key: row.kept_by for key, row in kept.items()}
        report.label_issues = [i for i in report.label_issues if (question_key(i.text), i.given) not in kept]
    with _LAST_LOCK:
        _LAST[database] = (inputs, copy.deepcopy(report))
    return report


_LAST: dict[str, tuple[tuple[Any, ...], KbCheck]] = {}  # per database: (its inputs, the report)
_LAST_LOCK = threading.Lock()


def _inputs(session: Session, engine: AnsweringEngine | None, min_pair_weight: float) -> tuple[Any, ...]:
    """What the check reads, summed up cheaply: every change to the knowledge base records a new version (its
    content hash; the rows' counts or ids change too); verified pairs and kept examples are added and deleted,
    not edited; the model is the engine object itself (a swap replaces it)."""
    counted = [
        session.execute(select(func.count(), func.max(column))).one()
        for column in (KnowledgeBaseVersion.id, Intent.id, ExampleQuestion.id, KeptExample.id)
    ]
    pairs = session.execute(
        select(func.count(), func.max(VerifiedPair.id), func.sum(VerifiedPair.weight))
    ).one()
    content = session.scalar(
        select(KnowledgeBaseVersion.data_hash).order_by(KnowledgeBaseVersion.id.desc()).limit(1)
    )
    return (
        content,
        *(tuple(row) for row in counted),
        tuple(pairs),
        min_pair_weight,
        None if engine is None else (engine.version, id(engine)),
    )
