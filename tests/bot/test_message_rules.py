"""The rules read before the model (bot.handoff, bot.small_talk) against real banking questions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.handoff import asks_for_person
from bot.small_talk import small_talk_kind
from tests.conftest import banking77_questions


@pytest.mark.parametrize("rule", [asks_for_person, small_talk_kind], ids=["handoff request", "small talk"])
@pytest.mark.parametrize("full", [False, True], ids=["fixture", "full BANKING77"])
def test_no_banking77_question_is_caught(rule: Callable[[str], object], full: bool) -> None:
    """Real banking questions, several about people (payees, other cardholders) or opening with a greeting:
    neither rule may take a single one from the model."""
    texts = banking77_questions(full)
    assert len(texts) > (13_000 if full else 250)
    assert [t for t in texts if rule(t)] == []
