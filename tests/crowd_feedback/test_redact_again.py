"""Migration 0026 (SQLite and PostgreSQL): review items and verified pairs stored before the newer redaction
rules are redacted again; placeholders the older rules wrote stay, and nothing changes a second time."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import migrate
from core.db import make_engine
from core.models import ReviewItem, VerifiedPair

OLD = "my name is Anna Berg, born 03/04/1985, call [PHONE]"  # as the older rules stored it
NEW = "my name is [NAME], born [DATE_OF_BIRTH], call [PHONE]"


def test_migration_0026_redacts_stored_review_texts_again(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0025")
    with Session(engine) as session:
        item = ReviewItem(text=OLD, status="resolved", cluster_size=1)
        plain = ReviewItem(text="where is my card", status="pending", cluster_size=1)
        session.add_all([item, plain])
        session.flush()
        session.add(VerifiedPair(item_id=item.id, text=OLD, intent="card_arrival", weight=0.95))
        session.commit()
    migrate.upgrade(engine)
    with Session(engine) as session:
        assert sorted(i.text for i in session.scalars(select(ReviewItem))) == [NEW, "where is my card"]
        assert session.scalars(select(VerifiedPair.text)).all() == [NEW]
    migrate.downgrade(engine, "0025")
    migrate.upgrade(engine)  # a second pass finds nothing more
    with Session(engine) as session:
        assert session.scalars(select(VerifiedPair.text)).all() == [NEW]
    engine.dispose()


def test_migration_0027_redacts_the_names_given_without_my_name_is(empty_database_url: str) -> None:
    """Texts stored at 0026 kept a name given in a greeting or a sign-off; 0027 takes it out."""
    engine = make_engine(empty_database_url)
    migrate.upgrade(engine, "0026")
    stored = "Hi, I'm Sarah, my card [CARD_NUMBER] is blocked. Thanks, Sarah Jones"
    with Session(engine) as session:
        item = ReviewItem(text=stored, status="resolved", cluster_size=1)
        session.add(item)
        session.flush()
        session.add(VerifiedPair(item_id=item.id, text=stored, intent="card_blocked", weight=0.9))
        session.commit()
    migrate.upgrade(engine)
    expected = "Hi, I'm [NAME], my card [CARD_NUMBER] is blocked. Thanks, [NAME]"
    with Session(engine) as session:
        assert session.scalars(select(ReviewItem.text)).all() == [expected]
        assert session.scalars(select(VerifiedPair.text)).all() == [expected]
    with engine.begin() as connection:
        assert migrate.redact_stored_texts(connection) == 0  # nothing changes twice
    engine.dispose()
