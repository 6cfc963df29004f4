"""Build a model bundle from the knowledge base (plus crowd-verified pairs) and register it.

The bridge between ``core`` (tables) and ``bot`` (engine), in three steps that a job can run with short
database sessions: take a snapshot of the training data, fit and save the bundle (no database), register it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.engine import (
    SMALL_TALK,
    AnsweringEngine,
    BundleError,
    EngineConfig,
    IntentInfo,
    ProgressCallback,
    add_encoder,
)
from bot.handoff import ASKED_FOR_PERSON
from bot.small_talk import without_small_talk
from core.kb_checks import question_key
from core.kb_files import KnowledgeBaseData
from core.knowledge_base import latest_kb_version, load_knowledge_base
from core.models import Intent, ReviewItemTurn, Turn, VerifiedPair
from core.redaction import redact
from core.registry import (
    CHIP_PAYLOAD,
    SUGGESTION_ARM,
    current_deployment,
    latest_model_version,
    register_model_version,
    serving_plan,
    set_deployment,
)
from core.settings import Settings
from training.gate import compare, split_for_evaluation

# With self-training, a frozen-encoder fit calibrates on this share of each intent's rows (as fine-tuning).
CALIBRATION_SHARE = 0.15
# Turns read to find `limit` distinct unlabelled questions (repeats, reviewed and known ones are skipped).
TRAFFIC_SCAN_FACTOR = 5


class EmptyKnowledgeBaseError(RuntimeError):
    pass


@dataclass
class BuildResult:
    version: str
    bundle_path: Path
    metrics: dict[str, Any]


@dataclass
class TrainingSnapshot:
    texts: list[str]
    labels: list[str]
    knowledge: dict[str, IntentInfo]
    kb_version_id: int | None
    crowd_pairs: int
    evaluation_texts: list[str]
    evaluation_labels: list[str]
    production_bundle: str | None
    # Unlabelled questions from the turn log the members self-train on (traffic_questions); empty: none.
    traffic_texts: list[str] = field(default_factory=list)


def engine_config_from_settings(settings: Settings) -> EngineConfig:
    config = EngineConfig(
        target_precision=settings.target_precision,
        cv_folds=settings.cv_folds,
        seed=settings.random_seed,
        top_k=settings.top_k,
    )
    config.encoder = {**config.encoder, "source": settings.encoder, "max_length": settings.encoder_max_length}
    config.self_training_threshold = settings.self_training_threshold
    for source in settings.extra_encoder_sources:
        config = add_encoder(config, source, max_length=settings.encoder_max_length)
    return config


def knowledge_from_kb(kb: KnowledgeBaseData) -> dict[str, IntentInfo]:
    return {
        name: IntentInfo(
            answer=i.answer, title=i.title, follow_ups=list(i.follow_ups), metadata=dict(i.metadata)
        )
        for name, i in kb.intents.items()
    }


MIN_PAIR_WEIGHT = 0.9  # the posterior a verified pair needs to be trained on


def verified_pairs(session: Session, *, min_weight: float = MIN_PAIR_WEIGHT) -> list[tuple[str, str, int]]:
    """The crowd's verified (text, intent, item id) at or above the posterior threshold, oldest first. A
    clicked chip's "/intent" is no question: such pairs (written before a thumbs-down on a chip reviewed the
    question that offered it) are left out."""
    rows = session.execute(
        select(VerifiedPair.text, VerifiedPair.intent, VerifiedPair.item_id)
        .where(VerifiedPair.weight >= min_weight)
        .order_by(VerifiedPair.id)
    ).all()
    return [(text, intent, item_id) for text, intent, item_id in rows if not CHIP_PAYLOAD.match(text)]


def verified_training_pairs(
    session: Session, *, known: set[str], min_weight: float
) -> tuple[list[str], list[str]]:
    """Crowd-verified (question, intent) pairs for intents that still exist, above the posterior threshold."""
    pairs = [
        (text, intent)
        for text, intent, _ in verified_pairs(session, min_weight=min_weight)
        if intent in known
    ]
    return [t for t, _ in pairs], [i for _, i in pairs]


def traffic_questions(session: Session, *, exclude: Iterable[str], limit: int) -> list[str]:
    """Unlabelled questions for self-training: the newest ``limit`` distinct questions of the turn log,
    redacted and read as the chat's model read them (without a greeting or thanks around them), leaving out
    turns the customer marked unhelpful, turns in review items (the crowd labels those), small talk ("hi",
    "thanks"), typed requests for a person, clicked chips ("/card_arrival": no question) and questions
    already in ``exclude`` (the training and evaluation rows: an evaluation question must never be trained
    on), case, spacing and closing punctuation aside."""
    if limit <= 0:
        return []
    seen = {question_key(text) for text in exclude}
    reviewed = select(ReviewItemTurn.turn_id)
    rows = session.scalars(
        select(Turn.user_text)
        .where(
            Turn.helpful.is_not(False),
            Turn.id.not_in(reviewed),
            Turn.status.not_in((SMALL_TALK, ASKED_FOR_PERSON)),
            Turn.served_by != SUGGESTION_ARM,
        )
        .order_by(Turn.id.desc())
        .limit(limit * TRAFFIC_SCAN_FACTOR)
    )
    questions: list[str] = []
    for text in rows:
        redacted = without_small_talk(redact(text)).strip()
        key = question_key(redacted)
        if key and key not in seen:
            seen.add(key)
            questions.append(redacted)
            if len(questions) == limit:
                break
    return questions


EMPTY_KNOWLEDGE_BASE = "the knowledge base is empty: import one with `helploop kb import`"


def require_knowledge_base(session: Session) -> None:
    """Refuse a training run before it is queued when there is nothing to train on (it would only fail)."""
    if session.scalar(select(Intent.id).limit(1)) is None:
        raise EmptyKnowledgeBaseError(EMPTY_KNOWLEDGE_BASE)


def training_snapshot(
    session: Session, *, min_pair_weight: float = MIN_PAIR_WEIGHT, traffic_limit: int = 0
) -> TrainingSnapshot:
    kb = load_knowledge_base(session)
    if not kb.intents:
        raise EmptyKnowledgeBaseError(EMPTY_KNOWLEDGE_BASE)
    all_texts, all_labels = kb.training_pairs()
    train_index, evaluation_index = split_for_evaluation(all_texts, all_labels)
    texts = [all_texts[i] for i in train_index]
    labels = [all_labels[i] for i in train_index]
    crowd_texts, crowd_labels = verified_training_pairs(
        session, known=set(kb.intents), min_weight=min_pair_weight
    )
    seen = set(zip(texts, labels, strict=True))
    added = 0
    for text, label in zip(crowd_texts, crowd_labels, strict=True):
        if (text, label) not in seen:
            texts.append(text)
            labels.append(label)
            seen.add((text, label))
            added += 1
    kb_version = latest_kb_version(session)
    plan = serving_plan(session)
    production = plan["production"][1] if plan and plan["production"] else None
    return TrainingSnapshot(
        texts,
        labels,
        knowledge_from_kb(kb),
        kb_version.id if kb_version else None,
        added,
        [all_texts[i] for i in evaluation_index],
        [all_labels[i] for i in evaluation_index],
        production,
        traffic_questions(session, exclude=[*all_texts, *texts], limit=traffic_limit),
    )


def fit_bundle(
    snapshot: TrainingSnapshot,
    settings: Settings,
    *,
    progress: bool = False,
    onnx: bool = False,
    on_progress: ProgressCallback | None = None,
    fine_tune: dict[str, Any] | None = None,
    on_loss: Callable[[float, float], None] | None = None,
) -> tuple[AnsweringEngine, Path, dict[str, Any]]:
    """Fit (optionally fine-tuning the encoder first: ``fine_tune`` holds its settings), gate, save. With
    enough traffic questions in the snapshot (settings.self_training) the members self-train on them, and a
    frozen-encoder fit calibrates on a held-out share of the rows instead of out of fold (what self-training
    needs: rows no pseudo-label came from)."""
    traffic = self_training_traffic(snapshot, settings)
    if fine_tune is not None:
        from training.finetune import FineTuneConfig, fit_engine_with_fine_tuning

        work = tempfile.mkdtemp(prefix="helploop-run-")
        engine = fit_engine_with_fine_tuning(
            snapshot.texts,
            snapshot.labels,
            config=engine_config_from_settings(settings),
            tuning=FineTuneConfig.from_dict(fine_tune),
            work_dir=work,
            knowledge=snapshot.knowledge,
            threads=settings.torch_threads,
            on_progress=on_progress,
            on_loss=on_loss,
            progress=progress,
            processes=settings.training_processes,
            traffic_texts=traffic,
        )
        return _gate_and_save(engine, snapshot, settings, onnx=onnx)
    engine = AnsweringEngine(engine_config_from_settings(settings), threads=settings.torch_threads)
    with tempfile.TemporaryDirectory(prefix="helploop-onnx-") as staging:
        if onnx and settings.onnx_quantize:
            engine.fit_on_onnx(staging, quantize=True)  # fit on what the bundle will serve
        if traffic:
            from training.finetune import calibration_split, fit_calibrated_on_held_out

            fit_calibrated_on_held_out(
                engine,
                snapshot.texts,
                snapshot.labels,
                calibration_split(snapshot.labels, CALIBRATION_SHARE, settings.random_seed),
                knowledge=snapshot.knowledge,
                traffic_texts=traffic,
                progress=progress,
                on_progress=on_progress,
            )
        else:
            engine.fit(
                snapshot.texts,
                snapshot.labels,
                knowledge=snapshot.knowledge,
                progress=progress,
                on_progress=on_progress,
            )
        return _gate_and_save(engine, snapshot, settings, onnx=onnx)


def traffic_limit(settings: Settings) -> int:
    """How many traffic questions a snapshot reads: none when self-training is off."""
    return settings.self_training_questions if settings.self_training else 0


def self_training_traffic(snapshot: TrainingSnapshot, settings: Settings) -> list[str] | None:
    """The snapshot's traffic questions when self-training applies (on, and at least the minimum)."""
    if not settings.self_training or len(snapshot.traffic_texts) < settings.self_training_min_questions:
        return None
    return snapshot.traffic_texts


def _gate_and_save(
    engine: AnsweringEngine, snapshot: TrainingSnapshot, settings: Settings, *, onnx: bool
) -> tuple[AnsweringEngine, Path, dict[str, Any]]:
    bundle = Path(settings.model_dir) / engine.version
    metrics = dict(engine.manifest["calibration_metrics"])
    metrics["crowd_pairs"] = snapshot.crowd_pairs
    metrics["encoders"] = [str(e["name"]) for e in engine.config.encoder_configs()]
    metrics["gate"] = gate_report(engine, snapshot, settings)
    engine.save(bundle, metrics=metrics)
    if onnx and "onnx" not in engine.manifest:  # not already exported for fitting
        engine.export_onnx(quantize=settings.onnx_quantize)
    return engine, bundle, metrics


def gate_report(candidate: AnsweringEngine, snapshot: TrainingSnapshot, settings: Settings) -> dict[str, Any]:
    """Candidate against the production model on the frozen evaluation set (see training.gate)."""
    production = None
    note = None
    if snapshot.production_bundle:
        try:
            production = AnsweringEngine.load(snapshot.production_bundle, threads=settings.torch_threads)
        except BundleError as exc:
            note = f"production bundle unreadable, compared without a baseline: {exc}"
    report = compare(candidate, production, snapshot.evaluation_texts, snapshot.evaluation_labels)
    if note:
        report["note"] = note
    return report


def register_bundle(
    session: Session,
    *,
    engine: AnsweringEngine,
    bundle: Path,
    metrics: dict[str, Any],
    kb_version_id: int | None,
) -> BuildResult:
    """Record a built model. It does not serve: a new model reaches users only through shadow, canary and
    promote, under the gate. Without a deployment row the newest registered model serves (how the first
    model of an installation goes live), so before registering a second one, the one serving now is pinned
    as production."""
    if current_deployment(session) is None:
        serving = latest_model_version(session)
        if serving is not None:
            set_deployment(
                session,
                production_version=serving.version,
                actor="system",
                reason="pinned before registering a newer model: new models serve only once promoted",
            )
    register_model_version(
        session,
        version=engine.version,
        bundle_path=str(bundle),
        data_hash=engine.manifest["data_hash"],
        metrics=metrics,
        kb_version_id=kb_version_id,
    )
    return BuildResult(engine.version, bundle, metrics)


def build_model(
    session: Session,
    settings: Settings,
    *,
    progress: bool = False,
    onnx: bool = False,
    on_progress: ProgressCallback | None = None,
    min_pair_weight: float = MIN_PAIR_WEIGHT,
) -> BuildResult:
    snapshot = training_snapshot(
        session, min_pair_weight=min_pair_weight, traffic_limit=traffic_limit(settings)
    )
    engine, bundle, metrics = fit_bundle(
        snapshot, settings, progress=progress, onnx=onnx, on_progress=on_progress
    )
    return register_bundle(
        session, engine=engine, bundle=bundle, metrics=metrics, kb_version_id=snapshot.kb_version_id
    )
