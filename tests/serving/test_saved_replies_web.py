"""Saved replies on the web: the operators' page to add, change and delete them, and the live chat's reply box
that offers them first."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from tests.serving.test_admin import add_user, csrf_token, login, signed_in_operator
from tests.serving.test_widget_install import add_intents


def test_operators_keep_saved_replies_and_the_live_chat_offers_them_first(make_app: Any) -> None:
    app, operator = signed_in_operator(make_app)
    page = operator.get("/operator/replies").get_data(as_text=True)
    assert "No saved replies yet" in page
    token = csrf_token(page)
    added = operator.post(
        "/operator/replies",
        data={"csrf_token": token, "title": "Anything else?", "text": "Is there **anything else**?"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Saved: Anything else?." in added and "<strong>anything else</strong>" in added
    # A taken title: the page again, 400, the field named and what was typed kept.
    taken = operator.post(
        "/operator/replies",
        data={"csrf_token": token, "title": "anything ELSE?", "text": "Kept <b>as typed</b>"},
    )
    body = taken.get_data(as_text=True)
    assert taken.status_code == 400 and "a saved reply is already called &#39;anything ELSE?&#39;" in body
    assert 'value="anything ELSE?"' in body and "Kept &lt;b&gt;as typed&lt;/b&gt;</textarea>" in body
    reply_id = int(re.findall(r'<tr data-reply="(\d+)">', body)[0])
    # Changed in place; an empty text refused under that reply's own form.
    empty = operator.post(
        "/operator/replies", data={"csrf_token": token, "id": reply_id, "title": "X", "text": ""}
    )
    assert empty.status_code == 400 and "<details open>" in empty.get_data(as_text=True)
    operator.post(
        "/operator/replies",
        data={
            "csrf_token": token,
            "id": reply_id,
            "title": "Anything else?",
            "text": "Anything else I can do?",
        },
    )
    operator.post("/operator/replies", data={"csrf_token": token, "title": "Goodbye", "text": "Bye for now!"})

    # A customer waits for a person: the reply box lists the saved replies before the knowledge base's
    # answers.
    add_intents(app)
    chat = app.test_client().post("/api/v1/chat", json={"message": "can I talk to a human?"}).get_json()
    conversation = operator.get(f"/operator/conversations/{chat['session_id']}").get_data(as_text=True)
    groups = re.findall(r'<optgroup label="([^"]+)">', conversation)
    assert groups[0] == "Saved replies" and groups[-1] == "All intents"
    saved = re.search(r'<optgroup label="Saved replies">(.*?)</optgroup>', conversation, re.S)
    assert saved and re.findall(r'<option value="([^"]+)">([^<]+)</option>', saved.group(1)) == [
        (f"saved {reply_id}", "Anything else?"),
        (f"saved {reply_id + 1}", "Goodbye"),
    ]
    answers = re.search(
        r'<script type="application/json" id="canned-answers">(.*?)</script>', conversation, re.S
    )
    assert (
        answers
        and json.loads(html.unescape(answers.group(1)))[f"saved {reply_id}"] == "Anything else I can do?"
    )
    assert 'id="manage-replies"' in conversation

    deleted = operator.post(
        f"/operator/replies/{reply_id}/delete", data={"csrf_token": token}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Deleted: Anything else?." in deleted and f'data-reply="{reply_id}"' not in deleted
    assert (
        operator.post(f"/operator/replies/{reply_id}/delete", data={"csrf_token": token}).status_code == 404
    )
    # Without the form's token: refused, nothing saved.
    assert operator.post("/operator/replies", data={"title": "T", "text": "t"}).status_code == 400
    assert "No saved replies" not in operator.get("/operator/replies").get_data(as_text=True)


def test_reviewers_cannot_see_or_change_saved_replies(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    reviewer = app.test_client()
    login(reviewer, "rita")
    token = csrf_token(reviewer.get("/account").get_data(as_text=True))
    assert reviewer.get("/operator/replies").status_code == 403
    refused = reviewer.post("/operator/replies", data={"csrf_token": token, "title": "T", "text": "t"})
    assert refused.status_code == 403


def test_picking_a_saved_reply_puts_its_text_in_the_reply_box(browser: Any, make_app: Any) -> None:
    from core.saved_replies import save_reply
    from tests.serving.conftest import live
    from tests.serving.test_admin_browser import logged_in_page

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    with app.extensions["helploop"].database.session() as session:
        reply_id = save_reply(session, title="Goodbye", text="Bye for now, **Ann**!", actor="omar").id
    chat = app.test_client().post("/api/v1/chat", json={"message": "can I talk to a human?"}).get_json()
    with live(app) as base:
        context, page, errors = logged_in_page(
            browser, f"{base}/operator/conversations/{chat['session_id']}", "omar"
        )
        page.select_option("#canned", f"saved {reply_id}")
        assert page.input_value("#reply-text") == "Bye for now, **Ann**!"
        assert errors == []
        context.close()
