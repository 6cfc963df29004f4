"""Migration 0024 (SQLite and PostgreSQL): clicked chips that an earlier release put into review leave the
pending items nobody has judged; what people judged or settled, and gold items, stay as they were."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from core import migrate
from core.db import make_engine
from core.models import Claim, Conversation, Judgement, ReviewItem, ReviewItemTurn, User, new_uuid, utcnow
from core.registry import SUGGESTION_ARM
from tests.conftest import insert_row


def test_migration_0024_takes_clicked_chips_out_of_pending_review(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0023")
    with Session(engine) as session:
        conversation = insert_row(session, Conversation, id=new_uuid(), channel="widget")  # 0023's columns

        def turn(text: str, *, chip: bool) -> int:
            # Plain SQL with the columns of revision 0023: the model (log_turn) writes columns added later.
            return int(
                session.execute(
                    sql(
                        "INSERT INTO turns (conversation_id, created_at, user_text, status, intent, answer, "
                        "confidence, candidates, member_scores, model_version, latency_ms, served_by) VALUES "
                        "(:conversation, :now, :text, 'answered', 'change_pin', 'At an ATM.', :confidence, "
                        "'[]', '{}', 'v1', 1.0, :arm) RETURNING id"
                    ),
                    {
                        "conversation": conversation,
                        "now": utcnow(),
                        "text": text,
                        "confidence": 1.0 if chip else 0.8,
                        "arm": SUGGESTION_ARM if chip else "production",
                    },
                ).scalar_one()
            )

        # As the turns above: only columns of revision 0023 (the model names users' later ones, 0049's too).
        ann = insert_row(session, User, username="ann", password_hash="x", role="reviewer")
        items: dict[str, int] = {}
        for name, status, members, gold in [
            ("chip alone", "pending", [True], False),
            ("chip and question", "pending", [True, False], False),
            ("judged chip", "pending", [True], False),
            ("settled chip", "resolved", [True], False),
            ("question", "pending", [False], False),
            ("gold", "pending", [], True),
        ]:
            items[name] = insert_row(
                session, ReviewItem, text=name, status=status, cluster_size=max(len(members), 1), is_gold=gold
            )
            for i, chip in enumerate(members):
                text = "/change_pin" if chip else f"how do I change my pin {i}"
                session.add(
                    ReviewItemTurn(item_id=items[name], turn_id=turn(text, chip=chip), reason="thumbs_down")
                )
        insert_row(session, Judgement, item_id=items["judged chip"], reviewer_id=ann, label="change_pin")
        session.add(
            Claim(item_id=items["chip alone"], reviewer_id=ann, expires_at=utcnow() + timedelta(minutes=9))
        )
        session.commit()
    migrate.upgrade(engine)
    with Session(engine) as session:
        left = {item.text: item for item in session.scalars(select(ReviewItem))}
        assert set(left) == set(items) - {"chip alone"}
        assert session.scalars(select(Claim)).all() == []
        sizes = {name: (item.cluster_size, len(item.turns)) for name, item in left.items()}
        assert sizes == {
            "chip and question": (1, 1),
            "judged chip": (1, 1),
            "settled chip": (1, 1),
            "question": (1, 1),
            "gold": (1, 0),
        }
    engine.dispose()
