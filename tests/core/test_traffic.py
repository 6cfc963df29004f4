"""The overview's 30-day trend: turns per UTC day by status, thumbs-down and promotions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from core.models import Deployment
from core.registry import daily_traffic
from tests.conftest import add_turn

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def test_daily_traffic_counts_each_utc_day_and_marks_promotions(db_session: Session) -> None:
    plan = [  # (days ago, hour, status, thumbs down)
        (0, 1, "answered", False),
        (0, 14, "answered", True),
        (0, 9, "handoff", False),
        (1, 23, "clarify", True),
        (1, 0, "answered", False),
        (3, 12, "handoff", False),
        (4, 12, "answered", False),  # outside a 4-day window
    ]
    for days_ago, hour, status, unhelpful in plan:
        at = (NOW - timedelta(days=days_ago)).replace(hour=hour, minute=30)
        turn = add_turn(db_session, None, f"q {days_ago} {hour}", status=status, created_at=at)
        turn.helpful = False if unhelpful else None
    for days_ago, version in ((6, "v0"), (3, "v1"), (3, "v1"), (1, "v2"), (0, "v2")):
        db_session.add(
            Deployment(
                production_version=version,
                actor="t",
                reason="t",
                created_at=NOW - timedelta(days=days_ago, hours=1),
            )
        )
    db_session.flush()
    days = daily_traffic(db_session, days=4, now=NOW)
    assert [d.day.isoformat() for d in days] == ["2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01"]
    counts = [(d.answered, d.clarify, d.handoff, d.unhelpful) for d in days]
    assert counts == [(0, 0, 1, 0), (0, 0, 0, 0), (1, 1, 0, 1), (2, 0, 1, 1)]
    assert [d.promoted for d in days] == [["v1"], [], ["v2"], []]  # a repeated row is not a promotion
    assert days[3].turns == 3 and abs(days[3].answered_share - 2 / 3) < 1e-9
