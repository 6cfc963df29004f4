"""The widget's install page: the tag built from the choices, the origin check, the sites the widget answered
on, and the preview's framing rules."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from tests.serving.test_admin import add_user, login, signed_in_operator


def add_intents(app: Any) -> None:
    from core.kb_files import IntentData, KnowledgeBaseData
    from core.knowledge_base import import_knowledge_base

    kb = KnowledgeBaseData(
        {
            "card_arrival": IntentData("card_arrival", answer="5-7 days.", examples=["where is my card"]),
            "savings_rate": IntentData(
                "savings_rate",
                answer="2 %.",
                examples=["what is the savings rate"],
                metadata={"product": "savings"},
            ),
        }
    )
    with app.extensions["helploop"].database.session() as session:
        import_knowledge_base(session, incoming=kb, source="test")


def snippet(page: str) -> str:
    match = re.search(r'<pre id="snippet"[^>]*><code>(.*?)</code></pre>', page, re.S)
    assert match, "no tag on the page"
    return html.unescape(match.group(1))


def test_the_page_gives_the_tag_with_the_choices_escaped(make_app: Any) -> None:
    app, client = signed_in_operator(make_app)
    add_intents(app)
    plain = client.get("/operator/widget")
    assert plain.status_code == 200
    page = plain.get_data(as_text=True)
    assert snippet(page) == (
        '<script src="http://localhost/widget.js"\n  data-helploop-url="http://localhost"\n  defer></script>'
    )
    assert 'id="no-public-url"' in page  # the address is the one the page was reached at
    assert 'aria-current="page">Operator<' in page  # reached from the overview
    assert 'href="/operator/widget"' in client.get("/operator/").get_data(as_text=True)
    chosen = client.get(
        "/operator/widget",
        query_string={
            "color": "#C2185B",
            "position": "left",
            "title": 'Ask "Bank"',
            "greeting": "<b>Hi</b> & welcome",
            "lang": "de",
            "metadata": "Product: savings",
        },
    ).get_data(as_text=True)
    tag = snippet(chosen)
    assert 'data-helploop-color="#c2185b"' in tag
    assert 'data-helploop-position="left"' in tag
    assert 'data-helploop-title="Ask &#34;Bank&#34;"' in tag  # quotes cannot end the attribute
    assert 'data-helploop-greeting="&lt;b&gt;Hi&lt;/b&gt; &amp; welcome"' in tag
    assert 'data-helploop-lang="de"' in tag
    assert 'data-helploop-metadata="product:savings"' in tag  # as the knowledge base reads it
    assert "1 intent can answer there" in chosen
    assert "<b>Hi</b>" not in chosen  # escaped on the page too


def test_bad_choices_are_named_and_left_off_the_tag(make_app: Any) -> None:
    app, client = signed_in_operator(make_app)
    add_intents(app)
    page = client.get(
        "/operator/widget",
        query_string={"color": "red", "position": "top", "lang": "not a tag", "metadata": "product:loans"},
    ).get_data(as_text=True)
    tag = snippet(page)
    for key in ("color", "position", "lang", "metadata"):
        assert f"data-helploop-{key}" not in tag
    assert "&#39;red&#39; is not a hex colour" in page
    assert 'id="position-error"' in page and 'id="lang-error"' in page
    assert "no intent of the knowledge base has product:loans" in page
    # the default colour needs no attribute
    assert "data-helploop-color" not in snippet(
        client.get("/operator/widget?color=%230B57D0").get_data(as_text=True)
    )
    data = client.get(
        "/operator/widget/tag.json", query_string={"color": "red", "position": "left"}
    ).get_json()
    assert 'data-helploop-position="left"' in data["snippet"]
    assert set(data["errors"]) == {"color"} and data["answering"] is None
    assert client.get("/operator/widget/tag.json?metadata=product:savings").get_json()["answering"] == "1"


def test_the_site_check_says_whether_the_origins_let_a_site_in(make_app: Any) -> None:
    _app, client = signed_in_operator(
        make_app, widget_origins="https://shop.example.com", public_url="http://bot.example.com"
    )
    allowed = client.get("/operator/widget?site=https://Shop.example.com/help").get_data(as_text=True)
    assert 'id="site-ok"' in allowed and "<strong>https://shop.example.com</strong>" in allowed
    assert 'src="http://bot.example.com/widget.js"' in html.unescape(allowed)  # the public address
    assert 'id="no-public-url"' not in allowed
    # an https page cannot call the http address
    assert "cannot reach it" in allowed
    refused = client.get("/operator/widget?site=https://www.example.org").get_data(as_text=True)
    assert 'id="site-refused"' in refused
    assert "HELPLOOP_WIDGET_ORIGINS=https://shop.example.com,https://www.example.org" in refused
    bad = client.get("/operator/widget?site=www.example.org").get_data(as_text=True)
    assert "is not an http(s) address" in bad
    assert 'id="allowed-sites"' in allowed and 'id="any-site"' not in allowed


def test_the_sites_the_widget_answered_on_are_listed(make_app: Any) -> None:
    from core.models import Conversation, utcnow

    app, client = signed_in_operator(make_app)
    now = utcnow()
    with app.extensions["helploop"].database.session() as session:
        for site, days in [
            ("https://shop.example.com", 1),
            ("https://shop.example.com", 2),
            ("https://old.example", 40),
        ]:
            session.add(
                Conversation(site=site, page_url=site + "/", last_activity_at=now - timedelta(days=days))
            )
        session.add(Conversation(channel="telegram", last_activity_at=now))
        session.commit()
    page = client.get("/operator/widget").get_data(as_text=True)
    rows = re.findall(r'<tr data-site="([^"]+)"><td>.*?</td>\s*<td>(\d+)</td>', page, re.S)
    assert rows == [("https://shop.example.com", "2")]  # 40 days ago is past the table's 30
    assert 'id="any-site"' in page and "HELPLOOP_WIDGET_ORIGINS=https://shop.example.com</code>" in page


def test_the_pages_customers_ask_from_are_listed_with_what_became_of_their_questions(make_app: Any) -> None:
    app, client = signed_in_operator(make_app)
    empty = client.get("/operator/widget").get_data(as_text=True)
    assert "No question from a web page in the last 30 days." in empty
    customer = app.test_client()
    for message, page in [
        ("where is my card", "https://shop.example.com/cards?order=7"),  # the query is never kept
        ("where is my card", "https://shop.example.com/cards"),
        ("zork blorp quux", "https://shop.example.com/u/jo%40example.com"),  # redacted like any text
    ]:
        assert customer.post("/api/v1/chat", json={"message": message, "page": page}).status_code == 200
    customer.post("/api/v1/chat", json={"message": "where is my card"})  # from no page: not listed
    page = client.get("/operator/widget").get_data(as_text=True)
    table = page[page.index('id="page-outcomes"') :]
    rows = re.findall(
        r'<tr data-page="([^"]+)">.*?</td>\s*<td><a [^>]*>(\d+)</a></td><td>(\d+)</td>', table, re.S
    )
    assert rows == [
        ("https://shop.example.com/u/[EMAIL]", "1", "0"),
        ("https://shop.example.com/cards", "2", "2"),
    ]
    assert 'aria-label="2 answered (100%)"' in table and 'width="160.0" height="10" fill="#1e8e3e"' in table
    assert "jo@example.com" not in page and "order=7" not in page
    # A page's questions link to its conversations; the filter stays with the views and the search.
    link = html.unescape(re.findall(r'<td><a href="([^"]+)" title="their conversations">', table)[1])
    assert link == "/operator/conversations?view=all&asked_from=https://shop.example.com/cards"
    listed = client.get(link).get_data(as_text=True)
    assert "2 conversations" in listed and 'id="asked-from"' in listed
    assert 'name="asked_from" value="https://shop.example.com/cards"' in listed  # the search form keeps it
    assert "view=waiting&amp;q=&amp;asked_from=https://shop.example.com/cards" in listed
    assert '1 conversation<span id="asked-from">, asked from' in client.get(
        "/operator/conversations?view=all&asked_from=https://shop.example.com/u/[EMAIL]"
    ).get_data(as_text=True)
    assert "0 conversations" in client.get(
        "/operator/conversations?view=all&asked_from=https://shop.example.com/nowhere"
    ).get_data(as_text=True)
    # The filter comes from the address bar: anything but a web address is shown, never linked.
    odd = client.get("/operator/conversations?view=all&asked_from=javascript:alert(1)").get_data(as_text=True)
    assert ", asked from javascript:alert(1) in the last 30 days" in odd and 'href="javascript' not in odd


def test_a_pages_bar_shows_each_outcome_in_proportion() -> None:
    from admin_ui.install import page_bar
    from core.registry import PageOutcome

    bar = page_bar(PageOutcome("https://a.example/", 4, 2, 1, 1, 0, 1), width=100)
    assert [(p.x, p.width, p.fill, p.label) for p in bar] == [
        (0.0, 50.0, "#1e8e3e", "2 answered (50%)"),
        (50.0, 25.0, "#f4b400", '1 "did you mean" (25%)'),
        (75.0, 25.0, "#d93025", "1 to a person (25%)"),
    ]
    assert page_bar(PageOutcome("https://a.example/", 0, 0, 0, 0, 0, 0)) == []


def test_the_preview_is_the_widget_framed_by_this_app_only(make_app: Any) -> None:
    _app, client = signed_in_operator(make_app)
    preview = client.get("/operator/widget/preview?color=%23c2185b&position=left&title=Hi%22x")
    assert preview.status_code == 200
    assert preview.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in preview.headers["Content-Security-Policy"]
    body = preview.get_data(as_text=True)
    assert 'data-helploop-url="http://localhost"' in body
    assert (
        'data-helploop-color="#c2185b" data-helploop-position="left" data-helploop-title="Hi&#34;x"' in body
    )
    # every other operator page still refuses to be framed
    assert client.get("/operator/widget").headers["X-Frame-Options"] == "DENY"


def test_reviewers_cannot_open_the_install_page(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    add_user(app, "rita", "reviewer")
    client = app.test_client()
    login(client, "rita")
    for path in ("/operator/widget", "/operator/widget/tag.json", "/operator/widget/preview"):
        assert client.get(path).status_code == 403
    anonymous = app.test_client().get("/operator/widget")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_the_live_chat_shows_the_page_the_customer_is_on(make_app: Any) -> None:
    app, client = signed_in_operator(make_app)
    first = app.test_client().post(
        "/api/v1/chat", json={"message": "where is my card", "page": "https://shop.example.com/cards?id=7"}
    )
    conversation_id = first.get_json()["session_id"]
    page = client.get(f"/operator/conversations/{conversation_id}").get_data(as_text=True)
    assert 'href="https://shop.example.com/cards"' in page and 'rel="noopener noreferrer"' in page
    app.test_client().post(
        "/api/v1/chat",
        json={"message": "thanks", "session_id": conversation_id, "page": "https://shop.example.com/help"},
    )
    polled = client.get(f"/operator/conversations/{conversation_id}/messages.json").get_json()
    assert polled["page"] == "https://shop.example.com/help"
    app.test_client().post(  # on the same page again: the transcript names a page where it changed only
        "/api/v1/chat",
        json={"message": "ok", "session_id": conversation_id, "page": "https://shop.example.com/help#x"},
    )
    transcript = client.get(f"/operator/conversations/{conversation_id}").get_data(as_text=True)
    assert re.findall(r'<td class="turn-page"><a href="([^"]+)"', transcript) == [
        "https://shop.example.com/cards",
        "https://shop.example.com/help",
    ]
    listed = client.get("/operator/conversations?view=all").get_data(as_text=True)
    assert (
        'class="muted page" title="https://shop.example.com/help">on https://shop.example.com/help<' in listed
    )
    other = app.test_client().post("/api/v1/chat", json={"message": "where is my card"}).get_json()
    # No page known: the line is there for the live poll to fill, hidden until then.
    unknown = client.get(f"/operator/conversations/{other['session_id']}").get_data(as_text=True)
    assert '<p id="page" hidden>' in unknown and 'href="#"' in unknown
    assert '<p id="page">' in client.get(f"/operator/conversations/{conversation_id}").get_data(as_text=True)


@contextmanager
def install_page(browser: Any, make_app: Any, query: str = "", **context_options: Any) -> Iterator[Any]:
    """Chromium on the install page (with ``query``), signed in as operator omar; no JavaScript error."""
    from tests.serving.conftest import live
    from tests.serving.test_admin_browser import logged_in_page

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    with live(app) as base:
        context, page, errors = logged_in_page(
            browser, base + "/operator/widget" + query, "omar", **context_options
        )
        yield page
        context.close()
        assert errors == []


def test_the_page_follows_the_choices_in_a_browser(browser: Any, make_app: Any) -> None:
    """Chromium: a colour typed on the install page changes the tag and the preview's real widget without a
    reload; a bad one is named under its field; Copy puts the tag on the clipboard."""
    with install_page(
        browser,
        make_app,
        permissions=["clipboard-read", "clipboard-write"],
        viewport={"width": 1280, "height": 1700},  # the preview's bubble in view
    ) as page:
        page.fill("#color", "#c2185b")
        page.locator("#snippet code", has_text='data-helploop-color="#c2185b"').wait_for()
        assert page.input_value("#color-pick") == "#c2185b"  # the picker follows the text field
        assert "color=%23c2185b" in page.url  # the address keeps the choices (a reload, a link)
        page.check("input[name=position][value=left]")
        page.locator("#snippet code", has_text="data-helploop-position").wait_for()
        frame = page.frame_locator("#preview")
        frame.locator(".hl-launcher").click()
        header = frame.locator(".hl-header")
        header.wait_for()
        assert header.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(194, 24, 91)"
        launcher_left = frame.locator(".hl-launcher").evaluate("e => e.getBoundingClientRect().left")
        assert launcher_left < 100  # on the left of the frame
        page.fill("#color", "#zz")
        page.locator("#color-error").wait_for()
        assert "is not a hex colour" in page.inner_text("#color-error")
        assert "data-helploop-color" not in page.inner_text("#snippet")
        page.click("#copy-snippet")
        page.locator("#copy-snippet", has_text="Copied").wait_for()
        assert page.evaluate("navigator.clipboard.readText()") == page.inner_text("#snippet code")


def test_the_install_page_fits_a_phone(browser: Any, make_app: Any) -> None:
    """At 390 px the page scrolls only downwards: the tag wraps, the fields and the preview fit the card."""
    query = "?greeting=" + "Hello%20there%20" * 12
    with install_page(browser, make_app, query, viewport={"width": 390, "height": 800}) as page:
        assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_the_live_chat_shows_a_page_first_written_from_while_the_operator_watches(
    browser: Any, make_app: Any
) -> None:
    """A chat handed off with no page known (the API called without one): the line is hidden, and the live
    poll shows it when the customer writes from a page, without a reload."""
    from tests.serving.conftest import live
    from tests.serving.test_admin_browser import logged_in_page

    app = make_app(ratelimit_enabled=False)
    add_user(app, "omar", "operator")
    customer = app.test_client()
    session_id = customer.post("/api/v1/chat", json={"message": "where is my card"}).get_json()["session_id"]
    assert customer.post(f"/api/v1/sessions/{session_id}/handoff", json={}).status_code == 200
    with live(app) as base:
        context, page, errors = logged_in_page(browser, f"{base}/operator/conversations/{session_id}", "omar")
        assert page.locator("#page").is_hidden()
        said = {
            "message": "still here",
            "session_id": session_id,
            "page": "https://shop.example.com/cards?x=1",
        }
        assert customer.post("/api/v1/chat", json=said).status_code == 200
        page.locator("#page", has_text="https://shop.example.com/cards").wait_for(timeout=10_000)
        assert page.get_attribute("#page-link", "href") == "https://shop.example.com/cards"
        assert errors == []
        context.close()
