"""HelpLoop's answering engine: pure Python + torch. No Flask, no database, nothing loaded at import."""

from bot.engine import (
    ANSWERED,
    CLARIFY,
    HANDOFF,
    AnsweringEngine,
    BundleError,
    Candidate,
    EngineConfig,
    IntentInfo,
    MetadataFilter,
    Prediction,
)

__all__ = [
    "ANSWERED",
    "CLARIFY",
    "HANDOFF",
    "AnsweringEngine",
    "BundleError",
    "Candidate",
    "EngineConfig",
    "IntentInfo",
    "MetadataFilter",
    "Prediction",
]
