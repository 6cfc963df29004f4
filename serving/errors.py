"""API errors with one stable shape: ``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, abort, jsonify, request
from werkzeug.exceptions import HTTPException

from core.text import unstorable_text

API_PREFIXES = ("/api/", "/webhooks/", "/model/")


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def to_response(self) -> tuple[Response, int]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        if self.status != 503:
            return jsonify({"error": body}), self.status
        # E.g. the model still loading after a start: when to ask again. The rate limiter raises the header
        # to the end of its window (it sends Retry-After on every response): the body's figure is this
        # error's own.
        body["retry_after"] = RETRY_AFTER_SECONDS
        response = jsonify({"error": body})
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response, self.status


RETRY_AFTER_SECONDS = 5


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def is_api_request() -> bool:
    return request.path.startswith(API_PREFIXES)


def _first_unstorable(value: Any) -> tuple[str, str] | None:
    """(field path, problem) of the first text in a parsed JSON value that no database can store. Walks
    with its own stack: a body nested as deeply as the parser allows must not exhaust Python's."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        current, where = stack.pop()
        if isinstance(current, str):
            problem = unstorable_text(current)
            if problem:
                return where, problem
        elif isinstance(current, dict):
            for key, item in reversed(list(current.items())):
                path = f"{where}.{key}" if where else str(key)
                stack += [(item, path), (key, path)]
        elif isinstance(current, list):
            stack += [(item, f"{where}[{index}]") for index, item in reversed(list(enumerate(current)))]
    return None


def _first_in_fields(fields: Any) -> tuple[str, str] | None:
    """(name, problem) of the first query or form field (name or value) no database can store."""
    for name, values in fields.lists():
        for value in values:
            problem = unstorable_text(name) or unstorable_text(value)
            if problem:
                return name, problem
    return None


def refuse_unstorable_text() -> None:
    """Before any view: a query, JSON body or form field holding text the database cannot store (a NUL
    character, a lone surrogate) is refused as a 400 naming the field, not failed at the write as a 500."""
    found = _first_in_fields(request.args)  # a search box's text reaches SQL too
    if found is None and request.is_json:
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # the parser's own limit: not a server error
            raise APIError(400, "invalid_json", "the JSON body is nested too deeply") from None
        found = _first_unstorable(body) if body is not None else None
    elif found is None and request.method in {"POST", "PUT", "PATCH"}:
        found = _first_in_fields(request.form)
    if found is None:
        return
    field, problem = found
    message = f"'{field}' {problem}"
    if is_api_request() or request.is_json:
        raise APIError(400, "invalid_text", message, field)
    abort(400, description=message)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def handle_api_error(error: APIError) -> tuple[Response, int]:
        return error.to_response()

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException) -> Any:
        status = error.code or 500
        if not is_api_request():
            return error
        message = error.description or error.name
        if status == 429:
            message = f"too many requests: {error.description}"
        return APIError(status, _HTTP_CODES.get(status, "http_error"), message).to_response()

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Any:
        app.logger.exception("unhandled error on %s", request.path)
        if is_api_request():
            return APIError(500, "internal_error", "internal error; it has been logged").to_response()
        return "Internal error", 500
