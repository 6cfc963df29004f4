"""The embeddable widget's assets and the demo page (a mock company site that embeds it)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, render_template, send_from_directory

from serving.app import limiter, state

STATIC = Path(__file__).resolve().parent / "static"
widget = Blueprint("widget", __name__, template_folder="templates")


@widget.get("/")
@limiter.exempt
def demo_page() -> str:
    production = state().models.state.production
    return render_template("demo.html", model_version=production.version if production else None)


@widget.get("/widget.js")
@limiter.exempt
def widget_js() -> Response:
    response = send_from_directory(STATIC, "widget.js", mimetype="application/javascript", max_age=300)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@widget.get("/widget.css")
@limiter.exempt
def widget_css() -> Response:
    response = send_from_directory(STATIC, "widget.css", mimetype="text/css", max_age=300)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@widget.get("/favicon.svg")
@widget.get("/favicon.ico")  # what browsers ask for on a page without a <link rel="icon">
@limiter.exempt
def favicon() -> Response:
    return send_from_directory(STATIC, "favicon.svg", mimetype="image/svg+xml", max_age=86400)
