"""Knowledge pages: operators edit answers that go live without retraining, create and delete intents."""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import pytest
from markupsafe import escape

from core.kb_files import IntentData, KnowledgeBaseData
from core.knowledge_base import import_knowledge_base, load_knowledge_base
from tests.conftest import TOY
from tests.serving.conftest import ANSWERS
from tests.serving.test_admin import add_user, csrf_token, login


def import_toy_knowledge(app: Any) -> None:
    """The toy model's own intents, answers and examples, as the knowledge base it was trained from."""
    kb = KnowledgeBaseData(
        {
            name: IntentData(
                name=name,
                title=ANSWERS[name].title,
                answer=ANSWERS[name].answer,
                examples=list(examples),
                follow_ups=list(ANSWERS[name].follow_ups),
            )
            for name, examples in TOY.items()
            if name in ANSWERS
        }
    )
    with app.extensions["helploop"].database.session() as session:
        import_knowledge_base(session, incoming=kb, source="test")


def test_an_edited_answer_is_live_without_retraining(make_app: Any, toy_bundles: Any) -> None:
    from bot.engine import AnsweringEngine
    from core.registry import set_deployment

    app = make_app(ratelimit_enabled=False)
    helploop = app.extensions["helploop"]
    import_toy_knowledge(app)
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    client = app.test_client()
    before = client.post("/api/v1/chat", json={"message": "change pin number"}).get_json()
    assert before["intent"] == "change_pin" and before["answer"].startswith("Change it at any ATM.")
    version = before["model_version"]

    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.get("/operator/knowledge/").status_code == 403
    login(client, "omar")
    listing = client.get("/operator/knowledge/?q=pin").get_data(as_text=True)
    assert 'data-intent="change_pin"' in listing and 'data-intent="exchange_rate"' not in listing
    everything = client.get("/operator/knowledge/").get_data(as_text=True)
    assert "&lt;script&gt;alert" in everything and "<script>alert" not in everything
    page = client.get("/operator/knowledge/intents/change_pin").get_data(as_text=True)
    assert "The model serving now knows this intent" in page
    assert 'href="/operator/knowledge/try?q=' + TOY["change_pin"][0].replace(" ", "+") + '"' in page
    form = {
        "title": "Change my PIN",
        "answer": "Use the app: **Card → PIN**.",
        "examples": "\n".join(TOY["change_pin"]),
        "follow_ups": ["exchange_rate"],
    }
    assert (
        client.post("/operator/knowledge/intents/change_pin", data=form).status_code == 400
    )  # no CSRF token
    # A NUL character (PostgreSQL cannot store it) in any form field: refused naming the field, not saved.
    refused = client.post(
        "/operator/knowledge/intents/change_pin",
        data={**form, "answer": "Use the app\x00", "csrf_token": csrf_token(page)},
    )
    assert refused.status_code == 400 and "answer&#39; contains a NUL character" in refused.get_data(
        as_text=True
    )
    assert client.get("/operator/conversations?view=all&q=card%00").status_code == 400  # search text too
    unchanged = client.post("/api/v1/chat", json={"message": "change pin number"}).get_json()
    assert unchanged["answer"].startswith("Change it at any ATM.")
    saved = client.post(
        "/operator/knowledge/intents/change_pin",
        data={**form, "csrf_token": csrf_token(page)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Intent change_pin saved" in saved and "live within a few seconds" in saved
    helploop.models.refresh()  # what each serving process does every few seconds
    after = client.post("/api/v1/chat", json={"message": "change pin number"}).get_json()
    assert after["model_version"] == version  # the same model, not retrained
    assert after["answer"] == "Use the app: **Card → PIN**."
    assert [s["intent"] for s in after["suggestions"]] == ["exchange_rate"]
    row = client.get("/operator/knowledge/").get_data(as_text=True).split('data-intent="change_pin"')[1]
    assert "change_<wbr>pin</a>" in row  # a long name wraps after its underscores, not inside a word
    assert '<td style="min-width:12em">Use the app: Card → PIN.</td>' in row  # the answer read as text
    clicked = client.post("/api/v1/chat", json={"message": "/change_pin"}).get_json()
    assert clicked["answer"] == "Use the app: **Card → PIN**."
    # A model loaded later (here: another version promoted) answers with the edited text from the start.
    other = next(
        AnsweringEngine.load(p).version
        for p in toy_bundles.values()
        if AnsweringEngine.load(p).version != version
    )
    with helploop.database.session() as session:
        set_deployment(session, production_version=other, actor="t", reason="t")
    helploop.models.refresh()
    promoted = client.post("/api/v1/chat", json={"message": "change pin number"}).get_json()
    assert promoted["model_version"] == other and promoted["answer"] == "Use the app: **Card → PIN**."


def test_a_bad_intent_form_keeps_what_was_typed_and_create_then_delete(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    import_toy_knowledge(app)
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    page = client.get("/operator/knowledge/new").get_data(as_text=True)
    token = csrf_token(page)
    form = {
        "csrf_token": token,
        "name": "metal card",
        "title": "Metal",
        "answer": "<b>Not yet</b>",
        "examples": "x",
    }
    refused = client.post("/operator/knowledge/", data=form)
    body = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "Not saved: name: intent name &#39;metal card&#39;" in body
    assert "&lt;b&gt;Not yet&lt;/b&gt;</textarea>" in body  # kept, escaped
    created = client.post(
        "/operator/knowledge/",
        data={**form, "name": "metal_card", "examples": "metal card?\ndo you do metal cards"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Intent metal_card saved" in created and "Retrain to make the bot answer it" in created
    listing = client.get("/operator/knowledge/").get_data(as_text=True)
    assert "no: retrain" in listing and "intent metal_card created by omar" in listing
    refused_delete = client.post(
        "/operator/knowledge/intents/change_pin/delete",
        data={"csrf_token": token, "confirm": "change_pin"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Not deleted: intent &#39;change_pin&#39; is a follow-up of card_arrival" in refused_delete
    unconfirmed = client.post(
        "/operator/knowledge/intents/metal_card/delete",
        data={"csrf_token": token, "confirm": "yes"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "type the intent&#39;s name (metal_card) to confirm" in unconfirmed
    client.post(
        "/operator/knowledge/intents/metal_card/delete", data={"csrf_token": token, "confirm": "metal_card"}
    )
    with app.extensions["helploop"].database.session() as session:
        assert set(load_knowledge_base(session).intents) == set(ANSWERS)
    assert client.get("/operator/knowledge/intents/metal_card").status_code == 404


def test_intents_named_like_the_knowledge_pages_open_save_and_delete(make_app: Any) -> None:
    """Intent names are the operator's own: one called ``check``, ``new``, ``try``, ``export`` or ``import``
    opens, saves and deletes at its own address, and the pages of those names still answer."""
    app = make_app(ratelimit_enabled=False)
    import_toy_knowledge(app)
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    token = csrf_token(client.get("/operator/knowledge/new").get_data(as_text=True))
    names = ("check", "new", "try", "export", "import", "versions", "examples")
    for name in names:
        created = client.post(
            "/operator/knowledge/",
            data={
                "csrf_token": token,
                "name": name,
                "title": f"About {name}",
                "answer": f"The {name} answer.",
                "examples": f"how do I {name}\n{name} please",
            },
            follow_redirects=True,
        ).get_data(as_text=True)
        assert f"Intent {name} saved" in created and f"The {name} answer." in created
        page = client.get(f"/operator/knowledge/intents/{name}").get_data(as_text=True)
        assert f'value="About {name}"' in page and f"how do I {name}" in page
        saved = client.post(
            f"/operator/knowledge/intents/{name}",
            data={
                "csrf_token": token,
                "title": f"About {name}",
                "answer": f"New {name} answer.",
                "examples": f"how do I {name}",
            },
            follow_redirects=True,
        ).get_data(as_text=True)
        assert f"Intent {name} saved" in saved and f"New {name} answer." in saved
    listing = client.get("/operator/knowledge/").get_data(as_text=True)
    for name in names:
        assert f'href="/operator/knowledge/intents/{name}"' in listing
    assert "Check the knowledge base" in client.get("/operator/knowledge/check").get_data(as_text=True)
    assert (
        client.get("/operator/knowledge/export")
        .headers["Content-Type"]
        .startswith(("application/zip", "application/json", "text/"))
    )
    with app.extensions["helploop"].database.session() as session:
        intents = load_knowledge_base(session).intents
    assert {name: intents[name].answer for name in names} == {name: f"New {name} answer." for name in names}
    client.post("/operator/knowledge/intents/check/delete", data={"csrf_token": token, "confirm": "check"})
    assert client.get("/operator/knowledge/intents/check").status_code == 404
    assert client.get("/operator/knowledge/check").status_code == 200


def test_two_operators_editing_one_intent_the_second_is_told_to_reload(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    import_toy_knowledge(app)
    add_user(app, "omar", "operator")
    add_user(app, "olga", "operator")
    first, second = app.test_client(), app.test_client()
    login(first, "omar")
    login(second, "olga")
    pages = [
        c.get("/operator/knowledge/intents/exchange_rate").get_data(as_text=True) for c in (first, second)
    ]
    revisions = [re.search(r'name="revision" value="([0-9a-f]+)"', p).group(1) for p in pages]
    assert revisions[0] == revisions[1]
    form = {"title": "Exchange rates", "examples": "\n".join(TOY["exchange_rate"]), "revision": revisions[0]}
    saved = first.post(
        "/operator/knowledge/intents/exchange_rate",
        data={**form, "answer": "Omar's answer.", "csrf_token": csrf_token(pages[0])},
    )
    assert saved.status_code == 302
    refused = second.post(
        "/operator/knowledge/intents/exchange_rate",
        data={**form, "answer": "Olga's answer.", "csrf_token": csrf_token(pages[1])},
    )
    body = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "was changed by someone else since you opened it" in body
    assert "Olga&#39;s answer.</textarea>" in body  # what she typed is still there to copy
    with app.extensions["helploop"].database.session() as session:
        assert load_knowledge_base(session).intents["exchange_rate"].answer == "Omar's answer."


def test_overview_and_knowledge_show_audited_precision_and_answer_quality(make_app: Any) -> None:
    from tests.crowd_feedback.test_quality import answered, review
    from tests.crowd_feedback.test_review import reviewers

    app = make_app(ratelimit_enabled=False)
    import_toy_knowledge(app)
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    overview = client.get("/operator/").get_data(as_text=True)
    assert "No audited answer resolved yet" in overview and "2.0 % of confident answers" in overview
    with app.extensions["helploop"].database.session() as session:
        people = reviewers(session, 2)
        for i, label in enumerate(["change_pin", "change_pin", "exchange_rate"]):
            review(session, people, answered(session, f"pin {i}", "change_pin"), "audit", label, i == 0)
    turn = client.post("/api/v1/chat", json={"message": "change pin number"}).get_json()
    client.post("/api/v1/feedback", json={"turn_id": turn["turn_id"], "helpful": False})
    overview = client.get("/operator/").get_data(as_text=True)
    assert re.search(
        r"<strong>66\.7%</strong> \(95 % interval 20\.8–93\.9%,\s+3 audited turns resolved", overview
    )
    listing = client.get("/operator/knowledge/").get_data(as_text=True)
    row = listing[
        listing.index('data-intent="change_pin"') : listing.index(
            "</tr>", listing.index('data-intent="change_pin"')
        )
    ]
    assert '<td class="answered">4</td>' in row and '<td class="unhelpful">100% of 1</td>' in row
    assert '<td class="precision">67% of 3</td>' in row and '<td class="acceptable">33% of 6</td>' in row


def test_reviewers_see_example_questions_of_the_suggested_intents(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    import_toy_knowledge(app)
    add_user(app, "rita", "reviewer")
    client = app.test_client()
    turn = client.post("/api/v1/chat", json={"message": "change pin number"}).get_json()
    client.post("/api/v1/feedback", json={"turn_id": turn["turn_id"], "helpful": False})
    assert helploop.router.drain(10)
    login(client, "rita")
    page = client.get("/review/next").get_data(as_text=True)
    shortest = sorted(TOY["change_pin"], key=lambda t: (len(t), t))[:2]
    assert f"e.g. “{shortest[0]}” · “{shortest[1]}”" in page


def _upload(client: Any, token: str, files: dict[str, bytes], **form: str) -> Any:
    data: dict[str, Any] = {"csrf_token": token, "mode": "merge", **form}
    data["files"] = [(io.BytesIO(content), name) for name, content in files.items()]
    return client.post(
        "/operator/knowledge/import", data=data, content_type="multipart/form-data", follow_redirects=True
    )


EXAMPLES_CSV = (
    b"text,label\nwhere is my card,card_arrival\nmy card has not come,card_arrival\nnew pin,change_pin\n"
)
ANSWERS_CSV = (
    b"label,answer,title\ncard_arrival,5-7 working days.,Card arrival\nchange_pin,At any ATM.,Change PIN\n"
)


def test_operators_import_export_and_restore_knowledge_files(make_app: Any) -> None:
    from core.models import KnowledgeBaseVersion

    app = make_app(ratelimit_enabled=False, max_upload_bytes=4096)
    database = app.extensions["helploop"].database
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.get("/operator/knowledge/export?format=json").status_code == 403
    assert reviewer.get("/operator/knowledge/versions/1.json").status_code == 403
    client = app.test_client()
    login(client, "omar")
    token = csrf_token(client.get("/operator/knowledge/").get_data(as_text=True))

    def current() -> tuple[str, int]:
        with database.session() as session:
            count = session.query(KnowledgeBaseVersion).count()
            return load_knowledge_base(session).data_hash(), count

    # No CSRF token: refused, nothing stored.
    refused = client.post(
        "/operator/knowledge/import",
        data={"files": [(io.BytesIO(EXAMPLES_CSV), "examples.csv")]},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 400 and current()[1] == 0
    # Examples and answers, merged into the empty knowledge base.
    page = _upload(client, token, {"examples.csv": EXAMPLES_CSV, "answers.csv": ANSWERS_CSV})
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "2 intents created" in text and "3 examples added" in text
    first_hash, first_count = current()
    assert first_count == 1
    with database.session() as session:
        kb = load_knowledge_base(session)
    assert kb.intents["card_arrival"].examples == ["where is my card", "my card has not come"]
    assert kb.intents["change_pin"].title == "Change PIN"

    # A bad row refuses the whole upload and says where; nothing changes.
    bad_answers = b"label,answer\ncard_arrival,Soon.\nchange_pin,   \n"
    page = _upload(
        client, token, {"more.csv": b"text,label\nlost card,lost_card\n", "answers.csv": bad_answers}
    )
    text = page.get_data(as_text=True)
    assert page.status_code == 400 and 'id="import-error"' in text
    assert "Nothing was imported" in text and "answers.csv:3" in text and "answer" in text
    assert current() == (first_hash, first_count)
    # An intent without an answer (merge would leave lost_card unanswered) is refused too.
    page = _upload(client, token, {"more.csv": b"text,label\nlost card,lost_card\n"})
    assert page.status_code == 400 and "lost_card" in page.get_data(as_text=True)
    assert current() == (first_hash, first_count)
    # Replace needs the typed confirmation; uploads over the limit are refused whole.
    page = _upload(client, token, {"examples.csv": EXAMPLES_CSV, "answers.csv": ANSWERS_CSV}, mode="replace")
    assert page.status_code == 400 and "type replace to confirm" in page.get_data(as_text=True)
    big = b"text,label\n" + b"".join(b"question number %d,card_arrival\n" % i for i in range(400))
    too_big = _upload(client, token, {"big.csv": big})
    assert too_big.status_code == 413 and "larger than the limit of 4 KiB" in too_big.get_data(as_text=True)
    assert current() == (first_hash, first_count)
    # Markup in an uploaded answer is shown escaped on the page.
    script = b"label,answer\nchange_pin,<script>alert(1)</script> At any ATM.\n"
    listing = _upload(client, token, {"answers.csv": script}).get_data(as_text=True)
    assert "&lt;script&gt;alert(1)" in listing and "<script>alert(1)" not in listing
    edited_hash, edited_count = current()
    assert edited_count == 2 and edited_hash != first_hash

    # Exports: JSON is the knowledge base; CSV and Rasa come zipped and import back to the same content.
    exported = client.get("/operator/knowledge/export?format=json")
    assert exported.status_code == 200 and "attachment" in exported.headers["Content-Disposition"]
    with database.session() as session:
        assert json.loads(exported.data) == load_knowledge_base(session).to_dict()
    for fmt, names in (("csv", ["examples.csv", "answers.csv"]), ("rasa", ["nlu.yml", "domain.yml"])):
        archive = zipfile.ZipFile(io.BytesIO(client.get(f"/operator/knowledge/export?format={fmt}").data))
        assert archive.namelist() == names
        files = {name: archive.read(name) for name in names}
        page = _upload(client, token, files, mode="replace", confirm="replace")
        assert page.status_code == 200 and "0 intents created, 0 updated" in page.get_data(as_text=True)
        assert current()[0] == edited_hash
    assert client.get("/operator/knowledge/export?format=xml").status_code == 404

    # Restore the first version: its content is current again, as a new version; the snapshot downloads.
    wrong = client.post(
        "/operator/knowledge/versions/1/restore",
        data={"csrf_token": token, "confirm": "2"},
        follow_redirects=True,
    )
    assert "Not restored: type the version number (1)" in wrong.get_data(as_text=True)
    restored = client.post(
        "/operator/knowledge/versions/1/restore",
        data={"csrf_token": token, "confirm": "1"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Version 1 restored as version 5" in restored and "version 1 restored by omar" in restored
    assert current() == (first_hash, 5)
    # Each version says what it changed, and what restoring it would do.
    changed = client.get("/operator/knowledge/versions/2").get_data(as_text=True)
    assert 'data-intent="change_pin" data-change="changed"' in changed and "answer" in changed
    assert "&lt;script&gt;" not in changed  # fields are named, answers are not repeated here
    undo = client.get("/operator/knowledge/versions/2?against=current").get_data(as_text=True)
    assert "What restoring it would do" in undo and "no differences" not in undo
    assert 'id="restore-form"' in undo
    assert "no differences" in client.get("/operator/knowledge/versions/5?against=current").get_data(
        as_text=True
    )
    assert client.get("/operator/knowledge/versions/99").status_code == 404
    assert reviewer.get("/operator/knowledge/versions/2").status_code == 403
    snapshot = client.get("/operator/knowledge/versions/1.json")
    assert snapshot.status_code == 200 and json.loads(snapshot.data)["intents"][0]["name"] == "card_arrival"
    assert client.get("/operator/knowledge/versions/99.json").status_code == 404
    missing = client.post(
        "/operator/knowledge/versions/99/restore",
        data={"csrf_token": token, "confirm": "99"},
        follow_redirects=True,
    )
    assert "Not restored: knowledge-base version 99 does not exist" in missing.get_data(as_text=True)


def test_operators_try_the_bot_on_every_loaded_arm_and_nothing_is_logged(
    make_app: Any, toy_bundles: Any
) -> None:
    from sqlalchemy import func, select

    from bot.engine import AnsweringEngine
    from core.models import Turn
    from core.registry import set_deployment

    app = make_app(ratelimit_enabled=False, max_message_length=50)
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.get("/operator/knowledge/try?q=change+pin+number").status_code == 403
    client = app.test_client()
    login(client, "omar")
    empty = client.get("/operator/knowledge/try").get_data(as_text=True)
    assert 'class="card arm"' not in empty and 'href="/operator/knowledge/try"' in empty  # in the menu
    page = client.get("/operator/knowledge/try?q=change+pin+number").get_data(as_text=True)
    production = helploop.models.state.production
    expected = production.predict("change pin number")
    assert expected.status == "answered" and expected.intent == "change_pin"
    assert 'data-arm="production" data-status="answered"' in page
    assert 'href="/operator/knowledge/intents/change_pin">change_pin</a>' in page
    assert f'Confidence <strong class="confidence">{expected.confidence:.3f}</strong>' in page
    assert f"answers from {production.gate.threshold:.3f}" in page
    assert "*PIN services*" in expected.answer  # the answer as written, in markdown ...
    assert "<li>choose <em>PIN services</em></li>" in page  # ... shown as the widget shows it
    ranking = re.findall(r'<tr data-intent="([^"]+)"><td>(\d+)</td>', page)
    assert [intent for intent, _ in ranking] == [c.intent for c in expected.ranking]
    assert 'data-arm="canary"' not in page and 'id="try-rule"' not in page and 'id="try-question"' not in page
    floor = production.familiarity_floor
    assert expected.familiarity is not None and floor is not None and expected.familiarity >= floor
    assert (
        f"is {expected.familiarity:.3f} similar to the nearest example (at or above the model's floor, "
        f"{floor:.3f})" in page
    )
    off = production.predict("xylophone aardvark telescope")  # no word of any example (toy encoder)
    assert off.unfamiliar and off.status == "handoff" and off.familiarity == 0.0
    off_page = client.get("/operator/knowledge/try?q=xylophone+aardvark+telescope").get_data(as_text=True)
    assert "<strong>Off the knowledge base's topic:</strong> the chat declines it" in off_page
    assert 'data-arm="production" data-status="off_topic"' in off_page
    assert '<strong class="status">off topic</strong>' in off_page
    assert f"(below the model's floor, {floor:.3f})" in off_page
    assert 'id="also-production"' not in page
    # Read as the chat reads it: small talk and a request for a person get the chat's reply (the models'
    # reading still shown); greetings around a question are left out of what the models read.
    hello = client.get("/operator/knowledge/try?q=hi+there").get_data(as_text=True)
    assert "as <strong>small talk (greeting)</strong>, without the model" in hello
    assert escape(helploop.settings.small_talk_greeting) in hello and 'data-arm="production"' in hello
    human = client.get("/operator/knowledge/try?q=can+I+talk+to+a+human").get_data(as_text=True)
    assert "as <strong>a request for a person</strong>" in human
    assert escape(helploop.settings.handoff_requested_message) in human
    wrapped = client.get("/operator/knowledge/try?q=Hi!+change+pin+number.+Thanks").get_data(as_text=True)
    assert (
        "The models read <strong>“change pin number.”</strong>" in wrapped and 'id="try-rule"' not in wrapped
    )
    assert (
        f'Confidence <strong class="confidence">{production.predict("change pin number.").confidence:.3f}'
        in (wrapped)
    )
    # A canary and a shadow are tried too, each with its own model.
    versions = sorted({AnsweringEngine.load(p).version for p in toy_bundles.values()} - {production.version})
    with helploop.database.session() as session:
        set_deployment(
            session,
            production_version=production.version,
            canary_version=versions[0],
            canary_share=0.25,
            shadow_version=versions[0],
            actor="t",
            reason="t",
        )
    helploop.models.refresh()
    page = client.get("/operator/knowledge/try?q=%3Cscript%3Ealert(1)%3C/script%3E").get_data(as_text=True)
    assert page.count('class="card arm"') == 3 and "canary (25 % of sessions)" in page
    assert (
        f"model {versions[0]}" in page and "&lt;script&gt;alert(1)" in page and "<script>alert(1)" not in page
    )
    too_long = client.get("/operator/knowledge/try?q=" + "x" * 51)
    assert too_long.status_code == 400 and "at most 50" in too_long.get_data(as_text=True)
    with helploop.database.session() as session:
        assert session.scalar(select(func.count()).select_from(Turn)) == 0


def test_operators_import_a_zipped_azure_question_answering_export(make_app: Any) -> None:
    from tests.core.test_kb_azure import MULTI_TURN_TSV

    app = make_app(ratelimit_enabled=False)
    database = app.extensions["helploop"].database
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    page = client.get("/operator/knowledge/").get_data(as_text=True)
    assert 'accept=".csv,.xlsx,.json,.yml,.yaml,.tsv,.zip,.html,.htm,.md,.docx,.pdf"' in page
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bank/Editorial.tsv", MULTI_TURN_TSV)
    page = _upload(client, csrf_token(page), {"bank.zip": buffer.getvalue()})
    assert page.status_code == 200 and "3 intents created" in page.get_data(as_text=True)
    with database.session() as session:
        kb = load_knowledge_base(session)
    assert kb.intents["my_card_has_a_problem"].follow_ups == ["where_is_my_new_card", "i_lost_my_card"]
    assert kb.intents["where_is_my_new_card"].title == "Card not arrived"


def test_an_faq_workbook_uploads_as_intents(make_app: Any) -> None:
    from openpyxl import Workbook

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    token = csrf_token(client.get("/operator/knowledge/").get_data(as_text=True))
    book = Workbook()
    sheet = book.active
    for row in (
        ["Question", "Answer"],
        ["Where is my card?", "5-7 working days."],
        ["How do I change my PIN?", "At any ATM."],
    ):
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    page = _upload(client, token, {"faq.xlsx": buffer.getvalue()}).get_data(as_text=True)
    assert "2 intents created" in page and "2 examples added" in page
    with app.extensions["helploop"].database.session() as session:
        kb = load_knowledge_base(session)
    assert kb.intents["where_is_my_card"].answer == "5-7 working days."
    assert kb.intents["how_do_i_change_my_pin"].examples == ["How do I change my PIN?"]


def test_an_faq_page_saved_from_the_browser_uploads_as_intents_and_a_bad_one_is_refused(
    make_app: Any,
) -> None:
    from tests.core.test_faq_pages import ACCORDION_PAGE

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    token = csrf_token(client.get("/operator/knowledge/").get_data(as_text=True))
    page = _upload(client, token, {"help.html": ACCORDION_PAGE.encode()}).get_data(as_text=True)
    assert "3 intents created" in page and "3 examples added" in page
    with app.extensions["helploop"].database.session() as session:
        kb = load_knowledge_base(session)
    assert kb.intents["how_do_i_freeze_my_card"].answer == (
        "Open the app and tap **Freeze**.\nIt takes a second.\n\nUnfreeze it the [same way](/help/unfreeze)."
    )
    assert kb.intents["how_do_i_freeze_my_card"].title == "How do I freeze my card?"
    refused = _upload(client, token, {"notes.md": b"# Notes\n\nNothing asked here.\n"}).get_data(as_text=True)
    assert "notes.md: no questions found: write each question as a heading that ends with" in refused
    with app.extensions["helploop"].database.session() as session:
        assert len(load_knowledge_base(session).intents) == 3  # nothing of the refused file was stored


def test_try_names_the_other_question_of_a_message(make_app: Any) -> None:
    """A message of two questions: the Try page names the other one, which the chat offers as a chip."""
    from tests.serving.test_admin import add_user, login

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    two = "My card has not arrived and my card is still not delivered. Also, how do I close my account?"
    both = client.get("/operator/knowledge/try", query_string={"q": two}).get_data(as_text=True)
    assert re.search(
        r'id="also-production">The message holds another question: <a [^>]*>terminate_account<', both
    )
    one = client.get("/operator/knowledge/try", query_string={"q": "where is my card"}).get_data(as_text=True)
    assert 'id="also-production"' not in one and 'data-arm="production"' in one


def test_synonyms_saved_on_the_knowledge_page_are_read_at_once_without_retraining(make_app: Any) -> None:
    """ "my plastic has not arrived" read as "my card has not arrived" once "plastic, card" is a group: the
    served model reads it within a refresh, the turn log keeps the reading, the customer's words stay; a bad
    group is refused naming its line, with the text kept."""
    from sqlalchemy import select

    from core.models import KnowledgeBaseVersion, Turn

    app = make_app(ratelimit_enabled=False)
    helploop = app.extensions["helploop"]
    import_toy_knowledge(app)
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    page = client.get("/operator/knowledge/").get_data(as_text=True)
    assert 'id="synonyms-form"' in page
    bad = "plastic, card\ncashpoint\n"
    refused = client.post(
        "/operator/knowledge/synonyms", data={"synonyms": bad, "csrf_token": csrf_token(page)}
    )
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "Not saved. Line 2: needs 2 to 20 different phrases, has 1" in text
    assert ">plastic, card\ncashpoint\n</textarea>" in text  # what was typed, kept
    assert client.post("/operator/knowledge/synonyms", data={"synonyms": "plastic, card"}).status_code == 400
    saved = client.post(
        "/operator/knowledge/synonyms",
        data={"synonyms": "plastic, card\n\n cash point , ATM ", "csrf_token": csrf_token(page)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Synonyms saved: 2 groups" in saved and ">plastic, card\ncash point, ATM</textarea>" in saved
    with helploop.database.session() as session:
        newest = session.scalars(
            select(KnowledgeBaseVersion).order_by(KnowledgeBaseVersion.id.desc())
        ).first()
        assert newest is not None and newest.source == "synonyms edited by omar"
        assert newest.snapshot["synonyms"] == [["plastic", "card"], ["cash point", "ATM"]]
        newest_id = newest.id
    shown = client.get(f"/operator/knowledge/versions/{newest_id}").get_data(as_text=True)
    assert '<tr data-change="added"><td>added</td><td>plastic, card</td></tr>' in shown
    assert "no differences in the intents" in shown
    helploop.models.refresh()  # what each serving process does every few seconds
    chat = app.test_client()
    reply = chat.post("/api/v1/chat", json={"message": "my Plastic has not arrived"}).get_json()
    assert reply["intent"] == "card_arrival" and reply["status"] == "answered"
    with helploop.database.session() as session:
        turn = session.get(Turn, reply["turn_id"])
        assert (turn.user_text, turn.read_as) == ("my Plastic has not arrived", "my card has not arrived")
    tried = client.get("/operator/knowledge/try?q=my+plastic+has+not+arrived").get_data(as_text=True)
    assert 'id="read-as-production"' in tried and "“my card has not arrived”" in tried  # Try shows it too


def test_operators_import_a_web_address_as_a_job_and_read_its_result(site: str, make_app: Any) -> None:
    from core.knowledge_base import load_knowledge_base
    from core.models import Job
    from tests.serving.test_admin import add_user, csrf_token, login
    from training.jobs import Worker

    app = make_app(ratelimit_enabled=False, import_private_addresses=True)
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    page = client.get("/operator/knowledge/").get_data(as_text=True)
    assert 'id="import-url-form"' in page
    token = csrf_token(page)
    refused = client.post("/operator/knowledge/import-url", data={"csrf_token": token, "url": "file:///etc"})
    assert refused.status_code == 400 and "give a web address that starts with https://" in refused.get_data(
        as_text=True
    )
    assert client.post("/operator/knowledge/import-url", data={"url": f"{site}/help/faq"}).status_code == 400
    queued = client.post(
        "/operator/knowledge/import-url", data={"csrf_token": token, "url": f"{site}/help/faq"}
    )
    assert queued.status_code == 302 and queued.headers["Location"].endswith("/operator/exports")
    with helploop.database.session() as session:
        assert len(load_knowledge_base(session).intents) == 0  # nothing is fetched inside the request
        job = session.query(Job).one()
        assert (job.kind, job.status, job.params["url"]) == ("kb_import_url", "queued", f"{site}/help/faq")
    assert Worker(helploop.database, helploop.settings, worker_id="test").run_once() == job.id
    with helploop.database.session() as session:
        kb = load_knowledge_base(session)
        done = session.get(Job, job.id)
        assert done is not None and done.status == "succeeded"
    assert sorted(kb.intents) == ["how_do_i_freeze_my_card", "is_there_a_fee"]
    jobs = client.get("/operator/exports").get_data(as_text=True)
    assert "2 intents created, 0 updated, 2 examples added" in jobs and "<code " in jobs
    versions = client.get("/operator/knowledge/").get_data(as_text=True)
    assert f"imported by omar from {site}/help/faq" in versions
    # a page that cannot be read fails the job with the reason, and nothing is imported
    client.post("/operator/knowledge/import-url", data={"csrf_token": token, "url": f"{site}/logo.png"})
    failed_id = Worker(helploop.database, helploop.settings, worker_id="test").run_once()
    with helploop.database.session() as session:
        failed = session.get(Job, failed_id)
        assert failed is not None and failed.status == "failed"
        assert "gave image/png, which an import does not read" in (failed.error or "")
        assert len(load_knowledge_base(session).intents) == 2


def test_uploaded_documents_are_read_by_a_job_page_by_page(make_app: Any) -> None:
    from core.models import ImportUpload, Job
    from tests.conftest import FIXTURES
    from tests.core.test_documents import help_document
    from training.jobs import Worker

    documents = FIXTURES / "documents"
    app = make_app(ratelimit_enabled=False, max_upload_bytes=200_000)
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    page = client.get("/operator/knowledge/").get_data(as_text=True)
    assert 'accept=".csv,.xlsx,.json,.yml,.yaml,.tsv,.zip,.html,.htm,.md,.docx,.pdf"' in page
    token = csrf_token(page)

    def run_job() -> Job:
        job_id = Worker(helploop.database, helploop.settings, worker_id="test").run_once()
        with helploop.database.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            session.expunge(job)
            assert session.query(ImportUpload).count() == 0  # the files go when the job ends
            return job

    queued = _upload(
        client,
        token,
        {"help.docx": help_document(), "help_centre.pdf": (documents / "help_centre.pdf").read_bytes()},
    )
    text = queued.get_data(as_text=True)
    assert "Import job 1 queued for help.docx, help_centre.pdf (merged into the knowledge base)" in text
    assert '<code style="overflow-wrap:anywhere">help.docx, help_centre.pdf</code>' in text  # on Jobs
    with helploop.database.session() as session:
        assert len(load_knowledge_base(session).intents) == 0  # nothing is read inside the request
        stored = session.query(ImportUpload).order_by(ImportUpload.position).all()
        assert [(u.job_id, u.name) for u in stored] == [(1, "help.docx"), (1, "help_centre.pdf")]
    job = run_job()
    assert job.status == "succeeded" and job.created_by == "omar"
    assert job.result is not None and job.result["intents_created"] == 13
    with helploop.database.session() as session:
        kb = load_knowledge_base(session)
    assert (
        len(kb.intents) == 13 and kb.intents["is_there_a_fee_abroad"].answer == "Currency | Fee\nEUR | free"
    )
    jobs = client.get("/operator/exports").get_data(as_text=True)
    assert "13 intents created, 0 updated, 13 examples added" in jobs
    versions = client.get("/operator/knowledge/").get_data(as_text=True)
    assert "imported by omar: help.docx, help_centre.pdf" in versions

    # a scan fails the job with the reason, and nothing is imported
    _upload(client, token, {"scan.pdf": (documents / "scanned.pdf").read_bytes()})
    failed = run_job()
    assert failed.status == "failed" and "scan.pdf: no text found" in (failed.error or "")
    assert "scan.pdf: no text found" in client.get("/operator/exports").get_data(as_text=True)

    # replacing needs the word typed, as for any upload; then the manual is the whole knowledge base
    manual = {"manual.pdf": (documents / "northbank_manual.pdf").read_bytes()}
    refused = _upload(client, token, manual, mode="replace")
    assert refused.status_code == 400 and "type replace to confirm" in refused.get_data(as_text=True)
    _upload(client, token, manual, mode="replace", confirm="replace")
    replaced = run_job()
    assert replaced.status == "succeeded" and replaced.params["replace"] is True
    with helploop.database.session() as session:
        assert sorted(load_knowledge_base(session).intents) == [
            "how_do_i_order_a_new_card",
            "how_do_i_send_money_to_a_friend",
            "what_can_i_do_when_the_card_does_not_work",
            "why_was_my_transfer_returned",
        ]


def test_an_upload_job_reports_each_page_and_an_upload_gone_fails_it(make_app: Any) -> None:
    from core.knowledge_base import store_uploads
    from serving.job_kinds import kb_import_upload_job
    from tests.conftest import FIXTURES

    app = make_app(ratelimit_enabled=False)
    helploop = app.extensions["helploop"]
    pdf = (FIXTURES / "documents" / "help_centre.pdf").read_bytes()
    with helploop.database.session() as session:
        store_uploads(session, job_id=7, files=[("help_centre.pdf", pdf)])
    steps: list[tuple[float, str]] = []
    params = {"job": 7, "files": ["help_centre.pdf"], "by": "omar"}
    result = kb_import_upload_job(
        helploop.database, helploop.settings, params, lambda share, step: steps.append((share, step))
    )
    assert result["files"] == ["help_centre.pdf"] and result["intents_created"] == 9
    assert [step for _, step in steps if step.startswith("reading ")] == [
        f"reading help_centre.pdf: page {n} of 3" for n in (1, 2, 3)
    ]
    assert [share for share, _ in steps] == sorted(share for share, _ in steps)  # never backwards
    # run again (a worker that died after the import): the files are gone, and it says so
    with pytest.raises(ValueError, match="the uploaded files are gone"):
        kb_import_upload_job(helploop.database, helploop.settings, params, lambda share, step: None)


def test_sources_are_listed_and_a_web_address_imported_again_drops_what_its_page_lost(
    make_app: Any, site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.models import Job
    from tests import conftest
    from tests.core.test_documents import help_document
    from training.jobs import Worker

    app = make_app(ratelimit_enabled=False, import_private_addresses=True)
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    token = csrf_token(client.get("/operator/knowledge/").get_data(as_text=True))
    worker = Worker(helploop.database, helploop.settings, worker_id="test")
    _upload(client, token, {"help.docx": help_document()})
    client.post("/operator/knowledge/import-url", data={"csrf_token": token, "url": f"{site}/help/faq"})
    assert worker.run_once() and worker.run_once()
    page = client.get("/operator/knowledge/").get_data(as_text=True)
    assert 'id="source-list"' in page
    assert (
        '<tr data-source="help.docx"><td><code style="overflow-wrap:anywhere">help.docx</code></td>' in page
    )
    assert "upload it again to update" in page
    assert (
        f'<input type="hidden" name="url" value="{site}/help/faq"><button type="submit">Import again' in page
    )
    listed = client.get("/operator/knowledge/?q=from:help.docx").get_data(as_text=True)
    assert 'data-intent="how_do_i_freeze_my_card"' in listed and 'data-intent="is_there_a_fee"' not in listed
    intent_page = client.get("/operator/knowledge/intents/is_there_a_fee").get_data(as_text=True)
    assert f'Imported from <code style="overflow-wrap:anywhere">{site}/help/faq</code>' in intent_page

    # the help page lost its fee question: "Import again" queues the address, and the question goes
    monkeypatch.setitem(
        conftest.PAGES,
        "/help/faq",
        (200, "text/html", b"<h2>How do I freeze my card?</h2><p>Tap <b>Freeze</b> twice.</p>"),
    )
    client.post("/operator/knowledge/import-url", data={"csrf_token": token, "url": f"{site}/help/faq"})
    job_id = worker.run_once()
    with helploop.database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "succeeded", job.error if job else None
        assert job.result is not None and job.result["gone_removed"] == ["is_there_a_fee"]
        kb = load_knowledge_base(session)
    assert "is_there_a_fee" not in kb.intents
    # both sources had "How do I freeze my card?": the intent stays help.docx's, the page's answer the newest
    assert kb.intents["how_do_i_freeze_my_card"].source == "help.docx"
    assert kb.intents["how_do_i_freeze_my_card"].answer == "Tap **Freeze** twice."
    jobs = client.get("/operator/exports").get_data(as_text=True)
    assert "removed, no longer in the source: is_there_a_fee" in jobs
