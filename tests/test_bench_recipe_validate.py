"""bench/recipe_validate.py reads its --set changes into FineTuneConfig fields with their own types, and
refuses what the recipe has no field for."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("recipe_validate.py", "recipe_validate_bench")


def test_changes_take_the_fields_types(bench: Any) -> None:
    changes = bench.parse_changes(["batch_size=64", "learning_rate=3e-5", "fresh_positives=false"])
    assert changes == {"batch_size": 64, "learning_rate": 3e-5, "fresh_positives": False}
    assert type(changes["batch_size"]) is int and type(changes["learning_rate"]) is float


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["batch=64"], "FIELD one of"),
        (["seed=3"], "FIELD one of"),
        (["batch_size"], "expected FIELD=VALUE"),
        (["batch_size=big"], "batch_size takes a whole number"),
        (["fresh_positives=maybe"], "fresh_positives takes true or false"),
        ([], "at least one --set"),
    ],
)
def test_bad_changes_are_refused_by_name(bench: Any, pairs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bench.parse_changes(pairs)
