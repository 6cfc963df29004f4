"""The reviewing guidelines as versioned text: saving, the history, and who has read which version (both
databases)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from core.models import User
from crowd_feedback.guidelines import (
    BUILT_IN,
    DEFAULT_GUIDELINES,
    MAX_GUIDELINES_LENGTH,
    GuidelinesError,
    current_guidelines,
    guidelines_history,
    guidelines_unread,
    guidelines_version,
    mark_guidelines_read,
    save_guidelines,
)
from crowd_feedback.reviewers import create_user


def test_versions_history_and_refusals(db_session: Session) -> None:
    built_in = current_guidelines(db_session)
    assert (built_in.version, built_in.text, built_in.author) == (BUILT_IN, DEFAULT_GUIDELINES, None)
    assert guidelines_history(db_session) == []

    first = save_guidelines(db_session, text="  1. Read the question.\r\n2. Pick one.   \n\n", author="omar")
    assert first is not None and first.version > BUILT_IN
    assert first.text == "1. Read the question.\n2. Pick one."  # line ends and outer blanks normalised
    assert save_guidelines(db_session, text="1. Read the question.\n2. Pick one.\n", author="ola") is None
    second = save_guidelines(db_session, text="Only **one** rule.", author="ola")
    assert second is not None and second.version > first.version
    # Each new version tells the operators (none for the unchanged save above).
    from core.events import recent_events

    events = recent_events(db_session, kind="guidelines.changed")
    assert len(events) == 2
    assert events[0].text == (
        f"Reviewing guidelines version {second.version} saved by ola (1 line added, 2 removed): "
        "each reviewer is asked to read them before their next item."
    )
    assert events[0].data == {
        "version": second.version,
        "previous": first.version,
        "author": "ola",
        "added": 1,
        "removed": 2,
        "path": "/review/guidelines",
    }
    assert events[1].data["previous"] == BUILT_IN
    assert current_guidelines(db_session) == second
    assert [g.version for g in guidelines_history(db_session)] == [second.version, first.version]
    assert [g.version for g in guidelines_history(db_session, limit=1)] == [second.version]
    assert guidelines_version(db_session, version=first.version).text == first.text
    assert guidelines_version(db_session, version=BUILT_IN).text == DEFAULT_GUIDELINES
    # Back to the built-in text is a new version like any other.
    third = save_guidelines(db_session, text=DEFAULT_GUIDELINES, author="omar")
    assert third is not None and third.text == DEFAULT_GUIDELINES.strip()

    with pytest.raises(GuidelinesError, match="empty"):
        save_guidelines(db_session, text=" \n \n", author="omar")
    with pytest.raises(GuidelinesError, match=f"{MAX_GUIDELINES_LENGTH + 1} characters, limit"):
        save_guidelines(db_session, text="x" * (MAX_GUIDELINES_LENGTH + 1), author="omar")
    with pytest.raises(GuidelinesError, match=r"line 2 contains a NUL character \(U\+0000\)"):
        save_guidelines(db_session, text="# Rules\nnever\x00 guess", author="omar")  # PostgreSQL refuses NUL
    with pytest.raises(GuidelinesError, match="version 999999 does not exist"):
        guidelines_version(db_session, version=999_999)
    assert current_guidelines(db_session) == third


def test_a_reviewer_is_asked_to_read_each_new_version_once(db_session: Session) -> None:
    rita = create_user(db_session, username="rita", password="correct horse battery", role="reviewer")
    assert rita.guidelines_read is None
    assert guidelines_unread(db_session, user=rita).version == BUILT_IN  # never read any
    mark_guidelines_read(db_session, user_id=rita.id, version=BUILT_IN)
    assert rita.guidelines_read == BUILT_IN and guidelines_unread(db_session, user=rita) is None

    saved = save_guidelines(db_session, text="New rule: *never guess*.", author="omar")
    assert saved is not None
    assert guidelines_unread(db_session, user=rita) == saved
    mark_guidelines_read(db_session, user_id=rita.id, version=saved.version)
    db_session.flush()
    assert guidelines_unread(db_session, user=rita) is None
    # Reading an older version (an operator's link) never lowers what was read.
    mark_guidelines_read(db_session, user_id=rita.id, version=BUILT_IN)
    assert db_session.get(User, rita.id).guidelines_read == saved.version


def test_the_diff_between_two_versions_line_by_line() -> None:
    from crowd_feedback.guidelines import Guidelines, guidelines_diff

    before = Guidelines(1, "1. Read.\n2. Pick one.\n3. Skip if unsure.", "omar", None)
    after = Guidelines(
        2, "1. Read.\n2. Pick the most specific one.\n3. Skip if unsure.\n4. Be kind.", "ola", None
    )
    assert guidelines_diff(before, after) == [
        ("@", "@@ -1,3 +1,4 @@"),
        (" ", "1. Read."),
        ("-", "2. Pick one."),
        ("+", "2. Pick the most specific one."),
        (" ", "3. Skip if unsure."),
        ("+", "4. Be kind."),
    ]
    assert guidelines_diff(before, before) == []
