"""The operators' review-items list: filters, paging, and settling the ticked items with one label."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from core.models import ReviewItem
from tests.serving.test_admin import add_user, csrf_token, login


def three_items(make_app: Any) -> Any:
    """An app whose customers gave a thumbs-down to two spam messages and one real question (three items)."""
    app = make_app(ratelimit_enabled=False, gold_rate=0.0, review_audit_rate=0.0)
    client = app.test_client()
    for text in ("zork blorp free money", "zork blorp win a prize", "where is my card please"):
        turn = client.post("/api/v1/chat", json={"message": text}).get_json()
        client.post("/api/v1/feedback", json={"turn_id": turn["turn_id"], "helpful": False})
    assert app.extensions["helploop"].router.drain(10)
    return app


def test_operators_filter_items_and_settle_the_ticked_ones_all_or_none(make_app: Any) -> None:
    app = three_items(make_app)
    helploop = app.extensions["helploop"]
    with helploop.database.session() as session:
        ids = {i.text: i.id for i in session.scalars(select(ReviewItem))}
    add_user(app, "omar", "operator")
    add_user(app, "rita", "reviewer")
    operator = app.test_client()
    login(operator, "omar")
    page = operator.get("/review/items?status=pending&q=ZORK").get_data(as_text=True)
    assert "Review items: pending (2)" in page
    assert "zork blorp free money" in page and "where is my card please" not in page
    assert 'name="q" value="ZORK"' in page and ">clear</a>" in page
    assert "thumbs down" in page  # the reason filter's choices
    assert operator.get("/review/items?status=pending&reason=gold").status_code == 400
    assert operator.get("/review/items?status=nope").status_code == 400
    spam = [ids["zork blorp free money"], ids["zork blorp win a prize"]]
    form = {"csrf_token": csrf_token(page), "label": "not_a_question", "status": "pending", "q": "ZORK"}
    assert (
        operator.post("/review/items/settle", data={**form, "item": spam, "csrf_token": ""}).status_code
        == 400
    )
    refused = operator.post(
        "/review/items/settle", data={**form, "item": [*spam, "999999"]}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Nothing settled: item 999999: no such review item" in refused
    with helploop.database.session() as session:
        assert {i.status for i in session.scalars(select(ReviewItem))} == {"pending"}
    assert "Nothing settled: item ids must be numbers" in operator.post(
        "/review/items/settle", data={**form, "item": ["x"]}, follow_redirects=True
    ).get_data(as_text=True)
    response = operator.post("/review/items/settle", data={**form, "item": spam})
    assert (
        response.status_code == 302 and response.headers["Location"] == "/review/items?status=pending&q=ZORK"
    )
    after = operator.get(response.headers["Location"]).get_data(as_text=True)
    assert "2 items settled as not_a_question." in after and "Review items: pending (0)" in after
    with helploop.database.session() as session:
        rows = {i.text: i for i in session.scalars(select(ReviewItem))}
        assert [rows[t].status for t in ("zork blorp free money", "zork blorp win a prize")] == [
            "resolved"
        ] * 2
        assert rows["zork blorp free money"].settled_by == "omar"
        assert rows["where is my card please"].status == "pending"
    resolved = operator.get("/review/items?status=resolved").get_data(as_text=True)
    assert "Review items: resolved (2)" in resolved and "not_<wbr>a_<wbr>question (1.00)" in resolved
    reviewer = app.test_client()
    login(reviewer, "rita")
    own = csrf_token(reviewer.get("/review/guidelines").get_data(as_text=True))
    assert (
        reviewer.post("/review/items/settle", data={**form, "item": spam, "csrf_token": own}).status_code
        == 403
    )
    assert reviewer.get("/review/items").status_code == 403


def test_the_admin_api_lists_items_and_settles_them_all_or_none(make_app: Any) -> None:
    from tests.serving.test_admin_api import bearer, token_for

    app = three_items(make_app)
    client = app.test_client()
    add_user(app, "omar", "operator")
    headers = bearer(token_for(app, "omar"))
    assert client.get("/api/v1/admin/items").status_code == 401
    listing = client.get("/api/v1/admin/items?q=zork&reason=thumbs_down", headers=headers).get_json()
    assert listing["total"] == 2 and {i["text"] for i in listing["items"]} == {
        "zork blorp free money",
        "zork blorp win a prize",
    }
    first = listing["items"][0]
    assert first["status"] == "pending" and "thumbs_down" in first["reasons"] and first["judgements"] == 0
    assert first["required"] == 3 and first["label"] is None and first["created_at"]
    paged = client.get("/api/v1/admin/items?q=zork&limit=1&offset=1", headers=headers).get_json()
    assert paged["total"] == 2 and len(paged["items"]) == 1 and paged["items"][0]["id"] != first["id"]
    for query, field in (
        ("status=done", None),
        ("reason=gold", None),
        ("limit=0", "limit"),
        ("offset=x", "offset"),
    ):
        bad = client.get(f"/api/v1/admin/items?{query}", headers=headers)
        assert bad.status_code == 400 and bad.get_json()["error"].get("field") == field
    ids = [i["id"] for i in listing["items"]]
    refused = client.post(
        "/api/v1/admin/items/settle",
        headers=headers,
        json={"items": [*ids, 999999], "label": "not_a_question"},
    )
    assert refused.status_code == 400
    assert refused.get_json()["error"] == {
        "code": "settle_refused",
        "message": "nothing settled: item 999999: no such review item",
        "field": "items",
    }
    for body in ({"items": ids}, {"items": [True], "label": "x"}, {"items": "1", "label": "x"}, []):
        assert client.post("/api/v1/admin/items/settle", headers=headers, json=body).status_code == 400
    assert client.get("/api/v1/admin/items?status=resolved", headers=headers).get_json()["total"] == 0
    done = client.post(
        "/api/v1/admin/items/settle", headers=headers, json={"items": ids, "label": "not_a_question"}
    )
    assert done.status_code == 200 and done.get_json() == {"settled": ids, "label": "not_a_question"}
    resolved = client.get("/api/v1/admin/items?status=resolved", headers=headers).get_json()
    assert resolved["total"] == 2 and {i["settled_by"] for i in resolved["items"]} == {"omar"}
    assert {i["label"] for i in resolved["items"]} == {"not_a_question"}
    spec = client.get("/openapi.json").get_json()["paths"]
    assert "/api/v1/admin/items" in spec and "/api/v1/admin/items/settle" in spec
