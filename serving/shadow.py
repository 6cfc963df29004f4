"""Shadow scoring off the request path: the candidate model answers every live message in a background
thread and its prediction is written onto the turn; users never see it and never wait for it."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from bot.engine import AnsweringEngine
from core.db import Database
from core.models import Turn

log = logging.getLogger("helploop.serving.shadow")


class ShadowScorer:
    def __init__(
        self, database: Database, *, capacity: int = 1000, on_drop: Callable[[], None] | None = None
    ) -> None:
        self.database = database
        self._queue: queue.Queue[tuple[AnsweringEngine, int, str] | None] = queue.Queue(maxsize=capacity)
        self._on_drop = on_drop or (lambda: None)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.scored = 0
        self.dropped = 0

    def submit(self, engine: AnsweringEngine, turn_id: int, message: str) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="helploop-shadow", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((engine, turn_id, message))
        except queue.Full:
            # Shadow traffic is a sample, not a promise: under overload, skip rather than slow users down.
            self.dropped += 1
            self._on_drop()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            engine, turn_id, message = item
            try:
                prediction = engine.predict(message)
                summary: dict[str, Any] = {
                    "model_version": prediction.model_version,
                    "status": prediction.status,
                    "intent": prediction.intent,
                    "top_intent": prediction.top_intent,
                    "confidence": prediction.confidence,
                }
                with self.database.session() as session:
                    turn = session.get(Turn, turn_id)
                    if turn is not None:
                        turn.shadow_prediction = summary
                self.scored += 1
            except Exception:  # noqa: BLE001 - a failing shadow must never affect serving
                log.exception("shadow scoring failed for turn %s", turn_id)
            finally:
                self._queue.task_done()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted message is scored (tests, shutdown)."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)
