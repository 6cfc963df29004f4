"""The knowledge-base check over HTTP (the Knowledge page's Check, the admin API) and from the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.engine import AnsweringEngine
from core.db import Database
from core.kb_files import IntentData, KnowledgeBaseData, write_knowledge_base
from core.knowledge_base import import_knowledge_base, load_knowledge_base
from core.registry import register_model_version
from tests.serving.test_admin import add_user, csrf_token, login
from tests.serving.test_admin_api import bearer, token_for
from tests.serving.test_cli import run
from tests.training.test_kb_check import MISFILED, misfiled_bundle, toy_knowledge

__all__ = ["misfiled_bundle"]  # the fixture, shared with the training tests

CONFLICT = "terminate account"  # also filed under exchange_rate below


def register(session: Any, bundle: Path) -> None:
    engine = AnsweringEngine.load(bundle, runtime="torch")
    register_model_version(
        session,
        version=engine.version,
        bundle_path=str(bundle),
        data_hash=engine.knowledge_hash,
        metrics={},
        kb_version_id=None,
    )


def knowledge_with_a_conflict() -> KnowledgeBaseData:
    kb = toy_knowledge()
    kb.intents["exchange_rate"].examples.append(CONFLICT)
    kb.intents["exchange_rate"].examples += ["<b>rate</b> for yen", "<b>Rate</b> for yen!"]  # a duplicate
    kb.intents["thin"] = IntentData(
        "thin", answer="We use the interbank rate.", examples=["only one example"]
    )
    return kb


@pytest.fixture
def checked_app(make_app: Any, misfiled_bundle: Path) -> Any:
    app = make_app(register=False, ratelimit_enabled=False)
    with app.extensions["helploop"].database.session() as session:
        import_knowledge_base(session, incoming=knowledge_with_a_conflict(), source="test")
        register(session, misfiled_bundle)
    app.extensions["helploop"].models.refresh()
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    return app


def test_operators_check_the_knowledge_base_and_move_or_remove_examples(checked_app: Any) -> None:
    reviewer = checked_app.test_client()
    login(reviewer, "rita")
    assert reviewer.get("/operator/knowledge/check").status_code == 403
    client = checked_app.test_client()
    login(client, "omar")
    overview = client.get("/operator/").get_data(as_text=True)
    assert "Knowledge base check: 1 error\n  (questions under two intents), 2 warnings</a>" in overview
    assert '<span class="warn">fix before retraining</span>' in overview
    listing = client.get("/operator/knowledge/").get_data(as_text=True)
    assert 'href="/operator/knowledge/check"' in listing
    assert (
        '<span class="warn" style="font-size:.6em" id="conflict-count">1 question under two intents</span>'
        in (listing)
    )
    page = client.get("/operator/knowledge/check").get_data(as_text=True)
    assert "<strong>1</strong> error</span> · <strong>2</strong> warnings</p>" in page
    assert 'id="examples-chart"' in page and "<title>thin: 1 examples</title>" in page
    assert f'<tr data-conflict="{CONFLICT}">' in page and "Remove from exchange_rate" in page
    assert (
        f'<tr data-issue="{MISFILED}">' in page and 'aria-label="Move to card_arrival">Move</button>' in page
    )
    assert 'data-pair="card_arrival change_pin"' in page and 'href="/operator/knowledge/intents/thin"' in page
    assert "one answer, several intents (1)" in page  # thin copies exchange_rate's answer
    assert "“&lt;b&gt;rate&lt;/b&gt; for yen” / “&lt;b&gt;Rate&lt;/b&gt; for yen!”" in page  # escaped
    assert "<b>rate</b>" not in page

    move = {"text": MISFILED, "from_intent": "change_pin", "to_intent": "card_arrival", "section": "issues"}
    assert client.post("/operator/knowledge/examples/move", data=move).status_code == 400  # no CSRF token
    moved = client.post("/operator/knowledge/examples/move", data={**move, "csrf_token": csrf_token(page)})
    assert moved.status_code == 302 and moved.headers["Location"].endswith("/operator/knowledge/check#issues")
    after = client.get("/operator/knowledge/check").get_data(as_text=True)
    assert f"“{MISFILED}” moved from change_pin to card_arrival (knowledge base version" in after
    assert f'data-issue="{MISFILED}"' not in after and "<strong>1</strong> warning</p>" in after
    remove = {"text": CONFLICT, "from_intent": "exchange_rate", "to_intent": "", "section": "conflicts"}
    client.post("/operator/knowledge/examples/move", data={**remove, "csrf_token": csrf_token(after)})
    last = client.get("/operator/knowledge/check").get_data(as_text=True)
    assert "removed from exchange_rate" in last and f'data-conflict="{CONFLICT}"' not in last
    assert "None: no question is filed under two intents." in last
    assert 'id="conflict-count"' not in client.get("/operator/knowledge/").get_data(as_text=True)
    stale = client.post(
        "/operator/knowledge/examples/move",
        data={**remove, "csrf_token": csrf_token(last)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Not changed: &#39;terminate account&#39; is not an example of &#39;exchange_rate&#39;" in stale
    with checked_app.extensions["helploop"].database.session() as session:
        kb = load_knowledge_base(session)
    assert (
        MISFILED in kb.intents["card_arrival"].examples and MISFILED not in kb.intents["change_pin"].examples
    )
    assert CONFLICT not in kb.intents["exchange_rate"].examples
    assert CONFLICT in kb.intents["terminate_account"].examples


def test_the_check_and_the_move_through_the_admin_api(checked_app: Any) -> None:
    add_user(checked_app, "cibot", "operator")
    headers = bearer(token_for(checked_app, "cibot"))
    client = checked_app.test_client()
    assert client.get("/api/v1/admin/knowledge/check").status_code == 401
    report = client.get("/api/v1/admin/knowledge/check", headers=headers).get_json()
    assert (report["errors"], report["warnings"]) == (1, 2)
    assert report["conflicts"][0]["intents"] == ["exchange_rate", "terminate_account"]
    assert report["few_examples"] == {"below": 5, "intents": [{"intent": "thin", "examples": 1}]}
    [issue] = report["model"]["label_issues"]
    assert (issue["text"], issue["given"], issue["suggested"]) == (MISFILED, "change_pin", "card_arrival")
    bad = client.post("/api/v1/admin/knowledge/examples/move", headers=headers, json={"text": MISFILED})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_body"
    refused = client.post(
        "/api/v1/admin/knowledge/examples/move",
        headers=headers,
        json={"text": "no such question", "from": "change_pin", "to": None},
    )
    assert refused.status_code == 400
    assert refused.get_json()["error"] == {
        "code": "move_refused",
        "message": "'no such question' is not an example of 'change_pin' (any more)",
        "field": "text",
    }
    moved = client.post(
        "/api/v1/admin/knowledge/examples/move",
        headers=headers,
        json={"text": MISFILED, "from": "change_pin", "to": "card_arrival"},
    ).get_json()
    assert moved["examples"] == knowledge_with_a_conflict().example_count
    again = client.get("/api/v1/admin/knowledge/check", headers=headers).get_json()
    assert again["model"]["label_issues"] == [] and again["warnings"] == 1
    spec = client.get("/openapi.json").get_json()
    assert {
        "/api/v1/admin/knowledge/check",
        "/api/v1/admin/knowledge/examples/move",
        "/api/v1/admin/knowledge/examples/keep",
    } <= set(spec["paths"])


def test_kb_check_from_the_command_line(settings: Any, tmp_path: Path, misfiled_bundle: Path) -> None:
    written = tmp_path / "kb.json"
    write_knowledge_base(knowledge_with_a_conflict(), "json", written)
    files = run(settings, "kb", "check", str(written))
    assert files.exit_code == 1  # an error: one question under two intents
    assert "error: 1 question filed under more than one intent" in files.output
    assert f"'{CONFLICT}': exchange_rate (knowledge base), terminate_account (knowledge base)" in files.output
    assert "warning: 1 intent with fewer than 5 examples\n  thin: 1" in files.output
    assert "note: 1 answer given by several intents\n  exchange_rate, thin: 'We use the interbank rate.'" in (
        files.output
    )
    assert "model: not used (no model given: --model DIR judges the examples with one)" in files.output
    judged = run(settings, "kb", "check", str(written), "--model", str(misfiled_bundle))
    assert (
        "change_pin -> card_arrival (" in judged.output and f"3 of 3 members): '{MISFILED}'" in judged.output
    )
    assert "1 error, 2 warnings" in judged.output

    run(settings, "db", "upgrade")
    fixed = toy_knowledge()
    fixed_dir = tmp_path / "fixed"
    fixed.intents["change_pin"].examples.remove(MISFILED)
    fixed.intents["card_arrival"].examples.append(MISFILED)
    write_knowledge_base(fixed, "json", fixed_dir / "kb.json")
    assert run(settings, "kb", "import", str(fixed_dir / "kb.json")).exit_code == 0
    text_only = run(settings, "kb", "check")
    assert text_only.exit_code == 0 and "model: not used (no model to compare with)" in text_only.output
    with Database(settings).session() as session:
        register(session, misfiled_bundle)
    clean = run(settings, "kb", "check", "--strict", "--json", str(tmp_path / "report.json"))
    assert clean.exit_code == 0 and "0 errors, 0 warnings" in clean.output
    assert "held-out rows for 24 of the examples" in clean.output  # the moved one waits for a build
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["model"]["label_issues"] == [] and saved["examples"] == 25
    # A warning fails only with --strict: an intent with too few examples.
    (fixed_dir / "thin.json").write_text(
        json.dumps({"intents": [{"name": "thin", "answer": "Thin.", "examples": ["only one"]}]})
    )
    run(settings, "kb", "import", str(fixed_dir / "thin.json"))
    assert run(settings, "kb", "check", "--no-model").exit_code == 0
    strict = run(settings, "kb", "check", "--strict", "--no-model", "--json", "-")
    assert strict.exit_code == 1 and json.loads(strict.output)["model"]["note"] == "--no-model"
    conflict = toy_knowledge()
    conflict.intents["change_pin"].examples.append("Close my account")
    write_knowledge_base(conflict, "json", tmp_path / "conflict.json")
    imported = run(settings, "kb", "import", str(tmp_path / "conflict.json"))
    assert imported.exit_code == 0
    # A merge: the misfiled example comes back under change_pin while the database has it under card_arrival.
    assert "check: 2 questions filed under more than one intent (`helploop kb check` lists them)" in (
        imported.output
    )
    missing = run(settings, "kb", "check", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2 and "nope.csv" in missing.output
    bad_model = run(settings, "kb", "check", "--model", str(tmp_path))
    assert bad_model.exit_code == 2 and str(tmp_path) in bad_model.output


def test_an_example_kept_as_it_is_is_no_longer_a_warning(checked_app: Any) -> None:
    client = checked_app.test_client()
    login(client, "omar")
    page = client.get("/operator/knowledge/check").get_data(as_text=True)
    assert 'aria-label="Keep it under change_pin: it is right there">Keep</button>' in page
    keep = {"text": MISFILED, "intent": "change_pin"}
    assert client.post("/operator/knowledge/examples/keep", data=keep).status_code == 400  # no CSRF token
    kept = client.post("/operator/knowledge/examples/keep", data={**keep, "csrf_token": csrf_token(page)})
    assert kept.headers["Location"].endswith("/operator/knowledge/check#issues")
    after = client.get("/operator/knowledge/check").get_data(as_text=True)
    assert f"“{MISFILED}” kept under change_pin" in after and "<strong>1</strong> warning</p>" in after
    assert f'<tr data-issue="{MISFILED}">' not in after and f'<tr data-kept="{MISFILED}">' in after
    wrong = client.post(
        "/operator/knowledge/examples/keep",
        data={"text": MISFILED, "intent": "card_arrival", "csrf_token": csrf_token(after)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Not changed: &#39;when will my card arrive in the post&#39; is not an example of" in wrong
    again = client.post(
        "/operator/knowledge/examples/keep",
        data={**keep, "undo": "1", "csrf_token": csrf_token(wrong)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert f"“{MISFILED}” is flagged again under change_pin." in again
    assert f'<tr data-issue="{MISFILED}">' in again and 'id="kept"' not in again

    add_user(checked_app, "cibot", "operator")
    headers = bearer(token_for(checked_app, "cibot"))
    body = {"text": MISFILED.upper() + "?", "intent": "change_pin"}  # another spelling of the same question
    kept_api = client.post("/api/v1/admin/knowledge/examples/keep", headers=headers, json=body).get_json()
    assert kept_api == {"text": body["text"], "intent": "change_pin", "kept": True, "changed": True}
    twice = client.post("/api/v1/admin/knowledge/examples/keep", headers=headers, json=body).get_json()
    assert twice["changed"] is False
    report = client.get("/api/v1/admin/knowledge/check", headers=headers).get_json()
    assert report["model"]["label_issues"] == [] and report["model"]["kept"][0]["text"] == MISFILED
    refused = client.post(
        "/api/v1/admin/knowledge/examples/keep",
        headers=headers,
        json={"text": "nope", "intent": "change_pin"},
    )
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "keep_refused"
    assert (
        client.post(
            "/api/v1/admin/knowledge/examples/keep", headers=headers, json={**body, "keep": "no"}
        ).get_json()["error"]["code"]
        == "invalid_body"
    )
    undone = client.post(
        "/api/v1/admin/knowledge/examples/keep", headers=headers, json={**body, "keep": False}
    ).get_json()
    assert undone["changed"] is True
    assert (
        len(client.get("/api/v1/admin/knowledge/check", headers=headers).get_json()["model"]["label_issues"])
        == 1
    )


def test_an_import_says_when_it_files_a_question_under_two_intents(checked_app: Any) -> None:
    from tests.serving.test_knowledge import _upload

    client = checked_app.test_client()
    login(client, "omar")
    token = csrf_token(client.get("/operator/knowledge/").get_data(as_text=True))
    first = _upload(client, token, {"more.csv": b"text,label\nnew yen rate,exchange_rate\n"})
    assert "1 question is filed under more than one intent" in first.get_data(as_text=True)  # CONFLICT
    page = _upload(client, token, {"more.csv": b"text,label\nClose my account!,change_pin\n"}).get_data(
        as_text=True
    )
    assert "2 questions are filed under more than one intent: see Check the knowledge base." in page


def crowd_answers(app: Any, item_id: int, label: str) -> None:
    """Fresh reviewers answer ``label`` on the item until it resolves."""
    from core.models import ReviewItem
    from crowd_feedback.reviewers import create_user
    from tests.crowd_feedback.test_kb_review import settle

    helploop = app.extensions["helploop"]
    with helploop.database.session() as session:
        item = session.get(ReviewItem, item_id)
        assert item is not None
        people = [
            create_user(session, username=f"crowd{i}", password="correct horse battery", role="reviewer")
            for i in range(helploop.policy.max_judgements)
        ]
        known = list(load_knowledge_base(session).intents)
        settle(session, item, people, label, policy=helploop.policy, known_intents=known)
        assert item.status == "resolved"


def test_operators_ask_reviewers_and_see_their_answer_next_to_move(checked_app: Any) -> None:
    from core.models import ReviewItem

    client = checked_app.test_client()
    login(client, "omar")
    page = client.get("/operator/knowledge/check").get_data(as_text=True)
    assert "Ask reviewers about the 1 listed" in page
    asked = client.post(
        "/operator/knowledge/examples/ask",
        data={"text": MISFILED, "intent": "change_pin", "csrf_token": csrf_token(page)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Asked reviewers about 1 example." in asked
    match = re.search(r'asked reviewers: <a href="/review/items/(\d+)">item \1</a>, 0 of 3 answers', asked)
    assert match
    again = client.post(
        "/operator/knowledge/examples/ask",
        data={"all": "1", "csrf_token": csrf_token(asked)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Asked reviewers about 0 examples (1 asked already)." in again
    item_id = int(match.group(1))
    helploop = checked_app.extensions["helploop"]
    with helploop.database.session() as session:
        item = session.get(ReviewItem, item_id)
        assert item is not None and item.kb_intent == "change_pin" and item.reasons == ["kb_check"]
        # Reviewers see what the held-out model read (card_arrival), not the knowledge base's label.
        assert item.bot_intent == "card_arrival" and item.candidates[0]["intent"] == "card_arrival"
    crowd_answers(checked_app, item_id, "card_arrival")
    detail = client.get(f"/review/items/{item_id}").get_data(as_text=True)
    assert 'An example of <a href="/operator/knowledge/intents/change_pin">change_pin</a>' in detail
    verdict = client.get("/operator/knowledge/check").get_data(as_text=True)
    assert re.search(r"reviewers:\s*<strong>card_arrival</strong> \(\d+%;", verdict)
    assert 'aria-label="Move to card_arrival, as reviewers said">Move</button>' in verdict

    add_user(checked_app, "cibot", "operator")
    headers = bearer(token_for(checked_app, "cibot"))
    report = client.get("/api/v1/admin/knowledge/check", headers=headers).get_json()
    reviewers = report["model"]["label_issues"][0]["reviewers"]
    assert reviewers["item_id"] == item_id and reviewers["status"] == "resolved"
    assert reviewers["label"] == "card_arrival"
    same = client.post(
        "/api/v1/admin/knowledge/examples/ask",
        headers=headers,
        json={"text": MISFILED, "intent": "change_pin"},
    )
    assert same.status_code == 200 and same.get_json() == {
        "item_id": item_id,
        "status": "resolved",
        "created": False,
    }
    refused = client.post(
        "/api/v1/admin/knowledge/examples/ask", headers=headers, json={"text": "nope", "intent": "change_pin"}
    )
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "ask_refused"


def test_a_flagged_verified_pair_is_settled_on_its_item_not_moved_here(checked_app: Any) -> None:
    from core.knowledge_base import move_example
    from core.models import ReviewItem, VerifiedPair

    with checked_app.extensions["helploop"].database.session() as session:
        move_example(session, text=MISFILED, from_intent="change_pin", to_intent="card_arrival", actor="t")
        item = ReviewItem(text=MISFILED, reasons=["clarify"], status="resolved", resolved_label="change_pin")
        session.add(item)
        session.flush()
        session.add(VerifiedPair(item_id=item.id, text=MISFILED, intent="change_pin", weight=0.97))
        item_id = item.id
    client = checked_app.test_client()
    login(client, "omar")
    page = client.get("/operator/knowledge/check").get_data(as_text=True)
    row = page[page.index(f'<tr data-issue="{MISFILED}">') :].split("</tr>")[0]
    assert (
        f'a verified pair from\n   <a href="/review/items/{item_id}">item {item_id}</a>, not an example'
        in row
    )
    assert "Move" not in row and "Ask reviewers" not in row


@pytest.mark.parametrize(
    ("label", "verdict"),
    [("not_a_question", "not a real question"), ("new_intent", "none fits")],
)
def test_reviewers_saying_it_is_no_question_or_fits_nothing_offer_remove(
    checked_app: Any, label: str, verdict: str
) -> None:
    client = checked_app.test_client()
    login(client, "omar")
    page = client.get("/operator/knowledge/check").get_data(as_text=True)
    asked = client.post(
        "/operator/knowledge/examples/ask",
        data={"text": MISFILED, "intent": "change_pin", "csrf_token": csrf_token(page)},
        follow_redirects=True,
    ).get_data(as_text=True)
    item_id = int(re.findall(r'href="/review/items/(\d+)"', asked)[0])
    crowd_answers(checked_app, item_id, label)
    after = client.get("/operator/knowledge/check").get_data(as_text=True)
    row = after[after.index(f'<tr data-issue="{MISFILED}">') :].split("</tr>")[0]
    assert f"reviewers: <strong>{verdict}</strong>" in row
    assert 'aria-label="Remove from change_pin, as reviewers said' in row
