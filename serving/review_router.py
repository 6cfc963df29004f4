"""Routing turns into review off the request path: a background thread clusters and stores review items,
so chat latency does not depend on the size of the review queue."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from core.db import Database
from core.models import Turn
from crowd_feedback.review import (
    ReviewPolicy,
    attach_similar_turn,
    route_turn,
    set_item_vectors,
    similar_pending_item,
    unvectored_items,
)
from serving.background import BackgroundQueue

log = logging.getLogger("helploop.serving.review_router")
Embedder = Callable[[str], np.ndarray | None]
BatchEmbedder = Callable[[list[str]], np.ndarray | None]


class ReviewRouter:
    def __init__(
        self,
        database: Database,
        policy: ReviewPolicy,
        write_lock: AbstractContextManager[Any],
        *,
        capacity: int = 5000,
        on_skip: Callable[[], None] | None = None,
        embed_texts: BatchEmbedder | None = None,
    ) -> None:
        """``embed_texts``: the serving model's encoder (None while no model serves), used to give vectors to
        pending items that have none (see ``crowd_feedback.review.unvectored_items``)."""
        self.database = database
        self.embed_texts = embed_texts
        self.policy = policy
        self.write_lock = write_lock
        self._work = BackgroundQueue("helploop-review-router", self._route, capacity=capacity)
        self._skipped = 0
        self._on_skip = on_skip or (lambda: None)

    @property
    def routed(self) -> int:
        return self._work.done

    @property
    def skipped(self) -> int:
        """Turns without a reason that were not offered to pending items because the router was busy."""
        return self._skipped

    def submit(self, turn_id: int, reasons: list[str], embedding: np.ndarray | Embedder | None) -> None:
        """``embedding``: the message's vector, or a function that computes it in the background.

        A turn with reasons is routed (it joins a similar item or opens one). A turn without reasons only
        joins a similar pending item (``attach_similar_turn``); that is a bonus, so it is skipped while the
        queue is half full, and routed turns always have room."""
        if reasons:
            self._work.put((turn_id, reasons, embedding))
        elif embedding is not None and not self._work.offer((turn_id, reasons, embedding)):
            self._skipped += 1
            self._on_skip()

    def _route(self, item: tuple[int, list[str], Any]) -> None:
        turn_id, reasons, embedding = item
        with self.database.session() as session:
            turn = session.get(Turn, turn_id)
            if turn is None:
                return
            vector = embedding(turn.user_text) if callable(embedding) else embedding
            try:
                self._give_items_vectors(session)
            except Exception:  # noqa: BLE001 - a backfill failure must not cost this turn its routing
                session.rollback()
                log.exception("giving pending review items their vectors failed")
            if not reasons and similar_pending_item(session, turn, vector, self.policy) is None:
                return  # the common case for a confident answer: nothing to write, no write lock taken
            with self.write_lock:
                if reasons:
                    route_turn(session, turn=turn, reasons=reasons, embedding=vector, policy=self.policy)
                else:
                    attach_similar_turn(session, turn=turn, embedding=vector, policy=self.policy)
                session.commit()

    def _give_items_vectors(self, session: Any) -> None:
        """Before a turn looks for a similar pending item, pending items without a vector get one (one cheap
        query when there are none, the usual case), so that look-alikes can join them too."""
        if self.embed_texts is None:
            return
        missing = unvectored_items(session)
        if not missing:
            return
        vectors = self.embed_texts([text for _, text in missing])
        if vectors is None:
            return
        with self.write_lock:
            set_item_vectors([item for item, _ in missing], vectors)
            session.commit()

    def drain(self, timeout: float = 10.0) -> bool:
        return self._work.drain(timeout)
