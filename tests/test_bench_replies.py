"""The replies benchmark: its held-out messages and how the chat's rules read them, now and before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.small_talk import read_small_talk
from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("replies.py")


def test_the_messages_and_their_labels(bench: Any, tmp_path: Path) -> None:
    rows = bench.read_rows()
    assert len(rows) == 110 and len({(r["after"], r["message"]) for r in rows}) == 110
    assert {r["after"] for r in rows} == {"answer", "choices", "anything_else"}
    sizes = {part: sum(r["set"] == part for r in rows) for part in ("first", "second", "third")}
    assert sizes == {"first": 42, "second": 32, "third": 36}
    bad = tmp_path / "bad.csv"
    bad.write_text("set,after,message,expected\nfirst,answer,thanks,thanks\nfirst,choices,first,choice:7\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 3: expected must be one of"):
        bench.read_rows(bad)


def test_choices_are_read_only_after_did_you_mean(bench: Any) -> None:
    now = bench.reader(read_small_talk, choices=True)
    assert now("choices", "the second one") == "choice:2"
    assert now("choices", "none of those") == "none_of_these"
    assert now("answer", "the second one") == "question"  # after an answer: the model's
    assert now("answer", "cheers, that sorted it") == "thanks"
    assert now("choices", "why did my transfer fail") == "question"
    # a yes to several choices asks which; to "anything else?" the question follows; a nod there ends it
    assert now("choices", "yes") == "which_one" and now("choices", "no") == "none_of_these"
    assert now("anything_else", "yes") == "go_ahead" and now("anything_else", "ok") == "goodbye"
    assert now("answer", "ok") == "acknowledgement" and now("answer", "😡") == "not_helpful"


def test_before_reads_with_the_old_rules(bench: Any) -> None:
    """The rules of 3b3f8e0 (before typed choices and the phrases after an answer) read "the second one" and
    "that sorted it" as questions."""
    import subprocess

    known = subprocess.run(["git", "cat-file", "-e", "3b3f8e0^{commit}"], cwd=bench.ROOT, capture_output=True)
    if known.returncode != 0:
        pytest.skip("revision 3b3f8e0 is not in this checkout's git history (a shallow clone)")
    before = bench.reader(bench.old_small_talk("3b3f8e0").read_small_talk, choices=False)
    assert before("choices", "the second one") == "question"
    assert before("answer", "cheers, that sorted it") == "question"
    assert before("answer", "thanks") == "thanks"


def test_questions_after_choices_are_rarely_a_pick_and_never_a_wrong_one(bench: Any) -> None:
    """The fixture's test questions (12 intents) typed right after three choices: a question is read as a pick
    only when the choices name it, and then as its own intent."""
    from tests.conftest import FIXTURES

    result = bench.questions_after_choices(FIXTURES / "banking77_small")
    assert result["questions"] > 100
    assert result["own_intent_not_shown"]["read_as_a_choice"] == 0
    assert result["own_intent_shown"]["wrong"] == 0 and result["own_intent_not_shown"]["wrong"] == 0
