"""Marking the ticked conversations of the inbox handled at once (customers who left before anyone
answered)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from core.models import Conversation
from tests.serving.test_admin import add_user, csrf_token, login


def test_the_ticked_conversations_leave_the_inbox_with_one_note(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    for name in ("omar", "ana"):
        add_user(app, name, "operator")
    add_user(app, "rita", "reviewer")
    customer = app.test_client()
    ids = []
    for question in ("where is my card", "my transfer failed", "I lost my pin"):
        session_id = customer.post("/api/v1/chat", json={"message": question}).get_json()["session_id"]
        customer.post(f"/api/v1/sessions/{session_id}/handoff")
        ids.append(session_id)
    untouched = customer.post("/api/v1/chat", json={"message": "hello"}).get_json()["session_id"]
    customer.post(f"/api/v1/sessions/{untouched}/handoff")
    omar, ana = app.test_client(), app.test_client()
    login(omar, "omar")
    login(ana, "ana")
    inbox = omar.get("/operator/conversations").get_data(as_text=True)
    assert inbox.count('name="ids"') == 4 and 'id="tick-all"' in inbox and 'id="bulk-handled"' in inbox
    assert 'name="ids"' not in omar.get("/operator/conversations?view=all").get_data(as_text=True)
    # ana marks one handled on its own page meanwhile
    page = ana.get(f"/operator/conversations/{ids[0]}").get_data(as_text=True)
    ana.post(
        f"/operator/conversations/{ids[0]}/close", data={"csrf_token": csrf_token(page), "note": "called"}
    )

    token = csrf_token(inbox)
    done = omar.post(
        "/operator/conversations/handled",
        data={"ids": ids, "note": "left before anyone was online", "csrf_token": token},
        follow_redirects=True,
    )
    said = done.get_data(as_text=True)
    assert "Marked 2 conversations handled: they have left the inbox." in said
    assert f"Left as they were: {ids[0][:8]}…: already marked handled by ana." in said
    with app.extensions["helploop"].database.session() as session:
        closed = {
            c.id: (c.handoff_closed_by, c.handoff_note)
            for c in session.scalars(select(Conversation).where(Conversation.id.in_([*ids, untouched])))
        }
    assert closed == {
        ids[0]: ("ana", "called"),
        ids[1]: ("omar", "left before anyone was online"),
        ids[2]: ("omar", "left before anyone was online"),
        untouched: (None, None),
    }
    assert omar.get("/operator/conversations/inbox.json").get_json()["waiting"] == 1
    # the bot answers those customers again
    reply = customer.post("/api/v1/chat", json={"message": "where is my card", "session_id": ids[1]})
    assert reply.get_json()["status"] != "agent"

    nothing = omar.post("/operator/conversations/handled", data={"csrf_token": token}, follow_redirects=True)
    assert "Refused: tick the conversations to mark handled first." in nothing.get_data(as_text=True)
    many = omar.post(
        "/operator/conversations/handled",
        data={"ids": [f"x{n:08d}" for n in range(51)], "csrf_token": token},
        follow_redirects=True,
    )
    assert "Refused: 51 conversations ticked; at most 50 at a time." in many.get_data(as_text=True)
    assert omar.post("/operator/conversations/handled", data={"ids": [untouched]}).status_code == 400  # CSRF
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.post("/operator/conversations/handled", data={"ids": [untouched]}).status_code in (
        400,
        403,
    )
    assert omar.get("/operator/conversations/inbox.json").get_json()["waiting"] == 1
    assert re.search(
        r'name="ids" value="' + untouched, omar.get("/operator/conversations").get_data(as_text=True)
    )
