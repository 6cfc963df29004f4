"""OpenAPI 3 description of the HTTP API and a readable docs page rendered from it (no CDN)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, render_template

docs = Blueprint("docs", __name__, template_folder="templates")

ERROR = {"$ref": "#/components/schemas/Error"}


def _error_responses(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid input",
        404: "Unknown session or turn",
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


SUGGESTION = {"type": "object", "properties": {"intent": {"type": "string"}, "title": {"type": "string"}}}

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
                "'/<intent>' (a clicked suggestion) answers that intent directly.",
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["message"],
                            "properties": {
                                "message": {"type": "string", "maxLength": 1000},
                                "session_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$"},
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
                                    "turn_id": {"type": "integer"},
                                    "status": {"type": "string", "enum": ["answered", "clarify", "handoff"]},
                                    "answer": {"type": "string", "description": "Markdown"},
                                    "intent": {"type": "string", "nullable": True},
                                    "confidence": {"type": "number"},
                                    "suggestions": {"type": "array", "items": SUGGESTION},
                                    "model_version": {"type": "string"},
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
                    "200": {"description": "Stored", **_json({"type": "object"})},
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
        "/api/v1/sessions/{session_id}/handoff": {
            "post": {
                "summary": "The user asks for a person",
                "parameters": [
                    {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "Recorded", **_json({"type": "object"})},
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
                        },
                    }
                },
            }
        }
    },
}


@docs.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(SPEC)


@docs.get("/docs")
def docs_page() -> str:
    return render_template("docs.html", spec=SPEC)
