"""The feedback loop, simulated on BANKING77: does HelpLoop's routing make reviews count?

Start from a 5-shot knowledge base; stream the rest of the training split as user traffic in rounds. Each
round: the current model answers the round's messages; a fixed review budget picks what people look at;
simulated reviewers (accuracy drawn from a range, some spammers) label each picked item as the product asks
them to: two judgements first, then one more at a time while the posterior is below 0.9, up to five; truth
inference (one-coin Dawid–Skene: one accuracy per reviewer, right for 77 labels; the bot's shortlist at
routing time is the item's prior, trusted as far as EM finds it right, as in the product) turns the
labels into training pairs; the model is retrained and scored on the test split. Each reviewer also ticks
which of a cluster's other member questions ask the same as the shown one (right as often as their labels
are; spammers toss a coin); a member the ticks do not keep gets no pair, as in the product
(``crowd_feedback.review.member_kept``; ``--no-member-check`` copies the label to every member).
``--first-judgements 3 --no-model-voter --no-member-check --no-self-training`` reproduces the first version
of this benchmark (three judgements up front, people only).

Every retrain also self-trains, as a training run does by default (HELPLOOP_SELF_TRAINING): the messages
streamed so far that no review item holds are the unlabelled turn log (from 200 of them on), and the engine
calibrates on a 15 % held-out share of its rows (training.build's recipe). ``--no-self-training``: out-of-fold
calibration and no log, as before self-training existed (written to loop_sim[_validation]_no_self_training.*).

Arms, same budget, same reviewers, same traffic:
  helploop  — the product's router: uncertain, ambiguous and disagreeing turns (and a 2 % audit sample of
              confident ones) open review items or join a similar one; confident look-alikes join too (one
              review labels the cluster, minus the members its reviewers untick); priority = uncertainty x
              cluster size.
  random    — review randomly chosen messages (no clustering).
  oracle    — HelpLoop's routing with perfect labels (what label noise costs).

    .venv/bin/python bench/loop_sim.py [--seeds 0 1 2] [--rounds 6] [--traffic 1200] [--budget 120]
                                       [--data DIR] [--validate] [--arms helploop random oracle]

Every seed draws its own knowledge base, traffic order and crowd; the targets are judged on the mean over the
seeds (one seed's ratio moves by +-0.1 from seed to seed).

``--validate`` scores every round on the rows of the training split that the run never streams (about 2,400
with the defaults) instead of the test split: design choices are made there, never on test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bot.encoders import CachingEncoder, SentenceTransformerEncoder  # noqa: E402
from bot.engine import AnsweringEngine, EngineConfig  # noqa: E402
from bot.evaluation import sample_shots  # noqa: E402
from core.kb_files import read_labelled_csv  # noqa: E402
from crowd_feedback.aggregation import Answer, Shortlists, get_strategy  # noqa: E402
from crowd_feedback.review import member_kept  # noqa: E402
from training.build import CALIBRATION_SHARE  # noqa: E402
from training.finetune import calibration_split, fit_calibrated_on_held_out  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("HELPLOOP_BANKING77_DIR", ROOT.parent / "shared" / "data" / "banking77"))
JUDGEMENTS_PER_ITEM = 3
MAX_JUDGEMENTS = 5
CLUSTER_SIMILARITY = 0.85
AUDIT_RATE = 0.02  # the product's default share of confident answers sent to review
MIN_POSTERIOR = 0.9
SHORTLIST = 5  # candidates a review item keeps (the product stores the bot's top 5)
MEMBERS_SHOWN = 8  # the product's default: other member questions a reviewer confirms
SELF_TRAINING_MIN_QUESTIONS = 200  # the product's default (HELPLOOP_SELF_TRAINING_MIN_QUESTIONS)


class Crowd:
    """Reviewers with fixed accuracies; spammers answer uniformly at random."""

    def __init__(
        self,
        labels: list[str],
        rng: np.random.Generator,
        *,
        reviewers: int = 20,
        spammers: int = 5,
        accuracy: tuple[float, float] = (0.7, 0.95),
    ) -> None:
        self.labels = labels
        self.rng = rng
        self.accuracy = {f"r{i}": float(rng.uniform(*accuracy)) for i in range(reviewers - spammers)}
        self.accuracy.update({f"spam{i}": 1.0 / len(labels) for i in range(spammers)})
        self.names = list(self.accuracy)

    def judge(
        self, item: str, truth: str, count: int = JUDGEMENTS_PER_ITEM, exclude: frozenset[str] = frozenset()
    ) -> list[Answer]:
        """``count`` judgements from reviewers who have not judged this item yet."""
        answers = []
        pool = [name for name in self.names if name not in exclude]
        for worker in self.rng.choice(pool, size=count, replace=False):
            if self.rng.random() < self.accuracy[worker]:
                label = truth
            else:
                label = str(self.rng.choice([x for x in self.labels if x != truth]))
            answers.append(Answer(item, str(worker), label))
        return answers

    def same_question(self, worker: str, same: bool) -> bool:
        """A reviewer's tick on "asks the same": right as often as their labels are (a spammer, or anyone
        below a coin toss, answers at random)."""
        right = self.rng.random() < max(self.accuracy.get(worker, 1.0), 0.5)  # oracle workers: always right
        return same if right else not same


def fit(
    encoder: CachingEncoder,
    texts: list[str],
    labels: list[str],
    seed: int,
    traffic: list[str] | None = None,
) -> AnsweringEngine:
    """A training run's fit: out of fold without a log; with one (``traffic``, from
    SELF_TRAINING_MIN_QUESTIONS on), calibrated on a held-out share and self-trained on it."""
    engine = AnsweringEngine(EngineConfig(cv_folds=3, seed=seed), encoders={"minilm": encoder})
    if not traffic or len(traffic) < SELF_TRAINING_MIN_QUESTIONS:
        return engine.fit(texts, labels)
    split = calibration_split(labels, CALIBRATION_SHARE, seed)
    return fit_calibrated_on_held_out(engine, texts, labels, split, traffic_texts=traffic)


def accuracy(engine: AnsweringEngine, test: tuple[list[str], list[str]]) -> float:
    probabilities, _, _ = engine.predict_proba(test[0])
    predicted = np.array(engine.labels)[probabilities.argmax(axis=1)]
    return float(np.mean(predicted == np.array(test[1])))


def pick_helploop(
    engine: AnsweringEngine,
    texts: list[str],
    budget: int,
    reviewed: set[str],
    audit: np.random.Generator,
) -> list[list[int]]:
    """Clusters (lists of message indices) to review, most urgent first, built as the product's router
    builds review items, message by message in arrival order: a turn with a reason (clarify, handoff,
    members disagree, or the 2 % audit draw of confident answers) joins the most similar pending item of its
    bot intent (cosine >= 0.85 to the item's shown question) or opens one; a confident turn only joins one."""
    predictions = engine.predict_batch(texts)
    vectors = np.vstack([p.embedding for p in predictions])
    clusters: list[dict[str, Any]] = []
    for index, p in enumerate(predictions):
        if texts[index] in reviewed:
            continue
        reason = p.status in ("clarify", "handoff") or p.members_disagree
        audited = not reason and p.status == "answered" and audit.random() < AUDIT_RATE
        uncertainty = 1.0 - p.confidence
        if audited:
            uncertainty = max(uncertainty, 0.05)
        same_intent = [c for c in clusters if c["intent"] == p.top_intent]
        similarities = [float(c["shown"] @ vectors[index]) for c in same_intent]
        best = int(np.argmax(similarities)) if similarities else -1
        if best >= 0 and similarities[best] >= CLUSTER_SIMILARITY:
            cluster = same_intent[best]
            cluster["members"].append(index)
            cluster["uncertainty"] = max(cluster["uncertainty"], uncertainty)
        elif reason or audited:
            clusters.append(
                {
                    "intent": p.top_intent,
                    "shown": vectors[index],
                    "members": [index],
                    "uncertainty": uncertainty,
                }
            )
    clusters.sort(key=lambda c: -c["uncertainty"] * len(c["members"]))
    return [c["members"] for c in clusters[:budget]]


def pick_random(
    texts: list[str], budget: int, reviewed: set[str], rng: np.random.Generator
) -> list[list[int]]:
    fresh = [i for i, t in enumerate(texts) if t not in reviewed]
    return [[int(i)] for i in rng.choice(fresh, size=min(budget, len(fresh)), replace=False)]


def aggregate(answers: list[Answer], votes: Shortlists, labels: list[str], model_voter: bool) -> Any:
    shortlists = votes if model_voter else None
    return get_strategy("one_coin").aggregate(answers, classes=labels, shortlists=shortlists)


def run_arm(
    name: str,
    encoder: CachingEncoder,
    seed_kb: tuple[list[str], list[str]],
    traffic: list[tuple[str, str]],
    test: tuple[list[str], list[str]],
    args: argparse.Namespace,
    labels: list[str],
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(args.seed)
    crowd = Crowd(labels, np.random.default_rng(args.seed + 1))
    audit = np.random.default_rng(args.seed + 2)  # the router's audit draws
    kb_texts, kb_labels = list(seed_kb[0]), list(seed_kb[1])
    engine = fit(encoder, kb_texts, kb_labels, args.seed)
    curve = [{"round": 0, "reviews": 0, "pairs": 0, "accuracy": accuracy(engine, test)}]
    answers: list[Answer] = []
    votes: Shortlists = {}  # item id -> the bot's shortlist when the item was routed
    items: dict[str, list[int]] = {}  # item id -> member message ids (global indices into traffic)
    reviewed: set[str] = set()
    reviews = 0
    kept: dict[tuple[str, int], bool] = {}  # (item, member) -> the reviewers' ticks keep it

    def check(item: str, members: list[int], member: int) -> bool:
        """The item's reviewers tick whether ``member`` asks the same as the shown question (members[0])."""
        if member == members[0] or member not in members[1 : MEMBERS_SHOWN + 1]:
            return True  # the shown question itself, or a member no reviewer was shown
        same = traffic[member][1] == traffic[members[0]][1]
        judges = [a.worker for a in answers if a.item == item]
        return member_kept([crowd.same_question(worker, same) for worker in judges])

    for round_number in range(1, args.rounds + 1):
        window = traffic[(round_number - 1) * args.traffic : round_number * args.traffic]
        offset = (round_number - 1) * args.traffic
        texts = [t for t, _ in window]
        if name == "random":
            picked = pick_random(texts, args.budget, reviewed, rng)
        else:
            picked = pick_helploop(engine, texts, args.budget, reviewed, audit)
        bot = engine.predict_batch([window[members[0]][0] for members in picked]) if picked else []
        first = JUDGEMENTS_PER_ITEM if name == "oracle" else args.first_judgements
        for members, prediction in zip(picked, bot, strict=True):
            item = f"i{len(items)}"
            items[item] = [offset + m for m in members]
            representative = window[members[0]]
            reviewed.update(texts[m] for m in members)
            votes[item] = [(c.intent, c.probability) for c in prediction.ranking[:SHORTLIST]]
            if name == "oracle":
                answers += [Answer(item, f"oracle{k}", representative[1]) for k in range(first)]
            else:
                answers += crowd.judge(item, representative[1], count=first)
            reviews += first

        if name != "oracle":
            # Dynamic redundancy, as in the product: items whose posterior is still below the threshold get
            # one more judgement, up to MAX_JUDGEMENTS (every extra judgement counts as a review).
            round_items = list(items)[-len(picked) :] if picked else []
            for _extra in range(MAX_JUDGEMENTS - first):
                interim = aggregate(answers, votes, labels, args.model_voter).confidences()
                unsure = [item for item in round_items if interim[item] < MIN_POSTERIOR]
                for item in unsure:
                    truth = traffic[items[item][0]][1]
                    already = frozenset(a.worker for a in answers if a.item == item)
                    answers += crowd.judge(item, truth, count=1, exclude=already)
                    reviews += 1
        result = aggregate(answers, votes, labels, args.model_voter and name != "oracle")
        item_labels, confidences = result.labels(), result.confidences()
        pair_texts, pair_labels, pair_truth = [], [], []
        for item, members in items.items():
            if confidences[item] >= MIN_POSTERIOR:
                for m in members:
                    if args.member_check:
                        if (item, m) not in kept:
                            kept[item, m] = check(item, members, m)
                        if not kept[item, m]:
                            continue
                    pair_texts.append(traffic[m][0])
                    pair_labels.append(item_labels[item])
                    pair_truth.append(traffic[m][1])
        # The turn log so far, less what review items hold (the crowd labels those), as a training run
        # reads it.
        log = (
            [t for t, _ in traffic[: round_number * args.traffic] if t not in reviewed]
            if args.self_training
            else None
        )
        engine = fit(encoder, kb_texts + pair_texts, kb_labels + pair_labels, args.seed, log)
        correct_pairs = sum(a == b for a, b in zip(pair_labels, pair_truth, strict=True))
        point = {
            "round": round_number,
            "reviews": reviews,
            "pairs": len(pair_texts),
            "pair_precision": correct_pairs / max(len(pair_texts), 1),
            "accuracy": accuracy(engine, test),
        }
        curve.append(point)
        print(
            f"  {name:<9} round {round_number}: {reviews:>5} reviews, {len(pair_texts):>5} pairs "
            f"(precision {point['pair_precision']:.3f}), test accuracy {point['accuracy']:.4f}",
            flush=True,
        )
    return curve


def reviews_to_reach(curve: list[dict[str, Any]], target: float) -> float | None:
    """Reviews needed to reach ``target`` accuracy (linear interpolation between rounds)."""
    for before, after in zip(curve, curve[1:], strict=False):
        if after["accuracy"] >= target:
            if before["accuracy"] >= target:
                return float(before["reviews"])
            share = (target - before["accuracy"]) / (after["accuracy"] - before["accuracy"])
            return before["reviews"] + share * (after["reviews"] - before["reviews"])
    return None


def summarise(curves: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Final accuracy per arm, the review ratio and the label-noise cost of one seed's curves."""
    summary: dict[str, Any] = {
        f"{arm}_final_accuracy": curve[-1]["accuracy"] for arm, curve in curves.items()
    }
    if {"helploop", "random"} <= set(curves):
        random_final = curves["random"][-1]
        needed = reviews_to_reach(curves["helploop"], random_final["accuracy"])
        summary |= {
            "reviews_helploop_needs_for_random_final": needed,
            "reviews_random_used": random_final["reviews"],
            "review_ratio": needed / random_final["reviews"] if needed is not None else None,
        }
    if {"helploop", "oracle"} <= set(curves):
        summary["label_noise_cost_points"] = (
            curves["oracle"][-1]["accuracy"] - curves["helploop"][-1]["accuracy"]
        ) * 100
    return summary


def run_seed(
    seed: int,
    encoder: CachingEncoder,
    train: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    args: argparse.Namespace,
) -> dict[str, list[dict[str, Any]]]:
    """Every arm on one seed: its own 5-shot knowledge base, traffic order and crowd."""
    args = argparse.Namespace(**{**vars(args), "seed": seed})  # run_arm reads the seed from its arguments
    seed_kb = sample_shots(*train, shots=args.shots, seed=seed)
    in_kb = set(seed_kb[0])
    rng = np.random.default_rng(seed)
    rest = [(t, label) for t, label in zip(*train, strict=True) if t not in in_kb]
    traffic = [rest[i] for i in rng.permutation(len(rest))]
    if args.validate:
        held_out = traffic[args.rounds * args.traffic :]
        if len(held_out) < 500:
            sys.exit(f"error: only {len(held_out)} training rows are left over for validation")
        test = ([t for t, _ in held_out], [label for _, label in held_out])
        print(f"seed {seed}, validation: scoring on {len(held_out)} training rows never streamed", flush=True)
    labels = sorted(set(train[1]))
    curves = {}
    for arm in args.arms:
        print(f"seed {seed}, arm {arm}", flush=True)
        curves[arm] = run_arm(arm, encoder, seed_kb, traffic, test, args, labels)
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--traffic", type=int, default=1200, help="messages per round")
    parser.add_argument("--budget", type=int, default=120, help="items reviewed per round (x3 judgements)")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument(
        "--seeds",
        "--seed",
        dest="seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="one run per seed (knowledge base, traffic order, crowd); the summary gives each and the mean",
    )
    parser.add_argument(
        "--first-judgements",
        type=int,
        default=2,
        choices=(2, 3),
        help="judgements every item gets before the posterior is checked (the product: 2)",
    )
    parser.add_argument(
        "--no-model-voter",
        dest="model_voter",
        action="store_false",
        help="leave the bot's answer out of truth inference (the product counts it)",
    )
    parser.add_argument(
        "--no-member-check",
        dest="member_check",
        action="store_false",
        help="copy an item's label to every member question (before reviewers confirmed members)",
    )
    parser.add_argument(
        "--no-self-training",
        dest="self_training",
        action="store_false",
        help="retrain without the unlabelled log (the product self-trains on it by default)",
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="score on the training rows the run never streams, not on the test split (for design choices)",
    )
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["helploop", "random", "oracle"],
        choices=["helploop", "random", "oracle"],
    )
    args = parser.parse_args()
    train = read_labelled_csv(args.data / "train.csv")
    test = read_labelled_csv(args.data / "test.csv")
    encoder = CachingEncoder(SentenceTransformerEncoder(threads=2))
    started = time.perf_counter()
    encoder.encode(train[0] + test[0], progress=True)
    print(f"encoded {len(train[0]) + len(test[0])} texts in {time.perf_counter() - started:.0f}s", flush=True)
    seeds = list(dict.fromkeys(args.seeds))
    runs = {seed: run_seed(seed, encoder, train, test, args) for seed in seeds}
    per_seed = {seed: summarise(curves) for seed, curves in runs.items()}

    print(f"\n{'seed':<6}{'arm':<10}{'reviews':>9}{'pairs':>8}{'start':>9}{'final':>9}")
    for seed, curves in runs.items():
        for arm, curve in curves.items():
            print(
                f"{seed:<6}{arm:<10}{curve[-1]['reviews']:>9}{curve[-1]['pairs']:>8}"
                f"{curve[0]['accuracy']:>9.4f}{curve[-1]['accuracy']:>9.4f}"
            )
    summary: dict[str, Any] = {
        "scored_on": "held-out training rows (validation)" if args.validate else "BANKING77 test split",
        "seeds": seeds,
        "targets": {"review_ratio": "<= 0.5", "label_noise_cost_points": "<= 1.0"},
    }
    for key, target, name in (
        ("review_ratio", 0.5, "helploop reaches random's final accuracy with this share of random's reviews"),
        ("label_noise_cost_points", 1.0, "label noise costs (points against perfect labels)"),
    ):
        if any(key not in s for s in per_seed.values()):
            continue  # the arms that measure it were not run
        values = [s[key] for s in per_seed.values()]
        if any(v is None for v in values):
            summary[f"{key}_mean"] = None
            print(f"{name}: not reached within the run on some seed (target <= {target}): MISS")
            continue
        mean = float(np.mean(values))
        summary[f"{key}_mean"] = mean
        listed = " / ".join(f"{v:.2f}" for v in values)
        verdict = "ok" if mean <= target else "MISS"
        seed_list = ", ".join(map(str, seeds))
        print(f"{name}: {listed} (seeds {seed_list}), mean {mean:.2f} (target <= {target}): {verdict}")
    args.out.mkdir(parents=True, exist_ok=True)
    name = ("loop_sim_validation" if args.validate else "loop_sim") + (
        "" if args.self_training else "_no_self_training"
    )
    recorded = {k: str(v) for k, v in vars(args).items() if k != "seeds"}
    (args.out / f"{name}.json").write_text(
        json.dumps(
            {
                "args": recorded | {"seeds": seeds},
                "summary": summary,
                "per_seed": {str(seed): {"summary": per_seed[seed], "curves": runs[seed]} for seed in seeds},
            },
            indent=2,
        )
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"helploop": ("C0", "-o"), "random": ("C1", "-s"), "oracle": ("C2", ":^")}
    for index, curves in enumerate(runs.values()):
        for arm, curve in curves.items():
            colour, style = styles[arm]
            ax.plot(
                [p["reviews"] for p in curve],
                [p["accuracy"] for p in curve],
                style,
                color=colour,
                alpha=1.0 if index == 0 else 0.35,
                markersize=4,
                label=arm if index == 0 else None,
            )
    ax.set(
        xlabel="reviews (judgements)",
        ylabel="accuracy on held-out training rows" if args.validate else "BANKING77 test accuracy",
        title=f"Feedback loop from {args.shots}-shot, budget {args.budget} items/round, seeds {seeds}",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / f"{name}.png", dpi=120)
    print(f"wrote {args.out / f'{name}.json'} and {args.out / f'{name}.png'}")


if __name__ == "__main__":
    main()
