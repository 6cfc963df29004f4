"""Two people from the team on one customer: each sees the other on the conversation (and typing), the inbox
shows who has a waiting conversation open, and a reply written without having seen a colleague's newer one
is not sent but given back (core.presence, RepliesCrossed)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.serving.test_admin import add_user, csrf_token, login


def seen_field(page: str) -> str:
    match = re.search(r'name="seen" id="reply-seen" value="(\d+)"', page)
    assert match, "no seen field in the reply form"
    return match.group(1)


def test_colleagues_on_one_conversation_see_each_other_and_replies_do_not_cross(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    for name in ("omar", "ana"):
        add_user(app, name, "operator")
    add_user(app, "rita", "reviewer")
    customer = app.test_client()
    session_id = customer.post("/api/v1/chat", json={"message": "where is my card"}).get_json()["session_id"]
    omar, ana = app.test_client(), app.test_client()
    login(omar, "omar")
    login(ana, "ana")
    url = f"/operator/conversations/{session_id}"
    assert customer.get(f"/api/v1/sessions/{session_id}/messages").get_json()["agent_typing"] is False
    # Not waiting for a person: nobody is noted there, there is nothing to collide on
    assert 'id="colleagues"' not in omar.get(url).get_data(as_text=True)
    assert ana.get(f"{url}/messages.json").get_json()["colleagues"] == []

    customer.post(f"/api/v1/sessions/{session_id}/handoff")
    omar_page = omar.get(url).get_data(as_text=True)
    assert re.search(r'<p id="colleagues"[^>]* hidden></p>', omar_page)  # nobody else yet
    ana_page = ana.get(url).get_data(as_text=True)
    assert re.search(r'<p id="colleagues"[^>]*>omar has this conversation open.</p>', ana_page)
    assert seen_field(ana_page) == "0"
    polled = omar.get(f"{url}/messages.json").get_json()
    assert polled["colleagues"] == [{"name": "ana", "typing": False}]
    assert polled["colleagues_said"] == "ana has this conversation open."

    # omar types: ana's page and her inbox say so
    omar.get(f"{url}/messages.json?after=0&typing=1")
    polled = ana.get(f"{url}/messages.json").get_json()
    assert polled["colleagues"] == [{"name": "omar", "typing": True}]
    assert polled["colleagues_said"] == "omar is typing a reply."
    assert ana.get("/operator/conversations/inbox.json").get_json()["open_by"] == {
        session_id: "omar is typing a reply"
    }
    inbox = ana.get("/operator/conversations").get_data(as_text=True)
    assert f'data-open-by="{session_id}">omar is typing a reply</div>' in inbox
    assert omar.get("/operator/conversations/inbox.json").get_json()["open_by"] == {session_id: "open by ana"}

    # the customer is told someone is writing to them, never who
    typing = customer.get(f"/api/v1/sessions/{session_id}/messages").get_json()
    assert typing["agent_typing"] is True and "omar" not in str(typing)
    # omar sends; his typing ends with it
    sent = omar.post(
        f"{url}/messages",
        data={"text": "Hi, Omar here.", "seen": seen_field(omar_page), "csrf_token": csrf_token(omar_page)},
    )
    assert sent.status_code == 302
    assert ana.get(f"{url}/messages.json").get_json()["colleagues"] == [{"name": "omar", "typing": False}]
    assert customer.get(f"/api/v1/sessions/{session_id}/messages").get_json()["agent_typing"] is False

    # ana answers from the page she loaded before omar's reply: not sent, her text given back under his
    crossed = ana.post(
        f"{url}/messages",
        data={
            "text": "Hello, <i>Ana</i> here!",
            "seen": seen_field(ana_page),
            "csrf_token": csrf_token(ana_page),
        },
    )
    assert crossed.status_code == 409
    again = crossed.get_data(as_text=True)
    assert "Not sent: omar wrote to the customer meanwhile." in again
    assert re.search(
        r"<textarea id=\"reply-text\"[^>]* autofocus>Hello, &lt;i&gt;Ana&lt;/i&gt; here!</textarea>", again
    )
    assert "Hi, Omar here." in again
    texts = [
        m["text"] for m in customer.get(f"/api/v1/sessions/{session_id}/messages").get_json()["messages"]
    ]
    assert texts == ["Hi, Omar here."]
    # having seen it now, she sends
    assert seen_field(again) != "0"
    sent = ana.post(
        f"{url}/messages",
        data={"text": "Hello, Ana here!", "seen": seen_field(again), "csrf_token": csrf_token(again)},
    )
    assert sent.status_code == 302
    texts = [
        m["text"] for m in customer.get(f"/api/v1/sessions/{session_id}/messages").get_json()["messages"]
    ]
    assert texts == ["Hi, Omar here.", "Hello, Ana here!"]

    # omar closes his tab: ana stops seeing him at once; the beacon needs the CSRF token and an operator
    assert omar.post(f"{url}/leave").status_code == 400
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.post(f"{url}/leave").status_code in (400, 403)
    assert reviewer.get(f"{url}/messages.json").status_code == 403
    assert omar.post(f"{url}/leave", data={"csrf_token": csrf_token(omar_page)}).get_json() == {"left": True}
    polled = ana.get(f"{url}/messages.json").get_json()
    assert polled["colleagues"] == [] and polled["colleagues_said"] == ""
    assert ana.get("/operator/conversations/inbox.json").get_json()["open_by"] == {}
    assert omar.post(f"{url}/leave", data={"csrf_token": csrf_token(omar_page)}).get_json() == {"left": False}


def test_a_note_for_the_team_is_in_the_transcript_and_never_the_customers(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    customer = app.test_client()
    session_id = customer.post("/api/v1/chat", json={"message": "where is my card"}).get_json()["session_id"]
    omar = app.test_client()
    login(omar, "omar")
    url = f"/operator/conversations/{session_id}"
    page = omar.get(url).get_data(as_text=True)
    # Not handed to a person: no reply box, but a note can be kept all the same
    assert 'id="reply-form"' not in page and ">Notes for the team</h2>" in page
    noted = omar.post(
        f"{url}/notes", data={"text": "She <b>called</b>: card re-sent.", "csrf_token": csrf_token(page)}
    )
    assert noted.status_code == 302 and noted.headers["Location"].endswith("#live-chat")
    page = omar.get(url).get_data(as_text=True)
    assert "Note added: the team sees it here, the customer never does." in page
    assert re.search(
        r'<li class="live-note"[^>]*><span class="muted">[\d:]+ · note by omar:</span> '
        r"She &lt;b&gt;called&lt;/b&gt;: card re-sent.</li>",
        page,
    )
    empty = omar.post(
        f"{url}/notes", data={"text": " ", "csrf_token": csrf_token(page)}, follow_redirects=True
    )
    assert "Refused: the message is empty" in empty.get_data(as_text=True)
    reviewer = app.test_client()
    login(reviewer, "rita")
    assert reviewer.post(f"{url}/notes", data={"text": "hi"}).status_code in (400, 403)

    # In a live chat: the customer's side never has it, and the customer is still the one waiting
    customer.post(f"/api/v1/sessions/{session_id}/handoff")
    page = omar.get(url).get_data(as_text=True)
    omar.post(f"{url}/messages", data={"text": "Hi, Omar here.", "seen": "0", "csrf_token": csrf_token(page)})
    customer.post("/api/v1/chat", json={"message": "thanks, when?", "session_id": session_id})
    omar.post(f"{url}/notes", data={"text": "ask the card team", "csrf_token": csrf_token(page)})
    polled = customer.get(f"/api/v1/sessions/{session_id}/messages").get_json()["messages"]
    assert [(m["sender"], m["text"]) for m in polled] == [
        ("agent", "Hi, Omar here."),
        ("customer", "thanks, when?"),
    ]
    resumed = customer.get(f"/api/v1/sessions/{session_id}").get_json()["messages"]
    assert [m["sender"] for m in resumed] == ["agent", "customer"]
    assert "card re-sent" not in json.dumps(resumed) + json.dumps(polled)
    assert omar.get("/operator/conversations/inbox.json").get_json()["customer_wrote"] == 1
    team = omar.get(f"{url}/messages.json").get_json()["messages"]
    assert [(m["sender"], m["agent"]) for m in team] == [
        ("note", "omar"),
        ("agent", "omar"),
        ("customer", None),
        ("note", "omar"),
    ]
