"""Routing turns into review off the request path: a background thread clusters and stores review items,
so chat latency does not depend on the size of the review queue."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from core.db import Database
from core.models import Turn
from crowd_feedback.review import ReviewPolicy, route_turn
from serving.background import BackgroundQueue

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
        self._work = BackgroundQueue("helploop-review-router", self._route, capacity=capacity)

    @property
    def routed(self) -> int:
        return self._work.done

    def submit(self, turn_id: int, reasons: list[str], embedding: np.ndarray | Embedder | None) -> None:
        """``embedding``: the message's vector, or a function that computes it in the background."""
        if reasons:
            self._work.put((turn_id, reasons, embedding))

    def _route(self, item: tuple[int, list[str], Any]) -> None:
        turn_id, reasons, embedding = item
        with self.database.session() as session:
            turn = session.get(Turn, turn_id)
            if turn is None:
                return
            vector = embedding(turn.user_text) if callable(embedding) else embedding
            with self.write_lock:
                route_turn(session, turn=turn, reasons=reasons, embedding=vector, policy=self.policy)
                session.commit()

    def drain(self, timeout: float = 10.0) -> bool:
        return self._work.drain(timeout)
