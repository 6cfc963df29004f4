"""Clicked chips out of the review queue: before session 22 a thumbs-down on an answer the customer had picked
from "did you mean" put the chip's own turn ("/change_pin") into review. Such turns are no question; from
pending items nobody has judged yet, their memberships are removed, and an item left with no member is
deleted (its claims with it). Items with judgements, settled items and gold items are left as they are (their
"/intent" pairs are already kept out of training: core.registry.CHIP_PAYLOAD).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

SUGGESTION_ARM = "suggestion"  # core.registry.SUGGESTION_ARM when this migration was written

turns = sa.table("turns", sa.column("id", sa.Integer), sa.column("served_by", sa.String))
members = sa.table("review_item_turns", sa.column("item_id", sa.Integer), sa.column("turn_id", sa.Integer))
items = sa.table(
    "review_items",
    sa.column("id", sa.Integer),
    sa.column("status", sa.String),
    sa.column("is_gold", sa.Boolean),
    sa.column("cluster_size", sa.Integer),
)
judgements = sa.table("judgements", sa.column("item_id", sa.Integer))
claims = sa.table("claims", sa.column("item_id", sa.Integer))


def upgrade() -> None:
    connection = op.get_bind()
    chips = connection.execute(
        sa.select(members.c.item_id, members.c.turn_id)
        .join(turns, turns.c.id == members.c.turn_id)
        .join(items, items.c.id == members.c.item_id)
        .where(
            turns.c.served_by == SUGGESTION_ARM,
            items.c.status == "pending",
            items.c.is_gold.is_(False),
            ~sa.exists().where(judgements.c.item_id == items.c.id),
        )
    ).all()
    removed: dict[int, int] = {}
    for item_id, turn_id in chips:
        connection.execute(
            sa.delete(members).where(members.c.item_id == item_id, members.c.turn_id == turn_id)
        )
        removed[item_id] = removed.get(item_id, 0) + 1
    for item_id, count in removed.items():
        left = connection.scalar(
            sa.select(sa.func.count()).select_from(members).where(members.c.item_id == item_id)
        )
        if left:
            size = connection.scalar(sa.select(items.c.cluster_size).where(items.c.id == item_id))
            connection.execute(
                sa.update(items)
                .where(items.c.id == item_id)
                .values(cluster_size=max(int(size or 1) - count, 1))
            )
        else:
            connection.execute(sa.delete(claims).where(claims.c.item_id == item_id))
            connection.execute(sa.delete(items).where(items.c.id == item_id))


def downgrade() -> None:
    """Nothing to undo in the schema; the removed memberships were of no question and are not restored."""
