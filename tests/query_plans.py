"""SQLite query plans of what a function runs: for tests that a report reads an index, not the whole log.
A plan is what SQLite's planner makes of the statement without statistics (an installation's file has none);
PostgreSQL plans with its statistics, so these tests run on SQLite alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session


def sqlite_only(session: Session) -> None:
    if session.get_bind().dialect.name != "sqlite":
        pytest.skip("a plan of SQLite's query planner (PostgreSQL plans with its statistics)")


def plans(session: Session, run: Callable[[Session], Any], *, containing: str) -> list[str]:
    """EXPLAIN QUERY PLAN of each statement ``run(session)`` executes whose SQL holds ``containing``, its
    steps joined by " | " (the outermost loop first)."""
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if containing in statement:
            statements.append((statement, parameters))

    engine = session.get_bind().engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        run(session)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    connection = session.connection()
    return [
        " | ".join(row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters))
        for sql, parameters in statements
    ]
