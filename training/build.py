"""Build a model bundle from the knowledge base (plus crowd-verified pairs) and register it.

The bridge between ``core`` (tables) and ``bot`` (engine), in three steps that a job can run with short
database sessions: take a snapshot of the training data, fit and save the bundle (no database), register it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.encoders import encoder_fingerprint
from bot.engine import (
    BUNDLE_FORMAT,
    OUT_OF_SCOPE,
    SMALL_TALK,
    AnsweringEngine,
    BundleError,
    EngineConfig,
    IntentInfo,
    ProgressCallback,
    add_encoder,
    library_versions,
    training_data_hash,
)
from bot.handoff import ASKED_FOR_PERSON
from bot.small_talk import without_small_talk
from core.kb_checks import question_key
from core.kb_files import KnowledgeBaseData
from core.knowledge_base import latest_kb_version, load_knowledge_base
from core.models import (
    Intent,
    KnowledgeBaseVersion,
    ModelVersion,
    ReviewItemTurn,
    Turn,
    VerifiedPair,
    as_utc,
)
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
    # Of crowd_pairs, the questions reviewers found no intent for, trained as out of scope.
    out_of_scope_pairs: int = 0


def engine_config_from_settings(settings: Settings) -> EngineConfig:
    config = EngineConfig(
        target_precision=settings.target_precision,
        cv_folds=settings.cv_folds,
        seed=settings.random_seed,
        top_k=settings.top_k,
    )
    config.encoder = {**config.encoder, "source": settings.encoder, "max_length": settings.encoder_max_length}
    config.self_training_threshold = settings.self_training_threshold
    config.familiarity_quantile = settings.familiarity_quantile
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
    session: Session,
    *,
    known: set[str],
    min_weight: float,
    none_fits: bool = False,
    kb_texts: Iterable[str] = (),
) -> tuple[list[str], list[str]]:
    """Crowd-verified (question, intent) pairs for intents that still exist, above the posterior threshold.
    With ``none_fits``, also the questions reviewers found no intent for, as out of scope
    (``OUT_OF_SCOPE``), except those among ``kb_texts`` (the knowledge base's examples: the knowledge base
    wins; the reviewers' verdict was announced as a dispute when it resolved)."""
    examples = {question_key(text) for text in kb_texts} if none_fits else set()
    pairs = [
        (text, intent)
        for text, intent, _ in verified_pairs(session, min_weight=min_weight)
        if intent in known or (none_fits and intent == OUT_OF_SCOPE and question_key(text) not in examples)
    ]
    return [t for t, _ in pairs], [i for _, i in pairs]


def traffic_questions(session: Session, *, exclude: Iterable[str], limit: int) -> list[str]:
    """Unlabelled questions for self-training: the newest ``limit`` distinct questions of the turn log,
    redacted and read as the chat's model read them (without a greeting or thanks around them), leaving out
    turns the customer marked unhelpful, turns in review items (the crowd labels those), small talk ("hi",
    "thanks"), typed requests for a person, clicked chips ("/card_arrival": no question), follow-ups read
    with the question before them ("is there a charge for that?" says little alone) and questions already
    in ``exclude`` (the training and evaluation rows: an evaluation question must never be trained on),
    case, spacing and closing punctuation aside."""
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
            Turn.context_text.is_(None),
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
    session: Session,
    *,
    min_pair_weight: float = MIN_PAIR_WEIGHT,
    traffic_limit: int = 0,
    none_fits: bool = True,
) -> TrainingSnapshot:
    """The rows a training run fits on: the knowledge base's examples less the frozen evaluation rows, and
    the crowd's verified pairs (with ``none_fits``, the questions reviewers found no intent for, as out of
    scope: Settings.none_fits_out_of_scope)."""
    kb = load_knowledge_base(session)
    if not kb.intents:
        raise EmptyKnowledgeBaseError(EMPTY_KNOWLEDGE_BASE)
    all_texts, all_labels = kb.training_pairs()
    train_index, evaluation_index = split_for_evaluation(all_texts, all_labels)
    texts = [all_texts[i] for i in train_index]
    labels = [all_labels[i] for i in train_index]
    crowd_texts, crowd_labels = verified_training_pairs(
        session, known=set(kb.intents), min_weight=min_pair_weight, none_fits=none_fits, kb_texts=all_texts
    )
    seen = set(zip(texts, labels, strict=True))
    added = out_of_scope = 0
    for text, label in zip(crowd_texts, crowd_labels, strict=True):
        if (text, label) not in seen:
            texts.append(text)
            labels.append(label)
            seen.add((text, label))
            added += 1
            out_of_scope += label == OUT_OF_SCOPE
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
        out_of_scope,
    )


def inputs_hash(
    snapshot: TrainingSnapshot,
    settings: Settings,
    *,
    fine_tune: dict[str, Any] | None = None,
    onnx: bool = False,
) -> str:
    """The content hash of everything a run's model would be fitted from: the labelled rows (knowledge base
    and verified pairs), the knowledge (answers, titles, follow-ups), the log questions it would self-train
    on, the engine's settings, the fine-tuning recipe with its defaults filled in, the ONNX export, the
    versions of the bundle format and the libraries, the fine-tuning's processes (data-parallel), and the
    encoders' weights as
    ``bot.encoders.encoder_fingerprint`` tells them (a package's version, a local folder's files), and the
    fitting code itself (``code_fingerprint``). Two runs
    with the same hash fit the same model (up to floating point), so a run whose hash a registered model
    already has need not fit it again."""
    from training.finetune import FineTuneConfig

    traffic = self_training_traffic(snapshot, settings) or ()
    config = engine_config_from_settings(settings)
    recipe = {
        "data": training_data_hash(snapshot.texts, snapshot.labels, snapshot.knowledge, traffic),
        "engine": asdict(config),
        "weights": [encoder_fingerprint(str(e.get("source", ""))) for e in config.encoder_configs()],
        "fine_tune": asdict(FineTuneConfig.from_dict(fine_tune)) if fine_tune is not None else None,
        # Data-parallel fine-tuning averages each step over the processes' batches: another model.
        "processes": settings.training_processes if fine_tune is not None else 1,
        "onnx": (settings.onnx_quantize if onnx else None),
        "bundle_format": BUNDLE_FORMAT,
        "libraries": library_versions(),
        "code": code_fingerprint(),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()


def source_digest(folders: Iterable[Path]) -> str:
    """sha256 over the Python files under ``folders`` (names and contents, in a fixed order)."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            digest.update(f"{folder.name}/{path.relative_to(folder).as_posix()}\0".encode())
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """The fitting code's own part of ``inputs_hash``: the source of the engine (bot/) and of the trainer
    (training/), read once per process. An upgraded HelpLoop (a changed recipe, a fixed member) retrains
    the same data instead of calling it unchanged."""
    import bot

    return source_digest([Path(bot.__file__).parent, Path(__file__).parent])


MODELS_SEARCHED_FOR_SAME_INPUTS = 50  # the newest registered models a run compares its inputs with


def model_with_same_inputs(session: Session, digest: str) -> ModelVersion | None:
    """The newest registered model (bundle still on disk) fitted from exactly these inputs, if any."""
    rows = session.scalars(
        select(ModelVersion)
        .where(ModelVersion.pruned_at.is_(None))
        .order_by(ModelVersion.id.desc())
        .limit(MODELS_SEARCHED_FOR_SAME_INPUTS)
    )
    return next((m for m in rows if (m.metrics or {}).get("inputs_hash") == digest), None)


def serving_role(session: Session, version: str) -> str | None:
    """What ``version`` does now: "production", "canary" or "shadow"; None when it serves nothing."""
    plan = serving_plan(session) or {}
    for role in ("production", "canary", "shadow"):
        if plan.get(role) and plan[role][0] == version:
            return role
    return None


LOG_COUNT_CAP = 10_000  # "new questions in the log" counts at most this many (it reads the newest rows only)


@dataclass
class ChangesSince:
    """What a retrain would learn that the production model did not see (the Runs page, before Retrain)."""

    version: str
    trained_at: datetime
    verified_pairs: int  # verified at or above the training threshold since then
    kb_version_then: int | None
    kb_version_now: int | None
    kb_changed: bool  # the knowledge base's content differs (a re-import of the same content is no change)
    examples_then: int | None
    examples_now: int | None
    log_questions: int  # customer turns logged since, capped at LOG_COUNT_CAP
    log_capped: bool


def changes_since_production(session: Session) -> ChangesSince | None:
    """New verified pairs, knowledge-base edits and logged questions since the production model was built."""
    plan = serving_plan(session)
    if not plan or not plan["production"]:
        return None
    # Columns, not rows: a model's metrics and a knowledge-base version's snapshot are large, and the Runs
    # page (which asks this) refreshes every few seconds while a run trains.
    model = session.execute(
        select(ModelVersion.version, ModelVersion.created_at, ModelVersion.kb_version_id).where(
            ModelVersion.version == plan["production"][0]
        )
    ).first()
    if model is None:
        return None
    since = as_utc(model.created_at)
    pairs = session.scalar(
        select(func.count())
        .select_from(VerifiedPair)
        .where(VerifiedPair.created_at > since, VerifiedPair.weight >= MIN_PAIR_WEIGHT)
    )
    kb_columns = (KnowledgeBaseVersion.id, KnowledgeBaseVersion.data_hash, KnowledgeBaseVersion.example_count)
    then = (
        session.execute(select(*kb_columns).where(KnowledgeBaseVersion.id == model.kb_version_id)).first()
        if model.kb_version_id
        else None
    )
    now = session.execute(select(*kb_columns).order_by(KnowledgeBaseVersion.id.desc()).limit(1)).first()
    newest = select(Turn.created_at).order_by(Turn.id.desc()).limit(LOG_COUNT_CAP + 1).subquery()
    logged = session.scalar(select(func.count()).select_from(newest).where(newest.c.created_at > since)) or 0
    return ChangesSince(
        version=model.version,
        trained_at=since,
        verified_pairs=int(pairs or 0),
        kb_version_then=then.id if then else model.kb_version_id,
        kb_version_now=now.id if now else None,
        kb_changed=(then.data_hash if then else None) != (now.data_hash if now else None),
        examples_then=then.example_count if then else None,
        examples_now=now.example_count if now else None,
        log_questions=min(int(logged), LOG_COUNT_CAP),
        log_capped=int(logged) > LOG_COUNT_CAP,
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
    inputs: str | None = None,
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
        return _gate_and_save(engine, snapshot, settings, onnx=onnx, inputs=inputs)
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
        return _gate_and_save(engine, snapshot, settings, onnx=onnx, inputs=inputs)


def traffic_limit(settings: Settings) -> int:
    """How many traffic questions a snapshot reads: none when self-training is off."""
    return settings.self_training_questions if settings.self_training else 0


def self_training_traffic(snapshot: TrainingSnapshot, settings: Settings) -> list[str] | None:
    """The snapshot's traffic questions when self-training applies (on, and at least the minimum)."""
    if not settings.self_training or len(snapshot.traffic_texts) < settings.self_training_min_questions:
        return None
    return snapshot.traffic_texts


def _gate_and_save(
    engine: AnsweringEngine,
    snapshot: TrainingSnapshot,
    settings: Settings,
    *,
    onnx: bool,
    inputs: str | None = None,
) -> tuple[AnsweringEngine, Path, dict[str, Any]]:
    bundle = Path(settings.model_dir) / engine.version
    metrics = dict(engine.manifest["calibration_metrics"])
    if inputs is not None:
        metrics["inputs_hash"] = inputs
    metrics["crowd_pairs"] = snapshot.crowd_pairs
    metrics["out_of_scope_pairs"] = snapshot.out_of_scope_pairs
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
        session,
        min_pair_weight=min_pair_weight,
        traffic_limit=traffic_limit(settings),
        none_fits=settings.none_fits_out_of_scope,
    )
    engine, bundle, metrics = fit_bundle(
        snapshot,
        settings,
        progress=progress,
        onnx=onnx,
        on_progress=on_progress,
        inputs=inputs_hash(snapshot, settings, onnx=onnx),
    )
    return register_bundle(
        session, engine=engine, bundle=bundle, metrics=metrics, kb_version_id=snapshot.kb_version_id
    )
