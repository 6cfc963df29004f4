"""API errors with one stable shape: ``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

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
        return jsonify({"error": body}), self.status


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
