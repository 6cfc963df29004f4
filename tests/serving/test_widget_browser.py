"""The widget in a real browser: Debian's headless Chromium driven by Playwright (never a downloaded one)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from bot.engine import AnsweringEngine
from core.models import Conversation, Turn
from tests.serving.conftest import hashing_loader, live

AMBIGUOUS = "card pin"


def clarifying_loader(path: str) -> AnsweringEngine:
    """The toy model with its gate set so that AMBIGUOUS asks "did you mean" (its top two share the mass)."""
    engine = hashing_loader(path)
    probabilities, _, _ = engine.predict_proba([AMBIGUOUS])
    top = np.sort(probabilities[0])[::-1]
    engine.gate.threshold = float((top[0] + top[1] + top[0]) / 2)  # above top-1, below top-1 + top-2
    engine.gate.margin = 0.0
    return engine


@pytest.fixture
def live_server(make_app: Any) -> Iterator[tuple[str, Any]]:
    app = make_app(model_loader=clarifying_loader, ratelimit_enabled=False)
    with live(app) as base:
        yield base, app


@pytest.fixture
def page(browser: Any, live_server: tuple[str, Any]) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(live_server[0] + "/")
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def send(page: Any, text: str) -> None:
    if page.locator(".hl-panel").is_hidden():
        page.click(".hl-launcher")
    page.fill(".hl-form .hl-input", text)  # the chat's own field, not a handoff's contact field
    page.press(".hl-form .hl-input", "Enter")


def bot_messages(page: Any) -> Any:
    return page.locator(".hl-bot:not([data-status=greeting])")


def test_send_a_message_and_see_the_answer(page: Any) -> None:
    page.click(".hl-launcher")
    assert page.evaluate("document.activeElement.classList.contains('hl-input')")  # focus moves to input
    send(page, "when will my card arrive")
    bot_messages(page).first.wait_for()
    answer = bot_messages(page).first
    assert "5–7 working days" in answer.inner_text()
    assert answer.locator("strong").inner_text() == "5–7 working days"  # Markdown rendered
    page.keyboard.press("Escape")
    assert page.locator(".hl-panel").is_hidden()


def test_a_message_that_could_not_be_sent_stays_in_the_box_with_a_plain_explanation(page: Any) -> None:
    """No network (or the server down), then a proxy's HTML error page: the customer reads what happened in
    plain words (not "Failed to fetch" or a JSON parse error) and the message waits in the box; sent again
    once the server answers, it is answered."""
    page.route("**/api/v1/chat", lambda route: route.abort())
    send(page, "when will my card arrive")
    notice = page.locator(".hl-notice", has_text="We can't be reached right now")
    notice.wait_for()
    assert "still in the box" in notice.inner_text()
    assert page.locator(".hl-form .hl-input").input_value() == "when will my card arrive"
    page.unroute("**/api/v1/chat")
    page.route(
        "**/api/v1/chat",
        lambda route: route.fulfill(status=502, body="<html>Bad gateway</html>", content_type="text/html"),
    )
    page.fill(".hl-form .hl-input", "")
    send(page, "and my pin?")
    page.locator(".hl-notice", has_text="The assistant is unavailable for a moment").wait_for()
    assert page.locator(".hl-form .hl-input").input_value() == "and my pin?"
    assert "Failed to fetch" not in page.locator(".hl-log").inner_text()
    page.unroute("**/api/v1/chat")
    page.fill(".hl-form .hl-input", "when will my card arrive")
    page.keyboard.press("Enter")
    bot_messages(page).first.wait_for()
    assert "5–7 working days" in bot_messages(page).first.inner_text()


def test_a_message_sent_while_the_model_loads_is_answered_without_sending_it_again(page: Any) -> None:
    """The app just started (503 model_unavailable, Retry-After): the widget asks again by itself, the typing
    dots showing, and the answer comes with no notice and nothing for the customer to do."""
    calls: list[int] = []

    def loading_then_ready(route: Any) -> None:
        calls.append(1)
        if len(calls) <= 2:
            route.fulfill(
                status=503,
                headers={"Retry-After": "60"},  # the rate limiter's window: the body's figure counts
                content_type="application/json",
                body='{"error": {"code": "model_unavailable", "message": "loading", "retry_after": 1}}',
            )
        else:
            route.continue_()

    page.route("**/api/v1/chat", loading_then_ready)
    send(page, "when will my card arrive")
    page.locator(".hl-typing").wait_for()
    bot_messages(page).first.wait_for(timeout=15000)
    assert "5–7 working days" in bot_messages(page).first.inner_text()
    assert len(calls) == 3 and page.locator(".hl-notice").count() == 0
    assert page.locator(".hl-user").count() == 1  # sent once, as the customer typed it


def test_clarify_shows_chips_and_clicking_one_answers(page: Any, live_server: tuple[str, Any]) -> None:
    send(page, AMBIGUOUS)
    bot_messages(page).first.wait_for()
    assert bot_messages(page).first.get_attribute("data-status") == "clarify"
    chips = page.locator(".hl-bot .hl-chip")
    assert chips.count() >= 2
    titles = chips.all_inner_texts()
    assert "Change my PIN" in titles
    page.locator(".hl-chip", has_text="Change my PIN").click()
    bot_messages(page).nth(1).wait_for()
    assert "Change it at any ATM." in bot_messages(page).nth(1).inner_text()
    assert bot_messages(page).nth(1).locator("li").count() == 2  # the Markdown list
    assert page.locator(".hl-chip[aria-pressed=true]").all_inner_texts() == ["Change my PIN"]
    # the click is the customer's answer to "did you mean", kept on the turn that asked
    with live_server[1].extensions["helploop"].database.session() as session:
        asked, clicked = session.scalars(select(Turn).order_by(Turn.id)).all()
        assert (asked.status, asked.chosen_intent) == ("clarify", "change_pin")
        assert "change_pin" in (asked.suggested or [])
        assert (clicked.served_by, clicked.intent) == ("suggestion", "change_pin")
    page.reload()  # a resumed conversation still shows which choice was clicked, and by its title
    bot_messages(page).nth(1).wait_for()
    assert page.locator(".hl-chip[aria-pressed=true]").all_inner_texts() == ["Change my PIN"]
    assert page.locator(".hl-user").all_inner_texts() == [AMBIGUOUS, "Change my PIN"]


def test_thumbs_down_is_stored_and_offers_the_intents_ranked_next(
    page: Any, live_server: tuple[str, Any]
) -> None:
    """A thumbs-down is stored, and the bot answers it as a typed "that's wrong": its line, the intents the
    model ranked next as chips (one click answers), and the "Talk to a person" button; pressing it again
    offers nothing more."""
    settings = live_server[1].extensions["helploop"].settings
    send(page, "when will my card arrive")
    bot_messages(page).first.wait_for()
    page.click(".hl-thumb-down")
    page.locator(".hl-thumb-down[aria-pressed=true]").wait_for()
    offer = page.locator(".hl-bot[data-status=not_helpful]")
    offer.wait_for()
    assert (
        offer.locator(".hl-text").inner_text()
        == f"{settings.small_talk_not_helpful} {settings.clarify_message}"
    )
    assert offer.locator(".hl-chip[data-intent]").count() == 3
    assert offer.locator(".hl-ask-person").inner_text() == "Talk to a person"
    assert offer.locator(".hl-thumb-down").count() == 0  # the offer itself is not rated
    app = live_server[1]
    with app.extensions["helploop"].database.session() as session:
        turn = session.scalars(select(Turn)).one()
        assert turn.helpful is False
    page.locator(".hl-thumb-down").first.click()  # pressed again: stored, no second offer
    page.wait_for_timeout(300)
    assert page.locator(".hl-bot[data-status=not_helpful]").count() == 1
    picked = offer.locator(".hl-chip[data-intent]").first
    intent = picked.get_attribute("data-intent")
    picked.click()
    bot_messages(page).nth(2).wait_for()
    with app.extensions["helploop"].database.session() as session:
        clicked = session.scalars(select(Turn).order_by(Turn.id.desc())).first()
        assert clicked is not None and (clicked.served_by, clicked.intent) == ("suggestion", intent)


def test_typing_that_is_wrong_shows_the_thumbs_down_and_offers_the_next_intents(
    page: Any, live_server: tuple[str, Any]
) -> None:
    send(page, "when will my card arrive")
    bot_messages(page).first.wait_for()
    assert page.locator(".hl-thumb-down[aria-pressed=true]").count() == 0
    send(page, "that's wrong")
    bot_messages(page).nth(1).wait_for()
    page.locator(".hl-thumb-down[aria-pressed=true]").wait_for()  # on the first answer, without a click
    assert page.locator(".hl-thumb-up[aria-pressed=true]").count() == 0
    chips = bot_messages(page).nth(1).locator(".hl-chip")
    assert chips.count() == 3
    app = live_server[1]
    with app.extensions["helploop"].database.session() as session:
        first = session.scalars(select(Turn).order_by(Turn.id)).first()
        assert first is not None and first.helpful is False
    chips.first.click()  # a pick is answered at once, as any chip
    bot_messages(page).nth(2).wait_for()


def test_reload_resumes_the_conversation(page: Any) -> None:
    send(page, "when will my card arrive")
    bot_messages(page).first.wait_for()
    page.reload()
    page.locator(".hl-user").first.wait_for()
    assert page.locator(".hl-user").first.inner_text() == "when will my card arrive"
    assert "5–7 working days" in bot_messages(page).first.inner_text()
    send(page, "change pin number")
    bot_messages(page).nth(1).wait_for()
    assert page.locator(".hl-user").count() == 2


def test_html_and_scripts_are_shown_as_text(page: Any) -> None:
    payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b>bold?</b>'
    send(page, payload)
    page.locator(".hl-user").first.wait_for()
    bot_messages(page).first.wait_for()
    assert page.locator(".hl-user").first.inner_text() == payload
    send(page, "close my account")  # its answer in the knowledge base contains a <script> tag
    bot_messages(page).nth(1).wait_for()
    assert "<script>alert('x')</script>" in bot_messages(page).nth(1).inner_text()
    assert page.locator(".hl-log script, .hl-log img, .hl-log b").count() == 0
    assert page.evaluate("window.__xss") is None


def test_an_off_topic_message_is_declined_without_a_handoff(page: Any, live_server: tuple[str, Any]) -> None:
    """A message like nothing in the knowledge base gets the off-topic line, and the widget neither asks for
    a contact nor says a person will take over, not even when the conversation is resumed; the "Talk to a
    person" button under the reply then hands it over as the header's does."""
    settings = live_server[1].extensions["helploop"].settings
    send(page, "xylophone aardvark telescope")
    declined = page.locator(".hl-bot[data-status=off_topic]")
    declined.wait_for()
    assert declined.locator(".hl-text").inner_text() == settings.off_topic_message
    assert declined.locator(".hl-ask-person").inner_text() == "Talk to a person"
    assert page.locator(".hl-contact").count() == 0 and page.locator(".hl-notice").count() == 0
    page.reload()  # resumed from the transcript
    if page.locator(".hl-panel").is_hidden():
        page.click(".hl-launcher")
    page.locator(".hl-bot[data-status=off_topic]").wait_for()
    assert page.locator(".hl-contact").count() == 0 and page.locator(".hl-notice").count() == 0
    page.click(".hl-bot[data-status=off_topic] .hl-ask-person")  # the offer under the reply: one click
    page.locator(".hl-notice", has_text="Nobody from our team is online right now").wait_for()
    page.locator(".hl-contact").wait_for()
    with live_server[1].extensions["helploop"].database.session() as session:
        assert session.scalars(select(Conversation.handoff_requested_at)).one() is not None


def test_an_answer_asked_for_again_offers_a_person_under_it(page: Any, live_server: tuple[str, Any]) -> None:
    """The answer just given, asked for again: given again with the offer and the "Talk to a person" button
    under it (its thumbs as any answer's), kept when the conversation is resumed; the button hands over."""
    settings = live_server[1].extensions["helploop"].settings
    send(page, "when will my card arrive")
    bot_messages(page).first.wait_for()
    assert bot_messages(page).first.locator(".hl-ask-person").count() == 0
    send(page, "where is my card")
    again = bot_messages(page).nth(1)
    again.wait_for()
    assert settings.asked_again_message in again.locator(".hl-text").inner_text()
    assert again.locator(".hl-ask-person").inner_text() == "Talk to a person"
    assert again.locator(".hl-thumb-down").count() == 1
    page.reload()  # resumed from the transcript
    if page.locator(".hl-panel").is_hidden():
        page.click(".hl-launcher")
    bot_messages(page).nth(1).locator(".hl-ask-person").wait_for()
    assert bot_messages(page).first.locator(".hl-ask-person").count() == 0
    bot_messages(page).nth(1).locator(".hl-ask-person").click()
    page.locator(".hl-notice", has_text="Nobody from our team is online right now").wait_for()
    with live_server[1].extensions["helploop"].database.session() as session:
        assert session.scalars(select(Conversation.handoff_requested_at)).one() is not None


def test_usable_at_phone_width_and_talk_to_a_person(browser: Any, live_server: tuple[str, Any]) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 720})
    page = context.new_page()
    page.goto(live_server[0] + "/")
    page.click(".hl-launcher")
    box = page.locator(".hl-panel").bounding_box()
    assert box["width"] == 375 and box["x"] == 0
    send(page, "where is my card")
    bot_messages(page).first.wait_for()
    page.click(".hl-human")
    page.locator(
        ".hl-notice", has_text="Nobody from our team is online right now"
    ).wait_for()  # none logged in
    # Then the widget asks how a person can reach the customer; a bad value is explained, a good one stored.
    page.click(".hl-contact .hl-send")  # empty: the browser asks for it, nothing is sent
    assert page.locator("#hl-contact-input").evaluate("f => f.validity.valueMissing")
    assert page.locator("#hl-contact-error").is_hidden()
    for attempt in ("not a contact", "still not one"):  # explained under the field, once, not piled up
        page.fill("#hl-contact-input", attempt)
        page.keyboard.press("Enter")
        page.locator("#hl-contact-error", has_text="e-mail address or a phone number").wait_for()
    assert page.locator("#hl-contact-error").count() == 1
    assert page.locator(".hl-notice", has_text="e-mail address or a phone number").count() == 0
    assert page.locator("#hl-contact-input").get_attribute("aria-invalid") == "true"
    page.fill("#hl-contact-input", "jo@example.com")
    page.keyboard.press("Enter")
    page.locator(".hl-notice", has_text="Thanks, a person from our team will get back to you").wait_for()
    assert page.locator(".hl-contact").count() == 0
    with live_server[1].extensions["helploop"].database.session() as session:
        assert session.scalars(select(Conversation.contact)).one() == "jo@example.com"
    page.reload()  # resumed: the contact is not asked for again
    page.locator(".hl-notice", has_text="will take over").wait_for()
    assert page.locator(".hl-contact").count() == 0
    context.close()


def test_every_widget_text_can_be_replaced_on_the_tag(browser: Any, live_server: tuple[str, Any]) -> None:
    """Another wording or language without touching the script: data-helploop-KEY attributes."""
    base, _ = live_server
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base + "/healthz")  # any page of the server: a same-origin blank canvas
    page.set_content(
        f'<html><body><script src="{base}/widget.js" data-helploop-url="{base}" data-helploop-lang="de"'
        ' data-helploop-title="Hilfe" data-helploop-greeting="Hallo! Wie kann ich helfen?"'
        ' data-helploop-send="Senden" data-helploop-placeholder="Ihre Frage …"'
        ' data-helploop-talk-to-person="Mit einem Menschen sprechen"'
        ' data-helploop-open-chat="Chat öffnen"></script></body></html>'
    )
    page.locator(".hl-launcher").wait_for()
    assert page.get_attribute(".hl-launcher", "aria-label") == "Chat öffnen"
    page.click(".hl-launcher")
    assert page.locator(".hl-bot[data-status=greeting]").inner_text() == "Hallo! Wie kann ich helfen?"
    assert page.locator(".hl-send").inner_text() == "Senden"
    assert page.get_attribute(".hl-input", "placeholder") == "Ihre Frage …"
    assert page.locator(".hl-human").inner_text() == "Mit einem Menschen sprechen"
    assert page.get_attribute(".hl-panel", "lang") == "de"
    assert page.locator(".hl-header h2").inner_text() == "Hilfe"
    assert page.get_attribute(".hl-close", "aria-label") == "Close chat"  # not replaced: the default
    page.fill(".hl-input", "when will my card arrive")
    page.keyboard.press("Enter")
    bot_messages(page).first.wait_for()
    assert "5–7 working days" in bot_messages(page).first.inner_text()
    context.close()
    assert errors == []


def _contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """WCAG 2's contrast ratio of two sRGB colours."""

    def luminance(rgb: tuple[float, ...]) -> float:
        linear = [v / 255 / 12.92 if v / 255 <= 0.03928 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in rgb]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _rgb(css: str) -> tuple[float, ...]:
    match = re.fullmatch(r"rgb\(([\d.]+), ([\d.]+), ([\d.]+)\)", css.strip())
    assert match, css
    return tuple(float(v) for v in match.groups())


def test_the_tag_sets_the_brands_colour_and_side_and_keeps_it_readable(
    browser: Any, live_server: tuple[str, Any]
) -> None:
    """data-helploop-color and data-helploop-position: a light brand colour gets dark text on it and is
    darkened where it is text; a dark one keeps white text; anything but a hex colour is ignored, said in
    the console."""
    base, _ = live_server
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    errors: list[str] = []
    warnings: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: warnings.append(message.text) if message.type == "warning" else None)
    page.goto(base + "/healthz")

    def embed(attributes: str) -> None:
        page.set_content(
            f'<html><body><script src="{base}/widget.js" data-helploop-url="{base}"{attributes}>'
            "</script></body></html>"
        )
        page.locator(".hl-launcher").wait_for()

    def style(selector: str, name: str) -> str:
        return str(page.eval_on_selector(selector, f"n => getComputedStyle(n).getPropertyValue('{name}')"))

    yellow = (255.0, 214.0, 0.0)
    embed(' data-helploop-color="#FFD600" data-helploop-position="left"')
    assert _rgb(style(".hl-launcher", "background-color")) == yellow
    assert _rgb(style(".hl-launcher", "color")) == (29, 35, 48)  # dark on a light colour, not white
    assert page.locator(".hl-launcher").bounding_box()["x"] == 20
    page.click(".hl-launcher")
    assert page.locator(".hl-panel").bounding_box()["x"] == 20
    assert _rgb(style(".hl-header", "background-color")) == yellow
    assert _rgb(style(".hl-header h2", "color")) == (29, 35, 48)
    ink = _rgb(style(".hl-panel", "--hl-ink"))
    assert _contrast(yellow, (246, 247, 251)) < 4.5 <= _contrast(ink, (246, 247, 251)) < 5.5
    page.fill(".hl-input", "when will my card arrive")
    page.keyboard.press("Enter")
    page.locator(".hl-user").wait_for()
    assert _rgb(style(".hl-user", "background-color")) == yellow
    # A dark brand colour: white text, the colour itself as ink, on the right (the default side).
    embed(' data-helploop-color="#c2185b"')
    magenta = (194.0, 24.0, 91.0)
    assert _rgb(style(".hl-launcher", "background-color")) == magenta
    assert _rgb(style(".hl-launcher", "color")) == (255, 255, 255)
    assert _rgb(style(".hl-panel", "--hl-ink")) == magenta
    assert page.locator(".hl-launcher").bounding_box()["x"] == 1280 - 20 - 56
    # Not a hex colour: the default blue, and a warning that names the attribute.
    embed(' data-helploop-color="red;background:url(x)" data-helploop-position="middle"')
    assert _rgb(style(".hl-launcher", "background-color")) == (11, 87, 208)
    assert page.locator(".hl-launcher").bounding_box()["x"] == 1280 - 20 - 56
    assert any("data-helploop-color must be a hex colour" in text for text in warnings), warnings
    context.close()
    assert errors == []


def test_the_tags_metadata_goes_with_every_question(browser: Any, make_app: Any) -> None:
    """data-helploop-metadata="product:fx" on a currency page: a card question asked there is not answered
    from the card intents (handed over instead); the same widget without it answers it."""
    from tests.serving.test_metadata import CARD_QUESTION, tag_intents

    app = make_app(ratelimit_enabled=False)
    tag_intents(app)
    with live(app) as base:
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(base + "/healthz")
        for metadata, status in (("product:fx | channel:web", "handoff"), ("", "answered")):
            attribute = f' data-helploop-metadata="{metadata}"' if metadata else ""
            page.evaluate("window.localStorage.clear()")  # a new conversation each time
            page.set_content(
                f'<html><body><script src="{base}/widget.js" data-helploop-url="{base}"{attribute}>'
                "</script></body></html>"
            )
            send(page, CARD_QUESTION)
            bot_messages(page).first.wait_for()
            assert bot_messages(page).first.get_attribute("data-status") == status
        context.close()
        assert errors == []
    with app.extensions["helploop"].database.session() as session:
        assert [t.intent for t in session.scalars(select(Turn).order_by(Turn.id))] == [None, "card_arrival"]


def test_the_default_greeting_is_neutral_and_the_demo_sets_its_own(page: Any) -> None:
    page.click(".hl-launcher")
    greeting = page.locator(".hl-bot[data-status=greeting]").inner_text()
    assert greeting == "Hi! Ask me anything about your account, cards or payments."  # the demo page's own
    script = page.evaluate("fetch('/widget.js').then(r => r.text())")
    assert 'greeting: "Hi! How can I help you today?"' in script and "cards or payments" not in script


def test_a_follow_up_typed_in_the_widget_is_answered_with_the_question_before(
    browser: Any, make_app: Any, tmp_path: Any
) -> None:
    """The widget sends its session with each message: "how long does that take?" after "where is my card" is
    about card delivery (read alone, "did you mean" card delivery or transfer times)."""
    from tests.serving.test_follow_ups import FOLLOW_UP, build_timing_bundle, register

    app = make_app(register=False, load=False, ratelimit_enabled=False, review_audit_rate=0.0)
    register(app, build_timing_bundle(tmp_path / "timing"))
    assert app.extensions["helploop"].models.refresh()
    with live(app) as base:
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(base + "/")
        send(page, FOLLOW_UP)  # first: nothing to read it with
        bot_messages(page).first.wait_for()
        assert bot_messages(page).first.get_attribute("data-status") == "clarify"
        send(page, "where is my card")
        bot_messages(page).nth(1).wait_for()
        send(page, FOLLOW_UP)
        bot_messages(page).nth(2).wait_for()
        follow = bot_messages(page).nth(2)
        assert follow.get_attribute("data-status") == "answered"
        assert "About card_delivery_estimate." in follow.inner_text()
        context.close()
        assert errors == []
    with app.extensions["helploop"].database.session() as session:
        logged = [(t.intent, t.context_text) for t in session.scalars(select(Turn).order_by(Turn.id))]
    assert logged == [(None, None), ("card_arrival", None), ("card_delivery_estimate", "where is my card")]


def test_the_widget_tells_the_page_it_is_on_without_the_query(
    page: Any, live_server: tuple[str, Any]
) -> None:
    base, app = live_server
    page.goto(base + "/?campaign=spring&email=jo@example.com#cards")
    send(page, "when will my card arrive")
    bot_messages(page).first.wait_for()
    with app.extensions["helploop"].database.session() as session:
        conversation = session.scalars(select(Conversation)).one()
        assert conversation.site == base and conversation.page_url == base + "/"
