"""How fast does the canary guard end a worse canary, and how often does it end one as good as production?

Simulated live traffic, through the product's own decision code (``crowd_feedback.outcomes``: the arms'
``Outcomes``, their ``Comparison`` and ``guard_findings``, as the worker's once-a-minute watch calls them; the
database counting is left out). Each question goes to the canary with probability ``--share``; each arm's
replies are answered / clarify / handoff with its own probabilities, a clarify is resolved by a pick 30 % of
the time, 20 % of answers get a thumb, thumbs-down at the arm's rate. The guard looks every ``--look``
questions (all arms together: a minute of traffic), from the moment each arm has ``--min-questions``.

Scenarios (production: 70 % answered, 15 % clarify, 15 % handoff, 5 % thumbs-down):
  equal              — the canary is exactly as good: every ending is a false alarm
  answered -3 / -5 / -10  — that many points fewer answered, as many more handed off
  thumbs-down x2     — the same answers, twice the thumbs-down

Rules compared: the guard's always-valid test, and a fixed 99 % interval (``verdict_at(2.576)`` on the same
outcomes), which is what a guard that forgets it looks every minute would do.

Printed: per scenario and rule, the share of canaries ended within ``--horizon`` canary questions and the
median canary questions at the ending; JSON in bench/results/canary_guard.json.

    .venv/bin/python bench/canary_guard.py [--runs 200] [--share 0.1] [--look 50] [--horizon 5000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crowd_feedback.outcomes import (  # noqa: E402
    GUARD_OUTCOMES,
    Comparison,
    Outcomes,
    guard_findings,
)

PRODUCTION = {"status": (0.70, 0.15, 0.15), "thumbs_down": 0.05}
SCENARIOS: dict[str, dict[str, Any]] = {
    "equal": PRODUCTION,
    "answered -3": {"status": (0.67, 0.15, 0.18), "thumbs_down": 0.05},
    "answered -5": {"status": (0.65, 0.15, 0.20), "thumbs_down": 0.05},
    "answered -10": {"status": (0.60, 0.15, 0.25), "thumbs_down": 0.05},
    "thumbs-down x2": {"status": (0.70, 0.15, 0.15), "thumbs_down": 0.10},
}
PICK_RATE, RATED_RATE, FIXED_Z = 0.3, 0.2, 2.576
NOW = datetime.now(UTC)


class Arm:
    def __init__(self, behaviour: dict[str, Any]) -> None:
        self.behaviour = behaviour
        self.counts = np.zeros(6, dtype=np.int64)  # questions, answered, clarify, picked, handoff, rated
        self.unhelpful = 0

    def serve(self, n: int, rng: np.random.Generator) -> None:
        answered, clarify, handoff = rng.multinomial(n, self.behaviour["status"])
        picked = rng.binomial(clarify, PICK_RATE)
        rated = rng.binomial(answered, RATED_RATE)
        self.unhelpful += int(rng.binomial(rated, self.behaviour["thumbs_down"]))
        self.counts += np.array([n, answered, clarify, picked, handoff, rated])

    def outcomes(self, version: str) -> Outcomes:
        q, answered, clarify, picked, handoff, rated = (int(v) for v in self.counts)
        return Outcomes(
            version=version,
            since=NOW,
            until=NOW,
            questions=q,
            answered=answered,
            clarify=clarify,
            picked=picked,
            handoff=handoff,
            rated=rated,
            unhelpful=self.unhelpful,
        )


def one_rollout(
    canary: dict[str, Any], rule: str, rng: np.random.Generator, args: argparse.Namespace
) -> int | None:
    """Canary questions when the rule ended the canary, or None when it served ``horizon`` questions."""
    production, candidate = Arm(PRODUCTION), Arm(canary)
    while candidate.counts[0] < args.horizon:
        to_canary = int(rng.binomial(args.look, args.share))
        production.serve(args.look - to_canary, rng)
        candidate.serve(to_canary, rng)
        comparison = Comparison("canary", production.outcomes("A"), candidate.outcomes("B"), NOW)
        if rule == "always-valid":
            ended = bool(guard_findings(comparison, min_questions=args.min_questions))
        else:
            enough = min(production.counts[0], candidate.counts[0]) >= args.min_questions
            ended = enough and any(
                d.verdict_at(FIXED_Z) == "worse"
                for d in comparison.differences
                if d.outcome in GUARD_OUTCOMES
            )
        if ended:
            return int(candidate.counts[0])
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--look", type=int, default=50, help="questions (both arms) between two looks")
    parser.add_argument("--horizon", type=int, default=5000, help="canary questions per rollout")
    parser.add_argument("--min-questions", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    from tqdm.auto import tqdm

    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    jobs = [(name, rule) for name in SCENARIOS for rule in ("always-valid", "fixed 99 %")]
    for name, rule in tqdm(jobs, desc="scenarios", unit="scenario"):
        rng = np.random.default_rng([args.seed, list(SCENARIOS).index(name)])  # both rules see one stream
        ends = [one_rollout(SCENARIOS[name], rule, rng, args) for _ in range(args.runs)]
        ended = [e for e in ends if e is not None]
        results.setdefault(name, {})[rule] = {
            "ended_share": len(ended) / len(ends),
            "median_canary_questions": float(np.median(ended)) if ended else None,
        }
    print(
        f"\n{args.runs} rollouts per row; canary share {args.share:.0%}, a look every {args.look} questions, "
        f"guard from {args.min_questions} questions per arm, up to {args.horizon} canary questions\n"
    )
    print(f"{'canary':<16} {'rule':<13} {'ended':>7} {'median canary questions at the end':>36}")
    for name, rules in results.items():
        for rule, row in rules.items():
            median = row["median_canary_questions"]
            print(
                f"{name:<16} {rule:<13} {row['ended_share']:>7.1%} "
                f"{(f'{median:.0f}' if median is not None else '-'):>36}"
            )
    print("\n'equal': every ending is a false alarm (a canary as good as production taken out).")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "canary_guard.json").write_text(
        json.dumps(
            {
                "runs": args.runs,
                "share": args.share,
                "look": args.look,
                "horizon": args.horizon,
                "min_questions": args.min_questions,
                "seed": args.seed,
                "production": PRODUCTION,
                "scenarios": SCENARIOS,
                "results": results,
                "seconds": time.perf_counter() - started,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
