"""Check questions: the report (contested keys), new gold from the knowledge base or a resolved item, and
retiring a bad key out of reviewers' records (both databases)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.events import recent_events
from core.models import AccountEvent, Claim, Judgement, ReviewItem, User, utcnow
from crowd_feedback.gold import (
    GoldError,
    add_gold_from_knowledge_base,
    gold_from_item,
    gold_report,
    retire_gold,
)
from crowd_feedback.review import NEW_INTENT, ReviewPolicy, add_gold_item, next_item, submit_judgement
from crowd_feedback.reviewers import count_gold, create_user, reinstate
from tests.crowd_feedback.test_review import (
    INTENTS,
    clean_shared_schema,
    judge,
    make_turn,
    route_turn,
    vector,
)

POLICY = ReviewPolicy(gold_rate=1.0, qualification_items=0, gold_min_answered=100)


def people(session: Session, n: int) -> list:
    return [
        create_user(session, username=f"gold{i}", password="correct horse battery", role="reviewer")
        for i in range(n)
    ]


def test_the_report_puts_a_contested_key_first_and_retiring_it_fixes_the_records(db_session: Session) -> None:
    bad_key = add_gold_item(db_session, text="I want to change my PIN", label="card_arrival", policy=POLICY)
    reviewers = people(db_session, 6)
    for reviewer, label in zip(
        reviewers, ["change_pin"] * 4 + ["card_arrival", "exchange_rate"], strict=True
    ):
        judge(db_session, bad_key, reviewer, label, POLICY)
    good = add_gold_item(db_session, text="where is my card", label="card_arrival", policy=POLICY)
    for reviewer, label in zip(reviewers[:3], ["card_arrival", "card_arrival", "change_pin"], strict=True):
        judge(db_session, good, reviewer, label, POLICY)
    unanswered = add_gold_item(db_session, text="what rate do you use", label="exchange_rate", policy=POLICY)
    # The answer that made it contested (the 5th: 1 of 5 matched) told the operators, once.
    [event] = recent_events(db_session, kind="gold.contested")
    assert event.text.startswith(
        f"Check question {bad_key.id} is contested: 1 of 5 reviewers matched its key “card_arrival”; most "
        "answered “change_pin” (4)."
    )
    assert event.data["path"] == "/operator/gold" and event.data["answered"] == 5
    report = gold_report(db_session)
    assert [r.item_id for r in report] == [bad_key.id, good.id, unanswered.id]
    first = report[0]
    assert (first.answered, first.right, first.top_wrong, first.top_wrong_count) == (6, 1, "change_pin", 4)
    assert first.contested and round(first.share_right, 3) == 0.167
    assert not report[1].contested  # 2 of 3 matched, and only 3 answers
    assert report[2].share_right is None and not report[2].contested
    # gold0 was reinstated after answering the bad key: their record started again without it.
    db_session.add(
        AccountEvent(
            user_id=reviewers[0].id,
            action="reinstated",
            actor="omar",
            reason="x",
            created_at=utcnow() + timedelta(seconds=1),
        )
    )
    db_session.flush()
    before = [(r.gold_answered, r.gold_correct) for r in reviewers]
    assert before == [(2, 1), (2, 1), (2, 0), (1, 0), (1, 1), (1, 0)]
    assert retire_gold(db_session, item_id=bad_key.id) == 5
    after = [(r.gold_answered, r.gold_correct) for r in reviewers]
    assert after == [(2, 1), (1, 1), (1, 0), (0, 0), (0, 0), (0, 0)]
    assert bad_key.status == "retired" and [r.item_id for r in gold_report(db_session)] == [
        good.id,
        unanswered.id,
    ]
    fresh = create_user(db_session, username="fresh", password="correct horse battery", role="reviewer")
    assert next_item(db_session, reviewer=fresh, policy=POLICY) in (good, unanswered)
    with pytest.raises(GoldError, match="retired already"):
        retire_gold(db_session, item_id=bad_key.id)
    with pytest.raises(GoldError, match="does not exist"):
        retire_gold(db_session, item_id=10**6)


def test_gold_from_a_resolved_item_and_from_the_knowledge_base(db_session: Session, tmp_path) -> None:
    from core.kb_files import read_knowledge_base
    from core.knowledge_base import import_knowledge_base
    from tests.conftest import FIXTURES

    item = route_turn(
        db_session,
        turn=make_turn(db_session, "pin change please"),
        reasons=["handoff"],
        embedding=vector(80),
        policy=POLICY,
    )
    with pytest.raises(GoldError, match="not resolved"):
        gold_from_item(db_session, item_id=item.id, policy=POLICY)
    item.status, item.resolved_label = "resolved", "change_pin"
    item.context = [{"text": "hi, I'm [NAME]", "status": "small_talk", "intent": None}]
    db_session.flush()
    gold = gold_from_item(db_session, item_id=item.id, policy=POLICY)
    # The turns before the question come along: a check question must look like any other item.
    assert gold.context == item.context and gold.context is not item.context
    assert (gold.is_gold, gold.gold_label, gold.text, gold.status) == (
        True,
        "change_pin",
        item.text,
        "pending",
    )
    with pytest.raises(GoldError, match=f"check question {gold.id} already"):
        gold_from_item(db_session, item_id=item.id, policy=POLICY)
    with pytest.raises(GoldError, match="a check question already"):
        gold_from_item(db_session, item_id=gold.id, policy=POLICY)
    item.resolved_label = NEW_INTENT
    retire_gold(db_session, item_id=gold.id)
    with pytest.raises(GoldError, match="new-intent"):
        gold_from_item(db_session, item_id=item.id, policy=POLICY)
    with pytest.raises(GoldError, match="knowledge base is empty"):
        add_gold_from_knowledge_base(db_session, per_intent=2, policy=POLICY)
    small = FIXTURES / "banking77_small"
    answers = tmp_path / "answers.csv"
    labels = sorted({line.rsplit(",", 1)[1] for line in (small / "train.csv").read_text().splitlines()[1:]})
    answers.write_text("label,answer\n" + "".join(f"{label},About {label}.\n" for label in labels))
    import_knowledge_base(
        db_session, incoming=read_knowledge_base([small / "train.csv", answers]), source="t"
    )
    assert add_gold_from_knowledge_base(db_session, per_intent=3, policy=POLICY) == 3 * len(labels)
    assert add_gold_from_knowledge_base(db_session, per_intent=3, policy=POLICY, seed=5) == 3 * len(labels)
    texts = db_session.scalars(select(ReviewItem.text).where(ReviewItem.is_gold.is_(True))).all()
    assert len(texts) == len(set(texts)) == 6 * len(labels) + 1
    with pytest.raises(GoldError, match="1 to 50"):
        add_gold_from_knowledge_base(db_session, per_intent=0, policy=POLICY)
    assert db_session.scalars(select(Judgement)).all() == []


def test_reinstating_then_retiring_never_goes_below_zero(db_session: Session) -> None:
    key = add_gold_item(db_session, text="I want to change my PIN", label="card_arrival", policy=POLICY)
    (reviewer,) = people(db_session, 1)
    judge(db_session, key, reviewer, "change_pin", POLICY)
    reviewer.suspended_at = utcnow()
    reinstate(db_session, username=reviewer.username, actor="omar", reason="the key was wrong")
    assert (reviewer.gold_answered, reviewer.gold_correct) == (0, 0)
    assert retire_gold(db_session, item_id=key.id) == 0  # answered before the reinstatement: not counted
    assert (reviewer.gold_answered, reviewer.gold_correct) == (0, 0)


def test_knowledge_base_gold_is_drawn_by_the_bots_doubt_and_carries_its_held_out_view(
    db_session: Session,
) -> None:
    import random

    from core.kb_files import IntentData, KnowledgeBaseData
    from core.knowledge_base import import_knowledge_base
    from crowd_feedback.gold import BotView, _draw_by_doubt

    arrival = [f"where is my card {i}" for i in range(12)]
    pin = [f"change my pin {i}" for i in range(6)]
    kb = KnowledgeBaseData(
        {
            "card_arrival": IntentData("card_arrival", answer="Soon.", examples=arrival),
            "change_pin": IntentData("change_pin", answer="At an ATM.", examples=pin),
        }
    )
    import_knowledge_base(db_session, incoming=kb, source="t")

    def candidates(*names: str) -> list[dict]:
        return [{"intent": n, "probability": 0.5, "title": n} for n in names]

    doubtful = set(arrival[:3])
    misplaced = arrival[3]  # the bot cannot place its key at all: likelier a wrong label, never drawn
    routed = arrival[4]  # the bot would have asked "did you mean": drawn first, as such turns reach review

    def view(text: str) -> BotView | None:
        if text.startswith("change my pin"):
            return None  # not one of the model's held-out rows: drawn at random, as before
        if text == misplaced:
            return BotView("exchange_rate", "We use the interbank rate.", 0.3, candidates("exchange_rate"))
        if text == routed:
            return BotView(
                None, "Did you mean one of these?", 0.6, candidates("change_pin", "card_arrival"), routed=True
            )
        if text in doubtful:
            return BotView("change_pin", "At an ATM.", 0.2, candidates("change_pin", "card_arrival"))
        return BotView("card_arrival", "Soon.", 0.99, candidates("card_arrival", "change_pin"))

    assert add_gold_from_knowledge_base(db_session, per_intent=2, policy=POLICY, seed=1, bot_view=view) == 4
    gold = db_session.scalars(select(ReviewItem).where(ReviewItem.is_gold.is_(True))).all()
    drawn = {g.text: g for g in gold}
    arrival_drawn = {g.text for g in gold if g.gold_label == "card_arrival"}
    # The one it would have asked about first; then one of the rest, by doubt (below); never the misplaced.
    assert len(arrival_drawn) == 2 and routed in arrival_drawn and misplaced not in drawn
    for item in gold:
        if item.gold_label == "card_arrival":  # carries the bot's view of it, as a real item its turn's
            expected = view(item.text)
            assert (item.bot_intent, item.bot_answer, item.bot_confidence, item.candidates) == (
                expected.intent,
                expected.answer,
                expected.confidence,
                expected.candidates,
            )
        else:
            assert item.candidates == [] and item.bot_answer == ""  # computed when shown
    # Then in proportion to doubt: 3 questions at 0.8 against 7 at the floor of 0.02.
    viewed = [(text, view(text)) for text in arrival if text not in (misplaced, routed)]
    picks = [text for seed in range(200) for text, _ in _draw_by_doubt(viewed, 2, random.Random(seed))]
    assert len(picks) == 400 and all(len(set(picks[i : i + 2])) == 2 for i in range(0, 400, 2))
    share = sum(text in doubtful for text in picks) / len(picks)
    assert 0.85 < share < 0.99, share
    assert {text for text in picks} - doubtful  # the sure ones are still drawn, rarely


def test_a_held_out_view_is_routed_as_the_router_would_route_the_turn() -> None:
    from types import SimpleNamespace

    from bot.engine import ANSWERED, CLARIFY, Candidate, Prediction
    from crowd_feedback.gold import held_out_views

    def prediction(status: str, tops: list[str]) -> Prediction:
        return Prediction(
            text="q",
            status=status,
            intent="card_arrival" if status == ANSWERED else None,
            answer="Soon." if status == ANSWERED else "",
            confidence=0.7,
            margin=0.2,
            ranking=[Candidate("card_arrival", 0.7, "Card"), Candidate("change_pin", 0.2, "PIN")],
            member_scores={f"m{i}": [{"intent": t, "score": 1.0}] for i, t in enumerate(tops)},
            suggestions=[],
            model_version="v",
        )

    cases = {
        "sure": (prediction(ANSWERED, ["card_arrival", "card_arrival"]), False, "Soon."),
        "disagree": (prediction(ANSWERED, ["card_arrival", "change_pin"]), True, "Soon."),
        "ask": (prediction(CLARIFY, ["card_arrival", "card_arrival"]), True, "Which one?"),
    }
    engine = SimpleNamespace(held_out_prediction=lambda text: cases[text][0] if text in cases else None)
    view = held_out_views(engine, clarify_message="Which one?", handoff_message="A person.")  # type: ignore[arg-type]
    for text, (_, routed, answer) in cases.items():
        seen = view(text)
        assert seen is not None and (seen.routed, seen.answer, seen.confidence) == (routed, answer, 0.7)
        assert [c["intent"] for c in seen.candidates] == ["card_arrival", "change_pin"]
    assert view("not a held-out row") is None


def test_production_views_draw_at_random_without_readable_held_out_rows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from types import SimpleNamespace

    from bot.engine import BundleError
    from crowd_feedback.gold import production_views

    lines = {"clarify_message": "Which one?", "handoff_message": "A person."}
    assert production_views(None, **lines) is None
    assert production_views(SimpleNamespace(held_out=None), **lines) is None  # type: ignore[arg-type]

    class Damaged:
        @property
        def held_out(self) -> None:
            raise BundleError("/models/v1: unreadable held-out rows (ValueError: bad)")

    with caplog.at_level("WARNING", logger="helploop.crowd_feedback.gold"):
        assert production_views(Damaged(), **lines) is None  # type: ignore[arg-type]
    assert "drawing check questions at random: /models/v1: unreadable held-out rows" in caplog.text
    assert callable(production_views(SimpleNamespace(held_out=object()), **lines))  # type: ignore[arg-type]


def test_retiring_a_key_while_its_reviewer_answers_another_loses_neither_change(db_engine: Engine) -> None:
    """An operator retires a check question the reviewer answered; meanwhile the reviewer's request, which
    loaded their account before, records their answer to another check question. Each change must be added
    to the stored record, not written over it from the account as the request loaded it."""
    with Session(db_engine) as session:
        clean_shared_schema(session, Judgement, Claim, ReviewItem, AccountEvent, usernames_like="stale%")
        old_key = add_gold_item(session, text="I want to change my PIN", label="change_pin", policy=POLICY)
        reviewer = create_user(session, username="stale0", password="correct horse battery", role="reviewer")
        judge(session, old_key, reviewer, "change_pin", POLICY)
        add_gold_item(session, text="Where is my card?", label="card_arrival", policy=POLICY)
        session.commit()
        reviewer_id, old_key_id = reviewer.id, old_key.id
    try:
        with Session(db_engine, expire_on_commit=False) as request:
            shown = request.get(User, reviewer_id)
            assert shown is not None and (shown.gold_answered, shown.gold_correct) == (1, 1)
            claimed = next_item(request, reviewer=shown, policy=POLICY)
            assert claimed is not None and claimed.id != old_key_id
            request.commit()
            with Session(db_engine) as operator:
                assert retire_gold(operator, item_id=old_key_id) == 1
                operator.commit()
            submit_judgement(
                request,
                item_id=claimed.id,
                reviewer=shown,
                label="card_arrival",
                answer_ok=None,
                known_intents=INTENTS,
                policy=POLICY,
            )
            request.commit()
            assert (shown.gold_answered, shown.gold_correct) == (1, 1)
        with Session(db_engine) as session:
            stored = session.get(User, reviewer_id)
            assert stored is not None and (stored.gold_answered, stored.gold_correct) == (1, 1)
            # Taking an answer back goes through the same update and never below zero.
            count_gold(session, reviewer=stored, answered=-3, correct=-1)
            assert (stored.gold_answered, stored.gold_correct) == (0, 0)
    finally:
        with Session(db_engine) as session:
            clean_shared_schema(session, Judgement, Claim, ReviewItem, AccountEvent, usernames_like="stale%")
