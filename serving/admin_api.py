"""The admin API: what operators automate (a CI job pushing the knowledge base from a repository, starting a
retraining, following it, rolling the result out). JSON only, bearer tokens (``helploop tokens create``), each
acting as its operator; every change is recorded exactly as the pages and the CLI record it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.utils import secure_filename

from core.events import event_view, recent_events
from core.kb_checks import question_key
from core.kb_files import IMPORT_SUFFIXES, KnowledgeBaseFormatError, read_knowledge_base_files
from core.knowledge_base import (
    ImportResult,
    flag_again,
    import_knowledge_base,
    keep_example,
    latest_kb_version,
    list_kb_versions,
    load_knowledge_base,
    move_example,
    restore_kb_version,
)
from core.models import Job, OpsEvent, ReviewItem, User
from core.registry import (
    HandoffTimes,
    TeamResponse,
    answer_policy_history,
    current_deployment,
    serving_plan,
)
from core.settings import OPS_EVENT_KINDS
from core.web_import import looks_like_web_address
from crowd_feedback.gold import production_views
from crowd_feedback.guidelines import Guidelines, GuidelinesError, current_guidelines, save_guidelines
from crowd_feedback.kb_review import ask_reviewers, asked_about
from crowd_feedback.outcomes import cached_effects, canary_comparison
from crowd_feedback.quality import overview
from crowd_feedback.review import ReviewError, find_items, judgement_counts, operator_resolve_many
from crowd_feedback.reviewers import authenticate_token
from serving.app import db_session, state
from serving.errors import APIError
from training.build import EmptyKnowledgeBaseError, require_knowledge_base
from training.jobs import JobError, enqueue, enqueue_file_import, job_view, request_cancel
from training.kb_check import check_current_knowledge_base
from training.rollout import (
    RolloutError,
    apply_action,
    describe,
    precision_options,
    set_answer_precision,
)

admin_api = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")

# Endpoints whose body may be a whole knowledge base: they get the upload limit instead of the request limit.
BODY_ENDPOINTS = frozenset({"admin_api.replace_knowledge", "admin_api.merge_knowledge"})


@admin_api.before_request
def authenticate() -> None:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise APIError(401, "unauthorized", "send an operator's API token: Authorization: Bearer hlk_…")
    session = db_session()
    user = authenticate_token(session, secret.strip())
    if user is None:
        raise APIError(
            401, "unauthorized", "unknown or revoked API token, or its account is not an active operator"
        )
    session.commit()  # last_used_at
    g.api_user = user.username


@admin_api.after_request
def challenge(response: Response) -> Response:
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="helploop"'
    return response


def _knowledge(session: Session) -> dict[str, Any]:
    version = latest_kb_version(session)
    kb = load_knowledge_base(session)
    return {
        "version": version.id if version else None,
        "data_hash": kb.data_hash(),
        **kb.to_dict(),
    }


@admin_api.get("/knowledge")
def get_knowledge() -> Response:
    return jsonify(_knowledge(db_session()))


def _import(replace: bool) -> tuple[Response, int]:
    if not request.is_json:
        raise APIError(415, "unsupported_media_type", 'send the knowledge base as JSON ({"intents": [...]})')
    helploop = state()
    try:
        incoming = read_knowledge_base_files([("request.json", request.get_data())])
        with helploop.write_lock:
            session = db_session()
            result = import_knowledge_base(
                session,
                incoming=incoming,
                source=f"{'replaced' if replace else 'imported'} through the API by {g.api_user}",
                replace=replace,
            )
            session.commit()
    except KnowledgeBaseFormatError as exc:
        db_session().rollback()
        raise APIError(400, "invalid_knowledge_base", str(exc), exc.field) from None
    return (
        jsonify(result.to_dict()),
        200,
    )


@admin_api.post("/knowledge/files")
def import_knowledge_files() -> tuple[Response, int]:
    """Knowledge-base files in any format an upload takes (help documents as Word or PDF, FAQ pages, Excel,
    CSV, JSON, Rasa, Azure exports), as multipart ``files``, merged in (``mode=merge``, the default) or
    replacing the knowledge base (``mode=replace``): imported by a job, all or nothing, as the Knowledge
    page's upload with a document is; 202 with the job to follow."""
    uploads = [f for f in request.files.getlist("files") if f and f.filename]
    if not uploads:
        raise APIError(400, "missing_files", "send the files as multipart/form-data, field 'files'", "files")
    mode = request.form.get("mode", "merge")
    if mode not in ("merge", "replace"):
        raise APIError(400, "invalid_value", "'mode' must be merge or replace", "mode")
    names = [secure_filename(f.filename or "") or f"upload-{i + 1}" for i, f in enumerate(uploads)]
    for name in names:
        if Path(name).suffix.lower() not in IMPORT_SUFFIXES:
            raise APIError(
                400,
                "invalid_knowledge_base",
                f"{name}: unknown file type: use one of {', '.join(sorted(IMPORT_SUFFIXES))}",
                "files",
            )
    session = db_session()
    files = [(name, upload.read()) for name, upload in zip(names, uploads, strict=True)]
    job = enqueue_file_import(session, files=files, replace=mode == "replace", created_by=g.api_user)
    session.commit()
    return _queued(job)


@admin_api.post("/knowledge/import-url")
def import_knowledge_url() -> tuple[Response, int]:
    """The page or file at a web address (the help centre's FAQ page, a manual's PDF) fetched and merged in
    by a job, as the Knowledge page's "Import from the web"; 202 with the job to follow."""
    body = request.get_json(silent=True)
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not looks_like_web_address(url.strip()):
        raise APIError(
            400, "invalid_value", "'url' must be a web address that starts with https:// or http://", "url"
        )
    session = db_session()
    job = enqueue(
        session, kind="kb_import_url", params={"url": url.strip(), "by": g.api_user}, created_by=g.api_user
    )
    session.commit()
    return _queued(job)


@admin_api.put("/knowledge")
def replace_knowledge() -> tuple[Response, int]:
    """The body becomes the whole knowledge base (validated whole; nothing changes on an error)."""
    return _import(replace=True)


@admin_api.post("/knowledge")
def merge_knowledge() -> tuple[Response, int]:
    """The body is merged in: new intents and examples added, answers, titles and follow-ups updated."""
    return _import(replace=False)


@admin_api.get("/knowledge/versions")
def knowledge_versions() -> Response:
    """The newest versions first (``?limit=``, default 20, at most 200): every import, edit and restore."""
    limit = request.args.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 200:
        raise APIError(400, "invalid_value", "'limit' must be a whole number from 1 to 200", "limit")
    rows = list_kb_versions(db_session(), limit=int(limit))
    return jsonify(
        [
            {
                "version": v.id,
                "created_at": v.created_at.isoformat(),
                "source": v.source,
                "data_hash": v.data_hash,
                "intents": v.intent_count,
                "examples": v.example_count,
            }
            for v in rows
        ]
    )


def _new_version(result: ImportResult) -> dict[str, Any]:
    return {
        "version": result.kb_version_id,
        "data_hash": result.data_hash,
        "intents": result.intent_count,
        "examples": result.example_count,
    }


@admin_api.post("/knowledge/versions/<int:version_id>/restore")
def restore_knowledge_version(version_id: int) -> Response:
    """Make an earlier version current again, as a new version (the undo of a bad push)."""
    helploop = state()
    with helploop.write_lock:
        session = db_session()
        try:
            result = restore_kb_version(session, version_id=version_id, actor=f"{g.api_user} (API)")
        except KnowledgeBaseFormatError as exc:
            session.rollback()
            raise APIError(404, "unknown_version", exc.message, "version_id") from None
        session.commit()
    return jsonify(_new_version(result))


@admin_api.get("/knowledge/check")
def knowledge_check() -> Response:
    """The knowledge-base check (as ``helploop kb check --json``): questions under two intents, intents with
    few examples, examples the production model reads as another intent, duplicates, confused intents."""
    session = db_session()
    report = check_current_knowledge_base(session, engine=state().models.state.production)
    body = report.to_dict()
    asked = asked_about(session)
    for issue in body["model"]["label_issues"] or []:
        a = asked.get((question_key(issue["text"]), issue["given"]))
        issue["reviewers"] = (
            None
            if a is None
            else {"item_id": a.item_id, "status": a.status, "answers": a.answers, "label": a.label}
        )
    return jsonify(body)


@admin_api.post("/knowledge/examples/ask")
def ask_about_knowledge_example() -> tuple[Response, int]:
    """Ask reviewers which intent an example belongs to (a review item, shown with the production model's
    held-out view of it); the same example again returns the item already asking."""
    body = request.get_json(silent=True)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("text"), str)
        or not isinstance(body.get("intent"), str)
    ):
        raise APIError(400, "invalid_body", 'send a JSON object: {"text": "the example", "intent": "intent"}')
    helploop = state()
    settings = helploop.settings
    views = production_views(helploop.models.state.production, **settings.replies)
    session = db_session()
    try:
        item, created = ask_reviewers(
            session,
            text=body["text"],
            intent=body["intent"],
            view=views(body["text"]) if views is not None else None,
            policy=helploop.policy,
        )
    except ReviewError as exc:
        session.rollback()
        raise APIError(400, "ask_refused", str(exc), "text") from None
    session.commit()
    return jsonify({"item_id": item.id, "status": item.status, "created": created}), 201 if created else 200


@admin_api.post("/knowledge/examples/move")
def move_knowledge_example() -> Response:
    """Move one example question to another intent, or remove it (``to`` null), as a new version."""
    body = request.get_json(silent=True)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("text"), str)
        or not isinstance(body.get("from"), str)
        or not isinstance(body.get("to"), str | None)
    ):
        raise APIError(
            400,
            "invalid_body",
            'send a JSON object: {"text": "the example", "from": "intent", "to": "intent" or null}',
        )
    helploop = state()
    with helploop.write_lock:
        session = db_session()
        try:
            result = move_example(
                session,
                text=body["text"],
                from_intent=body["from"],
                to_intent=body["to"],
                actor=f"{g.api_user} (API)",
            )
        except KnowledgeBaseFormatError as exc:
            session.rollback()
            where = {"from_intent": "from", "to_intent": "to", "examples": "text"}
            raise APIError(400, "move_refused", exc.message, where.get(exc.field or "", exc.field)) from None
        session.commit()
    return jsonify(_new_version(result))


@admin_api.post("/knowledge/examples/keep")
def keep_knowledge_example() -> Response:
    """Keep a flagged example as it is (``keep`` true, the default: the check stops listing it) or flag it
    again (false)."""
    body = request.get_json(silent=True)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("text"), str)
        or not isinstance(body.get("intent"), str)
        or not isinstance(body.get("keep", True), bool)
    ):
        raise APIError(
            400,
            "invalid_body",
            'send a JSON object: {"text": "the example", "intent": "intent", "keep": true}',
        )
    session = db_session()
    if body.get("keep", True):
        try:
            changed = keep_example(
                session, text=body["text"], intent=body["intent"], actor=f"{g.api_user} (API)"
            )
        except KnowledgeBaseFormatError as exc:
            session.rollback()
            raise APIError(400, "keep_refused", exc.message, exc.field) from None
    else:
        changed = flag_again(session, text=body["text"], intent=body["intent"])
    session.commit()
    return jsonify(
        {"text": body["text"], "intent": body["intent"], "kept": body.get("keep", True), "changed": changed}
    )


def _job(job: Job) -> dict[str, Any]:
    """The job pages' view of a job, as JSON: an ISO timestamp, the ETA named with its unit."""
    view = job_view(job)
    view["eta_seconds"] = view.pop("eta")
    for key in ("created_at", "started_at", "finished_at"):
        view[key] = view[key].isoformat() if view[key] else None
    return view


@admin_api.post("/train")
def train() -> tuple[Response, int]:
    body = request.get_json(silent=True) if request.data else {}
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body", "the JSON body must be an object")
    fine_tune = body.get("fine_tune", False)
    if not isinstance(fine_tune, bool):
        raise APIError(400, "invalid_type", "'fine_tune' must be true or false", "fine_tune")
    params: dict[str, Any] = {"onnx": True}
    if fine_tune:
        params["fine_tune"] = {}
    if "self_training" in body:
        if not isinstance(body["self_training"], bool):
            raise APIError(400, "invalid_type", "'self_training' must be true or false", "self_training")
        params["self_training"] = body["self_training"]
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise APIError(400, "invalid_type", "'force' must be true or false", "force")
    if force:
        params["force"] = True
    session = db_session()
    try:
        require_knowledge_base(session)
    except EmptyKnowledgeBaseError as exc:
        raise APIError(409, "empty_knowledge_base", str(exc)) from None
    job = enqueue(session, kind="train", params=params, created_by=g.api_user)
    session.commit()
    return _queued(job)


def _queued(job: Job) -> tuple[Response, int]:
    """202 Accepted with the job, and its address to follow in Location."""
    response = jsonify(_job(job))
    response.headers["Location"] = f"/api/v1/admin/jobs/{job.id}"
    return response, 202


def _find_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise APIError(404, "unknown_job", f"no job {job_id}", "job_id")
    return job


@admin_api.get("/jobs/<int:job_id>")
def job_status(job_id: int) -> Response:
    return jsonify(_job(_find_job(db_session(), job_id)))


@admin_api.post("/jobs/<int:job_id>/cancel")
def cancel_job(job_id: int) -> Response:
    session = db_session()
    _find_job(session, job_id)
    try:
        request_cancel(session, job_id=job_id)
    except JobError as exc:
        raise APIError(409, "refused", str(exc)) from None
    session.commit()
    return jsonify(_job(_find_job(session, job_id)))


def _deployment(session: Session) -> dict[str, Any]:
    row = current_deployment(session)
    loaded = state().models.state.production
    return {
        "production": row.production_version if row else (loaded.version if loaded else None),
        "canary": row.canary_version if row else None,
        "canary_share": row.canary_share if row else 0.0,
        "shadow": row.shadow_version if row else None,
        "changed_by": row.actor if row else None,
        "reason": row.reason if row else None,
        "description": describe(row),
        # The canary against production on each arm's own live turns since it started (None: no canary), and
        # production's turns before against after each of the last five model changes.
        "canary_live": canary.to_dict() if (canary := canary_comparison(session)) else None,
        "promotion_effects": [e.to_dict() for e in cached_effects(session, row.id if row else None)],
    }


@admin_api.get("/deployment")
def deployment() -> Response:
    return jsonify(_deployment(db_session()))


@admin_api.post("/deployment")
def deploy() -> Response:
    """One rollout action, as on the Runs page: shadow / canary (with a share) / promote a version, or roll
    back. The promotion gate applies: a candidate it found worse needs ``override_reason``."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body", 'send a JSON object: {"action", "version"?, "reason", …}')
    share = body.get("share", 0.1)
    if isinstance(share, bool) or not isinstance(share, int | float):
        raise APIError(400, "invalid_type", "'share' must be a number in (0, 1]", "share")
    fields = {name: body.get(name) for name in ("action", "version", "reason", "override_reason")}
    for name, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise APIError(400, "invalid_type", f"'{name}' must be a string", name)
    session = db_session()
    try:
        apply_action(
            session,
            action=fields["action"] or "",
            actor=g.api_user,
            reason=fields["reason"] or "",
            version=fields["version"],
            share=float(share),
            override_reason=fields["override_reason"],
        )
    except RolloutError as exc:
        session.rollback()
        raise APIError(409, "refused", str(exc)) from None
    session.commit()
    return jsonify(_deployment(session))


def _precision(session: Session) -> dict[str, Any]:
    history = answer_policy_history(session, limit=10)
    plan = serving_plan(session)
    production = plan["production"] if plan else None
    return {
        "target_precision": history[0].target_precision if history else None,
        "changed_by": history[0].actor if history else None,
        "reason": history[0].reason if history else None,
        "production": production[0] if production else None,
        "options": [
            {
                "target_precision": o.target,
                "answers": round(o.coverage, 4),
                "measured_precision": None if o.precision is None else round(o.precision, 4),
                "threshold": round(o.threshold, 4),
                "margin": o.margin,
                "built_for": o.built,
            }
            for o in (precision_options(production[1]) if production else [])
        ],
    }


def _guidelines_view(guidelines: Guidelines) -> dict[str, Any]:
    return {
        "version": guidelines.version,
        "text": guidelines.text,
        "author": guidelines.author,
        "created_at": guidelines.created_at.isoformat() if guidelines.created_at else None,
    }


@admin_api.get("/guidelines")
def guidelines() -> Response:
    """The reviewing guidelines in use (version 0: the text that comes with HelpLoop)."""
    return jsonify(_guidelines_view(current_guidelines(db_session())))


@admin_api.put("/guidelines")
def put_guidelines() -> Response:
    """Save ``text`` (Markdown) as the new version of the guidelines, as the Guidelines page does; the same
    text again changes nothing (``changed`` false)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        raise APIError(
            400, "invalid_body", 'send a JSON object: {"text": "the guidelines, in Markdown"}', "text"
        )
    session = db_session()
    try:
        saved = save_guidelines(session, text=body["text"], author=g.api_user)
    except GuidelinesError as exc:
        session.rollback()
        raise APIError(400, "invalid_guidelines", str(exc), "text") from None
    session.commit()
    return jsonify({**_guidelines_view(saved or current_guidelines(session)), "changed": saved is not None})


@admin_api.get("/precision")
def precision() -> Response:
    return jsonify(_precision(db_session()))


@admin_api.post("/precision")
def set_precision() -> Response:
    """How sure the bot must be to answer, for every serving model, without retraining (as on the Models
    page): ``target_precision`` one of the offered values, or null for the models' own gates."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "target_precision" not in body:
        raise APIError(400, "invalid_body", 'send a JSON object: {"target_precision": 0.9 or null, "reason"}')
    target = body["target_precision"]
    if target is not None and (isinstance(target, bool) or not isinstance(target, int | float)):
        raise APIError(400, "invalid_type", "'target_precision' must be a number or null", "target_precision")
    reason = body.get("reason")
    if not isinstance(reason, str):
        raise APIError(400, "invalid_type", "'reason' must be a string", "reason")
    session = db_session()
    try:
        set_answer_precision(
            session,
            target_precision=None if target is None else float(target),
            actor=g.api_user,
            reason=reason,
        )
    except RolloutError as exc:
        session.rollback()
        raise APIError(400, "invalid_precision", str(exc), "target_precision") from None
    session.commit()
    return jsonify(_precision(session))


STATS_DAYS = range(1, 91)


def _by_rank(choices: Any) -> dict[str, int]:
    """Clicks per position of the choice clicked (1: the first shown; 0: a choice no longer shown)."""
    return {str(rank): count for rank, count in sorted(choices.by_rank.items())}


def _pick_trust(trust: Any) -> dict[str, Any]:
    """How far one kind of customer pick is trusted in review (``crowd_feedback.review.PickTrust``)."""
    return {
        "pick_checked": trust.checked,
        "pick_accuracy": trust.accuracy,
        "pick_lift": trust.lift,
        "pick_weight": trust.weight,
    }


def _handoff_times_payload(times: HandoffTimes) -> dict[str, Any]:
    return {
        "handed": times.handed,
        "replied": times.replied,
        "handled": times.handled,
        "contact_only": times.contact_only,
        "median_first_reply_seconds": times.median_first_reply,
        "p90_first_reply_seconds": times.p90_first_reply,
        "median_to_handled_seconds": times.median_to_handled,
    }


def team_response_payload(response: TeamResponse | None) -> dict[str, Any] | None:
    """Conversations handed to a person and how fast the team answered (``core.registry.team_response``);
    ``within_hours`` and ``outside_hours`` are null when no team hours are set."""
    if response is None:
        return None
    return {
        "all": _handoff_times_payload(response.all),
        "within_hours": _handoff_times_payload(response.within_hours) if response.within_hours else None,
        "outside_hours": _handoff_times_payload(response.outside_hours) if response.outside_hours else None,
    }


@admin_api.get("/stats")
def stats() -> Response:
    """What the overview shows, as data for a dashboard or a report: the last ``days`` days (1-90, default 30)
    of traffic per day, "did you mean" choices, customer satisfaction with the team, audited precision, and
    the reviewers' work (per person, and what a resolved item cost in people's time)."""
    raw = request.args.get("days", "30")
    if not raw.isdigit() or int(raw) not in STATS_DAYS:
        raise APIError(400, "invalid_days", "'days' must be a whole number from 1 to 90", "days")
    days = int(raw)
    figures = overview(db_session(), days=days, hours=state().settings.team_schedule)
    choices, trust, rated, quality, effort = (
        figures.choices,
        figures.pick_trust,
        figures.satisfaction,
        figures.quality,
        figures.workforce.effort,
    )
    return jsonify(
        {
            "days": days,
            "since": figures.since.isoformat(),
            "traffic": [
                {
                    "day": d.day.isoformat(),
                    "answered": d.answered,
                    "clarify": d.clarify,
                    "picked": d.picked,
                    "handoff": d.handoff,
                    "off_topic": d.off_topic,
                    "thumbs_down": d.unhelpful,
                    "promoted": d.promoted,
                }
                for d in figures.traffic
            ],
            "did_you_mean": {
                "asked": choices.asked,
                "picked": choices.picked,
                "by_rank": _by_rank(choices),
                **_pick_trust(trust),
                "sets": [
                    {"choices": list(c.shown), "asked": c.asked, "picks": c.picks, "unpicked": c.unpicked}
                    for c in figures.choice_sets
                ],
                "sets_scanned": figures.choices_scanned,
            },
            "that_is_wrong": {  # the intents ranked next, offered after a typed "that's wrong"
                "offered": figures.complaints.asked,
                "picked": figures.complaints.picked,
                "by_rank": _by_rank(figures.complaints),
                **_pick_trust(figures.complaint_pick_trust),
                "corrections": [
                    {"answered": c.answered, "picked": c.picked, "times": c.times}
                    for c in figures.corrections
                ],
            },
            "satisfaction": {
                "ratings": rated.ratings,
                "csat": rated.csat,
                "mean": rated.mean,
                "by_rating": {str(rating): count for rating, count in sorted(rated.by_rating.items())},
                "people": [
                    {"agent": p.agent, "ratings": p.ratings, "csat": p.csat, "mean": p.mean}
                    for p in rated.people
                ],
            },
            "team_response": team_response_payload(figures.team_response),
            "answer_quality": {
                "audited": quality.audited,
                "precision": quality.precision,
                "interval": list(quality.interval) if quality.audited else None,
                "audits_pending": quality.audits_pending,
            },
            "review": {
                "judgements": effort.judgements,
                "timed": effort.timed,
                "hours": effort.hours,
                "median_seconds": effort.median_seconds,
                "resolved_items": effort.resolved_items,
                "seconds_per_resolved": effort.seconds_per_resolved,
                "reviewers": [
                    {
                        "username": p.username,
                        "role": p.role,
                        "status": p.status,
                        "judgements": p.judgements,
                        "agreement": p.agreement,
                        "gold_answered": p.gold_answered,
                        "gold_accuracy": p.gold_accuracy,
                        "median_seconds": p.median_seconds,
                        "per_hour": p.per_hour,
                        "fast": p.fast,
                        "last_judged_at": p.last_judged_at.isoformat() if p.last_judged_at else None,
                    }
                    for p in figures.workforce.people
                ],
                "mixups": [
                    {
                        "settled": m.settled,
                        "chosen": m.chosen,
                        "times": m.times,
                        "judgements": m.judgements,
                        "share": m.share,
                    }
                    for m in figures.mixups
                ],
            },
            "kept_out": [  # questions the bot would have answered, asked where a page's metadata left it out
                {"intent": k.intent, "questions": k.count, "pages": [[page, n] for page, n in k.pages]}
                for k in figures.kept_out
            ],
            # declined messages written in another language than the knowledge base's (bot.language)
            "other_languages": figures.other_languages,
            # answers asked for again (bot.repetition): given again with the offer of a person, or passed on
            "asked_again": {
                "answered": figures.asked_again.answered,
                "handed_over": figures.asked_again.handed_over,
            },
        }
    )


def _event(event: OpsEvent) -> dict[str, Any]:
    view = event_view(event, state().settings)
    for key in ("next_attempt_at", "delivered_at", "created_at"):
        view[key] = view[key].isoformat() if view[key] is not None else None
    return view


def _item(item: ReviewItem, judgements: int) -> dict[str, Any]:
    return {
        "id": item.id,
        "status": item.status,
        "text": item.text,  # redacted: what reviewers see
        "reasons": list(item.reasons or []),
        "bot_intent": item.bot_intent,
        "bot_confidence": item.bot_confidence,
        "asked": item.cluster_size,
        "judgements": judgements,
        "required": item.required_judgements,
        "label": item.resolved_label,
        "confidence": item.resolved_confidence,
        "settled_by": item.settled_by,
        "created_at": item.created_at.isoformat() if item.created_at else None,
    }


def _whole(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name, str(default))
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise APIError(400, "invalid_value", f"'{name}' must be a whole number from {low} to {high}", name)
    return int(raw)


@admin_api.get("/items")
def items() -> Response:
    """Review items as the items page lists them: ``status`` (default pending), ``q`` (words in the
    question), ``reason``, ``bot_intent``, ``limit`` (1-500, default 100), ``offset``."""
    limit, offset = _whole("limit", 100, 1, 500), _whole("offset", 0, 0, 10**9)
    session = db_session()
    try:
        rows, total = find_items(
            session,
            status=request.args.get("status", "pending"),
            text=request.args.get("q", ""),
            reason=request.args.get("reason", ""),
            bot_intent=request.args.get("bot_intent", ""),
            limit=limit,
            offset=offset,
        )
    except ReviewError as exc:
        raise APIError(400, "invalid_value", str(exc)) from None
    counts = judgement_counts(session, item_ids=[r.id for r in rows])
    return jsonify({"total": total, "items": [_item(r, counts.get(r.id, 0)) for r in rows]})


@admin_api.post("/items/settle")
def settle_items() -> Response:
    """Settle ``items`` (ids) with one ``label`` (an intent the model in production knows, ``new_intent`` or
    ``not_a_question``), as an operator's label: all or none."""
    body = request.get_json(silent=True)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("items"), list)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in body["items"])
        or not isinstance(body.get("label"), str)
    ):
        raise APIError(400, "invalid_body", 'send a JSON object: {"items": [1, 2], "label": "an_intent"}')
    engine = state().models.state.production
    known = [label for label in engine.labels if label != "oos"] if engine is not None else []
    session = db_session()
    operator = session.scalar(select(User).where(User.username == g.api_user))
    assert operator is not None  # the token authenticated as this active operator
    try:
        with state().write_lock:
            settled = operator_resolve_many(
                session,
                item_ids=body["items"],
                label=body["label"].strip(),
                known_intents=known,
                operator=operator,
                policy=state().policy,
            )
            session.commit()
    except ReviewError as exc:
        session.rollback()
        raise APIError(400, "settle_refused", f"nothing settled: {exc}", "items") from None
    return jsonify({"settled": [item.id for item in settled], "label": body["label"].strip()})


@admin_api.get("/events")
def events() -> Response:
    """The ops events, newest first (``?kind=``, ``?limit=`` 1-500, default 100), each with its delivery to
    the ops webhook: what the Activity page lists, for a receiver catching up after an outage."""
    kind = request.args.get("kind", "") or None
    if kind is not None and kind not in OPS_EVENT_KINDS:
        raise APIError(400, "invalid_value", f"'kind' must be one of {', '.join(OPS_EVENT_KINDS)}", "kind")
    limit = _whole("limit", 100, 1, 500)
    return jsonify([_event(e) for e in recent_events(db_session(), kind=kind, limit=limit)])
