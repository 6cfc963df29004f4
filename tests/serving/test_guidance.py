"""Guidance for reviewers: the operators' note on each intent (on the review page and in the search preview)
and the reviewing guidelines that operators edit, with a notice to each reviewer when they change."""

from __future__ import annotations

from typing import Any

from core.models import User
from crowd_feedback.review import ReviewPolicy, add_gold_item
from tests.conftest import TOY
from tests.serving.test_admin import add_user, csrf_token, login
from tests.serving.test_knowledge import import_toy_knowledge

NOTE = "Only a new PIN or a forgotten one.\nA blocked PIN is <b>pin_blocked</b>."


def test_an_operators_note_on_an_intent_guides_reviewers_and_never_reaches_customers(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0, review_audit_rate=0.0)
    helploop = app.extensions["helploop"]
    import_toy_knowledge(app)
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get("/operator/knowledge/intents/change_pin").get_data(as_text=True)
    assert 'name="reviewer_note"' in page
    form = {
        "csrf_token": csrf_token(page),
        "title": "Change my PIN",
        "answer": "Change it at any ATM.",
        "examples": "\n".join(TOY["change_pin"]),
        "reviewer_note": NOTE,
    }
    saved = operator.post("/operator/knowledge/intents/change_pin", data=form, follow_redirects=True)
    assert "Intent change_pin saved" in saved.get_data(as_text=True)
    again = operator.get("/operator/knowledge/intents/change_pin").get_data(as_text=True)
    assert "A blocked PIN is &lt;b&gt;pin_blocked&lt;/b&gt;.</textarea>" in again
    listing = operator.get("/operator/knowledge/?q=forgotten").get_data(as_text=True)  # notes are searched
    assert 'data-intent="change_pin"' in listing and listing.count("✎ has a note for reviewers") == 1
    assert (
        'title="Only a new PIN or a forgotten one.\nA blocked PIN is &lt;b&gt;pin_blocked&lt;/b&gt;."'
        in listing
    )
    too_long = operator.post(
        "/operator/knowledge/intents/change_pin",
        data={**form, "csrf_token": csrf_token(again), "reviewer_note": "n" * 2001},
    )
    assert too_long.status_code == 400
    assert "reviewer_note: is 2001 characters, limit 2000" in too_long.get_data(as_text=True)

    customer = app.test_client()
    turn = customer.post("/api/v1/chat", json={"message": "change pin number"}).get_json()
    assert "blocked PIN" not in str(turn)  # customers never see it
    customer.post("/api/v1/feedback", json={"turn_id": turn["turn_id"], "helpful": False})
    assert helploop.router.drain(10)
    reviewer = app.test_client()
    login(reviewer, "rita")
    item_page = reviewer.get("/review/next").get_data(as_text=True)
    assert (
        '<div class="note" style="margin:0 0 .3rem 2.2rem;font-size:.9em;white-space:pre-wrap"><strong>Note:'
        "</strong> Only a new PIN or a forgotten one.\nA blocked PIN is &lt;b&gt;pin_blocked&lt;/b&gt;.</div>"
    ) in item_page
    assert item_page.count('class="note"') == 1  # the other suggestions have no note

    # An intent found by searching is described the same way, from its own URL.
    with helploop.database.session() as session:
        gold = add_gold_item(
            session, text=TOY["change_pin"][0], label="change_pin", policy=ReviewPolicy(qualification_items=0)
        )
        gold_id = gold.id
    info = reviewer.get(f"/review/items/{gold_id}/intents/change_pin")
    assert info.status_code == 200
    body = info.get_json()
    assert (body["name"], body["title"], body["note"]) == ("change_pin", "Change my PIN", NOTE)
    # A check question's own text is never one of the examples: it would show the key.
    expected = sorted((t for t in TOY["change_pin"] if t != TOY["change_pin"][0]), key=lambda t: (len(t), t))[
        :2
    ]
    assert body["examples"] == expected
    # Examples are ranked by how surely the model, never having seen them, read them as their intent: a
    # short one added since it was built (never scored) comes after those it recognised ...
    from core.knowledge_base import save_intent
    from core.models import ExampleQuestion, Intent

    with helploop.database.session() as session:
        intent = session.query(Intent).filter_by(name="change_pin").one()
        texts = [e.text for e in session.query(ExampleQuestion).filter_by(intent_id=intent.id)]
        save_intent(
            session,
            name="change_pin",
            title=intent.title,
            answer=intent.answer,
            examples=[*texts, "pin?"],
            reviewer_note=intent.reviewer_note,
            actor="omar",
            create=False,
        )
    assert reviewer.get(f"/review/items/{gold_id}/intents/change_pin").get_json()["examples"] == expected
    # ... and one it read as another intent (an ambiguous or mislabelled example) comes last.
    engine = helploop.models.state.production
    scored = engine.example_typicality
    misread = expected[0]
    engine.example_typicality = lambda name, text: 0.0 if text == misread else scored(name, text)
    shown = reviewer.get(f"/review/items/{gold_id}/intents/change_pin").get_json()["examples"]
    assert shown[0] == expected[1] and misread not in shown and "pin?" not in shown  # others recognised
    del engine.example_typicality
    assert reviewer.get(f"/review/items/{gold_id}/intents/exchange_rate").get_json()["note"] == ""
    missing = reviewer.get(f"/review/items/{gold_id}/intents/no_such_intent")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    assert (
        reviewer.get("/review/items/999999/intents/change_pin").get_json()["error"]["message"]
        == "no such item"
    )
    anonymous = app.test_client().get(f"/review/items/{gold_id}/intents/change_pin")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_operators_edit_the_guidelines_and_each_reviewer_is_told_to_read_new_versions(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0, review_audit_rate=0.0)
    helploop = app.extensions["helploop"]
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    reviewer = app.test_client()
    login(reviewer, "rita")
    home = reviewer.get("/review/").get_data(as_text=True)
    assert 'id="guidelines-notice"' in home and "read the reviewing guidelines</a> before you start" in home
    assert "say how." not in home  # the notice asks once; the page does not ask again
    built_in = reviewer.get("/review/guidelines").get_data(as_text=True)
    assert "The guidelines that come with HelpLoop" in built_in
    assert "<strong>Answer the question the customer asked</strong>" in built_in  # Markdown, rendered
    assert 'id="edit-guidelines"' not in built_in  # reviewers read, operators write
    read_home = reviewer.get("/review/").get_data(as_text=True)
    assert 'id="guidelines-notice"' not in read_home and "guidelines</a> say how." in read_home

    operator = app.test_client()
    login(operator, "omar")
    page = operator.get("/review/guidelines").get_data(as_text=True)
    assert 'id="edit-guidelines"' in page and "Not edited yet" in page
    assert 'id="guidelines-notice"' not in operator.get("/review/").get_data(as_text=True)
    text = (
        "1. **Never guess.**\n2. Fees: see [the price list](https://bank.example/fees).\n\n"
        "<script>alert('x')</script> [bad](javascript:alert(1))"
    )
    assert operator.post("/review/guidelines", data={"text": text}).status_code == 400  # no CSRF token
    assert (
        reviewer.post(
            "/review/guidelines", data={"text": text, "csrf_token": csrf_token(built_in)}
        ).status_code
        == 403
    )
    saved = operator.post(
        "/review/guidelines", data={"text": text, "csrf_token": csrf_token(page)}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Guidelines saved as version" in saved and "written by omar" in saved
    assert "<strong>Never guess.</strong>" in saved
    assert '<a href="https://bank.example/fees">the price list</a>' in saved
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in saved and "<script>alert" not in saved
    assert 'href="javascript:' not in saved
    unchanged = operator.post(
        "/review/guidelines",
        data={"text": text + "\n\n", "csrf_token": csrf_token(page)},
        follow_redirects=True,
    )
    assert "Not changed: that is the text in use." in unchanged.get_data(as_text=True)
    empty = operator.post("/review/guidelines", data={"text": "  ", "csrf_token": csrf_token(page)})
    assert empty.status_code == 400 and "Not saved: the guidelines are empty" in empty.get_data(as_text=True)
    bad_restore = operator.post("/review/guidelines", data={"restore": "x", "csrf_token": csrf_token(page)})
    assert bad_restore.status_code == 400 and "is not a version number" in bad_restore.get_data(as_text=True)

    # The reviewer read the built-in text: the new version is announced on the item page too.
    with helploop.database.session() as session:
        add_gold_item(
            session, text="where is my card", label="card_arrival", policy=ReviewPolicy(qualification_items=0)
        )
    item_page = reviewer.get("/review/next").get_data(as_text=True)
    assert "The reviewing guidelines changed on" in item_page and 'action="/review/items/' in item_page
    assert "<strong>Never guess.</strong>" in reviewer.get("/review/guidelines").get_data(as_text=True)
    assert 'id="guidelines-notice"' not in reviewer.get("/review/next").get_data(as_text=True)
    with helploop.database.session() as session:
        rita = session.query(User).filter_by(username="rita").one()
        assert rita.guidelines_read is not None and rita.guidelines_read > 0

    # Operators see the history, read an earlier version and use it again; reviewers only the one in use.
    history = operator.get("/review/guidelines").get_data(as_text=True)
    assert 'id="guidelines-history"' in history and "(in use)" in history
    old = operator.get("/review/guidelines?version=0").get_data(as_text=True)
    assert "an earlier version" in old and 'id="restore-guidelines"' in old
    # What using it again would change: the saved lines go, the built-in ones come back.
    assert 'id="guidelines-diff" open' in old and "(26 line(s) added, 4 removed)" in old
    assert '<span class="removed" style="background:#fdecea">- 1. **Never guess.**</span>' in old
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in old  # escaped here too
    assert reviewer.get("/review/guidelines?version=0").status_code == 404
    assert operator.get("/review/guidelines?version=999999").status_code == 404
    restored = operator.post(
        "/review/guidelines", data={"restore": "0", "csrf_token": csrf_token(old)}, follow_redirects=True
    ).get_data(as_text=True)
    assert (
        "Guidelines saved as version" in restored
        and "<strong>Answer the question the customer asked</strong>" in restored
    )
    assert "The reviewing guidelines changed on" in reviewer.get("/review/").get_data(as_text=True)


def test_the_admin_api_reads_and_replaces_the_guidelines(make_app: Any) -> None:
    from tests.serving.test_admin_api import bearer, token_for

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    client = app.test_client()
    headers = bearer(token_for(app, "omar"))
    assert client.get("/api/v1/admin/guidelines").status_code == 401
    built_in = client.get("/api/v1/admin/guidelines", headers=headers).get_json()
    assert (built_in["version"], built_in["author"], built_in["created_at"]) == (0, None, None)
    assert built_in["text"].startswith("1. **Answer the question the customer asked**")
    put = client.put("/api/v1/admin/guidelines", headers=headers, json={"text": "Be *kind*.\n"})
    body = put.get_json()
    assert put.status_code == 200 and body["changed"] is True and body["version"] > 0
    assert (body["text"], body["author"]) == ("Be *kind*.", "omar")
    again = client.put("/api/v1/admin/guidelines", headers=headers, json={"text": "Be *kind*."}).get_json()
    assert again["changed"] is False and again["version"] == body["version"]
    for bad, code in (
        ({"text": "  "}, "invalid_guidelines"),
        ({"text": 3}, "invalid_body"),
        ([], "invalid_body"),
    ):
        refused = client.put("/api/v1/admin/guidelines", headers=headers, json=bad)
        assert refused.status_code == 400 and refused.get_json()["error"]["code"] == code
        assert refused.get_json()["error"]["field"] == "text"
    assert client.get("/api/v1/admin/guidelines", headers=headers).get_json()["version"] == body["version"]
    # The reviewer is asked to read the version the API saved.
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert "read the reviewing guidelines" in reviewer.get("/review/").get_data(as_text=True)
    assert "<em>kind</em>" in reviewer.get("/review/guidelines").get_data(as_text=True)
    assert 'id="guidelines-notice"' not in reviewer.get("/review/").get_data(as_text=True)


def test_the_overview_lists_labels_reviewers_mix_up_with_a_link_to_the_note(make_app: Any) -> None:
    from core.models import Judgement, ReviewItem
    from tests.serving.test_admin_api import bearer, token_for

    app = make_app(ratelimit_enabled=False)
    helploop = app.extensions["helploop"]
    import_toy_knowledge(app)
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    assert 'id="no-mixups"' in operator.get("/operator/").get_data(as_text=True)
    with helploop.database.session() as session:
        people = [add_user_row(session, f"mixer{i}") for i in range(3)]
        for labels, settled in (
            (["change_pin", "card_arrival", "card_arrival"], "card_arrival"),
            (["change_pin", "card_arrival", "card_arrival"], "card_arrival"),
            (["new_intent", "new_intent", "exchange_rate"], "new_intent"),
            (["exchange_rate", "new_intent", "new_intent"], "new_intent"),
        ):
            item = ReviewItem(text="q", reasons=["clarify"], status="resolved", resolved_label=settled)
            session.add(item)
            session.flush()
            for person, label in zip(people, labels, strict=True):
                session.add(Judgement(item_id=item.id, reviewer_id=person, label=label))
    page = operator.get("/operator/").get_data(as_text=True)
    assert (
        "<tr><td>card_arrival</td><td>change_pin</td><td>2</td><td>33%</td>\n"
        '  <td><a href="/operator/knowledge/intents/card_arrival">add a note</a></td></tr>'
    ) in page
    assert "<td>new_intent</td><td>exchange_rate</td><td>2</td><td>33%</td>" in page
    assert '<span class="muted">not an intent</span>' in page  # "none fits" has no page to write on
    with helploop.database.session() as session:
        note_card_arrival(session, "A PIN question is change_pin.")
    assert '<a href="/operator/knowledge/intents/card_arrival">edit the note</a>' in operator.get(
        "/operator/"
    ).get_data(as_text=True)
    stats = app.test_client().get("/api/v1/admin/stats", headers=bearer(token_for(app, "omar"))).get_json()
    assert stats["review"]["mixups"][0] == {
        "settled": "card_arrival",
        "chosen": "change_pin",
        "times": 2,
        "judgements": 6,
        "share": 2 / 6,
    }


def add_user_row(session: Any, username: str) -> int:
    from crowd_feedback.reviewers import create_user

    return create_user(session, username=username, password="correct horse battery", role="reviewer").id


def test_a_reviewer_reads_their_own_answers_and_where_they_differ_with_the_note(make_app: Any) -> None:
    from core.models import Judgement, ReviewItem
    from crowd_feedback.reviewers import create_user

    app = make_app(ratelimit_enabled=False)
    helploop = app.extensions["helploop"]
    import_toy_knowledge(app)
    add_user(app, "rita", "reviewer")
    reviewer = app.test_client()
    assert reviewer.get("/review/history").status_code == 302  # login first
    login(reviewer, "rita")
    empty = reviewer.get("/review/history").get_data(as_text=True)
    assert "You have not answered any question yet." in empty and "Your answers will be listed here" in empty
    assert "None of the" not in empty  # nothing answered: no talk of answers that are not settled
    with helploop.database.session() as session:
        rita = session.query(User).filter_by(username="rita").one()
        other = create_user(session, username="otto", password="correct horse battery", role="reviewer")
        note_card_arrival(session, "Late cards only.")
        for number in range(52):
            status = "resolved" if number < 3 else "pending"
            item = ReviewItem(
                text=f"question {number}",
                reasons=["clarify"],
                status=status,
                resolved_label="card_arrival" if status == "resolved" else None,
            )
            session.add(item)
            session.flush()
            mine = "card_arrival" if number == 0 else "change_pin"
            session.add(Judgement(item_id=item.id, reviewer_id=rita.id, label=mine))
            session.add(Judgement(item_id=item.id, reviewer_id=other.id, label="card_arrival"))
        gold = ReviewItem(text="secret check", reasons=["gold"], is_gold=True, gold_label="exchange_rate")
        session.add(gold)
        session.flush()
        session.add(Judgement(item_id=gold.id, reviewer_id=rita.id, label="change_pin"))
    home = reviewer.get("/review/").get_data(as_text=True)
    assert 'href="/review/history" style="font-size:.6em" id="history-link"' in home
    page = reviewer.get("/review/history").get_data(as_text=True)
    assert "All your answers (52), newest first" in page and "page 1 of 2" in page
    assert "final label <strong>33%</strong> of the time" in page
    assert (
        '<td>Where is my card? <span class="muted">(card_arrival)</span>\n'
        '   <div class="note muted" style="white-space:pre-wrap;font-size:.9em"><strong>Note:</strong> '
        "Late cards only.</div></td>\n"
        '  <td>Change my PIN <span class="muted">(change_pin)</span></td><td>2 of 3</td></tr>'
    ) in page
    # The newest 50: questions 51 to 3 wait for others, question 2 settled on another label.
    assert page.count("waiting for other reviewers") == 49
    assert page.count('<span class="warn">✗ Where is my card?') == 1
    older = reviewer.get("/review/history?page=2").get_data(as_text=True)
    assert "question 0" in older and "question 1" in older and "✓ the same" in older
    assert older.count('<span class="warn">✗ Where is my card?') == 1
    assert "secret check" not in page + older and "exchange_rate" not in page + older  # gold keys stay secret


def test_check_questions_from_the_knowledge_base_show_what_a_model_that_never_saw_them_said(
    make_app: Any,
) -> None:
    import re

    from sqlalchemy import select

    from core.models import ReviewItem

    app = make_app(ratelimit_enabled=False, gold_rate=0.0, review_qualification_items=1, gold_min_answered=50)
    helploop = app.extensions["helploop"]
    import_toy_knowledge(app)  # the toy model's own training rows: it kept each one's held-out view
    engine = helploop.models.state.production
    assert engine.held_out is not None
    add_user(app, "omar", "operator")
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get("/operator/gold").get_data(as_text=True)
    added = operator.post(
        "/operator/gold", data={"csrf_token": csrf_token(page), "per_intent": "2"}, follow_redirects=True
    ).get_data(as_text=True)
    assert (
        "Added 8 check questions from the knowledge base (drawn where the model in production, not trained "
        "on them, was least sure)." in added
    )
    with helploop.database.session() as session:
        gold = session.scalars(select(ReviewItem).where(ReviewItem.is_gold.is_(True))).all()
        views = {g.id: (g.text, g.gold_label, g.candidates, g.bot_confidence, g.bot_answer) for g in gold}
    for text, key, candidates, confidence, answer in views.values():
        held = engine.held_out_prediction(text)
        assert candidates == [c.to_dict() for c in held.ranking[:5]] and key in [
            c["intent"] for c in candidates
        ]
        assert confidence == held.confidence < engine.predict(text).confidence
        expected = held.answer if held.status == "answered" else helploop.settings.clarify_message
        assert answer == (expected if held.status != "handoff" else helploop.settings.handoff_message)
    # The practice question shows that view: its suggestions in the held-out order.
    add_user(app, "nina", "reviewer")
    nina = app.test_client()
    login(nina, "nina")
    item_page = nina.get("/review/next").get_data(as_text=True)
    item_id = int(re.search(r'action="/review/items/(\d+)"', item_page).group(1))
    shown = re.findall(r'name="choice" value="([a-z_]+)" data-key="\d" data-intent', item_page)
    assert shown == [c["intent"] for c in views[item_id][2]][: len(shown)] and shown


def note_card_arrival(session: Any, note: str) -> None:
    """The toy knowledge base's card_arrival, as imported, with a reviewer note."""
    from core.knowledge_base import load_knowledge_base, save_intent

    intent = load_knowledge_base(session).intents["card_arrival"]
    save_intent(
        session,
        name="card_arrival",
        title=intent.title,
        answer=intent.answer,
        examples=intent.examples,
        follow_ups=intent.follow_ups,
        reviewer_note=note,
        actor="omar",
        create=False,
    )
