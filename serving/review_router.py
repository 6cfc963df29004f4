"""Routing turns into review off the request path: a background thread clusters and stores review items,
so chat latency does not depend on the size of the review queue."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from core.db import Database
from core.models import Turn
from crowd_feedback.review import ReviewPolicy, route_turn

log = logging.getLogger("helploop.serving.review")
Embedder = Callable[[str], np.ndarray | None]


class ReviewRouter:
    def __init__(
        self,
        database: Database,
        policy: ReviewPolicy,
        write_lock: AbstractContextManager[Any],
        *,
        capacity: int = 5000,
    ) -> None:
        self.database = database
        self.policy = policy
        self.write_lock = write_lock
        self._queue: queue.Queue[tuple[int, list[str], Any]] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.routed = 0
        self.dropped = 0

    def submit(self, turn_id: int, reasons: list[str], embedding: np.ndarray | Embedder | None) -> None:
        """``embedding``: the message's vector, or a function that computes it in the background."""
        if not reasons:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="helploop-review-router", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((turn_id, reasons, embedding))
        except queue.Full:
            self.dropped += 1
            log.warning("review queue full: turn %s not routed", turn_id)

    def _run(self) -> None:
        while True:
            turn_id, reasons, embedding = self._queue.get()
            try:
                with self.database.session() as session:
                    turn = session.get(Turn, turn_id)
                    if turn is not None:
                        vector = embedding(turn.user_text) if callable(embedding) else embedding
                        with self.write_lock:
                            route_turn(
                                session, turn=turn, reasons=reasons, embedding=vector, policy=self.policy
                            )
                            session.commit()
                self.routed += 1
            except Exception:  # noqa: BLE001 - routing must never take serving down
                log.exception("routing turn %s failed", turn_id)
            finally:
                self._queue.task_done()

    def drain(self, timeout: float = 10.0) -> bool:
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)
