"""A reviewer labels an item with the keyboard in headless Chromium (and unticks a member question)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from core.kb_files import KnowledgeBaseData, Origin
from core.knowledge_base import import_knowledge_base
from core.models import Conversation, ConversationViewer, Judgement, ReviewItem, User
from crowd_feedback.reviewers import create_user
from tests.conftest import TOY
from tests.serving.conftest import live

PASSWORD = "correct horse battery staple"


def logged_in_page(
    browser: Any, url: str, username: str, **context_options: Any
) -> tuple[Any, Any, list[str]]:
    """A fresh browser context on ``url``, past its login form: (context, page, JavaScript errors seen)."""
    context = browser.new_context(**context_options)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    return context, page, errors


@pytest.fixture
def review_server(make_app: Any) -> Iterator[tuple[str, Any]]:
    app = make_app(ratelimit_enabled=False, gold_rate=0.0)
    helploop = app.extensions["helploop"]
    with helploop.database.session() as session:
        create_user(session, username="rita", password=PASSWORD, role="reviewer")
    client = app.test_client()
    # The first question comes after another in its conversation (the review page shows that one above it).
    session_id = client.post("/api/v1/chat", json={"message": "hello there"}).get_json()["session_id"]
    for message, session in (
        ("zork blorp how much is the pound", session_id),
        ("zork blorp how much is the pound today", None),
    ):
        turn = client.post("/api/v1/chat", json={"message": message, "session_id": session}).get_json()
        # whatever the toy model thought of it, the user's thumbs-down routes the turn to review
        client.post("/api/v1/feedback", json={"turn_id": turn["turn_id"], "helpful": False})
        assert helploop.router.drain(10)
    with helploop.database.session() as session:
        assert session.scalars(select(ReviewItem)).one().cluster_size == 2  # one item, two questions
    with live(app) as base:
        yield base, app


def test_reviewer_labels_an_item_with_the_keyboard(browser: Any, review_server: tuple[str, Any]) -> None:
    base, app = review_server
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base + "/review/next")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")
    page.locator("#question").wait_for()
    assert page.locator("#question").inner_text() == "zork blorp how much is the pound"
    assert page.locator(".keys").is_visible()  # a keyboard's shortcuts (a phone shows none)
    member = page.locator("#members input[name=same]")
    assert member.get_attribute("value") == "zork blorp how much is the pound today" and member.is_checked()
    member.uncheck()  # "asks something else"
    page.locator("body").click(position={"x": 5, "y": 200})  # focus the page, not a field
    page.keyboard.press("/")
    page.keyboard.type("exchange_rate")
    page.keyboard.press("Escape")
    page.keyboard.press("n")
    page.keyboard.press("c")  # clear only with the earlier turns
    state = page.evaluate("""() => ({active: document.activeElement.tagName + '#' + document.activeElement.id,
        choice: (document.querySelector('input[name=choice]:checked') || {}).value,
        answer: (document.querySelector('input[name=answer_ok]:checked') || {}).value,
        context: document.getElementById('needs-context').checked,
        search: document.getElementById('search').value})""")
    assert (
        state["choice"] == "__search__"
        and state["search"] == "exchange_rate"
        and state["answer"] == "no"
        and state["context"] is True
    ), state
    assert "hello there" in page.locator("#context").inner_text()
    # The page counts the time it is visible and in use (kept across a reload of the item); hidden, it stops.
    page.wait_for_function("() => parseFloat(document.getElementById('active-seconds').value) >= 1")
    page.evaluate("() => Object.defineProperty(document, 'visibilityState', {get: () => 'hidden'})")
    page.wait_for_timeout(1200)
    active = page.evaluate("() => document.getElementById('active-seconds').value")
    page.wait_for_timeout(2500)
    assert page.evaluate("() => document.getElementById('active-seconds').value") == active
    key = page.evaluate("() => 'helploop-active-' + document.getElementById('active-seconds').dataset.item")
    assert page.evaluate(f"() => sessionStorage.getItem('{key}')") == active
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Saved" in page.content()
    with app.extensions["helploop"].database.session() as session:
        judgement = session.scalars(select(Judgement)).one()
        assert judgement.label == "exchange_rate" and judgement.answer_ok is False
        assert judgement.needs_context is True
        assert judgement.member_checks == {"zork blorp how much is the pound today": False}
        # The page's active time, not the claim's age (3.7 s more: the page was hidden meanwhile).
        assert judgement.seconds == float(active) and judgement.seconds >= 1.0
    # A key pressed by mistake: U on the next page (here the queue's empty page) takes the answer back.
    banner = page.locator("#change-last").inner_text()
    assert banner.startswith("Your last answer: Exchange rates for “zork blorp how much is the pound”."), (
        banner
    )
    page.locator("body").click(position={"x": 5, "y": 300})
    with page.expect_navigation():
        page.keyboard.press("u")
    assert "Your answer was taken back" in page.content()
    assert page.locator("#question").inner_text() == "zork blorp how much is the pound"
    second = page.evaluate("() => document.querySelector('input[name=choice][data-key=\"2\"]').value")
    assert second not in {"exchange_rate", "__search__"}
    page.locator("body").click(position={"x": 5, "y": 200})
    page.keyboard.press("2")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    with app.extensions["helploop"].database.session() as session:
        assert session.scalars(select(Judgement.label)).all() == [second]
    page.goto(base + "/operator/")
    assert "Forbidden" in page.content()
    context.close()
    assert errors == []


def test_a_reviewer_on_a_phone_answers_by_tapping(browser: Any, review_server: tuple[str, Any]) -> None:
    """On a touch screen the keyboard shortcuts are not shown and the boxes are finger-sized; tapping the
    choices and Submit stores the judgement."""
    base, app = review_server
    context, page, errors = logged_in_page(
        browser,
        base + "/review/next",
        "rita",
        viewport={"width": 390, "height": 800},
        is_mobile=True,
        has_touch=True,
    )
    page.locator("#question").wait_for()
    assert not page.locator(".keys").is_visible()
    assert not page.locator("label > kbd").first.is_visible()
    box = page.locator("input[name=choice]").first.bounding_box()
    assert box is not None and box["width"] >= 20 and box["height"] >= 20
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.locator("label", has=page.locator("input[name=choice]")).first.tap()
    page.locator("label", has=page.locator("input[name=answer_ok][value=yes]")).tap()
    with page.expect_navigation():
        page.locator("input[type=submit][value^=Submit]").tap()
    assert "Saved" in page.content()
    with app.extensions["helploop"].database.session() as session:
        judgement = session.scalars(select(Judgement)).one()
        assert judgement.answer_ok is True and judgement.label
    context.close()
    assert errors == []


def test_an_intent_found_by_search_shows_its_examples_and_the_operators_note(
    browser: Any, review_server: tuple[str, Any]
) -> None:
    from core.kb_files import IntentData
    from tests.serving.test_knowledge import import_toy_knowledge

    base, app = review_server
    import_toy_knowledge(app)
    note = "Rates and fees of a payment abroad.\nNot <a cash withdrawal>: that is atm_fee."
    with app.extensions["helploop"].database.session() as session:
        import_knowledge_base(
            session,
            incoming=KnowledgeBaseData({"exchange_rate": IntentData("exchange_rate", reviewer_note=note)}),
            source="test",
        )
    context, page, errors = logged_in_page(browser, base + "/review/next", "rita")
    page.locator("#question").wait_for()
    assert "read the reviewing guidelines" in page.locator("#guidelines-notice").inner_text()
    page.locator("body").click(position={"x": 5, "y": 200})
    page.keyboard.press("/")
    page.keyboard.type("exchange_ra")  # not a name yet: nothing is fetched or shown
    page.wait_for_timeout(300)
    assert page.locator("#search-preview").inner_text() == ""
    page.keyboard.type("te")
    page.locator("#search-preview .note").wait_for()
    preview = page.locator("#search-preview")
    shortest = sorted(TOY["exchange_rate"], key=lambda t: (len(t), t))[:2]
    assert preview.locator(".preview-title").inner_text() == (
        f"Exchange rates — e.g. “{shortest[0]}” · “{shortest[1]}”"
    )
    assert preview.locator(".note").inner_text() == "Note: " + note  # as text: the "<a ...>" is not markup
    assert preview.locator("a").count() == 0
    page.fill("#search", "card_arrival")  # an intent without a note: its examples only
    page.wait_for_function(
        "() => document.querySelector('#search-preview .preview-title')"
        " && document.querySelector('#search-preview').textContent.startsWith('Where is my card?')"
    )
    assert preview.locator(".note").count() == 0
    context.close()
    assert errors == []


def test_operator_ticks_every_item_and_settles_them_in_the_browser(
    browser: Any, review_server: tuple[str, Any]
) -> None:
    base, app = review_server
    with app.extensions["helploop"].database.session() as session:
        create_user(session, username="omar", password=PASSWORD, role="operator")
    context, page, errors = logged_in_page(browser, base + "/review/items?status=pending", "omar")
    boxes = page.locator("input[name=item]")
    assert boxes.count() == 1 and not boxes.first.is_checked()
    page.check("#tick-all")
    assert all(boxes.nth(i).is_checked() for i in range(boxes.count()))
    page.uncheck("#tick-all")
    assert not boxes.first.is_checked()
    page.check("#tick-all")
    page.fill("#bulk-settle input[name=label]", "exchange_rate")
    with page.expect_navigation():
        page.click("#bulk-settle button[type=submit]")
    assert "1 item settled as exchange_rate." in page.content()
    with app.extensions["helploop"].database.session() as session:
        item = session.scalars(select(ReviewItem)).one()
        assert (item.status, item.resolved_label, item.settled_by) == ("resolved", "exchange_rate", "omar")
    context.close()
    assert errors == []


def test_operator_pages_fit_a_phone_and_wide_tables_scroll_inside_their_card(
    browser: Any, review_server: tuple[str, Any]
) -> None:
    """An operator on call opens the console on a phone: the page never scrolls sideways (the header and
    buttons stay on screen); a table wider than the screen scrolls inside its card instead. On a laptop the
    header is one line."""
    base, app = review_server
    with app.extensions["helploop"].database.session() as session:
        create_user(session, username="omar", password=PASSWORD, role="operator")
    context, page, errors = logged_in_page(
        browser, base + "/review/items?status=pending", "omar", viewport={"width": 390, "height": 800}
    )
    for path in ("/review/items?status=pending", "/operator/", "/operator/runs", "/operator/accounts"):
        page.goto(base + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    page.goto(base + "/review/items?status=pending")
    card = page.locator(".card", has=page.locator("table")).first
    widths = card.evaluate("c => [c.scrollWidth, c.clientWidth, c.querySelector('table').scrollWidth]")
    assert widths[0] > widths[1] and widths[2] > widths[1]  # the table is wider than its card, and scrolls
    # On a laptop (1280 px) the operator's bar is one line: every section link, the name (a link to the
    # account's own page) and Log out.
    page.set_viewport_size({"width": 1280, "height": 800})
    tops = page.evaluate(
        "() => [...document.querySelectorAll('header nav a, header .who a, header .who button')]"
        ".map(e => Math.round(e.getBoundingClientRect().top))"
    )
    assert len(tops) == 15 and max(tops) - min(tops) <= 4, tops
    # The Try page's question, earlier question, page metadata and Ask share one line there too; on the
    # phone they wrap, and the page still does not scroll sideways.
    page.goto(base + "/operator/knowledge/try")
    fields = "() => [...document.querySelectorAll('#try-form > *')].map(e => e.getBoundingClientRect().top)"
    tops = page.evaluate(fields)
    assert len(tops) == 4 and max(tops) - min(tops) <= 4, tops
    page.set_viewport_size({"width": 390, "height": 800})
    assert max(page.evaluate(fields)) - min(page.evaluate(fields)) > 20
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()
    assert errors == []


def test_operator_adds_a_reviewer_and_closes_a_handoff_in_the_browser(
    browser: Any, review_server: tuple[str, Any], tmp_path: Any
) -> None:
    import os

    base, app = review_server
    helploop = app.extensions["helploop"]
    with helploop.database.session() as session:
        create_user(session, username="omar", password=PASSWORD, role="operator")
    chat = app.test_client().post("/api/v1/chat", json={"message": "I need a person, call 0612345678"})
    session_id = chat.get_json()["session_id"]
    app.test_client().post(f"/api/v1/sessions/{session_id}/handoff")
    shots = os.environ.get("HELPLOOP_SCREENSHOTS")  # a folder: keep screenshots for a person to look at
    context, page, errors = logged_in_page(browser, base + "/operator/accounts", "omar")
    form = page.locator("#new-account")
    form.locator("input[name=username]").fill("nina")
    form.locator("select[name=role]").select_option("reviewer")
    form.locator("input[name=password]").fill("a long enough secret")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert "Created reviewer nina." in page.content()
    assert page.locator('tr[data-username="nina"] td.status').inner_text() == "active"
    if shots:
        page.screenshot(path=f"{shots}/accounts.png", full_page=True)

    page.click("header >> text=Conversations")
    row = page.locator("#conversations tr", has_text="I need a person")
    assert "waiting" in row.inner_text()
    with page.expect_navigation():
        row.locator("a").click()
    assert "0612345678" in page.content()  # operators see the original
    if shots:
        page.screenshot(path=f"{shots}/conversation.png", full_page=True)
    page.fill("input[name=note]", "phoned back")
    with page.expect_navigation():
        page.click("text=Mark handled")
    assert "Handoff handled by omar" in page.locator("#handoff-state").inner_text()
    page.click("text=back to the inbox")
    assert "I need a person" not in page.locator("#conversations").inner_text()
    context.close()
    assert errors == []


def test_operator_ticks_suggestions_and_creates_an_intent_in_the_browser(
    browser: Any, review_server: tuple[str, Any]
) -> None:
    """The checkboxes sit in the table, outside the create form (they join it through its form attribute)."""
    from core.knowledge_base import load_knowledge_base

    base, app = review_server
    helploop = app.extensions["helploop"]
    client = app.test_client()
    client.post("/api/v1/chat", json={"message": "can I get a card made of titanium"})
    assert helploop.router.drain(10)
    with helploop.database.session() as session:
        create_user(session, username="omar", password=PASSWORD, role="operator")
        items = session.scalars(select(ReviewItem).order_by(ReviewItem.id)).all()
        for item in items:  # both the pound item and the titanium one: reviewers found no intent
            item.status, item.resolved_label, item.resolved_confidence = "resolved", "new_intent", 0.95
        titanium = items[-1].id
    context, page, errors = logged_in_page(browser, base + "/operator/suggestions", "omar")
    assert page.locator("#suggestions tr").count() == 3  # header and two suggestions
    page.check(f'input[name=item][value="{titanium}"]')
    page.fill("#adopt input[name=name]", "titanium_card")
    page.fill("#adopt input[name=title]", "Titanium card")
    page.fill("#adopt textarea[name=answer]", "We have no titanium cards.")
    with page.expect_navigation():
        page.click("text=Create intent")
    assert "Intent titanium_card created with 1 example question " in page.content()
    assert page.locator("#suggestions tr").count() == 2  # the pound one is still open
    context.close()
    assert errors == []
    with helploop.database.session() as session:
        examples = load_knowledge_base(session).intents["titanium_card"].examples
    assert examples == ["can I get a card made of titanium"]


def test_operator_uploads_knowledge_files_and_downloads_an_export_in_the_browser(
    browser: Any, review_server: tuple[str, Any], tmp_path: Any
) -> None:
    """A real multipart upload through the form (CSRF token, raised size limit), then a download."""
    import json

    from core.knowledge_base import load_knowledge_base

    base, app = review_server
    helploop = app.extensions["helploop"]
    with helploop.database.session() as session:
        create_user(session, username="omar", password=PASSWORD, role="operator")
    examples = tmp_path / "examples.csv"
    examples.write_text("text,label\nwhere is my card,card_arrival\nnew pin,change_pin\n", encoding="utf-8")
    answers = tmp_path / "answers.csv"
    answers.write_text("label,answer\ncard_arrival,5-7 days.\nchange_pin,At any ATM.\n", encoding="utf-8")
    context, page, errors = logged_in_page(
        browser, base + "/operator/knowledge/", "omar", accept_downloads=True
    )
    page.set_input_files("#import-form input[type=file]", [str(examples), str(answers)])
    with page.expect_navigation():
        page.click("#import-form button[type=submit]")
    assert "2 intents created" in page.content()
    assert page.locator("#intents tr[data-intent]").count() == 2
    with page.expect_download() as download:
        page.click("#export-json")
    saved = tmp_path / "export.json"
    download.value.save_as(saved)
    context.close()
    assert errors == []
    with helploop.database.session() as session:
        assert json.loads(saved.read_text()) == load_knowledge_base(session).to_dict()


def test_live_chat_between_the_widget_and_the_conversation_page(
    browser: Any, review_server: tuple[str, Any]
) -> None:
    """A customer asks for a person in the widget; an operator replies from the conversation page; each sees
    the other's messages without reloading; marked handled, the bot answers again and the widget asks the
    customer to rate the chat."""
    base, app = review_server
    helploop = app.extensions["helploop"]
    with helploop.database.session() as session:
        create_user(session, username="omar", password=PASSWORD, role="operator")
        kb = KnowledgeBaseData()
        for name, examples in TOY.items():
            intent = kb.intent(name, Origin("test", None))
            intent.examples.extend(examples)
            intent.title = name.replace("_", " ").capitalize()
            intent.answer = f"About {name}: see the app."
        kb.intents["card_arrival"].answer = "Cards arrive in **5–7 working days**."
        import_knowledge_base(session, incoming=kb, source="test")
    customer_context = browser.new_context()
    customer = customer_context.new_page()
    customer_errors: list[str] = []
    customer.on("pageerror", lambda error: customer_errors.append(str(error)))
    customer.goto(base + "/")
    customer.click(".hl-launcher")
    customer.fill(".hl-input", "where is my card")
    customer.keyboard.press("Enter")
    customer.locator(".hl-bot[data-status=answered]").first.wait_for()
    context, page, errors = logged_in_page(browser, f"{base}/operator/conversations", "omar")
    assert page.locator("#inbox-news").is_hidden()
    customer.click(".hl-human")
    customer.locator(".hl-contact").wait_for()
    # The inbox says so without a reload (it polls every 10 s), and counts in the tab's title.
    page.locator("#inbox-news").wait_for(timeout=15_000)
    assert "1 conversation waiting for a person" in page.locator("#inbox-news").inner_text()
    assert page.title().startswith("(1) Conversations")
    with helploop.database.session() as session:
        session_id = session.scalars(
            select(Conversation.id).where(Conversation.handoff_requested_at.is_not(None))
        ).one()
    page.goto(f"{base}/operator/conversations/{session_id}")
    page.fill("#reply-text", "Hi, I'm from the card team. What is the <b>last</b> digit?")
    # The customer sees that someone is writing to them (never who), by the two pages' polls.
    customer.locator(".hl-agent-typing").wait_for(timeout=10_000)
    assert (
        customer.locator(".hl-agent-typing").get_attribute("aria-label") == "Someone from our team is typing"
    )
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    assert "omar is chatting with the customer" in page.locator("#live-state").inner_text()

    agent = customer.locator(".hl-agent")
    agent.wait_for(timeout=10_000)  # the widget polls every 3 s while waiting for a person
    assert (
        agent.locator(".hl-text").inner_text() == "Hi, I'm from the card team. What is the <b>last</b> digit?"
    )
    assert customer.locator(".hl-agent-typing").count() == 0  # sent: the same poll ends the dots
    assert agent.locator("b").count() == 0  # a person's words are text, never markup
    assert customer.locator(".hl-notice", has_text="has joined the chat").count() == 1
    log = customer.locator(".hl-log > *").all_inner_texts()
    joined = next(i for i, t in enumerate(log) if "has joined the chat" in t)
    assert joined < next(i for i, t in enumerate(log) if "What is the <b>last</b> digit?" in t)
    answered_before = customer.locator(".hl-bot[data-status=answered]").count()
    assert customer.locator(".hl-contact").count() == 0  # a person is here: the contact form has gone
    customer.fill(".hl-form .hl-input", "It ends in 7")
    customer.keyboard.press("Enter")
    page.locator("#live-messages li.live-customer", has_text="It ends in 7").wait_for(timeout=10_000)
    assert customer.locator(".hl-bot[data-status=answered]").count() == answered_before  # the bot kept quiet
    shown_once = customer.locator(".hl-user", has_text="It ends in 7").count()
    assert shown_once == 1  # as typed, not again by a poll
    # The operator starts the next reply from the knowledge base's answer (the bot's candidates come first).
    first_choice = page.locator("#canned optgroup[label='What the bot considered'] option").first
    assert first_choice.inner_text() == "Card arrival"
    page.select_option("#canned", "card_arrival")
    assert page.input_value("#reply-text") == "Cards arrive in **5–7 working days**."
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    customer.locator(".hl-agent strong", has_text="5–7 working days").wait_for(timeout=10_000)

    page.fill("input[name=note]", "card re-sent")
    with page.expect_navigation():
        page.click("text=Mark handled")
    customer.locator(".hl-notice", has_text="the assistant answers again").wait_for(timeout=10_000)
    # The chat is over: how was it? (1 to 5)
    rating = customer.locator(".hl-rating")
    assert rating.get_attribute("aria-label") == "How was your chat with our team?"
    assert rating.locator("button.hl-star").count() == 5
    customer.fill(".hl-form .hl-input", "when will my card arrive")
    customer.keyboard.press("Enter")
    customer.locator(".hl-bot[data-status=answered]").nth(answered_before).wait_for()
    # A reload resumes everything in order, and a handled handoff asks for nothing any more.
    customer.reload()
    customer.locator(".hl-bot[data-status=answered]").nth(answered_before).wait_for()
    texts = customer.locator(".hl-msg").all_inner_texts()
    order = [
        next(i for i, t in enumerate(texts) if needle in t)
        for needle in ("where is my card", "last", "It ends in 7", "when will my card arrive")
    ]
    assert order == sorted(order)
    assert customer.locator(".hl-contact").count() == 0
    assert customer.locator(".hl-notice", has_text="will take over").count() == 0
    # Not rated yet: the resumed chat asks again; a rating is kept, and then it asks no more.
    customer.locator(".hl-rating").wait_for()
    customer.click("button[aria-label='4 out of 5']")
    customer.locator(".hl-notice", has_text="Thank you for your feedback.").wait_for()
    assert customer.locator(".hl-rating").count() == 0
    page.reload()
    assert "4 out of 5" in page.locator("#rating").inner_text()
    customer.reload()
    customer.locator(".hl-bot[data-status=answered]").nth(answered_before).wait_for()
    assert customer.locator(".hl-rating").count() == 0
    context.close()
    customer_context.close()
    assert errors == [] and customer_errors == []


def test_two_operators_on_one_conversation_see_each_other_typing_and_leaving(
    browser: Any, review_server: tuple[str, Any]
) -> None:
    """Ana and Omar open the same waiting conversation: Omar's page says when Ana types, shows her reply
    without a reload, and sends his own after it (the page had seen hers); when Ana closes her tab, Omar's
    page stops naming her at once (the page's beacon), not only once her polls have aged out."""
    import time

    base, app = review_server
    helploop = app.extensions["helploop"]
    with helploop.database.session() as session:
        for name in ("omar", "ana"):
            create_user(session, username=name, password=PASSWORD, role="operator")
    client = app.test_client()
    session_id = client.post("/api/v1/chat", json={"message": "where is my card"}).get_json()["session_id"]
    client.post(f"/api/v1/sessions/{session_id}/handoff")
    url = f"{base}/operator/conversations/{session_id}"
    omar_context, omar, omar_errors = logged_in_page(browser, url, "omar")
    ana_context, ana, ana_errors = logged_in_page(browser, url, "ana")
    colleagues = omar.locator("#colleagues")
    colleagues.filter(has_text="ana has this conversation open.").wait_for(timeout=10_000)
    ana.type("#reply-text", "Hi, Ana here: let me check your card.")
    colleagues.filter(has_text="ana is typing a reply.").wait_for(timeout=10_000)
    with ana.expect_navigation():
        ana.keyboard.press("Control+Enter")
    ana.wait_for_timeout(1000)  # a beacon sent as her page went to send the reply would have landed
    with helploop.database.session() as session:  # sending is no leaving: she is still there, not typing
        (row,) = session.execute(
            select(ConversationViewer.typing_at)
            .join(User, User.id == ConversationViewer.user_id)
            .where(User.username == "ana")
        ).all()
    assert row.typing_at is None
    omar.locator("#live-messages li.live-agent", has_text="let me check your card").wait_for(timeout=10_000)
    colleagues.filter(has_text="ana has this conversation open.").wait_for(timeout=10_000)
    omar.fill("#reply-text", "Omar here too: it was posted on Monday.")
    with omar.expect_navigation():
        omar.keyboard.press("Control+Enter")
    assert (
        omar.locator("#live-messages li.live-agent")
        .all_inner_texts()[-1]
        .endswith("omar: Omar here too: it was posted on Monday.")
    )
    # a note goes to ana's open page by its poll, marked as the team's; adding it is no leaving either
    omar.click("#note-form summary")
    omar.fill("#note-text", "Ana and I both answered: she has the card team's date.")
    with omar.expect_navigation():
        omar.click("#note-form button")
    omar.wait_for_timeout(1000)  # as after ana's reply: a beacon would have landed, and no poll has run yet
    with helploop.database.session() as session:
        assert session.scalar(
            select(ConversationViewer.user_id)
            .join(User, User.id == ConversationViewer.user_id)
            .where(User.username == "omar")
        )
    ana.locator("#live-messages li.live-note", has_text="both answered").wait_for(timeout=10_000)
    assert "note by omar:" in ana.locator("#live-messages li.live-note").inner_text()
    ana_context.close()
    started = time.monotonic()
    omar.locator("#colleagues").wait_for(state="hidden", timeout=10_000)
    assert time.monotonic() - started < 9  # her rows would have aged out after 25 s
    omar_context.close()
    assert omar_errors == [] and ana_errors == []


def test_a_reviewer_turns_on_two_factor_and_signs_in_with_a_recovery_code(
    browser: Any, review_server: tuple[str, Any]
) -> None:
    """In the browser: from the name in the header to the two-factor page, the key read as the app reads it,
    the code and password typed; the recovery codes shown once; then a sign-in's second step with one."""
    import pyotp

    base, _app = review_server
    context, page, errors = logged_in_page(browser, base + "/review/", "rita")
    page.click("#own-account")
    page.click("#own-two-factor")
    page.wait_for_selector(".qr svg")  # the click starts the navigation; count() would not wait for its page
    assert page.locator(".qr svg").count() == 1
    key = page.get_attribute("#two-factor-key", "data-key")
    page.fill("#two-factor-on input[name=code]", pyotp.TOTP(key).now())
    page.fill("#two-factor-on input[name=current_password]", PASSWORD)
    with page.expect_navigation():
        page.click("#two-factor-on input[type=submit]")
    codes = page.inner_text("#recovery-codes pre").split()
    assert len(codes) == 10 and page.inner_text("#two-factor-state").startswith("On.")
    page.reload()
    assert page.locator("#recovery-codes").count() == 0  # shown once
    with page.expect_navigation():
        page.click("header .who button")  # log out
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/login/code")
    page.fill("input[name=code]", codes[0].upper())
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/review/")
    assert "Signed in with a recovery code; 9 left." in page.content()
    context.close()
    assert errors == []


def test_the_whatsapp_template_is_offered_once_the_reply_window_has_closed(
    browser: Any, make_app: Any
) -> None:
    """On a WhatsApp conversation's page, the live chat's poll turns the reply-window line red and shows the
    template button once the 24 hours have passed, without a reload; the customer writing back hides it."""
    from datetime import timedelta

    from core.models import ChannelChat, Turn
    from tests.serving.test_channels import CHANNELS, Api, wa_delivery, wa_text, whatsapp

    app = make_app(
        ratelimit_enabled=False, channel_post=Api(), **CHANNELS, whatsapp_reopen_template="support_follow_up"
    )
    helploop = app.extensions["helploop"]
    with helploop.database.session() as session:
        create_user(session, username="omar", password=PASSWORD, role="operator")
    client = app.test_client()
    whatsapp(client, wa_delivery(wa_text("wamid.W1", "can I talk to a human?")))
    with helploop.database.session() as session:
        conversation_id = session.scalars(select(Turn.conversation_id)).one()
    with live(app) as base:
        context, page, errors = logged_in_page(
            browser, f"{base}/operator/conversations/{conversation_id}", "omar"
        )
        page.locator("#reply-window").wait_for()
        assert page.locator("#reply-window").get_attribute("class") == "muted"
        assert page.locator("#template-form").is_hidden()
        with helploop.database.session() as session:
            chat = session.scalars(select(ChannelChat)).one()
            assert chat.customer_at is not None
            chat.customer_at = chat.customer_at - timedelta(hours=25)
        page.locator("#template-form").wait_for(state="visible", timeout=10_000)
        assert page.locator("#reply-window").get_attribute("class") == "warn"
        with page.expect_navigation():
            page.click("#template-form button")
        assert "Template “support_follow_up” sent" in page.locator(".flash").first.inner_text()
        assert (
            "Sent the WhatsApp template “support_follow_up” (en)"
            in page.locator("#live-messages").inner_text()
        )
        whatsapp(client, wa_delivery(wa_text("wamid.W2", "yes, still here")))
        page.locator("#template-form").wait_for(state="hidden", timeout=10_000)
        assert page.locator("#reply-window").get_attribute("class") == "muted"
        page.locator("#live-messages li.live-customer").wait_for()
        context.close()
    assert errors == []
