"""Per-process model holder: follows the active deployment, loads bundles in the background and swaps them
in atomically. Requests read one immutable snapshot and never wait on a load; a bundle that fails to load is
refused (logged) and whatever was serving keeps serving. It also follows the knowledge base's answers (titles,
answers, follow-ups) and applies them to the loaded models, so an edited answer is live within a poll."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.engine import AnsweringEngine

log = logging.getLogger("helploop.serving.models")

Loader = Callable[[str], AnsweringEngine]


def read_as_set(
    engine: AnsweringEngine, *, spelling_correction: bool, keyword_share: float, negation: bool
) -> AnsweringEngine:
    """A loaded model set to read messages as the settings say: misspelt words corrected or read as typed
    (``bot.spelling``), keyword messages checked at this share or answered as any (0; ``bot.keywords``), an
    intent the customer negates ruled out or not (``bot.negation``)."""
    engine.negation = negation
    if not spelling_correction:
        engine.spelling = None
    if not keyword_share:
        engine.keywords = None
    elif engine.keywords is not None:
        engine.keywords.min_share = keyword_share
    return engine


# known knowledge-base version -> the newest answer book, or None when unchanged
AnswersReader = Callable[[int | None], Any]


@dataclass(frozen=True)
class ServingState:
    production: AnsweringEngine | None = None
    canary: AnsweringEngine | None = None
    canary_share: float = 0.0
    shadow: AnsweringEngine | None = None
    deployment_id: int | None = None
    loaded_at: float = field(default_factory=time.time)

    def engine_for(self, session_id: str) -> tuple[AnsweringEngine, str]:
        """Production or canary, by a stable hash of the session id (a session never flips arms)."""
        if self.production is None:
            raise RuntimeError("no model loaded")
        if self.canary is not None and self.canary_share > 0 and bucket(session_id) < self.canary_share:
            return self.canary, "canary"
        return self.production, "production"


def bucket(session_id: str) -> float:
    digest = hashlib.sha256(session_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ModelHolder:
    def __init__(
        self,
        plan_reader: Callable[[], dict[str, Any] | None],
        loader: Loader,
        *,
        poll_seconds: float = 5.0,
        answers_reader: AnswersReader | None = None,
    ) -> None:
        self._read_plan = plan_reader
        self._load = loader
        self._read_answers = answers_reader
        self._answers: Any = None  # the newest answer book read (core.knowledge_base.AnswerBook)
        self.poll_seconds = poll_seconds
        self._state = ServingState()
        self._cache: dict[str, AnsweringEngine] = {}
        self._failed: dict[str, float] = {}
        # version -> the target precision its gate was last set to (what the plan asked for)
        self._applied: dict[str, float | None] = {}
        self.target_precision: float | None = None  # what the operator asked for (None: as built)
        self._lock = threading.Lock()
        self._loading = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def state(self) -> ServingState:
        return self._state  # one attribute read: atomic under the GIL

    @property
    def ready(self) -> bool:
        return self._state.production is not None

    def _engine(self, version: str, path: str) -> AnsweringEngine | None:
        if version in self._cache:
            return self._cache[version]
        failed_at = self._failed.get(version)
        if failed_at is not None and time.time() - failed_at < 60:
            return None
        try:
            engine = self._load(path)
            if self._answers is not None:
                engine.update_answers(self._answers.intents, self._answers.metadata)
                engine.update_synonyms(self._answers.synonyms)
            engine.predict("warm up")  # load the encoder now, not on a user's request
        except Exception as exc:  # noqa: BLE001 - any broken bundle is refused the same way
            self._failed[version] = time.time()
            self.last_error = f"model {version} at {path} refused: {type(exc).__name__}: {exc}"
            log.error(self.last_error)
            return None
        self._cache[version] = engine
        return engine

    def _follow_answers(self) -> None:
        """Apply a newer answer book to the loaded models (and remember it for models loaded later)."""
        if self._read_answers is None:
            return
        try:
            book = self._read_answers(self._answers.kb_version_id if self._answers is not None else None)
        except Exception as exc:  # noqa: BLE001 - the database may be briefly unavailable
            log.warning("could not read the answers: %s", exc)
            return
        if book is None:
            return
        self._answers = book
        current = self._state
        for engine in {id(e): e for e in (current.production, current.canary, current.shadow) if e}.values():
            changed = engine.update_answers(book.intents, book.metadata)
            if engine.update_synonyms(book.synonyms):
                log.info("model %s: %d synonym groups read", engine.version, len(book.synonyms))
            if changed:
                log.info(
                    "model %s: %d answers updated from knowledge base version %s",
                    engine.version,
                    changed,
                    book.kb_version_id,
                )

    def refresh(self) -> bool:
        """Bring the state in line with the plan (and the answers with the knowledge base); True when a model
        was swapped in."""
        with self._lock:
            self._follow_answers()
            try:
                plan = self._read_plan()
            except Exception as exc:  # noqa: BLE001 - the database may be briefly unavailable
                self.last_error = f"could not read the deployment: {exc}"
                log.warning(self.last_error)
                return False
            if plan is None or plan["production"] is None:
                return False
            current = self._state
            wanted = {arm: plan[arm] for arm in ("production", "canary", "shadow")}
            engines: dict[str, AnsweringEngine | None] = {}
            for arm, target in wanted.items():
                if target is None:
                    engines[arm] = None
                    continue
                engine = self._engine(*target)
                if engine is None:
                    # Keep what this arm served before (or nothing, for a new canary/shadow).
                    engines[arm] = getattr(current, arm)
                else:
                    engines[arm] = engine
            if engines["production"] is None:
                return False
            new_state = ServingState(
                production=engines["production"],
                canary=engines["canary"],
                canary_share=float(plan["canary_share"]) if engines["canary"] is not None else 0.0,
                shadow=engines["shadow"],
                deployment_id=plan["deployment_id"],
            )
            changed = any(
                getattr(new_state, a) is not getattr(current, a) for a in ("production", "canary", "shadow")
            )
            changed = changed or new_state.canary_share != current.canary_share
            self._apply_target(new_state, plan.get("target_precision"))
            if changed:
                self._state = new_state
                in_use = {e.version for e in (new_state.production, new_state.canary, new_state.shadow) if e}
                self._cache = {v: e for v, e in self._cache.items() if v in in_use}
                self._applied = {v: t for v, t in self._applied.items() if v in in_use}
                log.info("serving %s", ", ".join(sorted(in_use)))
            return changed

    def _apply_target(self, state: ServingState, target: float | None) -> None:
        """Set every loaded model's gate to the precision the operator asked for (each model has its own
        threshold for it, fitted on its held-out rows), once per model and change."""
        self.target_precision = target
        for engine in (e for e in (state.production, state.canary, state.shadow) if e is not None):
            if engine.version in self._applied and self._applied[engine.version] == target:
                continue
            self._applied[engine.version] = target
            if engine.use_target_precision(target):
                log.info("model %s answers at precision %s", engine.version, target or "as built")
            else:
                log.warning(
                    "model %s has no gate for precision %s (built before gate options): it keeps its own",
                    engine.version,
                    target,
                )

    def start(self) -> None:
        """Load in the background now, then poll for deployment changes."""
        if self._thread is not None:
            return

        def run() -> None:
            while not self._stop.is_set():
                self.refresh()
                self._stop.wait(self.poll_seconds)

        self._thread = threading.Thread(target=run, name="helploop-model-holder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
