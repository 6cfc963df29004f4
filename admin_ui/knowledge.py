"""Operator pages for the knowledge base: list and search intents, edit one (title, answer, follow-ups,
example questions), create and delete. Every save is one new knowledge-base version (validated whole, all
or nothing); titles, answers and follow-ups go live without retraining (the serving processes follow the
newest version), example questions at the next retraining."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from admin_ui.setup import require_role
from core.kb_files import OUT_OF_SCOPE, KnowledgeBaseFormatError
from core.knowledge_base import delete_intent, intent_revision, load_knowledge_base, save_intent
from core.models import KnowledgeBaseVersion, utcnow
from crowd_feedback.quality import answer_quality

knowledge = Blueprint("knowledge", __name__, url_prefix="/operator/knowledge", template_folder="templates")


def _served_intents() -> set[str]:
    engine = current_app.extensions["helploop"].models.state.production
    return set(engine.labels) if engine is not None else set()


@knowledge.get("/")
@require_role("operator")
def index() -> Any:
    helploop = current_app.extensions["helploop"]
    search = (request.args.get("q") or "").strip()
    with helploop.database.session() as session:
        kb = load_knowledge_base(session)
        versions = session.scalars(
            select(KnowledgeBaseVersion).order_by(KnowledgeBaseVersion.id.desc()).limit(10)
        ).all()
        history = [(v.id, v.created_at, v.source, v.intent_count, v.example_count) for v in versions]
        quality = answer_quality(session, since=utcnow() - timedelta(days=30)).intents
    needle = search.casefold()
    rows = [
        intent
        for name, intent in sorted(kb.intents.items(), key=lambda kv: kv[0].casefold())
        if not needle
        or needle in name.casefold()
        or needle in intent.title.casefold()
        or needle in intent.answer.casefold()
        or any(needle in e.casefold() for e in intent.examples)
    ]
    return render_template(
        "admin/knowledge.html",
        rows=rows,
        total=len(kb.intents),
        search=search,
        served=_served_intents(),
        history=history,
        quality=quality,
    )


def _form_values() -> dict[str, Any]:
    form = request.form
    return {
        "name": (form.get("name") or "").strip(),
        "title": form.get("title", ""),
        "answer": form.get("answer", ""),
        "examples": [line for line in form.get("examples", "").splitlines() if line.strip()],
        "follow_ups": form.getlist("follow_ups"),
        "revision": form.get("revision") or None,
    }


def _editor(values: dict[str, Any], *, create: bool, error: str | None = None, status: int = 200) -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        names = sorted(load_knowledge_base(session).intents)
    return (
        render_template(
            "admin/intent.html",
            intent=values,
            create=create,
            error=error,
            others=[n for n in names if n != values["name"]],
            served=values["name"] in _served_intents(),
        ),
        status,
    )


@knowledge.get("/new")
@require_role("operator")
def new() -> Any:
    return _editor({"name": "", "title": "", "answer": "", "examples": [], "follow_ups": []}, create=True)


@knowledge.get("/<name>")
@require_role("operator")
def edit(name: str) -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        intent = load_knowledge_base(session).intents.get(name)
    if intent is None:
        abort(404)
    return _editor({**intent.to_dict(), "revision": intent_revision(intent)}, create=False)


def _save(values: dict[str, Any], *, create: bool) -> Any:
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.write_lock, helploop.database.session() as session:
            result = save_intent(session, actor=current_user.username, create=create, **values)
    except KnowledgeBaseFormatError as exc:
        return _editor(values, create=create, error=f"{exc.field}: {exc.message}", status=400)
    live = (
        "The title, answer and follow-ups are live within a few seconds"
        if values["name"] in _served_intents()
        else "Retrain to make the bot answer it"
    )
    flash(
        f"Intent {values['name']} saved (knowledge base version {result.kb_version_id}). {live}; "
        "changed example questions take effect at the next retraining."
    )
    return redirect(url_for("knowledge.edit", name=values["name"]))


@knowledge.post("/")
@require_role("operator")
def create() -> Any:
    return _save(_form_values(), create=True)


@knowledge.post("/<name>")
@require_role("operator")
def update(name: str) -> Any:
    values = _form_values()
    values["name"] = name  # renaming would orphan the label in every trained model: create a new intent
    return _save(values, create=False)


@knowledge.post("/<name>/delete")
@require_role("operator")
def remove(name: str) -> Any:
    helploop = current_app.extensions["helploop"]
    if (request.form.get("confirm") or "").strip() != name:
        flash(f"Not deleted: type the intent's name ({name}) to confirm.")
        return redirect(url_for("knowledge.edit", name=name))
    if name == OUT_OF_SCOPE:
        flash("Not deleted: the out-of-scope intent teaches the bot what it should hand off.")
        return redirect(url_for("knowledge.edit", name=name))
    try:
        with helploop.write_lock, helploop.database.session() as session:
            result = delete_intent(session, name=name, actor=current_user.username)
    except KnowledgeBaseFormatError as exc:
        flash(f"Not deleted: {exc.message}")
        return redirect(url_for("knowledge.edit", name=name))
    flash(
        f"Intent {name} deleted (knowledge base version {result.kb_version_id}). The models serving now "
        "still know it until the next retraining is promoted."
    )
    return redirect(url_for("knowledge.index"))
