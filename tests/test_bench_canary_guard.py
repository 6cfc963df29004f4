"""The canary-guard benchmark: simulated arms serve as specified, and the rollout runs through the product's
guard (``crowd_feedback.outcomes.guard_findings``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_bench("canary_guard.py")


def test_a_simulated_arm_serves_as_specified(bench: Any) -> None:
    arm = bench.Arm({"status": (0.6, 0.3, 0.1), "thumbs_down": 0.2})
    arm.serve(20000, np.random.default_rng(0))
    outcomes = arm.outcomes("B")
    assert outcomes.questions == 20000
    assert outcomes.answered / 20000 == pytest.approx(0.6, abs=0.01)
    assert outcomes.handoff / 20000 == pytest.approx(0.1, abs=0.01)
    assert outcomes.picked / outcomes.clarify == pytest.approx(bench.PICK_RATE, abs=0.02)
    assert outcomes.rated / outcomes.answered == pytest.approx(bench.RATED_RATE, abs=0.02)
    assert outcomes.unhelpful / outcomes.rated == pytest.approx(0.2, abs=0.03)


def test_the_guard_ends_a_much_worse_canary_and_waits_for_its_minimum(bench: Any) -> None:
    args = argparse.Namespace(share=0.5, look=50, horizon=2000, min_questions=300)
    rng = np.random.default_rng(1)
    ends = [bench.one_rollout(bench.SCENARIOS["answered -10"], "always-valid", rng, args) for _ in range(10)]
    assert all(e is not None and 300 <= e <= 1000 for e in ends)
    same = [bench.one_rollout(bench.SCENARIOS["equal"], "always-valid", rng, args) for _ in range(10)]
    assert same == [None] * 10


def test_the_benchmark_writes_its_table_and_json(
    bench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        sys, "argv", ["canary_guard.py", "--runs", "5", "--horizon", "600", "--out", str(tmp_path)]
    )
    bench.main()
    printed = capsys.readouterr().out
    assert "answered -10" in printed and "fixed 99 %" in printed
    body = json.loads((tmp_path / "canary_guard.json").read_text())
    assert set(body["results"]) == set(bench.SCENARIOS)
    assert body["results"]["answered -10"]["always-valid"]["ended_share"] == 1.0
    assert all(0.0 <= r["ended_share"] <= 1.0 for rules in body["results"].values() for r in rules.values())
