"""Operator pages for the knowledge base: list and search intents, edit one (title, answer, follow-ups,
example questions), create and delete; import files (CSV, JSON, Rasa) and export them; download or restore an
earlier version. Every change is one new knowledge-base version (validated whole, all or nothing); titles,
answers and follow-ups go live without retraining (the serving processes follow the newest version), example
questions at the next retraining."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.utils import secure_filename

from admin_ui.setup import require_role
from bot.engine import ANSWERED, MetadataFilter
from bot.follow_up import Earlier, read_follow_up, refers_back
from bot.message_rules import read_message
from bot.multi_question import other_questions
from bot.small_talk import NOT_HELPFUL
from core.kb_checks import question_key, text_findings
from core.kb_files import (
    DOCUMENTS,
    OUT_OF_SCOPE,
    KnowledgeBaseFormatError,
    check_metadata,
    check_synonyms,
    knowledge_base_archive,
    metadata_text,
    read_knowledge_base_files,
)
from core.knowledge_base import (
    delete_intent,
    flag_again,
    get_kb_version,
    import_knowledge_base,
    intent_revision,
    keep_example,
    list_kb_versions,
    load_knowledge_base,
    move_example,
    restore_kb_version,
    save_intent,
    save_synonyms,
    synonym_changes,
    upload_source,
    version_changes,
)
from core.models import utcnow
from core.web_import import looks_like_web_address
from crowd_feedback.gold import production_views
from crowd_feedback.kb_review import ask_reviewers, asked_about
from crowd_feedback.quality import answer_quality, kept_out_answers
from crowd_feedback.review import ReviewError
from training.jobs import enqueue, enqueue_file_import
from training.kb_check import check_current_knowledge_base

knowledge = Blueprint("knowledge", __name__, url_prefix="/operator/knowledge", template_folder="templates")


def _served_intents() -> set[str]:
    engine = current_app.extensions["helploop"].models.state.production
    return set(engine.labels) if engine is not None else set()


@knowledge.get("/")
@require_role("operator")
def index() -> Any:
    return _index_page()


def _index_page(
    *,
    import_error: str | None = None,
    synonyms_error: str | None = None,
    synonyms_text: str | None = None,
    status: int = 200,
) -> Any:
    helploop = current_app.extensions["helploop"]
    search = (request.args.get("q") or "").strip()
    with helploop.database.session() as session:
        kb = load_knowledge_base(session)
        versions = list_kb_versions(session, limit=10)
        history = [(v.id, v.created_at, v.source, v.intent_count, v.example_count) for v in versions]
        since = utcnow() - timedelta(days=30)
        quality = answer_quality(session, since=since).intents
        kept_out = kept_out_answers(session, since=since)
    needle = search.casefold()
    rows = [
        intent
        for name, intent in sorted(kb.intents.items(), key=lambda kv: kv[0].casefold())
        if _matches(intent, needle)
    ]
    return (
        render_template(
            "admin/knowledge.html",
            rows=rows,
            total=len(kb.intents),
            search=search,
            served=_served_intents(),
            history=history,
            quality=quality,
            kept_out=kept_out,
            import_error=import_error,
            conflicts=len(text_findings(kb).conflicts),
            synonyms_error=synonyms_error,
            sources=_sources(kb),
            synonyms_text=synonyms_text
            if synonyms_text is not None
            else "\n".join(", ".join(group) for group in kb.synonyms or []),
        ),
        status,
    )


def _matches(intent: Any, needle: str) -> bool:
    """Whether the list's search (lower case) finds the intent: in its name, title, answer, note, metadata
    (``product:savings``) or examples; ``from:NAME`` lists the intents imported from that source."""
    if not needle:
        return True
    if needle.startswith("from:"):
        return (intent.source or "").casefold() == needle.removeprefix("from:").strip()
    return (
        needle in intent.name.casefold()
        or needle in intent.title.casefold()
        or needle in intent.answer.casefold()
        or needle in intent.reviewer_note.casefold()
        or needle in metadata_text(intent.metadata)
        or any(needle in e.casefold() for e in intent.examples)
    )


def _sources(kb: Any) -> list[dict[str, Any]]:
    """The pages, documents and web addresses the knowledge base's intents were imported from, with how many
    intents each has now; a web address can be imported again from the list."""
    return [
        {"source": source, "intents": n, "web": looks_like_web_address(source)} for source, n in kb.sources()
    ]


def _form_values() -> dict[str, Any]:
    form = request.form
    return {
        "name": (form.get("name") or "").strip(),
        "title": form.get("title", ""),
        "answer": form.get("answer", ""),
        "examples": [line for line in form.get("examples", "").splitlines() if line.strip()],
        "follow_ups": form.getlist("follow_ups"),
        "reviewer_note": form.get("reviewer_note", ""),
        "metadata": form.get("metadata"),  # None (a form without the field) keeps the intent's metadata
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
    return _editor(
        {
            "name": "",
            "title": "",
            "answer": "",
            "examples": [],
            "follow_ups": [],
            "reviewer_note": "",
            "metadata": "",
        },
        create=True,
    )


@knowledge.get("/intents/<name>")
@require_role("operator")
def edit(name: str) -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        intent = load_knowledge_base(session).intents.get(name)
    if intent is None:
        abort(404)
    values = {
        **intent.to_dict(),
        "metadata": metadata_text(intent.metadata, between="\n", colon=": "),
        "revision": intent_revision(intent),
    }
    return _editor(values, create=False)


def _save(values: dict[str, Any], *, create: bool) -> Any:
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.write_lock, helploop.database.session() as session:
            result = save_intent(session, actor=current_user.username, create=create, **values)
    except KnowledgeBaseFormatError as exc:
        return _editor(values, create=create, error=f"{exc.field}: {exc.message}", status=400)
    live = (
        "The title, answer, follow-ups and metadata are live within a few seconds"
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


@knowledge.post("/intents/<name>")
@require_role("operator")
def update(name: str) -> Any:
    values = _form_values()
    values["name"] = name  # renaming would orphan the label in every trained model: create a new intent
    return _save(values, create=False)


@knowledge.post("/intents/<name>/delete")
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


CHECK_ROWS = 100  # rows per list on the check page; `helploop kb check --limit 0` lists them all
CHECK_SECTIONS = frozenset({"conflicts", "issues"})  # where a Move / Remove returns to


def examples_chart(
    per_intent: dict[str, int], few: int, *, width: float = 860.0, height: float = 130.0
) -> dict[str, Any]:
    """Examples per intent, fewest first, one bar each; the ones under ``few`` in red, with a line at it."""
    ranked = sorted(per_intent.items(), key=lambda kv: (kv[1], kv[0]))
    top = max([count for _, count in ranked] + [few, 1])
    left, bottom = 40.0, 16.0
    step = (width - left - 8) / max(len(ranked), 1)

    def y(count: float) -> float:
        return round(height - bottom - (height - bottom - 6) * count / top, 1)

    bars = [
        {
            "x": round(left + i * step, 1),
            "y": y(count),
            "w": round(max(step - 1, 1), 1),
            "h": round(height - bottom - y(count), 1),
            "name": name,
            "count": count,
            "thin": count < few,
        }
        for i, (name, count) in enumerate(ranked)
    ]
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "few_y": y(few),
        "ticks": [{"y": y(v), "label": v} for v in sorted({few, top})],
        "base": height - bottom,
    }


@knowledge.get("/check")
@require_role("operator")
def check() -> Any:
    """The knowledge-base check: questions under two intents, intents with few examples, examples the
    production model (not trained on them) reads as another intent, duplicates, intents it mixes up; each
    example with Move / Remove."""
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        report = check_current_knowledge_base(session, engine=helploop.models.state.production)
        asked = asked_about(session)
    return render_template(
        "admin/kb_check.html",
        report=report,
        rows=CHECK_ROWS,
        asked=asked,
        key=question_key,
        chart=examples_chart(report.per_intent, report.few) if report.per_intent else None,
    )


@knowledge.post("/examples/move")
@require_role("operator")
def move() -> Any:
    """Move one example to another intent (``to_intent`` empty: remove it), as a new version."""
    helploop = current_app.extensions["helploop"]
    text = request.form.get("text", "")
    from_intent = request.form.get("from_intent", "")
    to_intent = request.form.get("to_intent") or None
    try:
        with helploop.write_lock, helploop.database.session() as session:
            result = move_example(
                session, text=text, from_intent=from_intent, to_intent=to_intent, actor=current_user.username
            )
    except KnowledgeBaseFormatError as exc:
        flash(f"Not changed: {exc.message}")
    else:
        what = f"moved from {from_intent} to {to_intent}" if to_intent else f"removed from {from_intent}"
        flash(
            f"“{text}” {what} (knowledge base version {result.kb_version_id}). It takes effect at the next "
            "retraining."
        )
    section = request.form.get("section")
    return redirect(url_for("knowledge.check", _anchor=section if section in CHECK_SECTIONS else None))


@knowledge.post("/examples/keep")
@require_role("operator")
def keep() -> Any:
    """Keep a flagged example as it is (the check stops listing it), or flag it again (``undo``)."""
    helploop = current_app.extensions["helploop"]
    text = request.form.get("text", "")
    intent = request.form.get("intent", "")
    undo = request.form.get("undo") == "1"
    try:
        with helploop.write_lock, helploop.database.session() as session:
            if undo:
                flag_again(session, text=text, intent=intent)
            else:
                keep_example(session, text=text, intent=intent, actor=current_user.username)
    except KnowledgeBaseFormatError as exc:
        flash(f"Not changed: {exc.message}")
    else:
        flash(
            f"“{text}” is flagged again under {intent}."
            if undo
            else f"“{text}” kept under {intent}: the check no longer lists it (see Kept as they are)."
        )
    return redirect(url_for("knowledge.check", _anchor="kept" if undo else "issues"))


@knowledge.post("/examples/ask")
@require_role("operator")
def ask() -> Any:
    """Ask reviewers which intent flagged examples belong to: one (``text``, ``intent``), or with ``all`` the
    first ``CHECK_ROWS`` the check lists. Each becomes a review item shown with the production model's
    held-out view of it, never its knowledge-base label."""
    helploop = current_app.extensions["helploop"]
    settings = helploop.settings
    views = production_views(helploop.models.state.production, **settings.replies)
    created = 0
    try:
        with helploop.write_lock, helploop.database.session() as session:
            if request.form.get("all") == "1":
                report = check_current_knowledge_base(session, engine=helploop.models.state.production)
                wanted = [
                    (i.text, i.given)
                    for i in (report.label_issues or [])[:CHECK_ROWS]
                    if (question_key(i.text), i.given) not in report.pair_issues
                ]
            else:
                wanted = [(request.form.get("text", ""), request.form.get("intent", ""))]
            for text, intent in wanted:
                _, new = ask_reviewers(
                    session,
                    text=text,
                    intent=intent,
                    view=views(text) if views is not None else None,
                    policy=helploop.policy,
                )
                created += new
    except ReviewError as exc:
        flash(f"Not changed: {exc}")
    else:
        flash(
            f"Asked reviewers about {created} example{'' if created == 1 else 's'}"
            + (f" ({len(wanted) - created} asked already)" if len(wanted) > created else "")
            + ". Confirmed ones are kept as they are; for the others the reviewers' answer shows here."
        )
    return redirect(url_for("knowledge.check", _anchor="issues"))


@knowledge.get("/try")
@require_role("operator")
def try_bot() -> Any:
    """Ask the bot something and see why it answers as it does, on every loaded arm (production, canary,
    shadow): status, answer, confidence against the gate, the ranking and each member's own top intents.
    The message is read as the chat reads it: small talk and requests for a person get the chat's reply (the
    models' reading is still shown), greetings around a question are left out of what the models read, and
    with a question before it (``after``) a follow-up is read as the chat reads one (``bot.follow_up``).
    Nothing is logged: this is the operator's test bench, not traffic."""
    helploop = current_app.extensions["helploop"]
    message = (request.args.get("q") or "").strip()
    before = (request.args.get("after") or "").strip()  # the question before, for a follow-up
    page_metadata = (request.args.get("metadata") or "").strip()
    limit = helploop.settings.max_message_length
    error = None
    arms: list[dict[str, Any]] = []
    if len(message) > limit:
        error, message = f"The message is {len(message)} characters; the chat accepts at most {limit}.", ""
    if len(before) > limit:
        error, message = f"The question before is {len(before)} characters; at most {limit}.", ""
    only = None
    if page_metadata:  # as a page with data-helploop-metadata asks: only intents with every pair
        try:
            pairs = check_metadata("metadata", None, "metadata", page_metadata)
        except KnowledgeBaseFormatError as exc:
            error, message = f"Metadata: {exc.message}", ""
        else:
            only = MetadataFilter.of(pairs.items())
    state = helploop.models.state
    settings = helploop.settings
    reading = read_message(message, **settings.message_rules) if message else None
    rule = None  # what the chat answers instead of the model, when a rule reads the message first
    if reading is not None and reading.asks_for_person:
        rule = {"kind": "a request for a person", "reply": settings.handoff_requested_message}
    elif reading is not None and reading.small_talk == NOT_HELPFUL:
        kind = "a complaint about the previous answer (rated unhelpful, the next-ranked intents offered)"
        rule = {"kind": kind, "reply": settings.small_talk_reply(NOT_HELPFUL)}
    elif reading is not None and reading.small_talk is not None:
        reply = settings.small_talk_reply(reading.small_talk)
        rule = {"kind": f"small talk ({reading.small_talk.replace('_', ' ')})", "reply": reply}
    if reading is not None:
        for arm, engine in (
            ("production", state.production),
            ("canary", state.canary),
            ("shadow", state.shadow),
        ):
            if engine is None:
                continue
            earlier = None
            if before and settings.follow_ups:  # as the chat reads a follow-up after that question
                asked = read_message(before, **settings.message_rules).question
                first = engine.predict(asked, only=only)
                earlier = Earlier(asked, first.intent if first.status == ANSWERED else None)
            followed = read_follow_up(engine, reading.question, earlier=earlier, only=only)
            also = (  # the message's other questions, offered as chips first (bot.multi_question)
                other_questions(engine, followed.prediction, only=only)
                if settings.multi_questions and followed.context is None
                else []
            )
            arms.append(
                {
                    "arm": arm,
                    "share": state.canary_share if arm == "canary" else None,
                    "prediction": followed.prediction,
                    "context": followed.context,
                    "earlier_intent": earlier.intent if earlier is not None else None,
                    "also": also,
                    "threshold": float(engine.gate.threshold),
                    "margin": float(engine.gate.margin),
                    "floor": engine.familiarity_floor,
                    "shared": engine.keyword_shares(followed.prediction),
                }
            )
    status = 400 if error else 200
    return (
        render_template(
            "admin/try.html",
            message=message,
            before=before,
            follow_ups=settings.follow_ups,
            refers_back=reading is not None and refers_back(reading.question),
            page_metadata=page_metadata,
            question=reading.question if reading is not None else "",
            rule=rule,
            arms=arms,
            error=error,
            loaded=state.production is not None,
        ),
        status,
    )


# ---------------------------------------------------------------------------------- files and versions

EXPORT_FORMATS = ("json", "csv", "rasa")


@knowledge.get("/export")
@require_role("operator")
def export() -> Any:
    """The current knowledge base as a download: JSON, or CSV / Rasa files zipped."""
    fmt = request.args.get("format", "json")
    if fmt not in EXPORT_FORMATS:
        abort(404)
    with current_app.extensions["helploop"].database.session() as session:
        kb = load_knowledge_base(session)
    if not kb.intents:
        flash("The knowledge base is empty: nothing to export.")
        return redirect(url_for("knowledge.index"))
    name, content = knowledge_base_archive(kb, fmt)
    return _download(name, content)


@knowledge.get("/versions/<int:version_id>")
@require_role("operator")
def version(version_id: int) -> Any:
    """What a version changed (against the one before it), or what restoring it would change (against the
    newest)."""
    against = "current" if request.args.get("against") == "current" else "previous"
    with current_app.extensions["helploop"].database.session() as session:
        try:
            shown, other, changes = version_changes(session, version_id=version_id, against=against)
        except KnowledgeBaseFormatError:
            abort(404)
        info = {
            "id": shown.id,
            "created_at": shown.created_at,
            "source": shown.source,
            "intents": shown.intent_count,
            "examples": shown.example_count,
        }
        other_id = other.id if other is not None else None
        groups_added, groups_removed = synonym_changes(other.snapshot if other else None, shown.snapshot)
    return render_template(
        "admin/kb_version.html",
        version=info,
        other_id=other_id,
        against=against,
        changes=changes,
        groups_added=groups_added,
        groups_removed=groups_removed,
    )


@knowledge.get("/versions/<int:version_id>.json")
@require_role("operator")
def version_snapshot(version_id: int) -> Any:
    with current_app.extensions["helploop"].database.session() as session:
        try:
            snapshot = get_kb_version(session, version_id=version_id).snapshot
        except KnowledgeBaseFormatError:
            abort(404)
    return _download(f"knowledge_base_v{version_id}.json", (json.dumps(snapshot, indent=2) + "\n").encode())


def _download(name: str, content: bytes) -> Response:
    mimetype = "application/zip" if name.endswith(".zip") else "application/json"
    return Response(
        content, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@knowledge.post("/import")
@require_role("operator")
def import_files() -> Any:
    """Upload knowledge-base files (examples + answers CSV, JSON, or Rasa nlu.yml + domain.yml), merged into
    the knowledge base or replacing it: validated whole first, all or nothing."""
    helploop = current_app.extensions["helploop"]
    uploads = [f for f in request.files.getlist("files") if f and f.filename]
    replace = request.form.get("mode") == "replace"
    if not uploads:
        return _index_page(import_error="Choose one or more files to import.", status=400)
    if replace and (request.form.get("confirm") or "").strip().lower() != "replace":
        return _index_page(
            import_error="Not imported: type replace to confirm that intents missing from the files go.",
            status=400,
        )
    names = [secure_filename(f.filename or "") or f"upload-{i + 1}" for i, f in enumerate(uploads)]
    if any(Path(n).suffix.lower() in DOCUMENTS for n in names):
        return _import_as_job(names, [f.read() for f in uploads], replace=replace)
    try:
        incoming = read_knowledge_base_files([(n, f.read()) for n, f in zip(names, uploads, strict=True)])
        with helploop.write_lock, helploop.database.session() as session:
            result = import_knowledge_base(
                session,
                incoming=incoming,
                source=upload_source(by=current_user.username, names=names, replace=replace),
                replace=replace,
            )
            kb_after = load_knowledge_base(session)
        conflicts = len(text_findings(kb_after).conflicts)
    except KnowledgeBaseFormatError as exc:
        return _index_page(import_error=f"Nothing was imported. {exc}", status=400)
    flash(
        f"Imported ({'replaced' if replace else 'merged'}): {result.intents_created} intents created, "
        f"{result.intents_updated} updated, {result.examples_added} examples added, "
        f"{result.examples_removed} removed; the knowledge base is now {result.intent_count} intents and "
        f"{result.example_count} examples (version {result.kb_version_id}). Answers are live within a few "
        "seconds; retrain for the examples."
        + (f" {result.gone_text()}" if result.gone_text() else "")
        + (
            f" {conflicts} question{'s are' if conflicts != 1 else ' is'} filed under more than one intent: "
            "see Check the knowledge base."
            if conflicts
            else ""
        )
    )
    return redirect(url_for("knowledge.index"))


def _import_as_job(names: list[str], contents: list[bytes], *, replace: bool) -> Any:
    """Uploads with a Word document or a PDF among them: kept in the database and imported by a job (a long
    PDF takes a minute to read), all together and all or nothing as in the request; Jobs & backups shows
    its progress, page by page, and its result or the reason it failed."""
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        job_id = enqueue_file_import(
            session,
            files=list(zip(names, contents, strict=True)),
            replace=replace,
            created_by=current_user.username,
        ).id
    flash(
        f"Import job {job_id} queued for {', '.join(names)} ({'replacing' if replace else 'merged into'} the "
        "knowledge base): a document takes a while to read; its progress and result are below."
    )
    return redirect(url_for("operator.exports"))


@knowledge.post("/import-url")
@require_role("operator")
def import_url() -> Any:
    """Import the page at a web address (the company's FAQ page), merged into the knowledge base as an
    uploaded file is. The fetch runs as a job (Jobs & backups shows its progress and result), never inside
    this request."""
    helploop = current_app.extensions["helploop"]
    url = (request.form.get("url") or "").strip()
    if not looks_like_web_address(url):
        return _index_page(
            import_error="Nothing was imported: give a web address that starts with https:// or http://.",
            status=400,
        )
    with helploop.database.session() as session:
        job_id = enqueue(
            session,
            kind="kb_import_url",
            params={"url": url, "by": current_user.username},
            created_by=current_user.username,
        ).id
    flash(
        f"Import job {job_id} queued for {url}: its progress and result are below; the page's questions join "
        "the knowledge base (merged) when it succeeds."
    )
    return redirect(url_for("operator.exports"))


def read_synonym_lines(text: str) -> list[list[str]]:
    """The Synonyms form's text: one group a line, phrases separated by commas; checked as an import checks
    them (core.kb_files.check_synonyms), a problem naming its line."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return check_synonyms(
        "synonyms", [(n, "synonyms", [p for p in line.split(",") if p.strip()]) for n, line in lines]
    )


@knowledge.post("/synonyms")
@require_role("operator")
def synonyms() -> Any:
    """Replace the synonym groups: checked whole, then one new knowledge-base version; the served models read
    them within seconds, without retraining."""
    helploop = current_app.extensions["helploop"]
    text = request.form.get("synonyms") or ""
    try:
        groups = read_synonym_lines(text)
    except KnowledgeBaseFormatError as exc:
        where = f"Line {exc.line}: " if exc.line else ""
        return _index_page(synonyms_error=f"Not saved. {where}{exc.message}", synonyms_text=text, status=400)
    with helploop.write_lock, helploop.database.session() as session:
        result = save_synonyms(session, groups=groups, actor=current_user.username)
    flash(
        f"Synonyms saved: {len(groups)} group{'' if len(groups) == 1 else 's'} "
        f"(version {result.kb_version_id}). The bot reads them within a few seconds."
    )
    return redirect(url_for("knowledge.index") + "#synonyms")


@knowledge.errorhandler(413)
def upload_too_large(_error: Exception) -> Any:
    limit = request.max_content_length or 0
    size = f"{limit / 1048576:.1f} MiB" if limit >= 1048576 else f"{limit // 1024} KiB"
    return _index_page(
        import_error=f"Nothing was imported: the upload is larger than the limit of {size} "
        "(HELPLOOP_MAX_UPLOAD_BYTES). Split the knowledge base into several files and import them in turn.",
        status=413,
    )


@knowledge.post("/versions/<int:version_id>/restore")
@require_role("operator")
def restore(version_id: int) -> Any:
    helploop = current_app.extensions["helploop"]
    if (request.form.get("confirm") or "").strip() != str(version_id):
        flash(f"Not restored: type the version number ({version_id}) to confirm.")
        return redirect(url_for("knowledge.index"))
    try:
        with helploop.write_lock, helploop.database.session() as session:
            result = restore_kb_version(session, version_id=version_id, actor=current_user.username)
    except KnowledgeBaseFormatError as exc:
        flash(f"Not restored: {exc.message}")
        return redirect(url_for("knowledge.index"))
    flash(
        f"Version {version_id} restored as version {result.kb_version_id} ({result.intent_count} intents, "
        f"{result.example_count} examples). Answers are live within a few seconds; retrain for the examples."
    )
    return redirect(url_for("knowledge.index"))
