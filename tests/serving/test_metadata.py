"""Metadata filters end to end: an operator tags intents in the editor, and the widget's chat API and the
Azure-shaped endpoint answer only from the intents a query's metadata allows."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from core.models import ReviewItem, Turn
from tests.conftest import TOY
from tests.serving.conftest import ANSWERS
from tests.serving.test_admin import add_user, csrf_token, login
from tests.serving.test_api import AZURE
from tests.serving.test_knowledge import import_toy_knowledge

PRODUCTS = {"card_arrival": "cards", "change_pin": "cards", "exchange_rate": "fx", "terminate_account": "acc"}
CARD_QUESTION = "when will my card arrive"


def tag_intents(app: Any) -> Any:
    """The toy knowledge base, each intent given its product through the editor; returns the operator's
    client. The served model takes the metadata up without retraining."""
    import_toy_knowledge(app)
    add_user(app, "omar", "operator")
    client = app.test_client()
    login(client, "omar")
    for name, product in PRODUCTS.items():
        page = client.get(f"/operator/knowledge/intents/{name}").get_data(as_text=True)
        revision = re.search(r'name="revision" value="([0-9a-f]+)"', page)
        assert revision and 'name="metadata"' in page
        saved = client.post(
            f"/operator/knowledge/intents/{name}",
            data={
                "csrf_token": csrf_token(page),
                "revision": revision.group(1),
                "title": ANSWERS[name].title,
                "answer": ANSWERS[name].answer,
                "examples": "\n".join(TOY[name]),
                "follow_ups": list(ANSWERS[name].follow_ups),
                "metadata": f"Product: {product.upper()}\nchannel: web",
            },
        )
        assert saved.status_code == 302, saved.get_data(as_text=True)
    app.extensions["helploop"].models.refresh()  # what the background poll does every few seconds
    return client


def test_operators_tag_intents_and_see_the_tags(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    client = tag_intents(app)
    page = client.get("/operator/knowledge/intents/exchange_rate").get_data(as_text=True)
    assert ">channel: web\nproduct: fx</textarea>" in page
    listing = client.get("/operator/knowledge/?q=product:fx").get_data(as_text=True)
    assert 'data-intent="exchange_rate"' in listing and 'data-intent="card_arrival"' not in listing
    assert '<span class="tag metadata">product: fx</span>' in listing
    page = client.get("/operator/knowledge/intents/change_pin").get_data(as_text=True)
    refused = client.post(
        "/operator/knowledge/intents/change_pin",
        data={
            "csrf_token": csrf_token(page),
            "title": "Change my PIN",
            "answer": "At any ATM.",
            "examples": "new pin",
            "metadata": "product cards",
        },
    )
    body = refused.get_data(as_text=True)
    assert (
        refused.status_code == 400 and "metadata: &#39;product cards&#39; is not &#39;key:value&#39;" in body
    )
    assert ">product cards</textarea>" in body  # what was typed stays to fix


def test_the_chat_api_answers_only_from_intents_with_the_pages_metadata(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    operator = tag_intents(app)
    client = app.test_client()

    def chat(**body: Any) -> Any:
        return client.post("/api/v1/chat", json={"message": CARD_QUESTION, **body})

    assert chat().get_json()["intent"] == "card_arrival"
    cards = chat(metadata={"product": "Cards", "channel": "web"}).get_json()
    assert (cards["status"], cards["intent"]) == ("answered", "card_arrival")
    fx = chat(metadata={"product": "fx"}).get_json()
    assert fx["status"] == "handoff" and fx["intent"] is None  # not forced onto the exchange-rate answer
    nowhere = chat(metadata={"product": "loans"}).get_json()
    assert nowhere["status"] == "handoff"
    with app.extensions["helploop"].database.session() as session:
        logged = list(session.scalars(select(Turn).order_by(Turn.id)))
    assert [t.intent for t in logged] == ["card_arrival", "card_arrival", None, None]
    assert [c["intent"] for c in logged[2].candidates] == ["exchange_rate"]  # what the filter let through
    assert logged[3].candidates == []
    # The turn keeps the filter it was answered under; the operator's transcript says why so few candidates.
    assert logged[0].metadata_filter is None
    kept = logged[2].metadata_filter
    assert {k: kept[k] for k in ("metadata", "logical_operation")} == {
        "metadata": [{"key": "product", "value": "fx"}],
        "logical_operation": "AND",
    }
    assert kept["candidates"][0]["intent"] == "card_arrival"  # the model's own belief, among all intents
    assert [p["key"] for p in logged[1].metadata_filter["metadata"]] == ["channel", "product"]
    transcript = operator.get(f"/operator/conversations/{logged[3].conversation_id}").get_data(as_text=True)
    assert '<span class="tag">product: loans</span>' in transcript
    assert "(only intents with these could answer: none has them)" in transcript
    # Answers the page's metadata kept out: what the bot would have answered, and on which pages.
    assert [t.kept_from for t in logged] == [None, None, "card_arrival", "card_arrival"]
    knowledge = operator.get("/operator/knowledge/").get_data(as_text=True)
    kept = knowledge[knowledge.index('id="kept-out"') : knowledge.index('id="files"')]
    assert '<tr data-intent="card_arrival">' in kept and "<td>2</td>" in kept
    assert '<span class="tag">product: fx</span> ×1 · <span class="tag">product: loans</span> ×1' in kept
    from tests.serving.test_admin_api import bearer, token_for

    stats = client.get("/api/v1/admin/stats", headers=bearer(token_for(app, "omar"))).get_json()
    assert stats["kept_out"] == [
        {"intent": "card_arrival", "questions": 2, "pages": [["product: fx", 1], ["product: loans", 1]]}
    ]
    for bad, code in (
        (["product", "fx"], "invalid_type"),
        ({"product": ""}, "invalid_value"),
        ({"product": 3}, "invalid_value"),
        ({f"k{i}": "v" for i in range(21)}, "invalid_value"),
    ):
        refused = chat(metadata=bad)
        assert refused.status_code == 400
        assert refused.get_json()["error"]["code"] == code
        assert refused.get_json()["error"]["field"] == "metadata"
    with app.extensions["helploop"].database.session() as session:
        assert len(list(session.scalars(select(Turn)))) == 4  # refused requests log nothing


def test_the_azure_endpoint_applies_the_metadata_filter(make_app: Any) -> None:
    from serving.azure_qa import NO_ANSWER_ID, qna_id

    app = make_app(ratelimit_enabled=False)
    tag_intents(app)
    client = app.test_client()

    def ask(metadata: list[dict[str, str]], operation: str | None = None) -> list[dict[str, Any]]:
        metadata_filter: dict[str, Any] = {"metadata": metadata}
        if operation:
            metadata_filter["logicalOperation"] = operation
        body = {"question": CARD_QUESTION, "top": 3, "filters": {"metadataFilter": metadata_filter}}
        response = client.post(AZURE, json=body)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["answers"]

    cards = ask([{"key": "product", "value": "cards"}])
    assert cards[0]["id"] == qna_id("card_arrival")
    assert cards[0]["metadata"] == {"product": "cards", "channel": "web", "intent": "card_arrival"}
    assert {a["id"] for a in cards} <= {qna_id("card_arrival"), qna_id("change_pin")}
    assert [a["id"] for a in ask([{"key": "product", "value": "fx"}])] == [NO_ANSWER_ID]
    both = [{"key": "product", "value": "fx"}, {"key": "product", "value": "cards"}]
    assert [a["id"] for a in ask(both)] == [NO_ANSWER_ID]  # AND by default: no intent is both
    assert ask(both, "OR")[0]["id"] == qna_id("card_arrival")
    assert ask([])[0]["id"] == qna_id("card_arrival")  # an empty filter filters nothing
    for bad, field in (
        ({"filters": "product"}, "filters"),
        ({"filters": {"metadataFilter": []}}, "filters.metadataFilter"),
        (
            {"filters": {"metadataFilter": {"metadata": [{"key": "product"}]}}},
            "filters.metadataFilter.metadata",
        ),
        (
            {"filters": {"metadataFilter": {"metadata": [], "logicalOperation": "XOR"}}},
            "filters.metadataFilter.logicalOperation",
        ),
    ):
        refused = client.post(AZURE, json={"question": CARD_QUESTION, **bad})
        assert refused.status_code == 400 and refused.get_json()["error"]["field"] == field


def test_reviewers_see_each_intents_metadata_beside_it(make_app: Any) -> None:
    """In a knowledge base of several products, look-alike intents differ by their metadata: the review page
    shows it beside each suggestion (and in the search list) and in a searched intent's preview."""
    app = make_app(ratelimit_enabled=False)
    tag_intents(app)
    add_user(app, "rita", "reviewer")
    client = app.test_client()
    client.post("/api/v1/chat", json={"message": CARD_QUESTION, "metadata": {"product": "fx"}})  # handed over
    assert app.extensions["helploop"].router.drain(10)
    login(client, "rita")
    page = client.get("/review/next").get_data(as_text=True)
    assert 'id="question"' in page
    # The model's own candidates come first, not only the one intent the currency page let through.
    first = page.index('data-key="1"')
    assert 'value="card_arrival" data-key="1"' in page[first - 40 : first + 20]
    assert '(card_arrival)</span> <span class="tag">channel: web · product: cards</span>' in page
    assert '(terminate_account)</span> <span class="tag">channel: web · product: acc</span>' in page
    item_id = re.search(r'name="active_seconds" id="active-seconds" value="" data-item="(\d+)"', page)
    assert item_id
    preview = client.get(f"/review/items/{item_id.group(1)}/intents/change_pin").get_json()
    assert preview["tags"] == "channel: web · product: cards"
    # Its priority is how unsure the model was of the question, not of the answer the page allowed (~0 %).
    with app.extensions["helploop"].database.session() as session:
        turn = session.scalars(select(Turn)).one()
        item = session.get(ReviewItem, int(item_id.group(1)))
        assert turn.confidence < 0.1 and turn.metadata_filter["confidence"] > 0.5
        assert item.uncertainty == pytest.approx(1.0 - turn.metadata_filter["confidence"])


def test_operators_try_the_bot_as_a_page_with_metadata_asks(make_app: Any) -> None:
    app = make_app(ratelimit_enabled=False)
    client = tag_intents(app)
    page = client.get("/operator/knowledge/try", query_string={"q": CARD_QUESTION, "metadata": "product:fx"})
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-arm="production" data-status="handoff"' in body
    assert re.findall(r'<tr data-intent="([^"]+)">', body) == ["exchange_rate"]
    assert "Only the intents with the page's metadata (product:fx) could answer." in body
    assert "Among all intents the model ranks\n  card_arrival" in body
    nowhere = client.get(
        "/operator/knowledge/try", query_string={"q": CARD_QUESTION, "metadata": "product:loans"}
    )
    assert "no intent has the page's metadata" in nowhere.get_data(as_text=True)
    cards = client.get(
        "/operator/knowledge/try", query_string={"q": CARD_QUESTION, "metadata": "Product: Cards"}
    )
    assert 'data-status="answered"' in cards.get_data(as_text=True)
    bad = client.get("/operator/knowledge/try", query_string={"q": CARD_QUESTION, "metadata": "product"})
    assert (
        bad.status_code == 400
        and "Metadata: &#39;product&#39; is not &#39;key:value&#39;" in bad.get_data(as_text=True)
    )
