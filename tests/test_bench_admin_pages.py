"""The admin-pages benchmark's synthetic month: the traffic and review items it writes have the shape its
docstring states, and the product's own figures read them (a small SQLite database, no model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("admin_pages.py")


def test_the_synthetic_month_has_the_stated_shape_and_the_overview_reads_it(
    bench: Any, tmp_path: Path
) -> None:
    from core import migrate
    from core.db import Database
    from core.models import Judgement, ReviewItem, ReviewItemTurn, Turn
    from core.settings import load_settings
    from crowd_feedback.outcomes import canary_comparison, promotion_effects
    from crowd_feedback.quality import overview

    settings = load_settings({"database_url": f"sqlite:///{tmp_path / 'b.sqlite3'}"}, environ={})
    database = Database(settings)
    migrate.upgrade(database.engine)
    shape = bench.fill(database, turns=4000, items=300, seed=0)
    assert shape == {"intents": 77, "turns": 4000}
    with database.session() as session:
        statuses = dict(session.execute(select(Turn.status, func.count()).group_by(Turn.status)).all())
        assert sum(statuses.values()) == 4000
        assert statuses["clarify"] / 4000 == pytest.approx(0.10, abs=0.02)
        assert statuses["handoff"] / 4000 == pytest.approx(0.08, abs=0.02)
        complaints = session.scalar(select(func.count()).where(Turn.rated_turn_id.is_not(None)))
        assert complaints == statuses["small_talk"] and complaints > 20
        items = session.scalars(select(ReviewItem)).all()
        assert len(items) == 300 and all(item.embedding and len(item.embedding) == 384 for item in items)
        resolved = [item for item in items if item.status == "resolved"]
        assert len(resolved) / 300 == pytest.approx(0.6, abs=0.1)  # 3.5 standard deviations at n = 300
        judged = dict(
            session.execute(select(Judgement.item_id, func.count()).group_by(Judgement.item_id)).all()
        )
        assert all(judged[item.id] == 3 for item in resolved)
        audits = session.execute(
            select(ReviewItem.status, ReviewItem.resolved_label, Turn.intent)
            .join(ReviewItemTurn, ReviewItemTurn.item_id == ReviewItem.id)
            .join(Turn, Turn.id == ReviewItemTurn.turn_id)
            .where(ReviewItemTurn.reason == "audit")
        ).all()
        settled = [(label, intent) for status, label, intent in audits if status == "resolved"]
        figures = overview(session, days=31)
        # every audit falls within the month: the overview's audited precision counts exactly these
        assert figures.quality.audited == len(settled) > 10
        assert figures.quality.precision == pytest.approx(
            sum(label == intent for label, intent in settled) / len(settled)
        )
        assert figures.complaints.asked == complaints
        # the deployment history the Runs page reads: a canary on a tenth of the last days' sessions, and a
        # promotion with a week of production's turns on either side
        canary = canary_comparison(session)
        assert canary is not None and canary.candidate.version == bench.CANARY
        assert 0 < canary.candidate.questions < canary.baseline.questions
        assert canary.baseline.version == bench.AFTER
        effects = promotion_effects(session, days=7)
        assert [(e.baseline.version, e.candidate.version) for e in effects] == [(bench.BEFORE, bench.AFTER)]
        assert effects[0].baseline.questions > 100 and effects[0].candidate.questions > 100


def test_the_months_conversations_do_not_collide_across_batches(bench: Any, tmp_path: Path) -> None:
    from core import migrate
    from core.db import Database
    from core.models import Conversation
    from core.settings import load_settings

    database = Database(load_settings({"database_url": f"sqlite:///{tmp_path / 'c.sqlite3'}"}, environ={}))
    migrate.upgrade(database.engine)
    bench.BATCH = 50  # several flushes
    try:
        bench.fill(database, turns=400, items=10, seed=1)
    finally:
        bench.BATCH = 5000
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Conversation)) > 200


def test_review_items_have_vectors_as_routing_stores_them(bench: Any) -> None:
    import random

    vector = bench._unit_vector(random.Random(0))
    assert len(vector) == 384 and abs(sum(v * v for v in vector) - 1.0) < 1e-3
