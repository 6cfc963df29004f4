"""OpenAPI 3 description of the HTTP API and a readable docs page rendered from it (no CDN)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, render_template

from core.settings import OPS_EVENT_KINDS

docs = Blueprint("docs", __name__, template_folder="templates")

ERROR = {"$ref": "#/components/schemas/Error"}


def _error_responses(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid input",
        401: "No valid API token",
        404: "Unknown session, turn or job",
        409: "Refused (the reason says why)",
        413: "Body too large",
        415: "Not JSON",
        429: "Rate limited",
        503: "Model still loading",
    }
    return {
        str(c): {"description": text[c], "content": {"application/json": {"schema": ERROR}}} for c in codes
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


# When a person is back for a user handed to one outside the team's hours (HELPLOOP_TEAM_HOURS).
TEAM_BACK = {
    "type": "string",
    "format": "date-time",
    "nullable": True,
    "description": "handed to a person while nobody is online and outside the team's hours "
    "(HELPLOOP_TEAM_HOURS): when they begin again, in the team's time zone; null otherwise",
}
SUGGESTION = {"type": "object", "properties": {"intent": {"type": "string"}, "title": {"type": "string"}}}

ADMIN: list[dict[str, list[str]]] = [{"bearer": []}]
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer"}}
# An intent's metadata, and a query's: at most 20 key: value pairs (core.kb_files.MAX_METADATA_PAIRS).
METADATA = {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 20}
KNOWLEDGE = {
    "type": "object",
    "required": ["intents"],
    "properties": {
        "intents": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "examples"],
                "properties": {
                    "name": {"type": "string"},
                    "title": {"type": "string"},
                    "answer": {"type": "string", "description": "Markdown"},
                    "examples": {"type": "array", "items": {"type": "string"}},
                    "follow_ups": {"type": "array", "items": {"type": "string"}},
                    "reviewer_note": {
                        "type": "string",
                        "maxLength": 2000,
                        "description": "shown to reviewers under the intent's examples, never to customers",
                    },
                    "metadata": {
                        **METADATA,
                        "description": "key: value pairs (kept lower case) a query can filter on",
                    },
                },
            },
        },
        "synonyms": {
            "type": "array",
            "maxItems": 2000,
            "items": {
                "type": "array",
                "minItems": 2,
                "maxItems": 20,
                "items": {"type": "string", "maxLength": 60},
            },
            "description": "groups of phrases that mean the same here, each read as the one the examples use "
            "most (live without retraining); left out: the groups stay as they are, [] on PUT: none",
        },
        "version": {"type": "integer", "readOnly": True},
        "data_hash": {"type": "string", "readOnly": True},
    },
}
IMPORTED = {
    "type": "object",
    "properties": {
        name: {"type": "integer"}
        for name in (
            "version",
            "intents_created",
            "intents_updated",
            "examples_added",
            "examples_removed",
            "intents",
            "examples",
        )
    }
    | {"data_hash": {"type": "string"}},
}
GUIDELINES = {
    "type": "object",
    "properties": {
        "version": {"type": "integer"},
        "text": {"type": "string", "description": "Markdown"},
        "author": {"type": "string", "nullable": True},
        "created_at": {"type": "string", "format": "date-time", "nullable": True},
        "changed": {"type": "boolean", "description": "PUT only"},
    },
}
JOB = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "progress": {"type": "number"},
        "step": {"type": "string", "nullable": True},
        "eta_seconds": {"type": "number", "nullable": True},
        "error": {"type": "string", "nullable": True},
        "result": {"type": "object"},
        "created_by": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time", "nullable": True},
        "started_at": {"type": "string", "format": "date-time", "nullable": True},
        "finished_at": {"type": "string", "format": "date-time", "nullable": True},
        "seconds": {
            "type": "number",
            "nullable": True,
            "description": "wall time of the last attempt (so far, while it runs)",
        },
    },
}
OUTCOMES = {
    "type": "object",
    "properties": {
        name: {"type": "string" if name in ("version", "since", "until") else "integer"}
        for name in (
            "version",
            "since",
            "until",
            "questions",
            "answered",
            "clarify",
            "picked",
            "handoff",
            "rated",
            "thumbs_down",
            "audited",
            "audited_correct",
        )
    },
}

COMPARISON = {
    "type": "object",
    "description": "live outcomes of a baseline and a candidate, with each difference's 95 % interval",
    "properties": {
        "kind": {"type": "string", "enum": ["canary", "promotion"]},
        "at": {"type": "string", "format": "date-time"},
        "baseline": OUTCOMES,
        "candidate": OUTCOMES,
        "differences": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "outcome": {"type": "string"},
                    "baseline": {"type": "number", "nullable": True},
                    "candidate": {"type": "number", "nullable": True},
                    "difference": {"type": "number", "nullable": True},
                    "interval": {"type": "array", "items": {"type": "number"}, "nullable": True},
                    "verdict": {
                        "type": "string",
                        "enum": ["better", "worse", "no clear difference", "no data"],
                    },
                },
            },
        },
    },
}

DEPLOYMENT = {
    "type": "object",
    "properties": {
        "production": {"type": "string", "nullable": True},
        "canary": {"type": "string", "nullable": True},
        "canary_share": {"type": "number"},
        "shadow": {"type": "string", "nullable": True},
        "description": {"type": "string"},
        "canary_live": {**COMPARISON, "nullable": True},
        "promotion_effects": {"type": "array", "items": COMPARISON},
    },
}

PRECISION: dict[str, Any] = {
    "type": "object",
    "properties": {
        "target_precision": {
            "type": "number",
            "nullable": True,
            "description": "null: as each model was built",
        },
        "changed_by": {"type": "string", "nullable": True},
        "reason": {"type": "string", "nullable": True},
        "production": {"type": "string", "nullable": True},
        "options": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "target_precision": {"type": "number"},
                    "answers": {"type": "number", "description": "share of held-out questions answered"},
                    "measured_precision": {"type": "number", "nullable": True},
                    "threshold": {"type": "number"},
                    "margin": {"type": "number"},
                    "built_for": {"type": "boolean"},
                },
            },
        },
    },
}

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "HelpLoop API",
        "version": "1",
        "description": "Chat with the HelpLoop bot, give feedback, resume sessions, ask for a person. "
        'Errors always have the shape {"error": {"code", "message", "field"?}}.',
    },
    "paths": {
        "/api/v1/chat": {
            "post": {
                "summary": "Send a message, get the bot's reply",
                "description": "Every turn is logged before the reply is sent. A message of the form "
                "'/<intent>' (a clicked suggestion) answers that intent directly. While a person from the "
                "team chats with the user (after a handoff), the message goes to them instead: status "
                "'agent', no turn, an empty answer; their replies arrive through "
                "/api/v1/sessions/{session_id}/messages. A short message that refers back ('is there a "
                "charge for that?') is also read after the session's previous question (asked within "
                "HELPLOOP_FOLLOW_UP_MINUTES), and answered from that reading when it is the surer one.",
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["message"],
                            "properties": {
                                "message": {"type": "string", "maxLength": 1000},
                                "session_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$"},
                                "metadata": {
                                    **METADATA,
                                    "description": "answer only from intents with every key: value "
                                    '(case-insensitive), e.g. {"product": "savings"}',
                                },
                                "page": {
                                    "type": "string",
                                    "maxLength": 2000,
                                    "description": "the http(s) address of the web page the chat is on (the "
                                    "widget sends it): kept with the conversation for the team, without its "
                                    "query or fragment, personal data redacted",
                                },
                            },
                        }
                    ),
                },
                "responses": {
                    "200": {
                        "description": "The reply",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "session_id": {"type": "string"},
                                    "turn_id": {"type": "integer", "nullable": True},
                                    "rated_turn_id": {
                                        "type": "integer",
                                        "nullable": True,
                                        "description": 'a typed complaint ("that\'s wrong") rated this '
                                        "earlier answer unhelpful, as the thumbs-down does",
                                    },
                                    "message_id": {
                                        "type": "integer",
                                        "description": "status 'agent' only: the live-chat message",
                                    },
                                    "status": {
                                        "type": "string",
                                        "enum": [
                                            "answered",
                                            "clarify",
                                            "handoff",
                                            "small_talk",
                                            "off_topic",
                                            "agent",
                                        ],
                                        "description": "small_talk: a greeting, thanks or goodbye, "
                                        "answered with the deployment's reply (no intent); off_topic: a "
                                        "message off the knowledge base's topic, declined with the "
                                        "deployment's off-topic reply and passed to nobody (ask for a "
                                        "person with POST /sessions/{id}/handoff)",
                                    },
                                    "answer": {"type": "string", "description": "Markdown"},
                                    "intent": {"type": "string", "nullable": True},
                                    "confidence": {"type": "number"},
                                    "suggestions": {"type": "array", "items": SUGGESTION},
                                    "asked_again": {
                                        "type": "boolean",
                                        "description": "the customer asked again for the answer the "
                                        "conversation had just been given: it is given again with the "
                                        "offer of a person (show a way to ask for one under it; asked for "
                                        "once more than HELPLOOP_SAME_ANSWER_LIMIT times, the reply is a "
                                        "handoff instead)",
                                    },
                                    "model_version": {"type": "string", "nullable": True},
                                    "team_back": TEAM_BACK,
                                },
                            }
                        ),
                    },
                    **_error_responses(400, 404, 413, 415, 429, 503),
                },
            }
        },
        "/api/v1/feedback": {
            "post": {
                "summary": "Thumbs up or down on a bot answer",
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["turn_id", "helpful"],
                            "properties": {
                                "turn_id": {"type": "integer"},
                                "helpful": {"type": "boolean"},
                                "comment": {"type": "string", "maxLength": 2000},
                            },
                        }
                    ),
                },
                "responses": {
                    "200": {
                        "description": "Stored",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "turn_id": {"type": "integer"},
                                    "helpful": {"type": "boolean"},
                                    "reply": {
                                        "type": "string",
                                        "nullable": True,
                                        "description": "after a thumbs-down, the bot's line to show (the "
                                        "suggestions, if any, after it, and a way to ask for a person); "
                                        "null after a thumbs-up",
                                    },
                                    "suggestions": {
                                        "type": "array",
                                        "items": SUGGESTION,
                                        "description": "after a thumbs-down on an answer, the intents the "
                                        "model ranked next for that question, to pick from as chips",
                                    },
                                },
                            }
                        ),
                    },
                    **_error_responses(400, 404, 415, 429),
                },
            }
        },
        "/api/v1/sessions/{session_id}": {
            "get": {
                "summary": "Transcript of a session (to resume it)",
                "parameters": [
                    {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "Transcript", **_json({"type": "object"})},
                    **_error_responses(400, 404),
                },
            }
        },
        "/api/v1/sessions/{session_id}/messages": {
            "get": {
                "summary": "The live chat with a person after a handoff (poll it while waiting)",
                "parameters": [
                    {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "after",
                        "in": "query",
                        "description": "only messages with a larger id (the last one seen)",
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "New messages, whether a person is chatting, whether one is awaited",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "session_id": {"type": "string"},
                                    "agent_active": {"type": "boolean"},
                                    "waiting_for_person": {"type": "boolean"},
                                    "agent_typing": {
                                        "type": "boolean",
                                        "description": "someone from the team is typing a reply now",
                                    },
                                    "messages": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "id": {"type": "integer"},
                                                "created_at": {"type": "string", "format": "date-time"},
                                                "sender": {"type": "string", "enum": ["agent", "customer"]},
                                                "text": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            }
                        ),
                    },
                    **_error_responses(400, 404, 429),
                },
            }
        },
        "/api/v1/sessions/{session_id}/handoff": {
            "post": {
                "summary": "The user asks for a person",
                "parameters": [
                    {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "Recorded",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "session_id": {"type": "string"},
                                    "handoff_requested": {"type": "boolean"},
                                    "people_online": {
                                        "type": "boolean",
                                        "description": "an operator has had a page open in the last "
                                        "HELPLOOP_PRESENCE_SECONDS: someone can join the chat now",
                                    },
                                    "message": {"type": "string", "description": "what to show the user"},
                                    "team_back": TEAM_BACK,
                                },
                            }
                        ),
                    },
                    **_error_responses(400, 404, 429),
                },
            }
        },
        "/api/v1/sessions/{session_id}/contact": {
            "post": {
                "summary": "After a handoff: how a person can reach the user (e-mail or phone)",
                "parameters": [
                    {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["contact"],
                            "properties": {"contact": {"type": "string", "maxLength": 200}},
                        }
                    ),
                },
                "responses": {
                    "200": {
                        "description": "Recorded; the session waits for a person",
                        **_json({"type": "object"}),
                    },
                    **_error_responses(400, 404, 415, 429),
                },
            }
        },
        "/api/v1/sessions/{session_id}/rating": {
            "post": {
                "summary": "The customer rates the live chat with the team (1-5; rating again replaces it)",
                "parameters": [
                    {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["rating"],
                            "properties": {
                                "rating": {"type": "integer", "minimum": 1, "maximum": 5},
                                "comment": {"type": "string", "maxLength": 500},
                            },
                        }
                    ),
                },
                "responses": {
                    "200": {
                        "description": "Recorded",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "session_id": {"type": "string"},
                                    "rating": {"type": "integer"},
                                    "message": {"type": "string"},
                                },
                            }
                        ),
                    },
                    **_error_responses(400, 404, 409, 415, 429),
                },
            }
        },
        "/api/v1/admin/knowledge": {
            "get": {
                "summary": "Admin: the current knowledge base",
                "security": ADMIN,
                "responses": {
                    "200": {"description": "Its version, content hash and intents", **_json(KNOWLEDGE)},
                    **_error_responses(401, 429),
                },
            },
            "put": {
                "summary": "Admin: replace the knowledge base (validated whole; nothing changes on an error)",
                "security": ADMIN,
                "requestBody": {"required": True, **_json(KNOWLEDGE)},
                "responses": {
                    "200": {"description": "The new version and what changed", **_json(IMPORTED)},
                    **_error_responses(400, 401, 413, 415, 429),
                },
            },
            "post": {
                "summary": "Admin: merge into the knowledge base (add intents and examples, update answers)",
                "security": ADMIN,
                "requestBody": {"required": True, **_json(KNOWLEDGE)},
                "responses": {
                    "200": {"description": "The new version and what changed", **_json(IMPORTED)},
                    **_error_responses(400, 401, 413, 415, 429),
                },
            },
        },
        "/api/v1/admin/knowledge/files": {
            "post": {
                "summary": (
                    "Admin: import knowledge-base files in any format an upload takes (help documents as "
                    "Word .docx or PDF, FAQ pages, Excel, CSV, JSON, Rasa, Azure exports) by a job, all or "
                    "nothing; mode=replace makes them the whole knowledge base"
                ),
                "security": ADMIN,
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["files"],
                                "properties": {
                                    "files": {
                                        "type": "array",
                                        "items": {"type": "string", "format": "binary"},
                                    },
                                    "mode": {
                                        "type": "string",
                                        "enum": ["merge", "replace"],
                                        "default": "merge",
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": {"description": "Queued; follow it at the Location header", **_json(JOB)},
                    **_error_responses(400, 401, 413, 429),
                },
            }
        },
        "/api/v1/admin/knowledge/import-url": {
            "post": {
                "summary": (
                    "Admin: fetch the page or file at a web address (the help centre's FAQ page, a manual's "
                    "PDF) and merge it in, by a job"
                ),
                "security": ADMIN,
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["url"],
                            "properties": {"url": {"type": "string", "format": "uri"}},
                        }
                    ),
                },
                "responses": {
                    "202": {"description": "Queued; follow it at the Location header", **_json(JOB)},
                    **_error_responses(400, 401, 429),
                },
            }
        },
        "/api/v1/admin/knowledge/versions": {
            "get": {
                "summary": "Admin: knowledge-base versions, newest first (every import, edit and restore)",
                "security": ADMIN,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "Versions",
                        **_json({"type": "array", "items": {"type": "object"}}),
                    },
                    **_error_responses(400, 401, 429),
                },
            }
        },
        "/api/v1/admin/knowledge/check": {
            "get": {
                "summary": "Admin: check the knowledge base (as `helploop kb check --json`)",
                "description": "errors: questions filed under more than one intent (with the crowd's "
                "verified pairs); warnings: intents with fewer examples than few_examples.below, and "
                "examples the production model, not trained on them, reads as another intent "
                "(confident learning on its held-out rows; model.label_issues is null without such a "
                "model, model.note says why); notes: duplicates within an intent, intents mixed up.",
                "security": ADMIN,
                "responses": {
                    "200": {"description": "The report", **_json({"type": "object"})},
                    **_error_responses(401, 429),
                },
            }
        },
        "/api/v1/admin/knowledge/examples/move": {
            "post": {
                "summary": "Admin: move one example question to another intent, or remove it (to: null)",
                "security": ADMIN,
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["text", "from", "to"],
                            "properties": {
                                "text": {"type": "string"},
                                "from": {"type": "string"},
                                "to": {"type": "string", "nullable": True},
                            },
                        }
                    ),
                },
                "responses": {
                    "200": {
                        "description": "The new version: version, data_hash, intents, examples",
                        **_json({"type": "object"}),
                    },
                    **_error_responses(400, 401, 429),
                },
            }
        },
        "/api/v1/admin/knowledge/examples/ask": {
            "post": {
                "summary": "Admin: ask reviewers which intent a flagged example belongs to (a review item)",
                "security": ADMIN,
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["text", "intent"],
                            "properties": {"text": {"type": "string"}, "intent": {"type": "string"}},
                        }
                    ),
                },
                "responses": {
                    "201": {"description": "item_id, status, created: true", **_json({"type": "object"})},
                    "200": {"description": "Asked already: that item", **_json({"type": "object"})},
                    **_error_responses(400, 401, 429),
                },
            }
        },
        "/api/v1/admin/knowledge/examples/keep": {
            "post": {
                "summary": "Admin: keep a flagged example as it is (the check stops listing it), or flag it "
                "again (keep: false)",
                "security": ADMIN,
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["text", "intent"],
                            "properties": {
                                "text": {"type": "string"},
                                "intent": {"type": "string"},
                                "keep": {"type": "boolean", "default": True},
                            },
                        }
                    ),
                },
                "responses": {
                    "200": {
                        "description": "text, intent, kept, changed (false: it was so already)",
                        **_json({"type": "object"}),
                    },
                    **_error_responses(400, 401, 429),
                },
            }
        },
        "/api/v1/admin/knowledge/versions/{version_id}/restore": {
            "post": {
                "summary": "Admin: make an earlier version current again, as a new version",
                "security": ADMIN,
                "parameters": [
                    {"name": "version_id", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": {
                    "200": {"description": "The new version", **_json(IMPORTED)},
                    **_error_responses(401, 404, 429),
                },
            }
        },
        "/api/v1/admin/train": {
            "post": {
                "summary": (
                    "Admin: queue a retraining (fine-tuning the encoder with fine_tune: true; self_training "
                    "true/false overrides HELPLOOP_SELF_TRAINING for this run). A run with nothing new "
                    "to learn (a registered model was fitted from the same data and settings) builds no "
                    "model: its result says unchanged and names that model (same_as); force: true fits "
                    "anyway"
                ),
                "security": ADMIN,
                "requestBody": {
                    "required": False,
                    **_json(
                        {
                            "type": "object",
                            "properties": {
                                "fine_tune": {"type": "boolean"},
                                "self_training": {"type": "boolean"},
                                "force": {"type": "boolean"},
                            },
                        }
                    ),
                },
                "responses": {
                    "202": {"description": "Queued; follow it at the Location header", **_json(JOB)},
                    **_error_responses(400, 401, 409, 429),
                },
            }
        },
        "/api/v1/admin/jobs/{job_id}": {
            "get": {
                "summary": "Admin: a job's status and progress (a training run's result has the gate report)",
                "security": ADMIN,
                "parameters": [JOB_ID],
                "responses": {"200": {"description": "The job", **_json(JOB)}, **_error_responses(401, 404)},
            }
        },
        "/api/v1/admin/jobs/{job_id}/cancel": {
            "post": {
                "summary": "Admin: cancel a queued or running job",
                "security": ADMIN,
                "parameters": [JOB_ID],
                "responses": {
                    "200": {"description": "Cancel requested", **_json(JOB)},
                    **_error_responses(401, 404, 409, 429),
                },
            }
        },
        "/api/v1/admin/deployment": {
            "get": {
                "summary": "Admin: what serves traffic (production, canary and its share, shadow)",
                "security": ADMIN,
                "responses": {
                    "200": {"description": "The deployment", **_json(DEPLOYMENT)},
                    **_error_responses(401),
                },
            },
            "post": {
                "summary": "Admin: shadow, canary, promote or roll back (the promotion gate applies)",
                "security": ADMIN,
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["action", "reason"],
                            "properties": {
                                "action": {
                                    "type": "string",
                                    "enum": [
                                        "shadow",
                                        "canary",
                                        "promote",
                                        "rollback",
                                        "end_canary",
                                        "end_shadow",
                                    ],
                                },
                                "version": {"type": "string"},
                                "share": {"type": "number", "default": 0.1},
                                "reason": {"type": "string"},
                                "override_reason": {"type": "string"},
                            },
                        }
                    ),
                },
                "responses": {
                    "200": {"description": "The new deployment", **_json(DEPLOYMENT)},
                    **_error_responses(400, 401, 409, 429),
                },
            },
        },
        "/api/v1/admin/stats": {
            "get": {
                "summary": "Admin: the overview as data (traffic, did-you-mean, CSAT, precision, reviewers)",
                "security": ADMIN,
                "parameters": [
                    {
                        "name": "days",
                        "in": "query",
                        "description": "how many days back, today included (default 30)",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 90},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "traffic, did_you_mean, that_is_wrong (the choices offered after a "
                        'typed "that\'s wrong", the ones clicked and how far those clicks are trusted in '
                        "review), satisfaction, team_response (the conversations handed to a person: "
                        "how many a person replied to and marked handled, the median and 90th-percentile "
                        "seconds to the first reply; within_hours and outside_hours apart when "
                        "HELPLOOP_TEAM_HOURS is set), answer_quality, "
                        "review (the reviewers' work: hours, time per resolved item, per reviewer, and the "
                        "label pairs they mix up), kept_out (the answers pages' metadata kept from questions "
                        "the bot would have answered, with the pages)",
                        **_json({"type": "object"}),
                    },
                    **_error_responses(400, 401),
                },
            }
        },
        "/api/v1/admin/items": {
            "get": {
                "summary": "Admin: review items (newest urgent first), filtered as on the items page",
                "security": ADMIN,
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["pending", "resolved", "escalated"]},
                    },
                    {
                        "name": "q",
                        "in": "query",
                        "description": "words in the question",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "reason",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": [
                                "clarify",
                                "handoff",
                                "off_topic",
                                "thumbs_down",
                                "disagreement",
                                "audit",
                                "kb_check",
                                "asked_again",
                            ],
                        },
                    },
                    {"name": "bot_intent", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                ],
                "responses": {
                    "200": {
                        "description": "total, and items: id, status, text (redacted), reasons, "
                        "bot_intent, bot_confidence, asked, judgements, required, label, confidence, "
                        "settled_by, created_at",
                        **_json({"type": "object"}),
                    },
                    **_error_responses(400, 401),
                },
            }
        },
        "/api/v1/admin/items/settle": {
            "post": {
                "summary": "Admin: settle review items with one label, as an operator (all or none)",
                "security": ADMIN,
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["items", "label"],
                            "properties": {
                                "items": {"type": "array", "items": {"type": "integer"}, "maxItems": 500},
                                "label": {"type": "string"},
                            },
                        }
                    ),
                },
                "responses": {
                    "200": {"description": "settled (ids) and label", **_json({"type": "object"})},
                    **_error_responses(400, 401, 429),
                },
            }
        },
        "/api/v1/admin/events": {
            "get": {
                "summary": "Admin: ops events (deployment changes, finished jobs, suspensions, "
                "escalations) with their delivery to the ops webhook, newest first",
                "security": ADMIN,
                "parameters": [
                    {
                        "name": "kind",
                        "in": "query",
                        "description": "only this kind",
                        "schema": {"type": "string", "enum": list(OPS_EVENT_KINDS)},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "how many (default 100)",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "id, kind, text, url, data, status (pending, delivered, failed, "
                        "unsent), attempts, last_error, created_at, delivered_at",
                        **_json({"type": "array", "items": {"type": "object"}}),
                    },
                    **_error_responses(400, 401),
                },
            }
        },
        "/api/v1/admin/guidelines": {
            "get": {
                "summary": "Admin: the reviewing guidelines in use (Markdown; version 0: the built-in text)",
                "security": ADMIN,
                "responses": {
                    "200": {"description": "The guidelines", **_json(GUIDELINES)},
                    **_error_responses(401),
                },
            },
            "put": {
                "summary": "Admin: save new reviewing guidelines (reviewers are asked to read them)",
                "security": ADMIN,
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["text"],
                            "properties": {"text": {"type": "string", "maxLength": 20000}},
                        }
                    ),
                },
                "responses": {
                    "200": {
                        "description": "The guidelines in use; changed: false when the text was in use",
                        **_json(GUIDELINES),
                    },
                    **_error_responses(400, 401, 429),
                },
            },
        },
        "/api/v1/admin/precision": {
            "get": {
                "summary": "Admin: how sure the bot must be to answer, and the production model's options",
                "security": ADMIN,
                "responses": {
                    "200": {"description": "The precision in force and the options", **_json(PRECISION)},
                    **_error_responses(401),
                },
            },
            "post": {
                "summary": "Admin: answer at another precision, without retraining (null: as built)",
                "security": ADMIN,
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["target_precision", "reason"],
                            "properties": {
                                "target_precision": {
                                    "type": "number",
                                    "nullable": True,
                                    "enum": [0.8, 0.85, 0.9, 0.95, 0.97, 0.99, None],
                                },
                                "reason": {"type": "string"},
                            },
                        }
                    ),
                },
                "responses": {
                    "200": {"description": "The precision now in force", **_json(PRECISION)},
                    **_error_responses(400, 401, 429),
                },
            },
        },
        "/webhooks/rest/webhook": {
            "post": {
                "summary": "Rasa REST channel",
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["sender", "message"],
                            "properties": {"sender": {"type": "string"}, "message": {"type": "string"}},
                        }
                    ),
                },
                "responses": {
                    "200": {
                        "description": "Bot messages",
                        **_json(
                            {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "recipient_id": {"type": "string"},
                                        "text": {"type": "string"},
                                        "buttons": {"type": "array", "items": {"type": "object"}},
                                    },
                                },
                            }
                        ),
                    },
                    **_error_responses(400, 415, 429, 503),
                },
            }
        },
        "/model/parse": {
            "post": {
                "summary": "Rasa NLU parse (not logged as a turn)",
                "requestBody": {
                    "required": True,
                    **_json(
                        {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
                    ),
                },
                "responses": {
                    "200": {"description": "Intent ranking", **_json({"type": "object"})},
                    **_error_responses(400, 415, 429, 503),
                },
            }
        },
        "/language/:query-knowledgebases": {
            "post": {
                "summary": "Azure AI Language question answering's runtime shape; logged as turns",
                "parameters": [
                    {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                    for name in ("projectName", "deploymentName", "api-version")
                ],
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "properties": {
                                "question": {"type": "string"},
                                "qnaId": {
                                    "type": "integer",
                                    "description": "a follow-up prompt the user clicked",
                                },
                                "top": {"type": "integer", "minimum": 1, "maximum": 50, "default": 1},
                                "confidenceScoreThreshold": {"type": "number", "minimum": 0, "maximum": 1},
                                "userId": {"type": "string", "description": "the conversation"},
                                "context": {
                                    "type": "object",
                                    "description": "previousQnaId: a question that is one of that QnA's "
                                    "prompts is answered with the prompt's QnA",
                                    "properties": {
                                        "previousQnaId": {"type": "integer"},
                                        "previousUserQuery": {"type": "string"},
                                    },
                                },
                                "filters": {
                                    "type": "object",
                                    "description": "metadataFilter: answer only from intents whose metadata "
                                    "match its pairs (logicalOperation AND, the default, or OR); "
                                    "sourceFilter is accepted and not applied",
                                    "properties": {
                                        "metadataFilter": {
                                            "type": "object",
                                            "properties": {
                                                "metadata": {
                                                    "type": "array",
                                                    "items": {
                                                        "type": "object",
                                                        "properties": {
                                                            "key": {"type": "string"},
                                                            "value": {"type": "string"},
                                                        },
                                                    },
                                                },
                                                "logicalOperation": {"type": "string", "enum": ["AND", "OR"]},
                                            },
                                        },
                                        "sourceFilter": {"type": "array", "items": {"type": "string"}},
                                    },
                                },
                            },
                        }
                    ),
                },
                "responses": {
                    "200": {
                        "description": "Answers: the intent's answer (id derived from its name, prompts for "
                        'its follow-ups), the "did you mean" choices, or id -1 '
                        "(no match: the hand-over message)",
                        **_json(
                            {
                                "type": "object",
                                "properties": {"answers": {"type": "array", "items": {"type": "object"}}},
                            }
                        ),
                    },
                    **_error_responses(400, 404, 415, 429, 503),
                },
            }
        },
        "/healthz": {"get": {"summary": "Process alive", "responses": {"200": {"description": "ok"}}}},
        "/readyz": {
            "get": {
                "summary": "Model loaded and database reachable",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An operator's API token (helploop tokens create, or the Accounts page)",
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "field": {"type": "string"},
                            "retry_after": {
                                "type": "integer",
                                "description": "503 only: seconds to wait before asking again",
                            },
                        },
                    }
                },
            }
        },
    },
}


@docs.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(SPEC)


@docs.get("/docs")
def docs_page() -> str:
    return render_template("docs.html", spec=SPEC)
