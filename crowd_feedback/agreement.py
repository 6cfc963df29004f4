"""Inter-reviewer agreement: Krippendorff's alpha for nominal labels (any number of reviewers per item,
missing judgements allowed), overall and per reviewer pair."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import combinations

from crowd_feedback.aggregation import Answer


def krippendorff_alpha(answers: Iterable[Answer]) -> float:
    """alpha = 1 - D_o / D_e over pairable values (items with at least two judgements). NaN when undefined."""
    by_item: dict[str, list[str]] = defaultdict(list)
    for answer in answers:
        by_item[answer.item].append(answer.label)
    coincidence: dict[tuple[str, str], float] = defaultdict(float)
    for labels in by_item.values():
        m = len(labels)
        if m < 2:
            continue
        for i, first in enumerate(labels):
            for j, second in enumerate(labels):
                if i != j:
                    coincidence[(first, second)] += 1.0 / (m - 1)
    n = sum(coincidence.values())
    if n <= 1:
        return math.nan
    totals: dict[str, float] = defaultdict(float)
    for (first, _), value in coincidence.items():
        totals[first] += value
    observed = sum(v for (a, b), v in coincidence.items() if a != b)
    # D_o = observed / n ; D_e = (n^2 - sum n_c^2) / (n (n - 1))  =>  alpha = 1 - (n - 1) * observed / (...)
    expected_pairs = n * n - sum(t * t for t in totals.values())
    if expected_pairs == 0:
        return 1.0 if observed == 0 else math.nan
    return 1.0 - (n - 1) * observed / expected_pairs


def pairwise_alpha(answers: Sequence[Answer], *, min_shared: int = 5) -> dict[tuple[str, str], float]:
    """Alpha for every reviewer pair that judged at least ``min_shared`` items in common."""
    by_worker: dict[str, dict[str, str]] = defaultdict(dict)
    for answer in answers:
        by_worker[answer.worker][answer.item] = answer.label
    result: dict[tuple[str, str], float] = {}
    for first, second in combinations(sorted(by_worker), 2):
        shared = set(by_worker[first]) & set(by_worker[second])
        if len(shared) < min_shared:
            continue
        pair = [Answer(item, first, by_worker[first][item]) for item in shared]
        pair += [Answer(item, second, by_worker[second][item]) for item in shared]
        result[(first, second)] = krippendorff_alpha(pair)
    return result
