"""The turn log's questions a training run self-trains on (training.build.traffic_questions), on SQLite and
PostgreSQL."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from core.kb_files import IntentData, KnowledgeBaseData
from core.knowledge_base import import_knowledge_base
from core.models import ReviewItem, ReviewItemTurn, VerifiedPair
from tests.conftest import TOY, add_turn
from training.build import traffic_questions, training_snapshot, verified_pairs


def toy_knowledge() -> KnowledgeBaseData:
    return KnowledgeBaseData(
        {n: IntentData(n, answer=f"About {n}.", examples=list(e)) for n, e in TOY.items()}
    )


def test_traffic_is_the_newest_distinct_unjudged_questions_redacted(db_session: Session) -> None:
    import_knowledge_base(db_session, incoming=toy_knowledge(), source="test")
    add_turn(db_session, "c1", "my courier never came")
    add_turn(db_session, "c1", "My courier never came?")  # the same question, spelled differently
    add_turn(db_session, "c1", "Where is my card")  # a knowledge-base example: labelled already
    unhelpful = add_turn(db_session, "c2", "card for jo@example.com lost")
    unhelpful.helpful = False  # the customer said the answer was wrong: not a label to learn
    reviewed = add_turn(db_session, "c2", "is the courier lost", status="clarify")
    item = ReviewItem(text=reviewed.user_text, reasons=["clarify"])
    db_session.add(item)
    db_session.flush()
    db_session.add(ReviewItemTurn(item_id=item.id, turn_id=reviewed.id, reason="clarify"))
    add_turn(db_session, "c3", "write to me at jo@example.com about the courier")
    add_turn(db_session, "c3", "  ")
    add_turn(db_session, "c3", "thanks a lot", status="small_talk")  # not a question
    add_turn(db_session, "c3", "can I talk to a human", status="asked_for_person")  # nor is this
    add_turn(db_session, "c3", "/card_arrival").served_by = "suggestion"  # a clicked chip
    add_turn(db_session, "c4", "Hi! Is my courier lost? Thanks")  # read as the chat's model read it
    db_session.flush()

    questions = traffic_questions(db_session, exclude=[t for rows in TOY.values() for t in rows], limit=10)
    # newest first; e-mail redacted; greeting and thanks left out; the repeat, the example, the thumbs-down,
    # the reviewed one, the small talk, the request for a person and the chip left out
    assert questions == [
        "Is my courier lost?",
        "write to me at [EMAIL] about the courier",
        "My courier never came?",
    ]
    assert traffic_questions(db_session, exclude=[], limit=1) == ["Is my courier lost?"]
    assert traffic_questions(db_session, exclude=[], limit=0) == []

    snapshot = training_snapshot(db_session, traffic_limit=10)
    assert snapshot.traffic_texts == questions
    assert not {t.casefold() for t in snapshot.traffic_texts} & {
        t.casefold() for t in snapshot.texts + snapshot.evaluation_texts
    }
    assert training_snapshot(db_session).traffic_texts == []  # self-training off: nothing read


def test_an_evaluation_question_asked_as_traffic_is_never_trained_on(db_session: Session) -> None:
    many = {n: [f"{t} {i}" for i in range(3) for t in e] for n, e in TOY.items()}  # enough to hold some out
    kb = KnowledgeBaseData({n: IntentData(n, answer=f"About {n}.", examples=e) for n, e in many.items()})
    import_knowledge_base(db_session, incoming=kb, source="test")
    held = training_snapshot(db_session).evaluation_texts
    assert held, "the knowledge base is big enough for a frozen evaluation set"
    add_turn(db_session, "c1", held[0].upper() + " ?")
    add_turn(db_session, "c1", "something else entirely")
    db_session.flush()
    assert training_snapshot(db_session, traffic_limit=10).traffic_texts == ["something else entirely"]


def test_a_chip_payload_is_never_a_training_question(db_session: Session) -> None:
    """Items routed before a thumbs-down on a clicked chip went to the question behind it may hold "/intent"
    as a member: it is written as no verified pair, and a pair written earlier is not trained on."""
    import_knowledge_base(db_session, incoming=toy_knowledge(), source="test")
    item = ReviewItem(text="/change_pin", reasons=["thumbs_down"])
    db_session.add(item)
    db_session.flush()
    db_session.add_all(
        [
            VerifiedPair(item_id=item.id, text="/change_pin", intent="change_pin", weight=0.99),
            VerifiedPair(item_id=item.id, text="my pin is locked", intent="change_pin", weight=0.99),
        ]
    )
    db_session.flush()
    assert [t for t, _, _ in verified_pairs(db_session)] == ["my pin is locked"]
    snapshot = training_snapshot(db_session)
    assert "/change_pin" not in snapshot.texts and "my pin is locked" in snapshot.texts


def test_what_is_new_since_production_and_which_model_has_the_same_inputs(
    db_session: Session, settings: Any
) -> None:
    """The Runs page's "new since production" line, and the hash a run compares with the registered models
    (training.build.changes_since_production, inputs_hash, model_with_same_inputs)."""
    from datetime import timedelta

    from core.models import ModelVersion, utcnow
    from core.registry import register_model_version
    from training.build import changes_since_production, inputs_hash, model_with_same_inputs

    assert changes_since_production(db_session) is None  # no model yet
    import_knowledge_base(db_session, incoming=toy_knowledge(), source="test")
    snapshot = training_snapshot(db_session)
    digest = inputs_hash(snapshot, settings)
    assert digest == inputs_hash(training_snapshot(db_session), settings)  # reproducible
    assert inputs_hash(snapshot, settings, fine_tune={}) == inputs_hash(
        snapshot,
        settings,
        fine_tune={"epochs": 6.0},  # the recipe's defaults filled in
    )
    others = {
        inputs_hash(snapshot, settings, fine_tune={}),
        inputs_hash(snapshot, settings, fine_tune={"epochs": 2.0}),
        inputs_hash(snapshot, settings, onnx=True),
        inputs_hash(snapshot, replace(settings, random_seed=settings.random_seed + 1)),
        # fine-tuned data-parallel over two processes: each step averages two batches, another model
        inputs_hash(snapshot, replace(settings, training_processes=2), fine_tune={}),
    }
    assert len(others) == 5 and digest not in others
    # A frozen-encoder fit trains in the worker's own process whatever the setting says: the same model.
    assert inputs_hash(snapshot, replace(settings, training_processes=2)) == digest
    # The fitting code: an upgrade that changes the engine or the trainer is not "nothing new".
    from training import build

    code = Path(settings.instance_path) / "code"
    (code / "bot").mkdir(parents=True)
    (code / "bot" / "engine.py").write_text("RECIPE = 1\n")
    first = build.source_digest([code / "bot"])
    assert build.source_digest([code / "bot"]) == first
    (code / "bot" / "engine.py").write_text("RECIPE = 2\n")
    assert build.source_digest([code / "bot"]) != first
    assert len(build.code_fingerprint()) == 64
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build, "code_fingerprint", lambda: "an upgraded HelpLoop")
        assert inputs_hash(snapshot, settings) not in others | {digest}
    # The encoder's weights: a local folder's files (a retrained encoder copied over the same path changes
    # the hash), not only its name.
    folder = Path(settings.instance_path) / "my-encoder"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights v1")
    local = replace(settings, encoder=str(folder))
    before = inputs_hash(snapshot, local)
    assert before == inputs_hash(snapshot, local) and before not in others | {digest}
    os.utime(folder / "model.safetensors", ns=(1, 1))  # the same bytes, written again at another time
    assert inputs_hash(snapshot, local) != before
    kb_version = snapshot.kb_version_id
    trained = utcnow() - timedelta(hours=1)
    model = register_model_version(
        db_session,
        version="V1",
        bundle_path="/nowhere",
        data_hash="d",
        metrics={"inputs_hash": digest},
        kb_version_id=kb_version,
    )
    model.created_at = trained
    db_session.flush()
    assert model_with_same_inputs(db_session, digest) is model
    assert model_with_same_inputs(db_session, "another") is None

    add_turn(db_session, "c1", "before the model", created_at=trained - timedelta(minutes=5))
    for n in range(3):
        add_turn(db_session, "c1", f"after the model {n}")
    item = ReviewItem(text="q", reasons=["clarify"])
    db_session.add(item)
    db_session.flush()
    db_session.add_all(
        [
            VerifiedPair(item_id=item.id, text="sure", intent="card_arrival", weight=1.0),
            VerifiedPair(item_id=item.id, text="unsure", intent="card_arrival", weight=0.5),  # not trained
        ]
    )
    import_knowledge_base(db_session, incoming=toy_knowledge(), source="same again")  # no change
    db_session.flush()
    changes = changes_since_production(db_session)
    assert changes is not None and changes.version == "V1" and changes.trained_at == trained
    assert (changes.verified_pairs, changes.log_questions, changes.log_capped) == (1, 3, False)
    assert changes.kb_changed is False and changes.kb_version_then == kb_version
    edited = toy_knowledge()
    first = next(iter(edited.intents.values()))
    first.examples.append("one example more")
    import_knowledge_base(db_session, incoming=edited, source="edited")
    changes = changes_since_production(db_session)
    assert changes is not None and changes.kb_changed is True and changes.kb_version_now != kb_version
    assert changes.examples_now == (changes.examples_then or 0) + 1

    model.pruned_at = utcnow()  # its bundle is gone: a run cannot point at it
    db_session.flush()
    assert model_with_same_inputs(db_session, digest) is None
    assert db_session.get(ModelVersion, model.id) is model
