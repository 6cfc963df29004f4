"""The knowledge-base check: the text findings with what the production model made of each example before
it was trained on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from bot.engine import AnsweringEngine
from core.kb_files import IntentData, KnowledgeBaseData
from core.knowledge_base import import_knowledge_base, move_example
from core.models import ReviewItem, VerifiedPair
from tests.conftest import TOY
from tests.serving.conftest import ANSWERS, build_toy_bundle
from training.kb_check import check_current_knowledge_base, check_knowledge_base

MISFILED = "when will my card arrive in the post"  # a card_arrival question filed under change_pin


@pytest.fixture(scope="module")
def misfiled_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("misfiled") / "bundle"
    build_toy_bundle(directory, extra={"change_pin": TOY["change_pin"] + [MISFILED]})
    return directory


def toy_knowledge() -> KnowledgeBaseData:
    examples = {**TOY, "change_pin": TOY["change_pin"] + [MISFILED]}
    return KnowledgeBaseData(
        {n: IntentData(n, answer=ANSWERS[n].answer, examples=list(e)) for n, e in examples.items()}
    )


def test_the_model_flags_the_misfiled_example_and_the_pair_it_mixes_up(misfiled_bundle: Path) -> None:
    engine = AnsweringEngine.load(misfiled_bundle, runtime="torch")
    report = check_knowledge_base(toy_knowledge(), engine=engine)
    assert report.model_version == engine.version and report.model_note == ""
    assert report.checked_examples == report.examples == 25
    assert report.label_issues is not None and report.confusions is not None
    [issue] = report.label_issues
    assert (issue.text, issue.given, issue.suggested) == (MISFILED, "change_pin", "card_arrival")
    assert issue.suggested_probability > 0.5 > issue.given_probability
    assert [(c.first, c.second) for c in report.confusions] == [("card_arrival", "change_pin")]
    assert (report.errors, report.warnings) == (0, 1)
    as_dict = report.to_dict()
    assert as_dict["model"]["label_issues"][0]["suggested"] == "card_arrival"
    assert as_dict["examples_per_intent"]["change_pin"] == 7
    # Moved where it belongs (before any retraining), it is no longer listed: the row is stale.
    fixed = toy_knowledge()
    fixed.intents["change_pin"].examples.remove(MISFILED)
    fixed.intents["card_arrival"].examples.append(MISFILED)
    again = check_knowledge_base(fixed, engine=engine)
    assert again.label_issues == [] and again.checked_examples == 24
    # The confusions describe the model as built; an intent deleted since drops out of them.
    del fixed.intents["change_pin"]
    assert check_knowledge_base(fixed, engine=engine).confusions == []


def test_without_a_model_or_its_held_out_rows_the_text_checks_still_run(
    misfiled_bundle: Path, tmp_path: Path
) -> None:
    bare = check_knowledge_base(toy_knowledge())
    assert bare.label_issues is None and bare.confusions is None
    assert bare.model_note == "no model to compare with" and bare.to_dict()["model"]["label_issues"] is None
    older = tmp_path / "older"
    shutil.copytree(misfiled_bundle, older)
    (older / "held_out.npz").unlink()  # as built before held-out rows were kept
    report = check_knowledge_base(toy_knowledge(), engine=AnsweringEngine.load(older, runtime="torch"))
    assert report.label_issues is None and "before held-out rows were kept" in report.model_note
    (older / "held_out.npz").write_bytes((misfiled_bundle / "held_out.npz").read_bytes())
    (older / "held_out.json").write_text("{")
    damaged = check_knowledge_base(toy_knowledge(), engine=AnsweringEngine.load(older, runtime="torch"))
    assert damaged.label_issues is None and "cannot be read" in damaged.model_note


def test_the_database_check_counts_the_verified_pairs_training_adds(
    db_session: Session, misfiled_bundle: Path
) -> None:
    import_knowledge_base(db_session, incoming=toy_knowledge(), source="test")
    item = ReviewItem(text="close my account", reasons=["clarify"], status="resolved")
    db_session.add(item)
    db_session.flush()
    db_session.add_all(
        [
            VerifiedPair(item_id=item.id, text="Close my account", intent="change_pin", weight=0.95),
            VerifiedPair(item_id=item.id, text="end my account now", intent="change_pin", weight=0.5),
        ]
    )
    db_session.flush()
    engine = AnsweringEngine.load(misfiled_bundle, runtime="torch")
    report = check_current_knowledge_base(db_session, engine=engine)
    # Only the pair above the posterior threshold is trained on, so only it contradicts the examples.
    assert [(c.question, c.intents) for c in report.conflicts] == [
        ("close my account", ["change_pin", "terminate_account"])
    ]
    assert report.conflicts[0].places[1].source == f"verified pair (item #{item.id})"
    assert report.errors == 1 and len(report.label_issues or []) == 1
    move_example(db_session, text=MISFILED, from_intent="change_pin", to_intent="card_arrival", actor="omar")
    assert check_current_knowledge_base(db_session, engine=engine).label_issues == []
    # Reviewers file it back under change_pin: a verified pair, flagged like an example but settled on its
    # item (the page shows no Move / Keep for it), and a question now under two intents.
    db_session.add(VerifiedPair(item_id=item.id, text=MISFILED, intent="change_pin", weight=0.97))
    db_session.flush()
    again = check_current_knowledge_base(db_session, engine=engine)
    assert [i.text for i in again.label_issues or []] == [MISFILED]
    assert again.pair_issues == {(MISFILED, "change_pin"): item.id}
    assert again.to_dict()["model"]["label_issues"][0]["verified_pair_item"] == item.id
    assert [(c.question, c.intents) for c in again.conflicts] == [
        (MISFILED, ["card_arrival", "change_pin"]),
        ("close my account", ["change_pin", "terminate_account"]),
    ]


def test_the_database_check_is_kept_while_nothing_it_reads_changes(
    db_session: Session, misfiled_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The overview and the Knowledge page read the check on every load: it is computed again only when the
    knowledge base, the verified pairs, the kept examples or the model change."""
    from core.knowledge_base import keep_example
    from training import kb_check

    runs: list[int] = []
    real = kb_check.check_knowledge_base

    def counted(*args: object, **kwargs: object) -> kb_check.KbCheck:
        runs.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(kb_check, "check_knowledge_base", counted)
    import_knowledge_base(db_session, incoming=toy_knowledge(), source="test")
    engine = AnsweringEngine.load(misfiled_bundle, runtime="torch")
    first = check_current_knowledge_base(db_session, engine=engine)
    assert [i.text for i in first.label_issues or []] == [MISFILED] and len(runs) == 1
    first.label_issues = []  # what a caller does to its copy does not reach the next one
    again = check_current_knowledge_base(db_session, engine=engine)
    assert [i.text for i in again.label_issues or []] == [MISFILED] and len(runs) == 1  # kept
    keep_example(db_session, text=MISFILED, intent="change_pin", actor="omar")
    kept = check_current_knowledge_base(db_session, engine=engine)
    assert kept.label_issues == [] and [i.text for i in kept.kept] == [MISFILED] and len(runs) == 2
    item = ReviewItem(text="close my account", reasons=["clarify"], status="resolved")
    db_session.add(item)
    db_session.flush()
    db_session.add(VerifiedPair(item_id=item.id, text="Close my account", intent="change_pin", weight=0.95))
    db_session.flush()
    assert check_current_knowledge_base(db_session, engine=engine).errors == 1 and len(runs) == 3
    move_example(db_session, text=MISFILED, from_intent="change_pin", to_intent="card_arrival", actor="omar")
    check_current_knowledge_base(db_session, engine=engine)
    assert len(runs) == 4
    other = AnsweringEngine.load(misfiled_bundle, runtime="torch")  # a model swap, even to the same version
    check_current_knowledge_base(db_session, engine=other)
    check_current_knowledge_base(db_session, engine=None)
    assert len(runs) == 6
    check_current_knowledge_base(db_session, engine=None)
    assert len(runs) == 6
