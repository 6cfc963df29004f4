"""Shadow scoring off the request path: the candidate model answers every live message in a background
thread and its prediction is written onto the turn; users never see it and never wait for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.engine import AnsweringEngine, MetadataFilter
from bot.follow_up import Earlier, read_follow_up
from core.db import Database
from core.models import Turn
from serving.background import BackgroundQueue


class ShadowScorer:
    def __init__(
        self, database: Database, *, capacity: int = 1000, on_drop: Callable[[], None] | None = None
    ) -> None:
        self.database = database
        # Shadow traffic is a sample, not a promise: under overload it is skipped, never slows users down.
        self._work = BackgroundQueue("helploop-shadow", self._score, capacity=capacity, on_drop=on_drop)

    @property
    def scored(self) -> int:
        return self._work.done

    def submit(
        self,
        engine: AnsweringEngine,
        turn_id: int,
        message: str,
        only: MetadataFilter | None = None,
        *,
        earlier: Earlier | None = None,
    ) -> None:
        """Score ``message`` as production did: under the same metadata filter ``only``, and a follow-up with
        the same question before it (``earlier``: the conversation production answered in)."""
        self._work.put((engine, turn_id, message, only, earlier))

    def _score(self, item: tuple[AnsweringEngine, int, str, MetadataFilter | None, Earlier | None]) -> None:
        engine, turn_id, message, only, earlier = item
        reading = read_follow_up(engine, message, earlier=earlier, only=only)
        prediction = reading.prediction
        summary: dict[str, Any] = {
            "model_version": prediction.model_version,
            "status": prediction.status,
            "intent": prediction.intent,
            "top_intent": prediction.top_intent,
            "confidence": prediction.confidence,
            "read_with_earlier": reading.context is not None,
        }
        with self.database.session() as session:
            turn = session.get(Turn, turn_id)
            if turn is not None:
                turn.shadow_prediction = summary

    def drain(self, timeout: float = 10.0) -> bool:
        return self._work.drain(timeout)
