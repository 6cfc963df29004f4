"""Build a model bundle from the knowledge base in the database and register it.

This is the bridge between ``core`` (tables) and ``bot`` (engine): it reads the knowledge base, turns it into
plain (text, intent) pairs, fits the engine, saves the bundle and records it in the model registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.engine import AnsweringEngine, EngineConfig, IntentInfo, ProgressCallback
from core.kb_files import KnowledgeBaseData
from core.knowledge_base import latest_kb_version, load_knowledge_base
from core.models import VerifiedPair
from core.registry import register_model_version
from core.settings import Settings


class EmptyKnowledgeBaseError(RuntimeError):
    pass


@dataclass
class BuildResult:
    version: str
    bundle_path: Path
    metrics: dict[str, object]


def engine_config_from_settings(settings: Settings) -> EngineConfig:
    config = EngineConfig(
        target_precision=settings.target_precision,
        cv_folds=settings.cv_folds,
        seed=settings.random_seed,
        top_k=settings.top_k,
    )
    config.encoder = {**config.encoder, "source": settings.encoder, "max_length": settings.encoder_max_length}
    return config


def knowledge_from_kb(kb: KnowledgeBaseData) -> dict[str, IntentInfo]:
    return {
        name: IntentInfo(answer=i.answer, title=i.title, follow_ups=list(i.follow_ups))
        for name, i in kb.intents.items()
    }


def verified_training_pairs(
    session: Session, *, known: set[str], min_weight: float
) -> tuple[list[str], list[str]]:
    """Crowd-verified (question, intent) pairs for intents that still exist, above the posterior threshold."""
    rows = session.execute(
        select(VerifiedPair.text, VerifiedPair.intent)
        .where(VerifiedPair.weight >= min_weight)
        .order_by(VerifiedPair.id)
    ).all()
    pairs = [(text, intent) for text, intent in rows if intent in known]
    return [t for t, _ in pairs], [i for _, i in pairs]


def build_model(
    session: Session,
    settings: Settings,
    *,
    progress: bool = False,
    onnx: bool = False,
    on_progress: ProgressCallback | None = None,
    min_pair_weight: float = 0.9,
) -> BuildResult:
    kb = load_knowledge_base(session)
    if not kb.intents:
        raise EmptyKnowledgeBaseError("the knowledge base is empty: import one with `helploop kb import`")
    texts, labels = kb.training_pairs()
    crowd_texts, crowd_labels = verified_training_pairs(
        session, known=set(kb.intents), min_weight=min_pair_weight
    )
    seen = set(zip(texts, labels, strict=True))
    for text, label in zip(crowd_texts, crowd_labels, strict=True):
        if (text, label) not in seen:
            texts.append(text)
            labels.append(label)
            seen.add((text, label))
    engine = AnsweringEngine(engine_config_from_settings(settings), threads=settings.torch_threads)
    engine.fit(texts, labels, knowledge=knowledge_from_kb(kb), progress=progress, on_progress=on_progress)
    bundle = Path(settings.model_dir) / engine.version
    metrics = dict(engine.manifest["calibration_metrics"])
    metrics["crowd_pairs"] = len(crowd_texts)
    engine.save(bundle, metrics=metrics)
    if onnx:
        engine.export_onnx()
    kb_version = latest_kb_version(session)
    register_model_version(
        session,
        version=engine.version,
        bundle_path=str(bundle),
        data_hash=engine.manifest["data_hash"],
        metrics=metrics,
        kb_version_id=kb_version.id if kb_version else None,
    )
    return BuildResult(engine.version, bundle, metrics)
