"""Azure's own question answering client (azure-ai-language-questionanswering) against HelpLoop's Azure-shaped
endpoint on a live server: what a bot built on Azure sees after changing its endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.serving.conftest import ANSWERS, live


@pytest.fixture
def server(make_app: Any) -> Iterator[tuple[str, Any]]:
    app = make_app(ratelimit_enabled=False)
    with live(app) as base:
        yield base, app


def test_the_azure_sdk_gets_answers_prompts_and_follow_ups(server: tuple[str, Any]) -> None:
    from azure.ai.language.questionanswering import QuestionAnsweringClient
    from azure.ai.language.questionanswering.models import KnowledgeBaseAnswerContext
    from azure.core.credentials import AzureKeyCredential

    from core.models import Turn
    from serving.azure_qa import NO_ANSWER_ID, qna_id

    base, app = server
    client = QuestionAnsweringClient(base, AzureKeyCredential("not-checked"))
    project = {"project_name": "bank", "deployment_name": "production"}
    output = client.get_answers(question="when will my card arrive", top=2, user_id="az-user-1", **project)
    first = output.answers[0]
    assert first.qna_id == qna_id("card_arrival") and first.answer == ANSWERS["card_arrival"].answer
    assert first.questions == ["Where is my card?"] and 0.5 < first.confidence <= 1.0
    assert [(p.qna_id, p.display_text) for p in first.dialog.prompts] == [
        (qna_id("change_pin"), "Change my PIN")
    ]
    # The user clicks the prompt.
    follow = client.get_answers(qna_id=first.dialog.prompts[0].qna_id, user_id="az-user-1", **project)
    assert [(a.qna_id, a.confidence) for a in follow.answers] == [(qna_id("change_pin"), 1.0)]
    assert follow.answers[0].answer == ANSWERS["change_pin"].answer
    # The user types the prompt instead; the client sends the QnA that offered it as the context.
    context = KnowledgeBaseAnswerContext(
        previous_qna_id=first.qna_id, previous_question="when will it arrive"
    )
    typed = client.get_answers(
        question="change my PIN", answer_context=context, user_id="az-user-1", **project
    )
    assert [(a.qna_id, a.confidence) for a in typed.answers] == [(qna_id("change_pin"), 1.0)]
    person = client.get_answers(question="can I talk to a human", **project)
    assert [(a.qna_id, a.confidence) for a in person.answers] == [(NO_ANSWER_ID, 0.0)]
    assert person.answers[0].answer == app.extensions["helploop"].settings.handoff_offline_message
    with app.extensions["helploop"].database.session() as session:
        logged = session.query(Turn).order_by(Turn.id).all()
        assert [t.user_text for t in logged] == [
            "when will my card arrive",
            "/change_pin",
            "/change_pin",
            "can I talk to a human",
        ]
        assert {t.conversation_id for t in logged[:3]} == {"az-user-1"}


def test_the_azure_sdks_metadata_filter_is_applied(make_app: Any) -> None:
    from azure.ai.language.questionanswering import QuestionAnsweringClient
    from azure.ai.language.questionanswering.models import MetadataFilter, QueryFilters
    from azure.core.credentials import AzureKeyCredential

    from serving.azure_qa import NO_ANSWER_ID, qna_id
    from tests.serving.test_metadata import CARD_QUESTION, tag_intents

    app = make_app(ratelimit_enabled=False)
    tag_intents(app)
    with live(app) as base:
        client = QuestionAnsweringClient(base, AzureKeyCredential("not-checked"))
        project = {"project_name": "bank", "deployment_name": "production"}

        def ask(*pairs: tuple[str, str], operation: str | None = None) -> Any:
            filters = QueryFilters(
                metadata_filter=MetadataFilter(metadata=list(pairs), logical_operation=operation)
            )
            return client.get_answers(question=CARD_QUESTION, filters=filters, **project).answers

        cards = ask(("product", "cards"))
        assert cards[0].qna_id == qna_id("card_arrival") and cards[0].metadata["product"] == "cards"
        assert [a.qna_id for a in ask(("product", "fx"))] == [NO_ANSWER_ID]
        assert ask(("product", "fx"), ("product", "cards"), operation="OR")[0].qna_id == qna_id(
            "card_arrival"
        )
