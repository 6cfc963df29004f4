"""Operator pages: overview (traffic, review queue, reviewers, verified pairs), runs, models, accounts,
conversations (the turn log, with the inbox of conversations handed to a person), new-intent suggestions
(what customers ask that no intent answers), and exports with the other background jobs."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin_ui.auth import on_this_site
from admin_ui.install import SEEN_DAYS
from admin_ui.setup import require_role
from bot.engine import HANDOFF, SMALL_TALK
from bot.handoff import ASKED_FOR_PERSON, OFF_TOPIC
from core import channels, mail, presence
from core.backup import BACKUP_STALE_AFTER, stored_backups
from core.events import EventError, delivery_counts, emit, event_view, recent_events, resend
from core.knowledge_base import reviewer_notes
from core.models import (
    Conversation,
    Deployment,
    Intent,
    Job,
    ModelVersion,
    ReviewItem,
    ReviewItemTurn,
    Turn,
    User,
    VerifiedPair,
    as_utc,
    utcnow,
)
from core.pages import PAGE_LIMIT
from core.registry import (
    LOW_RATING,
    MESSAGE_LIMIT,
    NOTE,
    SUGGESTION_ARM,
    DayTraffic,
    HandoffError,
    MessageError,
    NotFoundError,
    RepliesCrossed,
    add_note,
    agent_active,
    agent_reply,
    answer_policy_history,
    close_handoff,
    conversation_summaries,
    current_deployment,
    get_conversation,
    handoff_open,
    messages_after,
    model_by_version,
    serving_plan,
    shown_suggestions,
    waiting_conversations,
)
from core.saved_replies import TITLE_LIMIT as SAVED_TITLE_LIMIT
from core.saved_replies import SavedReplyError, delete_reply, save_reply, saved_replies
from core.settings import OPS_EVENT_KINDS, Settings
from core.team_hours import when_back
from core.turn_search import compacts
from crowd_feedback import single_sign_on, two_factor
from crowd_feedback.agreement import krippendorff_alpha, pairwise_alpha
from crowd_feedback.export import FORMATS, ExportError, check_request
from crowd_feedback.gold import (
    GoldError,
    add_gold_from_knowledge_base,
    gold_report,
    production_views,
    retire_gold,
)
from crowd_feedback.jobs import export_dir
from crowd_feedback.outcomes import PROMOTION_WINDOW_DAYS, Comparison, cached_effects, canary_comparison
from crowd_feedback.quality import overview as overview_figures
from crowd_feedback.retention import erase_conversation
from crowd_feedback.review import (
    CONTESTED_BELOW,
    CONTESTED_MIN_ANSWERS,
    ReviewError,
    judgement_answers,
    operator_resolve,
    shadow_agreement,
    weekly_agreement,
)
from crowd_feedback.reviewers import (
    ACTION_LABELS,
    MIN_PASSWORD,
    AccountError,
    account_events,
    create_api_token,
    create_user,
    list_accounts,
    list_api_tokens,
    reinstate,
    revoke_api_token,
    set_active,
    set_password,
)
from crowd_feedback.suggestions import (
    SuggestionError,
    adopt_suggestions,
    count_suggestions,
    dismiss_suggestion,
    intent_suggestions,
    open_suggestion,
)
from crowd_feedback.workforce import FAST_SECONDS, ReviewerPerformance, duration_text
from training.build import EmptyKnowledgeBaseError, changes_since_production, require_knowledge_base
from training.jobs import JobError, enqueue, job_view, request_cancel, unfinished
from training.kb_check import check_current_knowledge_base
from training.model_backup import copies_summary
from training.model_retention import ROLLBACKS_KEPT, model_roles, prune_models
from training.rollout import (
    RolloutError,
    apply_action,
    describe,
    precision_options,
    rollback_target,
    set_answer_precision,
)

operator = Blueprint("operator", __name__, url_prefix="/operator", template_folder="templates")
ALPHA_ITEMS = 20_000  # the overview's agreement: the newest judged items' judgements (a bounded read)


@operator.get("/")
@require_role("operator")
def overview() -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        # A clicked chip's own turn is not a question: left out, as in the trend. Counted as every turn by
        # status (the status index alone) less the chips' turns (the arm index): no walk over the whole log.
        statuses = dict(session.execute(select(Turn.status, func.count()).group_by(Turn.status)).all())
        for status, chips in session.execute(
            select(Turn.status, func.count()).where(Turn.served_by == SUGGESTION_ARM).group_by(Turn.status)
        ):
            statuses[status] -= chips
        queue = dict(
            session.execute(
                select(ReviewItem.status, func.count())
                .where(ReviewItem.is_gold.is_(False))
                .group_by(ReviewItem.status)
            ).all()
        )
        pairs = [
            {"text": p.text, "intent": p.intent, "weight": p.weight}
            for p in session.scalars(select(VerifiedPair).order_by(VerifiedPair.id.desc()).limit(100))
        ]
        answers = judgement_answers(session, latest=ALPHA_ITEMS)
        recent = judgement_answers(session, since=utcnow() - timedelta(days=7))
        batches = weekly_agreement(session)
        _, waiting = waiting_conversations(session, limit=0)
        suggestions = count_suggestions(session)
        figures = overview_figures(session, days=30, hours=helploop.settings.team_schedule)
        noted = set(reviewer_notes(session))
        intent_names = set(session.scalars(select(Intent.name)))
        kb_check = check_current_knowledge_base(session, engine=helploop.models.state.production)
        check_questions = session.scalar(
            select(func.count())
            .select_from(ReviewItem)
            .where(ReviewItem.is_gold.is_(True), ReviewItem.status == "pending")
        )
        privacy_reports = session.scalar(
            select(func.count())
            .select_from(ReviewItem)
            .where(ReviewItem.status == "pending", ReviewItem.privacy_reported_at.is_not(None))
        )
        changes = changes_since_production(session)
    alpha = krippendorff_alpha(answers) if answers else None
    alpha_recent = krippendorff_alpha(recent) if recent else None
    pairs_alpha = sorted(pairwise_alpha(answers, min_shared=5).items(), key=lambda kv: kv[1])[:10]
    serving = helploop.models.state
    # Shares of the questions: small talk ("hi", "thanks") and typed requests for a person are counted beside
    # them, not in them. Messages declined as off topic are in them (their own bar): the familiarity floor
    # also declines questions no intent covers yet, and an answered share without them would flatter.
    shown = ("answered", "clarify", "handoff", OFF_TOPIC)
    questions = sum(statuses.get(name, 0) for name in shown)
    bars = [
        (name.replace("_", " "), statuses.get(name, 0), statuses.get(name, 0) / max(questions, 1))
        for name in shown
    ]
    return render_template(
        "admin/operator.html",
        kb_check=kb_check,
        check_questions=check_questions,
        privacy_reports=privacy_reports,
        bars=bars,
        total=questions,
        small_talk=statuses.get(SMALL_TALK, 0),
        asked_for_person=statuses.get(ASKED_FOR_PERSON, 0),
        queue=queue,
        workforce=figures.workforce,
        reviewer_chart=reviewer_chart(figures.workforce.people),
        fast_seconds=FAST_SECONDS,
        pairs=pairs,
        production=serving.production.version if serving.production else None,
        canary=serving.canary.version if serving.canary else None,
        shadow=serving.shadow.version if serving.shadow else None,
        changes=changes,
        alpha=alpha,
        alpha_items=ALPHA_ITEMS if len({a.item for a in answers}) >= ALPHA_ITEMS else None,
        alpha_recent=alpha_recent,
        pairs_alpha=pairs_alpha,
        batches=batches,
        waiting=waiting,
        suggestions=suggestions,
        trend=trend_chart(figures.traffic),
        quality=figures.quality,
        audit_rate=helploop.policy.audit_rate,
        choices=figures.choices,
        complaints=figures.complaints,
        corrections=figures.corrections,
        choice_sets=figures.choice_sets,
        choices_scanned=figures.choices_scanned,
        pick_trust=figures.pick_trust,
        complaint_pick_trust=figures.complaint_pick_trust,
        mixups=figures.mixups,
        noted=noted,
        intent_names=intent_names,
        satisfaction=figures.satisfaction,
        team_response=figures.team_response,
        other_languages=figures.other_languages,
        asked_again=figures.asked_again,
        backups=backup_state(helploop.settings, models=False),
    )


RATE_SCALES = (0.05, 0.1, 0.2, 0.5, 1.0)  # tops of the thumbs-down line's scale


def trend_chart(days: list[DayTraffic], *, width: float = 600.0, height: float = 120.0) -> dict[str, Any]:
    """Geometry of the overview's 30-day chart: per day, a bar split by status share (answered at the bottom,
    then clarify turns the customer resolved by picking a choice, other clarify turns, handoffs, messages
    declined as off topic), the
    thumbs-down rate as a line on its own scale (0 to the smallest of 5, 10, 20, 50 and 100 % that holds the
    highest day: a rate of a few per cent would lie flat along the bottom of a 0-100 % axis), and a marker
    where a model was promoted."""
    step = width / max(len(days), 1)
    bars: list[dict[str, Any]] = []
    line: list[tuple[float, float]] = []
    markers: list[dict[str, Any]] = []
    rates = [d.unhelpful / d.turns for d in days if d.turns]
    rate_top = next(top for top in RATE_SCALES if max(rates, default=0.0) <= top)
    for i, day in enumerate(days):
        x = i * step
        if day.turns:
            y = height
            segments = (
                (day.answered, "#1e8e3e"),
                (day.picked, "#81c995"),
                (day.clarify - day.picked, "#f4b400"),
                (day.handoff, "#d93025"),
                (day.off_topic, "#9aa0a6"),
            )
            for count, colour in segments:
                h = height * count / day.turns
                y -= h
                bars.append({"x": x + 1, "y": y, "w": step - 2, "h": h, "fill": colour})
            rate = day.unhelpful / day.turns
            line.append((x + step / 2, height - rate / rate_top * height))
        for version in day.promoted:
            markers.append({"x": x + 1, "version": version, "day": day.day.isoformat()})
    labelled = [
        {"x": i * step + step / 2, "text": d.day.strftime("%d %b")}
        for i, d in enumerate(days)
        if i % 7 == len(days) % 7 - 1 or i == len(days) - 1
    ]
    latest = [d for d in days if d.turns][-7:]
    turns = max(sum(d.turns for d in latest), 1)
    answered = sum(d.answered for d in latest) / turns
    resolved = sum(d.answered + d.picked for d in latest) / turns
    return {
        "days": days,
        "step": step,
        "bars": bars,
        "line": " ".join(f"{x:.1f},{y:.1f}" for x, y in line),
        "points": line,
        "markers": markers,
        "labels": labelled,
        "rate_top": rate_top,
        "width": width,
        "height": height,
        "answered_last_7": answered if latest else None,
        "resolved_last_7": resolved if latest else None,
    }


SPEED_TICKS = (1, 3, 10, 30, 60, 300)  # seconds, on the reviewer chart's log axis
SPEED_RANGE = (1.0, 600.0)  # a claim lasts 10 minutes by default


def reviewer_chart(
    people: list[ReviewerPerformance], *, width: float = 600.0, height: float = 180.0
) -> dict[str, Any]:
    """Geometry of the reviewers' scatter: one dot per reviewer with resolved items and measured times, median
    seconds per judgement across (log scale), agreement with the final label up; the dot's area grows with
    the judgements. Fast and wrong sits bottom left, where a careless reviewer shows."""
    left, right, pad = 44.0, 10.0, 10.0  # pad: a dot at 0 % or 100 % stays whole
    low, high = (math.log10(v) for v in SPEED_RANGE)

    def x_of(seconds: float) -> float:
        clipped = min(max(seconds, SPEED_RANGE[0]), SPEED_RANGE[1])
        return left + (math.log10(clipped) - low) / (high - low) * (width - left - right)

    shown = [
        (p, p.median_seconds, p.agreement)
        for p in people
        if p.median_seconds is not None and p.agreement is not None
    ]
    # Agreement up from a floor under the lowest reviewer (in tens, at most 80 %): a crowd that agrees 83-88 %
    # spreads over the chart instead of sitting in one blob near the top of a 0-100 % scale.
    lowest = min((agreement for _, _, agreement in shown), default=0.0)
    floor = min(0.8, max(0.0, math.floor((lowest - 0.02) * 10) / 10))

    def y_of(share: float) -> float:
        return pad + (1.0 - (share - floor) / (1.0 - floor)) * (height - 2 * pad)

    most = max((p.judgements for p in people), default=1) or 1
    dots = [
        {
            "x": x_of(seconds),
            "y": y_of(agreement),
            "r": 3.0 + 6.0 * math.sqrt(p.judgements / most),
            "fill": "#d93025" if p.fast or p.status != "active" else "#1a73e8",
            "title": f"{p.username}: median {seconds:.1f} s, agreement {agreement:.0%}, "
            f"{p.judgements} judgements",
        }
        for p, seconds, agreement in shown
    ]
    return {
        "width": width,
        "height": height,
        "dots": dots,
        "x_ticks": [{"x": x_of(t), "text": f"{t} s" if t < 60 else f"{t // 60} min"} for t in SPEED_TICKS],
        "y_ticks": [{"y": y_of(v), "text": f"{v:.0%}"} for v in (floor, (floor + 1.0) / 2, 1.0)],
        "fast_x": x_of(FAST_SECONDS),
        "left": left,
    }


@operator.get("/runs")
@require_role("operator")
def runs() -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        rows = [
            {
                **job_view(j),
                "version": (j.result or {}).get("version"),
                "same_as": (j.result or {}).get("same_as"),
                "decision": ((j.result or {}).get("gate") or {}).get("decision"),
            }
            for j in session.scalars(select(Job).where(Job.kind == "train").order_by(Job.id.desc()).limit(30))
        ]
        agreement = shadow_agreement(session)
        canary = canary_comparison(session)
        row = current_deployment(session)
        shadow_version = row.shadow_version if row else None
        effects = cached_effects(session, row.id if row else None)
        history = [
            describe(d) + f" · {d.created_at:%Y-%m-%d %H:%M}"
            for d in session.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(10))
        ]
        rollback_to, no_rollback = rollback_target(session, row.production_version if row else None)
        changes = changes_since_production(session)
    active = any(r["status"] in ("queued", "running") for r in rows)
    return render_template(
        "admin/runs.html",
        runs=rows,
        history=history,
        active=active,
        agreement=agreement,
        canary=canary,
        effects=effects,
        effects_chart=effects_chart(effects),
        window_days=PROMOTION_WINDOW_DAYS,
        guard_min=helploop.settings.canary_guard_min_questions,
        self_training=helploop.settings.self_training,
        shadow_serving=shadow_version,
        rollback_to=rollback_to,
        no_rollback=no_rollback,
        changes=changes,
        train_every_hours=helploop.settings.train_every_hours,
    )


def effects_chart(effects: list[Comparison], *, width: float = 600.0, row: float = 26.0) -> dict[str, Any]:
    """A dumbbell per promotion: the share of questions answered (or resolved by a pick) before (grey) and
    after (green when better, red when worse, blue when the interval includes 0), on one 0-100 % axis."""
    left, right = 150.0, 20.0
    span = width - left - right
    colours = {"better": "#1e8e3e", "worse": "#d93025"}
    rows: list[dict[str, Any]] = []
    for effect in effects:
        resolved = effect.differences[1]
        before, after = resolved.baseline_share, resolved.candidate_share
        if before is None or after is None:
            continue
        rows.append(
            {
                "y": 14 + len(rows) * row,
                "label": f"{effect.at:%m-%d %H:%M} …{(effect.candidate.version or '')[-8:]}",
                "x_before": left + before * span,
                "x_after": left + after * span,
                "fill": colours.get(resolved.verdict, "#1a73e8"),
                "title": f"{effect.candidate.version}: {before:.1%} before, {after:.1%} after "
                f"({resolved.verdict})",
            }
        )
    ticks = [{"x": left + v * span, "text": f"{v:.0%}"} for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return {"width": width, "height": 14 + len(rows) * row + 8, "rows": rows, "ticks": ticks, "left": left}


@operator.post("/runs")
@require_role("operator")
def start_run() -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        try:
            require_knowledge_base(session)
        except EmptyKnowledgeBaseError:
            flash("Refused: the knowledge base is empty: import one on Knowledge first.")
            return redirect(url_for("operator.runs"))
        params: dict[str, Any] = {"onnx": True}
        if request.form.get("self_training_shown"):  # the box was on the form: unticked means off
            params["self_training"] = bool(request.form.get("self_training"))
        if request.form.get("fine_tune"):
            recipe: dict[str, Any] = {}  # the default recipe (training.finetune.FineTuneConfig) ...
            try:
                head_epochs = float(request.form.get("head_epochs") or 0)
            except ValueError:
                head_epochs = -1.0
            if not 0 <= head_epochs <= 100:
                flash("Refused: classification-head epochs must be a number from 0 to 100.")
                return redirect(url_for("operator.runs"))
            if head_epochs:
                recipe["head_epochs"] = head_epochs  # ... plus the opt-in classification stage
            params["fine_tune"] = recipe
        job = enqueue(session, kind="train", params=params, created_by=current_user.username)
        job_id = job.id
    flash(f"Training run {job_id} queued.")
    return redirect(url_for("operator.run_detail", job_id=job_id))


@operator.post("/runs/<int:job_id>/again")
@require_role("operator")
def run_again(job_id: int) -> Any:
    """Retrain anyway: the run's settings again, fitted even though nothing is new (a run that found a
    model with the same inputs offers this: the same inputs fitted again)."""
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.kind != "train":
            abort(404)
        try:
            require_knowledge_base(session)
        except EmptyKnowledgeBaseError:
            flash("Refused: the knowledge base is empty: import one on Knowledge first.")
            return redirect(url_for("operator.run_detail", job_id=job_id))
        params = {**(job.params or {}), "force": True}
        again = enqueue(session, kind="train", params=params, created_by=current_user.username)
        again_id = again.id
    flash(f"Training run {again_id} queued: it fits even though nothing is new.")
    return redirect(url_for("operator.run_detail", job_id=again_id))


@operator.get("/runs/<int:job_id>")
@require_role("operator")
def run_detail(job_id: int) -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            abort(404)
        view = {**job_view(job), "history": job.history}
        production = helploop.models.state.production
        version = (view["result"] or {}).get("version")
        try:
            model = model_by_version(session, version=version) if version else None
        except NotFoundError:
            model = None
        pruned = (
            {"at": model.pruned_at, "by": model.pruned_by} if model and model.pruned_at is not None else None
        )
    gate = view["result"].get("gate") or {}
    return render_template(
        "admin/run.html",
        run=view,
        gate=gate,
        charts=gate_charts(gate),
        production=production.version if production else None,
        pruned=pruned,
    )


GATE_PLOT = {"left": 44.0, "top": 28.0, "size": 220.0}  # the run page's two square plots, in SVG units
GATE_COLOURS = {"candidate": "#0b57d0", "production": "#d93025"}


def gate_charts(gate: dict[str, Any]) -> dict[str, Any] | None:
    """Geometry of the run page's risk-coverage curves and reliability diagram, candidate beside production.
    The precision axis starts at the lowest precision drawn, rounded down to a tenth (at most 0.9), so two
    curves near the top are not squeezed into a sliver; reliability circles grow with the rows in their bin
    and stay inside the plot."""
    models: dict[str, dict[str, Any]] = {
        name: gate[name]
        for name in GATE_COLOURS
        if isinstance(gate.get(name), dict) and gate[name].get("curves")
    }
    if not models:
        return None
    left, top, size = GATE_PLOT["left"], GATE_PLOT["top"], GATE_PLOT["size"]
    precisions = [float(p) for m in models.values() for _, p in m["curves"].get("risk_coverage", [])]
    low = min(0.9, math.floor(min(precisions, default=0.5) * 10) / 10)

    def x_of(value: float) -> float:
        return left + min(max(value, 0.0), 1.0) * size

    def y_of(value: float, floor: float = 0.0) -> float:
        share = (min(max(value, floor), 1.0) - floor) / (1.0 - floor)
        return top + size - share * size

    curves, circles = [], []
    largest = max(
        (b["count"] for m in models.values() for b in m["curves"].get("reliability", [])), default=1
    )
    for name, model in models.items():
        colour = GATE_COLOURS[name]
        points = " ".join(
            f"{x_of(float(c)):.1f},{y_of(float(p), low):.1f}"
            for c, p in model["curves"].get("risk_coverage", [])
        )
        curves.append({"name": name, "colour": colour, "points": points})
        for b in model["curves"].get("reliability", []):
            radius = 2.0 + 8.0 * (b["count"] / max(largest, 1)) ** 0.5
            circles.append(
                {
                    "name": name,
                    "colour": colour,
                    "x": min(max(x_of(b["confidence"]), left + radius), left + size - radius),
                    "y": min(max(y_of(b["accuracy"]), top + radius), top + size - radius),
                    "r": radius,
                    "count": b["count"],
                    "confidence": b["confidence"],
                    "accuracy": b["accuracy"],
                }
            )
    return {
        **GATE_PLOT,
        "right": left + size,
        "bottom": top + size,
        "curves": curves,
        "circles": circles,
        "legend": [{"name": n, "colour": GATE_COLOURS[n]} for n in models],
        "x_ticks": [{"x": x_of(v), "text": f"{v:g}"} for v in (0.0, 0.5, 1.0)],
        "precision_ticks": [{"y": y_of(v, low), "text": f"{v:.2f}"} for v in (low, (low + 1.0) / 2, 1.0)],
        "accuracy_ticks": [{"y": y_of(v), "text": f"{v:g}"} for v in (0.0, 0.5, 1.0)],
    }


@operator.post("/runs/<int:job_id>/cancel")
@require_role("operator")
def cancel_run(job_id: int) -> Any:
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.database.session() as session:
            request_cancel(session, job_id=job_id)
        flash(f"Cancel requested for run {job_id}.")
    except JobError as exc:
        flash(str(exc))
    return redirect(url_for("operator.run_detail", job_id=job_id))


@operator.post("/deploy")
@require_role("operator")
def deploy_action() -> Any:
    helploop = current_app.extensions["helploop"]
    form = request.form
    try:
        share = float(form.get("share") or 0.1)
    except ValueError:
        share = -1.0
    try:
        with helploop.database.session() as session:
            row = apply_action(
                session,
                action=form.get("action", ""),
                actor=current_user.username,
                reason=form.get("reason", ""),
                version=form.get("version") or None,
                share=share,
                override_reason=form.get("override_reason") or None,
            )
            flash(f"Done: {describe(row)}. Web workers follow within a few seconds.")
    except RolloutError as exc:
        flash(f"Refused: {exc}")
    # Back to the page the form was on (its own field: browsers may send no Referer), never off this site.
    back = form.get("next") or ""
    return redirect(back if on_this_site(back) else url_for("operator.runs"))


@operator.get("/models")
@require_role("operator")
def models() -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        roles = model_roles(session)
        rows = [
            {
                "version": m.version,
                "created_at": m.created_at,
                "accuracy": (m.metrics or {}).get("accuracy"),
                "decision": ((m.metrics or {}).get("gate") or {}).get("decision"),
                "encoders": (m.metrics or {}).get("encoders") or [],
                "pruned_at": m.pruned_at,
                "role": roles.get(m.version, ""),
            }
            for m in session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc()).limit(30))
        ]
        plan = serving_plan(session)
        history = answer_policy_history(session, limit=10)
    keep = _bounded_int(
        request.args.get("keep"), default=helploop.settings.keep_models or 5, low=1, high=10_000
    )
    preview = prune_models(
        helploop.database, helploop.settings, keep=keep, keep_rollbacks=ROLLBACKS_KEPT, actor="", dry_run=True
    )
    production = plan["production"] if plan else None
    options = precision_options(production[1]) if production else []
    in_force = history[0].target_precision if history else None
    return render_template(
        "admin/models.html",
        models=rows,
        prune=preview,
        keep=keep,
        production=production[0] if production else None,
        options=options,
        in_force=in_force,
        history=history,
        chart=precision_chart(options, in_force),
    )


def precision_chart(options: list[Any], in_force: float | None) -> dict[str, Any] | None:
    """Points of the precision–coverage trade-off for the Models page's SVG (x: precision asked for, y: share
    of held-out questions answered)."""
    if len(options) < 2:
        return None
    width, height, left, bottom = 560, 180, 50, 30
    low, high = options[0].target, options[-1].target

    def x(target: float) -> float:
        return left + (target - low) / max(high - low, 1e-9) * (width - left - 20)

    def y(coverage: float) -> float:
        return 10 + (1.0 - coverage) * (height - bottom - 10)

    built = next((o.target for o in options if o.built), None)
    chosen = in_force if in_force is not None else built
    return {
        "width": width,
        "height": height,
        "points": [
            {
                "x": round(x(o.target), 1),
                "y": round(y(o.coverage), 1),
                "label": f"{o.target:.2f}",
                "coverage": o.coverage,
                "chosen": chosen is not None and abs(o.target - chosen) < 1e-9,
            }
            for o in options
        ],
        "axis_y": height - bottom,
        "ticks": [{"y": round(y(c), 1), "label": f"{c:.0%}"} for c in (0.0, 0.25, 0.5, 0.75, 1.0)],
    }


@operator.post("/precision")
@require_role("operator")
def set_precision() -> Any:
    helploop = current_app.extensions["helploop"]
    raw = request.form.get("target", "")
    try:
        target = None if raw == "built" else float(raw)
    except ValueError:
        flash("Refused: choose one of the precisions offered.")
        return redirect(url_for("operator.models"))
    try:
        with helploop.database.session() as session:
            set_answer_precision(
                session,
                target_precision=target,
                actor=current_user.username,
                reason=request.form.get("reason", ""),
            )
        shown = "as each model was built" if target is None else f"{target:.2f}"
        flash(
            f"The bot answers at precision {shown} from its next poll (seconds; no retraining, no restart)."
        )
    except RolloutError as exc:
        flash(f"Refused: {exc}")
    return redirect(url_for("operator.models"))


def _bounded_int(raw: str | None, *, default: int, low: int, high: int) -> int:
    try:
        value = int(raw) if raw not in (None, "") else default
    except ValueError:
        return default
    return min(max(value, low), high)


@operator.post("/models/prune")
@require_role("operator")
def start_prune() -> Any:
    """Delete old model bundles as a job (``training.model_retention``): what serves, the last two a rollback
    returns to and the ``keep`` newest stay."""
    helploop = current_app.extensions["helploop"]
    raw = request.form.get("keep", "")
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        flash("Refused: keep must be a whole number from 1 to 10000 (the newest models whose bundles stay).")
        return redirect(url_for("operator.models"))
    with helploop.database.session() as session:
        job = enqueue(
            session,
            kind="prune_models",
            params={"keep": int(raw), "keep_rollbacks": ROLLBACKS_KEPT, "actor": current_user.username},
            created_by=current_user.username,
        )
        job_id = job.id
    flash(f"Pruning queued as job {job_id}: the list below updates once it has run.")
    return redirect(url_for("operator.models", keep=raw))


@operator.post("/reaggregate")
@require_role("operator")
def start_reaggregate() -> Any:
    helploop = current_app.extensions["helploop"]
    method = request.form.get("method", "hierarchical_ds")
    if method not in ("majority", "dawid_skene", "one_coin", "hierarchical_ds"):
        abort(400)
    with helploop.database.session() as session:
        job_id = enqueue(
            session, kind="reaggregate", params={"method": method}, created_by=current_user.username
        ).id
    flash(f"Re-aggregation job {job_id} queued ({method}): its progress is listed here.")
    return redirect(url_for("operator.exports"))


@operator.get("/accounts")
@require_role("operator")
def accounts() -> Any:
    return _accounts_page()


def _accounts_page(*, new_token: str | None = None) -> Any:
    helploop = current_app.extensions["helploop"]
    required_for = helploop.settings.two_factor_required_for
    with helploop.database.session() as session:
        tokens = [
            {
                "id": t.id,
                "username": t.user.username,
                "name": t.name,
                "prefix": t.prefix,
                "created_at": t.created_at,
                "last_used_at": t.last_used_at,
                "revoked_at": t.revoked_at,
            }
            for t in list_api_tokens(session)
        ]
        rows = list_accounts(session)
        events = [
            {
                "when": event.created_at,
                "username": username,
                "action": ACTION_LABELS.get(event.action, event.action),
                "actor": event.actor,
                "reason": event.reason,
            }
            for event, username in account_events(session, limit=50)
        ]
    return render_template(
        "admin/accounts.html",
        accounts=rows,
        events=events,
        min_password=MIN_PASSWORD,
        me=current_user.username,
        tokens=tokens,
        new_token=new_token,
        two_factor_required=lambda role: two_factor.required(role, required_for),
    )


@operator.post("/accounts/tokens")
@require_role("operator")
def create_token() -> Any:
    """A token for the signed-in operator, shown once on this response (never stored, never flashed into
    the session cookie)."""
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.database.session() as session:
            _, secret = create_api_token(
                session,
                username=current_user.username,
                name=request.form.get("name", ""),
                actor=current_user.username,
            )
    except AccountError as exc:
        flash(f"Refused: {exc}")
        return redirect(url_for("operator.accounts"))
    return _accounts_page(new_token=secret)


@operator.post("/accounts/tokens/<int:token_id>/revoke")
@require_role("operator")
def revoke_token(token_id: int) -> Any:
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.database.session() as session:
            revoke_api_token(session, token_id=token_id, actor=current_user.username)
        flash(f"Token {token_id} revoked: it stops working at once.")
    except AccountError as exc:
        flash(f"Refused: {exc}")
    return redirect(url_for("operator.accounts"))


@operator.post("/accounts")
@require_role("operator")
def create_account() -> Any:
    helploop = current_app.extensions["helploop"]
    form = request.form
    username = form.get("username", "").strip()
    try:
        with helploop.database.session() as session:
            create_user(
                session,
                username=username,
                password=form.get("password", ""),
                role=form.get("role", ""),
                actor=current_user.username,
            )
        flash(f"Created {form.get('role')} {username}.")
    except AccountError as exc:
        flash(f"Refused: {exc}")
    return redirect(url_for("operator.accounts"))


@operator.post("/accounts/<username>")
@require_role("operator")
def account_action(username: str) -> Any:
    """One form per account: reset password, deactivate, reactivate, reinstate, reset two-factor sign-in,
    unlink from single sign-on (each audited)."""
    helploop = current_app.extensions["helploop"]
    form = request.form
    action = form.get("action", "")
    actor = current_user.username
    reason = form.get("reason", "").strip()
    if action == "deactivate" and username == actor:
        flash("Refused: you cannot deactivate your own account.")
        return redirect(url_for("operator.accounts"))
    try:
        with helploop.database.session() as session:
            if action == "password":
                set_password(session, username=username, password=form.get("password", ""), actor=actor)
                done = f"New password set for {username}; their open sessions have ended."
            elif action in ("deactivate", "reactivate"):
                set_active(
                    session, username=username, active=action == "reactivate", actor=actor, reason=reason
                )
                done = f"{username} {action}d."
            elif action == "reinstate":
                reinstate(session, username=username, actor=actor, reason=reason)
                done = f"{username} reinstated: gold counts start again."
            elif action == "reset_two_factor":
                two_factor.reset(session, username=username, actor=actor, reason=reason)
                done = (
                    f"Two-factor sign-in reset for {username}: their open sessions have ended; they sign in "
                    "with the password and set it up again."
                )
            elif action == "unlink_sso":
                single_sign_on.unlink(session, username=username, actor=actor, reason=reason)
                done = (
                    f"{username} is unlinked from single sign-on: set a password for them to let them "
                    "sign in with it."
                )
            else:
                abort(400)
        flash(done)
    except AccountError as exc:
        flash(f"Refused: {exc}")
    return redirect(url_for("operator.accounts"))


CONVERSATIONS_PER_PAGE = 50


@operator.get("/conversations")
@require_role("operator")
def conversations() -> Any:
    """The turn log by conversation: the inbox of conversations waiting for a person first."""
    helploop = current_app.extensions["helploop"]
    view = request.args.get("view", "waiting")
    if view not in ("waiting", "all", "unhappy", "asked_again"):
        abort(400)
    search = request.args.get("q", "")[:200]
    asked_from = request.args.get("asked_from", "")[:PAGE_LIMIT]  # a page of the install page's table
    page = max(1, request.args.get("page", 1, type=int) or 1)
    with helploop.database.session() as session:
        rows, total = conversation_summaries(
            session,
            waiting_only=view == "waiting",
            max_rating=LOW_RATING if view == "unhappy" else None,
            asked_again_only=view == "asked_again",
            asked_from=asked_from,
            asked_since=utcnow() - timedelta(days=SEEN_DAYS) if asked_from else None,
            search=search,
            limit=CONVERSATIONS_PER_PAGE,
            offset=(page - 1) * CONVERSATIONS_PER_PAGE,
        )
        inbox = inbox_state(session)
    return render_template(
        "admin/conversations.html",
        rows=rows,
        total=total,
        view=view,
        search=search,
        asked_from=asked_from,
        # a link only to a web address: the filter's value comes from the address bar
        asked_from_link=asked_from.startswith(("https://", "http://")),
        asked_days=SEEN_DAYS,
        search_number=channels.chats_matching(search) is not None,
        page=page,
        pages=max(1, -(-total // CONVERSATIONS_PER_PAGE)),
        retention_days=helploop.settings.turn_retention_days,
        inbox=inbox,
        team=team_hours_view(helploop.settings),
    )


def team_hours_view(settings: Settings) -> dict[str, Any] | None:
    """The team's hours for chats as the inbox states them: the schedule, whether it is within them now, and
    what a customer handed to a person while nobody is online is told (None: no schedule set)."""
    hours = settings.team_schedule
    if hours is None:
        return None
    now = utcnow()
    back = hours.back_at(now)
    return {"schedule": hours.describe(), "back": when_back(back, now) if back is not None else None}


def inbox_state(session: Any) -> dict[str, Any]:
    """How many conversations wait for a person, and a signature of them (ids and last activity) that changes
    when one arrives, leaves, or a customer writes: what the inbox page polls to say there is news. And who
    else from the team has each waiting conversation open ("ana is typing"), which is not news: the page
    updates it in place."""
    rows, total = waiting_conversations(session, limit=INBOX_SIGNATURE_ROWS)
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row.id}|{row.last_activity_at.isoformat()}|{row.customer_wrote_last}\n".encode())
    open_by = presence.viewers(session, [row.id for row in rows], except_user=current_user.id)
    return {
        "waiting": total,
        "customer_wrote": sum(row.customer_wrote_last for row in rows),
        "signature": digest.hexdigest()[:16],
        # of the newest INBOX_SIGNATURE_ROWS: the page's rows and its poll read the same
        "open_by": {cid: presence.describe(people, brief=True) for cid, people in open_by.items()},
    }


INBOX_SIGNATURE_ROWS = 200


@operator.get("/conversations/inbox.json")
@require_role("operator")
def inbox_json() -> Any:
    with current_app.extensions["helploop"].database.session() as session:
        return jsonify(inbox_state(session))


@operator.get("/conversations/<conversation_id>")
@require_role("operator")
def conversation_detail(conversation_id: str) -> Any:
    """One transcript with everything the turn log keeps: original text, status, confidence, candidates, each
    member's scores, model version and arm, latency, feedback, and the review items the turn is part of."""
    return _conversation_page(conversation_id)


def _conversation_page(conversation_id: str, *, draft: dict[str, Any] | None = None) -> Any:
    """The conversation page; ``draft``: a reply that was not sent, back in the box (``text``, ``email``)."""
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        try:
            conversation = get_conversation(session, conversation_id=conversation_id)
        except NotFoundError:
            abort(404)
        turn_ids = [t.id for t in conversation.turns]
        in_review: dict[int, list[dict[str, Any]]] = {}
        for turn_id, item_id, status, reason in session.execute(
            select(ReviewItemTurn.turn_id, ReviewItem.id, ReviewItem.status, ReviewItemTurn.reason)
            .join(ReviewItem, ReviewItem.id == ReviewItemTurn.item_id)
            .where(ReviewItemTurn.turn_id.in_(turn_ids))
        ):
            in_review.setdefault(turn_id, []).append({"id": item_id, "status": status, "reason": reason})
        turns = [
            {
                "id": t.id,
                "at": t.created_at,
                "text": t.user_text,
                "status": t.status,
                "intent": t.intent,
                "answer": t.answer,
                "confidence": t.confidence,
                "candidates": (t.candidates or [])[:3],
                "members": {
                    name: (scores or [])[:3] for name, scores in sorted((t.member_scores or {}).items())
                },
                "model_version": t.model_version,
                "served_by": t.served_by,
                "latency_ms": t.latency_ms,
                "helpful": t.helpful,
                "comment": t.feedback_comment,
                "redacted_at": t.redacted_at,
                "review": in_review.get(t.id, []),
                "shown": shown_suggestions(t),  # the chips the reply offered
                "chosen": t.chosen_intent,  # the choice the customer clicked ("did you mean", "that's wrong")
                "instead_of": t.rated_turn_id,  # "that's wrong": the chips are choices instead of that answer
                "metadata_filter": t.metadata_filter,  # the page's metadata: the candidates were its intents
                "context": t.context_text,  # a follow-up: the earlier question it was read with
                "off_topic": t.off_topic,  # below the familiarity floor (declined, or handed over before)
                "read_as": t.read_as,  # misspelt words read as the knowledge base's own (bot.spelling)
                "vague": t.vague,  # a keyword message asked about rather than answered (bot.keywords)
                "ruled_out": t.ruled_out,  # the intent the customer said it is not about (bot.negation)
                "language": t.language,  # declined, written in another language (bot.language)
                "asked_again": t.asked_again,  # last answer asked again: times in a row (bot.repetition)
                # the web page it was written from, shown where it changed (the first, then a move)
                "page": t.page if t.page != before else None,
            }
            for t, before in zip(
                conversation.turns, [None, *(t.page for t in conversation.turns)], strict=False
            )
        ]
        info = {
            "id": conversation.id,
            "channel": conversation.channel,
            "channel_name": channels.NAMES.get(conversation.channel),  # a messaging app's
            "reply_window": window_span(conversation.channel),
            "window": reply_window_view(conversation_reply_window(session, conversation.id)),
            # WhatsApp: the approved template that asks the customer to write back, offered once it closed
            "template": helploop.settings.whatsapp_template if conversation.channel == "whatsapp" else None,
            "created_at": conversation.created_at,
            "handoff_requested_at": conversation.handoff_requested_at,
            "handed_off": conversation.handoff_requested_at is not None
            or any(t["status"] == HANDOFF for t in turns),
            "closed_at": conversation.handoff_closed_at,
            "closed_by": conversation.handoff_closed_by,
            "note": conversation.handoff_note,
            "contact": conversation.contact,
            "page": conversation.page_url,  # the web page the widget chat was last on (core.pages)
            "rating": conversation.rating,
            "rating_comment": conversation.rating_comment,
            "rated_agent": conversation.rated_agent,
            "agent": conversation.agent if agent_active(conversation) else None,
            "waiting": handoff_open(session, conversation_id=conversation.id),
        }
        info.update(email_choice(helploop.settings, conversation))
        sent = channels.delivery(session, conversation_id=conversation.id)
        messages = [live_message_view(m, sent.get(m.id)) for m in conversation.messages]
        canned = canned_answers(session, turns) if info["waiting"] else None
        others = ""
        if info["waiting"]:  # who else from the team is on it (and they learn that this reader is)
            presence.note_viewer(session, conversation_id=conversation.id, user_id=current_user.id)
            others = presence.describe(
                presence.colleagues(session, conversation_id=conversation.id, user_id=current_user.id)
            )
    return render_template(
        "admin/conversation.html",
        conversation=info,
        turns=turns,
        messages=messages,
        message_limit=MESSAGE_LIMIT,
        delivery_said=DELIVERY_SAID,
        canned=canned,
        colleagues=others,
        chatted=any(message["sender"] != NOTE for message in messages),  # a live chat, not only notes
        draft=draft,
        search=request.args.get("q", "")[:200],  # from a search's results: its words are marked
    )


def canned_answers(session: Any, turns: list[dict[str, Any]]) -> dict[str, Any]:
    """What the reply box offers to start from: the team's saved replies (core.saved_replies), then the
    knowledge base's answers: the intents the bot considered for the customer's last question first, then
    every intent by title."""
    rows = session.execute(select(Intent.name, Intent.title, Intent.answer).order_by(Intent.name)).all()
    by_name = {row.name: row for row in rows if row.answer}
    considered = [c.get("intent") for c in (turns[-1]["candidates"] if turns else [])]
    suggested = [name for name in dict.fromkeys(considered) if name in by_name]
    everything = sorted(by_name, key=lambda name: (by_name[name].title or name).lower())
    # The team's saved replies first; keyed so no intent name can be the same (intent names have no spaces).
    saved = {f"saved {reply.id}": reply for reply in saved_replies(session)}
    return {
        "saved": [(key, reply.title) for key, reply in saved.items()],
        "suggested": [(name, by_name[name].title or name) for name in suggested],
        "all": [(name, by_name[name].title or name) for name in everything],
        "answers": {name: row.answer for name, row in by_name.items()}
        | {key: reply.text for key, reply in saved.items()},
    }


@operator.get("/replies")
@require_role("operator")
def saved_replies_page() -> Any:
    return _saved_replies_page()


def _saved_replies_page(typed: dict[str, Any] | None = None, error: SavedReplyError | None = None) -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        replies = saved_replies(session)
        page = render_template(
            "admin/saved_replies.html",
            replies=replies,
            typed=typed,
            error={"field": error.field, "message": str(error)} if error is not None else None,
            title_limit=SAVED_TITLE_LIMIT,
            message_limit=MESSAGE_LIMIT,
        )
    return page, 400 if error is not None else 200


@operator.post("/replies")
@require_role("operator")
def save_saved_reply() -> Any:
    """Add a saved reply, or change one (``id``); a bad field shows the page again with what was typed."""
    helploop = current_app.extensions["helploop"]
    form = request.form
    reply_id = form.get("id", type=int)
    title, text = form.get("title", ""), form.get("text", "")
    typed = {"id": reply_id, "title": title, "text": text}
    try:
        with helploop.database.session() as session:
            reply = save_reply(
                session,
                title=title,
                text=text,
                actor=current_user.username,
                reply_id=reply_id,
            )
            saved_title = reply.title
    except NotFoundError:
        abort(404)
    except SavedReplyError as exc:
        return _saved_replies_page(typed, exc)
    flash(f"Saved: {saved_title}.")
    return redirect(url_for("operator.saved_replies_page"))


@operator.post("/replies/<int:reply_id>/delete")
@require_role("operator")
def delete_saved_reply(reply_id: int) -> Any:
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.database.session() as session:
            title = delete_reply(session, reply_id=reply_id).title
    except NotFoundError:
        abort(404)
    flash(f"Deleted: {title}.")
    return redirect(url_for("operator.saved_replies_page"))


def _human_agent() -> bool:
    return bool(current_app.extensions["helploop"].settings.messenger_human_agent)


def window_span(channel: str | None) -> str | None:
    """How long after the customer's last message the conversation's app takes the team's replies."""
    hours = channels.window_hours(channel or "", human_agent=_human_agent())
    return None if hours is None else channels.span_text(hours)


def conversation_reply_window(session: Session, conversation_id: str) -> channels.ReplyWindow | None:
    return channels.reply_window(session, conversation_id=conversation_id, human_agent=_human_agent())


def reply_window_view(
    window: channels.ReplyWindow | None, now: datetime | None = None
) -> dict[str, Any] | None:
    """What the live chat says of the app's reply window: until when the team's replies reach the customer,
    or, once it has closed, that a reply will not reach them until they write again."""
    if window is None:
        return None
    now = now or utcnow()
    name = channels.NAMES[window.channel]
    closes = window.closes_at
    if window.open(now):
        left = duration_text((closes - now).total_seconds())
        text = (
            f"{name} takes your replies until {closes:%d %b %H:%M} UTC ({left} from now: "
            f"{window.span} after the customer's last message)."
        )
    else:
        ago = duration_text((now - window.customer_at).total_seconds())
        text = (
            f"The customer last wrote {ago} ago, and {name} takes replies only within {window.span} "
            "of their last message: a reply now will not reach them, until they write again."
        )
    return {"open": window.open(now), "closes_at": closes.isoformat(), "text": text}


# How far each of the team's messages sent on by the outbox got (core.channels.delivery): to a messaging app,
# or by e-mail (core.mail.PROGRESS). The live chat's script reads the same words from the page.
DELIVERY_SAID = {
    "pending": "· sending",
    "sent": "· sent",
    "delivered": "· delivered",
    "read": "· read",
    "failed": "not delivered",
    "email_pending": "· e-mailing",
    "emailed": "· e-mailed",
    "email_failed": "e-mail not sent",
}
# The reply box ticks "Also e-mail it" when the customer has been quiet this long: they may have left.
EMAIL_QUIET_MINUTES = 10


def email_choice(
    settings: Settings, conversation: Conversation, now: datetime | None = None
) -> dict[str, Any]:
    """Whether the reply box offers to e-mail the reply (``email``: the address, whether ticked, how long ago
    the customer wrote, where their answer goes), or says how to set it up (``email_unset``): for a widget or
    API conversation whose customer left an e-mail address (a messaging app's chat is answered in the app)."""
    address = mail.email_address(conversation.contact)
    if address is None or conversation.channel in channels.CHANNELS:
        return {"email": None, "email_unset": False}
    if not settings.mail_on:
        return {"email": None, "email_unset": True}
    quiet = ((now or utcnow()) - as_utc(conversation.last_activity_at)).total_seconds()
    return {
        "email": {
            "address": address,
            "checked": quiet >= EMAIL_QUIET_MINUTES * 60,
            "ago": duration_text(max(quiet, 0.0)),
            "reply_to": settings.mail_reply_address,
        },
        "email_unset": False,
    }


def live_message_view(message: Any, sent: tuple[str, str | None] | None = None) -> dict[str, Any]:
    """``sent``: on a messaging app or by e-mail, how far the message got (core.channels.delivery)."""
    return {
        "id": message.id,
        "at": message.created_at.strftime("%H:%M:%S"),
        "sender": message.sender,
        "agent": message.agent,
        "text": message.text,
        "delivery": sent[0] if sent else None,
        "delivery_error": sent[1] if sent else None,
    }


def _live_chat_write(conversation_id: str, write: Callable[[Session], tuple[bool, str | None]]) -> Any:
    """Run ``write`` (it writes to the customer: a reply, a template; or refuses) in a transaction: whether
    it wrote, and what to tell the operator. Once committed, a message written is counted and the messaging
    apps' sender woken (sent now, not at the next look). Back to the live chat either way."""
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.database.session() as session:
            wrote, said = write(session)
        if wrote:
            helploop.metrics.live_chat_messages.labels(sender="agent").inc()
        if said:
            flash(said)
        for sender in (helploop.channel_sender, helploop.mail_sender):  # the apps', the e-mails'
            if sender is not None:
                sender.wake()
    except NotFoundError:
        abort(404)
    except (HandoffError, MessageError) as exc:
        flash(f"Refused: {exc}")
    return redirect(url_for("operator.conversation_detail", conversation_id=conversation_id) + "#live-chat")


@operator.post("/conversations/<conversation_id>/messages")
@require_role("operator")
def reply_to_customer(conversation_id: str) -> Any:
    """Write to the customer in the widget. The first reply takes the conversation over: the bot stays quiet
    and the customer's messages come here until the handoff is marked handled."""
    settings = current_app.extensions["helploop"].settings
    template = settings.whatsapp_template
    seen = request.form.get("seen", type=int)  # the newest live-chat message the page showed

    def reply(session: Session) -> tuple[bool, str | None]:
        message = agent_reply(
            session,
            conversation_id=conversation_id,
            agent=current_user.username,
            text=request.form.get("text", ""),
            seen=seen,
        )
        presence.stop_typing(session, conversation_id=conversation_id, user_id=current_user.id)
        if request.form.get("email"):  # also to the e-mail address the customer left (core.mail)
            conversation = get_conversation(session, conversation_id=conversation_id)
            if not email_choice(settings, conversation)["email"]:
                raise MessageError(
                    "replies by e-mail are not set up (HELPLOOP_SMTP_URL), or the customer left no e-mail "
                    "address here"
                )
            outgoing = mail.queue_email(
                session,
                message=message,
                contact=conversation.contact,
                subject=settings.mail_subject,
                sender=settings.mail_from,
            )
            return (
                True,
                f"Sent in the chat, and e-mailed to {outgoing.chat_key} (marked below once it has gone).",
            )
        window = conversation_reply_window(session, conversation_id)
        if window is None or window.open(utcnow()):
            return True, None
        instead = " Send the template instead: it asks them to write back." if template else ""
        return True, (
            f"Sent to {channels.NAMES[window.channel]}, but its reply window ({window.span} after the "
            f"customer's last message) closed at {window.closes_at:%d %b %H:%M} UTC: it will not reach the "
            "customer until they write again." + (instead if window.channel == "whatsapp" else "")
        )

    try:
        return _live_chat_write(conversation_id, reply)
    except RepliesCrossed as exc:  # nothing was sent: the reply goes back in the box, under theirs
        flash(
            f"Not sent: {exc}. Read what they wrote (below), then send yours if it still fits: it is back in "
            "the box."
        )
        draft = {"text": request.form.get("text", ""), "email": bool(request.form.get("email"))}
        return _conversation_page(conversation_id, draft=draft), 409


@operator.post("/conversations/<conversation_id>/template")
@require_role("operator")
def send_reopen_template(conversation_id: str) -> Any:
    """On WhatsApp, once the reply window has closed: send the approved template that asks the customer to
    write back (WhatsApp takes a template at any time; the window opens again when they answer). Refused
    while the window is open, where a reply reaches them (and WhatsApp charges for a template)."""
    template = current_app.extensions["helploop"].settings.whatsapp_template

    def send(session: Session) -> tuple[bool, str | None]:
        conversation = get_conversation(session, conversation_id=conversation_id)
        window = conversation_reply_window(session, conversation_id)
        if template is None or conversation.channel != "whatsapp":
            return (
                False,
                "Refused: no WhatsApp template is set up for this conversation (whatsapp_reopen_template).",
            )
        if window is not None and window.open(utcnow()):
            return False, (
                f"Refused: WhatsApp takes your replies until {window.closes_at:%d %b %H:%M} UTC; write to "
                "the customer instead."
            )
        name, language = template
        agent_reply(
            session,
            conversation_id=conversation_id,
            agent=current_user.username,
            text=f"Sent the WhatsApp template “{name}” ({language}): it asks the customer to write back.",
            template=template,
        )
        return True, f"Template “{name}” sent: once the customer writes back, your replies reach them again."

    return _live_chat_write(conversation_id, send)


@operator.get("/conversations/<conversation_id>/messages.json")
@require_role("operator")
def live_chat_messages(conversation_id: str) -> Any:
    """What the conversation page polls: live-chat messages after ``after``, and who is chatting."""
    helploop = current_app.extensions["helploop"]
    after = request.args.get("after", 0, type=int) or 0
    with helploop.database.session() as session:
        try:
            conversation = get_conversation(session, conversation_id=conversation_id)
        except NotFoundError:
            abort(404)
        sent = channels.delivery(session, conversation_id=conversation_id)
        waiting = handoff_open(session, conversation_id=conversation.id)
        others: list[presence.Colleague] = []
        if waiting:  # the reader is on it (typing a reply: ``typing=1``), and who else is
            presence.note_viewer(
                session,
                conversation_id=conversation_id,
                user_id=current_user.id,
                typing=request.args.get("typing") == "1",
            )
            others = presence.colleagues(session, conversation_id=conversation_id, user_id=current_user.id)
        return jsonify(
            {
                "agent": conversation.agent if agent_active(conversation) else None,
                "waiting": waiting,
                # the others from the team with this conversation open, and what the page says of them
                "colleagues": [person.as_json() for person in others],
                "colleagues_said": presence.describe(others),
                "messages": [
                    live_message_view(m, sent.get(m.id))
                    for m in messages_after(session, conversation_id=conversation_id, after=after, notes=True)
                ],
                # on a messaging app: whether each of the team's messages reached it so far
                "delivery": {str(i): {"status": st, "error": error} for i, (st, error) in sent.items()},
                # on WhatsApp and Messenger: until when replies reach the customer (it moves as they write)
                "reply_window": reply_window_view(conversation_reply_window(session, conversation_id)),
                "page": conversation.page_url,  # the widget's page: the customer may move on while waiting
            }
        )


@operator.post("/conversations/<conversation_id>/notes")
@require_role("operator")
def add_team_note(conversation_id: str) -> Any:
    """A note for the team on the conversation: in the transcript, never to the customer."""
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.database.session() as session:
            add_note(
                session,
                conversation_id=conversation_id,
                author=current_user.username,
                text=request.form.get("text", ""),
            )
        flash("Note added: the team sees it here, the customer never does.")
    except NotFoundError:
        abort(404)
    except MessageError as exc:
        flash(f"Refused: {exc}")
    return redirect(url_for("operator.conversation_detail", conversation_id=conversation_id) + "#live-chat")


@operator.post("/conversations/<conversation_id>/leave")
@require_role("operator")
def leave_conversation(conversation_id: str) -> Any:
    """The reader's page is going away (the script's beacon as the tab closes or moves on): the others stop
    seeing them on the conversation now rather than once their last poll has aged out."""
    with current_app.extensions["helploop"].database.session() as session:
        left = presence.leave(session, conversation_id=conversation_id, user_id=current_user.id)
    return jsonify({"left": left})


@operator.post("/conversations/<conversation_id>/close")
@require_role("operator")
def close_conversation_handoff(conversation_id: str) -> Any:
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.database.session() as session:
            unasked = mark_handled(session, conversation_id, note=request.form.get("note", ""))
        said = "Marked handled: it has left the inbox."
        if unasked is not None:
            said += f" The customer was not asked to rate the chat: {unasked}."
        flash(said)
    except NotFoundError:
        abort(404)
    except HandoffError as exc:
        flash(f"Refused: {exc}")
    return redirect(url_for("operator.conversation_detail", conversation_id=conversation_id))


def mark_handled(session: Session, conversation_id: str, *, note: str) -> str | None:
    """Close the conversation's handoff as the signed-in person; a messaging app's chat is told and asked to
    rate the chat while the app still takes messages. Returns why the customer was not asked (WhatsApp's or
    Messenger's reply window has closed: the question would only fail), else None."""
    window = conversation_reply_window(session, conversation_id)
    closed = window is not None and not window.open(utcnow())
    close_handoff(
        session,
        conversation_id=conversation_id,
        actor=current_user.username,
        note=note,
        handback=None if closed else current_app.extensions["helploop"].settings.channel_handed_back_message,
    )
    if window is None or not closed:
        return None
    return f"{channels.NAMES[window.channel]} takes messages only within {window.span} of their last one"


BULK_HANDLED_LIMIT = CONVERSATIONS_PER_PAGE  # one page of the inbox at a time


@operator.post("/conversations/handled")
@require_role("operator")
def close_handoffs() -> Any:
    """Mark the ticked conversations of the inbox handled at once (the customers who left overnight), with
    one note: each as its own page's button would, in one transaction. One handled meanwhile by someone else
    is left as it is and named."""
    ids = list(dict.fromkeys(request.form.getlist("ids")))
    back = redirect(url_for("operator.conversations", view="waiting"))
    if not ids:
        flash("Refused: tick the conversations to mark handled first.")
        return back
    if len(ids) > BULK_HANDLED_LIMIT:
        flash(f"Refused: {len(ids)} conversations ticked; at most {BULK_HANDLED_LIMIT} at a time.")
        return back
    handled, refused, unasked = 0, [], 0
    with current_app.extensions["helploop"].database.session() as session:
        for conversation_id in ids:
            try:
                unasked += (
                    mark_handled(session, conversation_id, note=request.form.get("note", "")) is not None
                )
            except (NotFoundError, HandoffError) as exc:  # checked before anything is written
                refused.append(f"{conversation_id[:8]}…: {exc}")
            else:
                handled += 1
    said = f"Marked {handled} conversation{'' if handled == 1 else 's'} handled: "
    said += "it has left the inbox." if handled == 1 else "they have left the inbox."
    if unasked:
        were = "was" if unasked == 1 else "were"
        said += (
            f" {unasked} on WhatsApp or Messenger past the reply window {were} not asked to rate the chat."
        )
    if refused:
        said += " Left as they were: " + "; ".join(refused) + "."
    flash(said)
    return back


def queue_search_compaction(session: Session, conversation_id: str, *, actor: str) -> int:
    """The ``search_compact`` job that merges the index after this erasure: one still queued takes this
    conversation too (one merge serves any number of erasures), else a new one. On SQLite, where the job
    has work, the erasure holds the write lock until it commits, so no worker can claim the queued job in
    between and merge before these deletions."""
    queued = session.scalars(
        select(Job).where(Job.kind == "search_compact", Job.status == "queued").order_by(Job.id).limit(1)
    ).first()
    if queued is None:
        params = {"conversations": [conversation_id]}
        return int(enqueue(session, kind="search_compact", params=params, created_by=actor).id)
    queued.params = {
        **queued.params,
        "conversations": [*queued.params.get("conversations", []), conversation_id],
    }
    return int(queued.id)


@operator.post("/conversations/<conversation_id>/erase")
@require_role("operator")
def erase_conversation_page(conversation_id: str) -> Any:
    """A customer asked to be forgotten. The form asks the operator to type "erase" first."""
    helploop = current_app.extensions["helploop"]
    if request.form.get("confirm", "").strip().lower() != "erase":
        flash('Refused: type "erase" to confirm.')
        return redirect(url_for("operator.conversation_detail", conversation_id=conversation_id))
    compact_job: int | None = None
    try:
        with helploop.database.session() as session:
            erased = erase_conversation(session, conversation_id=conversation_id, actor=current_user.username)
            if compacts(session.connection()):  # the index merge is a job: it rewrites the whole index
                compact_job = queue_search_compaction(session, conversation_id, actor=current_user.username)
    except NotFoundError:
        abort(404)
    # No older copy of the erased pages left in the write-ahead log (best effort: a long reader holds it).
    emptied = helploop.database.checkpoint()
    flash(
        f"Conversation erased: {erased['turns']} turns and {erased['review_items']} pending review items"
        " deleted."
        + (
            ""
            if compact_job is None
            else f" Job {compact_job} merges the search index, which keeps deleted texts' entries until then."
        )
        + (
            ""
            if emptied
            else " The database's write-ahead log is in use and still holds older copies of its pages until"
            " its next checkpoint."
        )
    )
    return redirect(url_for("operator.conversations"))


@operator.get("/suggestions")
@require_role("operator")
def suggestions() -> Any:
    """What customers ask that no intent answers, as reviewers found it, most asked first."""
    from admin_ui.review import known_intents

    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        rows = intent_suggestions(session)
    names, titles = known_intents()
    return render_template(
        "admin/suggestions.html",
        rows=rows,
        intents=sorted(names),
        titles=titles,
        none_fits_out_of_scope=helploop.settings.none_fits_out_of_scope,
    )


@operator.post("/suggestions/adopt")
@require_role("operator")
def adopt_suggestion() -> Any:
    helploop = current_app.extensions["helploop"]
    try:
        item_ids = [int(v) for v in request.form.getlist("item")]
    except ValueError:
        item_ids = []
    name = (request.form.get("name") or "").strip()
    try:
        with helploop.write_lock, helploop.database.session() as session:
            adopted = adopt_suggestions(
                session,
                item_ids=item_ids,
                name=name,
                title=request.form.get("title", ""),
                answer=request.form.get("answer", ""),
                actor=current_user.username,
            )
        flash(
            f"Intent {adopted.intent} created with {adopted.examples} example question"
            f"{'' if adopted.examples == 1 else 's'} (knowledge base version {adopted.kb_version_id}). "
            "Retrain to make the bot answer it."
        )
    except SuggestionError as exc:
        flash(f"Not created: {exc}")
    return redirect(url_for("operator.suggestions"))


@operator.post("/suggestions/<int:item_id>/existing")
@require_role("operator")
def add_suggestion_to_intent(item_id: int) -> Any:
    """The reviewers missed an intent that does answer it: settle the item with that intent (its questions
    become verified training pairs)."""
    from admin_ui.review import known_intents

    helploop = current_app.extensions["helploop"]
    label = (request.form.get("label") or "").strip()
    names, _ = known_intents()
    try:
        with helploop.write_lock, helploop.database.session() as session:
            open_suggestion(session, item_id=item_id)
            operator_resolve(
                session,
                item_id=item_id,
                label=label,
                known_intents=names,
                operator=session.get(User, current_user.id),
                policy=helploop.policy,
            )
        flash(f"Item {item_id} added to {label}: its questions are verified training pairs now.")
    except (SuggestionError, ReviewError) as exc:
        flash(f"Not changed: {exc}")
    return redirect(url_for("operator.suggestions"))


@operator.post("/suggestions/<int:item_id>/dismiss")
@require_role("operator")
def dismiss_suggestion_page(item_id: int) -> Any:
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.write_lock, helploop.database.session() as session:
            dismiss_suggestion(session, item_id=item_id, actor=current_user.username, policy=helploop.policy)
        kept_out = helploop.settings.none_fits_out_of_scope
        flash(
            f"Suggestion {item_id} dismissed"
            + (": retraining keeps its questions out of scope (handed to a person)." if kept_out else ".")
        )
    except SuggestionError as exc:
        flash(f"Not changed: {exc}")
    return redirect(url_for("operator.suggestions"))


def age_text(age: timedelta) -> str:
    if age < timedelta(days=2):
        return duration_text(age.total_seconds())
    return f"{age / timedelta(days=1):.1f} days"


def backup_state(settings: Settings, *, models: bool = True) -> dict[str, Any]:
    """What the jobs page says of backups: no schedule, or the scheduled files (SQLite copies or pg_dump
    archives) with the newest one's age, ``stale`` when the daily schedule has missed a day (or never
    ran); with ``models``, the bundle copies beside them (a walk over their files: not for the Overview)."""
    if not settings.backup_dir:
        return {"mode": "off"}
    files = stored_backups(Path(settings.backup_dir))
    latest = files[0] if files else None
    age = utcnow() - latest.taken_at if latest else None
    return {
        "mode": "scheduled",
        "dir": settings.backup_dir,
        "keep": settings.backup_keep,
        "files": files,
        "latest": latest,
        "age": age_text(age) if age is not None else None,
        "stale": age is None or age > BACKUP_STALE_AFTER,
        "models": copies_summary(Path(settings.backup_dir)) if models and settings.backup_models else None,
    }


@operator.get("/exports")
@require_role("operator")
def exports() -> Any:
    """Exports, and every background job but training runs (those have the Runs page): re-aggregation,
    retention, backups, model pruning; with their progress, a cancel button, and the backups on disk."""
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        rows = [
            job_view(j)
            for j in session.scalars(select(Job).where(Job.kind != "train").order_by(Job.id.desc()).limit(30))
        ]
    active = any(r["status"] in ("queued", "running") for r in rows)
    return render_template(
        "admin/exports.html",
        jobs=rows,
        active=active,
        formats=FORMATS,
        backups=backup_state(helploop.settings),
    )


@operator.post("/backups")
@require_role("operator")
def start_backup() -> Any:
    """Back up now: the scheduled backup's job (same folder, same rotation), queued for a worker."""
    helploop = current_app.extensions["helploop"]
    state = backup_state(helploop.settings)
    if state["mode"] != "scheduled":
        flash(
            "Refused: set HELPLOOP_BACKUP_DIR (a folder for the backups) first, or run "
            "`helploop db backup FILE`."
        )
        return redirect(url_for("operator.exports"))
    with helploop.database.session() as session:
        waiting = unfinished(session, kind="backup")
        if waiting is not None:
            flash(f"Backup job {waiting} is already queued or running.")
            return redirect(url_for("operator.exports"))
        job_id = enqueue(session, kind="backup", params={}, created_by=current_user.username).id
    flash(f"Backup job {job_id} queued.")
    return redirect(url_for("operator.exports"))


@operator.post("/jobs/<int:job_id>/cancel")
@require_role("operator")
def cancel_job(job_id: int) -> Any:
    """Cancel a background job (a training run's own page has its button)."""
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.database.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.kind == "train":
                abort(404)
            request_cancel(session, job_id=job_id)
        flash(f"Cancel requested for job {job_id}.")
    except JobError as exc:
        flash(str(exc))
    return redirect(url_for("operator.exports"))


@operator.post("/exports")
@require_role("operator")
def start_export() -> Any:
    helploop = current_app.extensions["helploop"]
    what, fmt = request.form.get("what", ""), request.form.get("format", "csv")
    try:
        check_request(what, fmt)
    except ExportError as exc:
        flash(f"Refused: {exc}")
        return redirect(url_for("operator.exports"))
    with helploop.database.session() as session:
        job_id = enqueue(
            session, kind="export", params={"what": what, "format": fmt}, created_by=current_user.username
        ).id
    flash(f"Export job {job_id} queued ({what}, {fmt}).")
    return redirect(url_for("operator.exports"))


@operator.get("/exports/<int:job_id>/download")
@require_role("operator")
def download_export(job_id: int) -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        job = session.get(Job, job_id)
        name = str((job.result or {}).get("file", "")) if job is not None else ""
        if job is None or job.kind != "export" or job.status != "succeeded" or not name:
            abort(404)
    if Path(name).name != name:  # a file name, never a path
        abort(404)
    file = export_dir(helploop.settings) / name
    if not file.is_file():
        abort(404)
    mimetype = "text/csv" if name.endswith(".csv") else "application/x-ndjson"
    return send_file(file, mimetype=mimetype, as_attachment=True, download_name=f"helploop-{name}")


ACTIVITY_SUMMARY_DAYS = 7


@operator.get("/activity")
@require_role("operator")
def activity() -> Any:
    """The ops events (deployment changes, the canary guard's included; finished jobs; suspended reviewers;
    escalated items), each with its delivery to the ops webhook, and a test button for the receiving end."""
    helploop = current_app.extensions["helploop"]
    settings = helploop.settings
    kind = request.args.get("kind", "") or None
    if kind is not None and kind not in OPS_EVENT_KINDS:
        abort(404)
    with helploop.database.session() as session:
        rows = [event_view(e, settings) for e in recent_events(session, kind=kind, limit=200)]
        counts = delivery_counts(session, since=utcnow() - timedelta(days=ACTIVITY_SUMMARY_DAYS))
        apps = (
            channels.counts(session, since=utcnow() - timedelta(hours=24))
            if settings.channels or settings.mail_on
            else {}
        )
        telegram_job = (  # the last time someone connected Telegram's webhook from here
            session.scalars(
                select(Job).where(Job.kind == TELEGRAM_CONNECT).order_by(Job.id.desc()).limit(1)
            ).first()
            if "telegram" in settings.channels
            else None
        )
        telegram_connect = job_view(telegram_job) if telegram_job is not None else None
    url = settings.ops_webhook_url
    base = settings.public_url.rstrip("/") or request.host_url.rstrip("/")
    return render_template(
        "admin/activity.html",
        channels=[(name, apps[name], f"{base}/channels/{name}/webhook") for name in settings.channels],
        names=channels.NAMES,
        events=rows,
        kind=kind,
        kinds=OPS_EVENT_KINDS,
        counts=counts,
        days=ACTIVITY_SUMMARY_DAYS,
        webhook_host=urlsplit(url).netloc if url else "",
        subscribed=settings.ops_event_kinds,
        signed=bool(settings.ops_webhook_secret),
        active=any(r["status"] == "pending" for r in rows) and bool(url),
        telegram_on="telegram" in settings.channels,
        telegram_connect=telegram_connect,
        public_https=settings.public_url.startswith("https://"),
        email=mail_view(settings, apps.get(mail.EMAIL)),
    )


def mail_view(settings: Settings, figures: channels.ChannelCounts | None) -> dict[str, Any] | None:
    """Replies by e-mail on the Activity page: the server (no password), the addresses, the last 24 hours."""
    if not settings.mail_on or figures is None:
        return None
    return {
        "server": mail.parse_smtp_url(settings.smtp_url).describe(),
        "sender": settings.mail_from,
        "reply_to": settings.mail_reply_address,
        "team": settings.handoff_emails,  # told of handoffs by e-mail (serving.notify)
        "counts": figures,
    }


TELEGRAM_CONNECT = "telegram_connect"


@operator.post("/activity/telegram/connect")
@require_role("operator")
def connect_telegram_webhook() -> Any:
    """Register Telegram's webhook at HELPLOOP_PUBLIC_URL: a job (Telegram is asked over the network), shown
    on this page and with the other jobs."""
    helploop = current_app.extensions["helploop"]
    settings = helploop.settings
    if "telegram" not in settings.channels:
        abort(404)
    if not settings.public_url.startswith("https://"):
        flash(
            "Refused: Telegram sends updates to https addresses only: set HELPLOOP_PUBLIC_URL to this app's."
        )
        return redirect(url_for("operator.activity"))
    with helploop.database.session() as session:
        waiting = unfinished(session, kind=TELEGRAM_CONNECT)
        if waiting is not None:
            flash(f"Connecting Telegram already: job {waiting}.")
            return redirect(url_for("operator.activity"))
        job_id = enqueue(
            session,
            kind=TELEGRAM_CONNECT,
            params={"url": channels.telegram_webhook_address(settings.public_url)},
            created_by=current_user.username,
        ).id
    flash(f"Connecting Telegram (job {job_id}): this page says when Telegram has taken the webhook.")
    return redirect(url_for("operator.activity"))


@operator.post("/activity/test")
@require_role("operator")
def send_test_event() -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        event = emit(
            session,
            "test",
            f"Test message from HelpLoop, sent by {current_user.username} from the Activity page.",
            path="/operator/activity",
            data={"actor": current_user.username},
        )
        event_id = event.id
    if helploop.settings.ops_webhook_url:
        flash(f"Test event {event_id} queued: a worker sends it within seconds.")
    else:
        flash(f"Test event {event_id} recorded, but no ops webhook is set (HELPLOOP_OPS_WEBHOOK_URL).")
    return redirect(url_for("operator.activity"))


@operator.post("/activity/<int:event_id>/resend")
@require_role("operator")
def resend_event(event_id: int) -> Any:
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.database.session() as session:
            resend(session, event_id=event_id)
        flash(f"Event {event_id} queued to be sent again.")
    except EventError as exc:
        flash(f"Not changed: {exc}")
    return redirect(url_for("operator.activity"))


@operator.get("/gold")
@require_role("operator")
def gold() -> Any:
    """Check questions: each with how many reviewers matched its key; contested ones first."""
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        rows = gold_report(session)
    answered = sum(r.answered for r in rows)
    return render_template(
        "admin/gold.html",
        rows=rows,
        answered=answered,
        share_right=sum(r.right for r in rows) / answered if answered else None,
        contested=sum(r.contested for r in rows),
        contested_min=CONTESTED_MIN_ANSWERS,
        contested_below=CONTESTED_BELOW,
        practice=helploop.policy.qualification_items,
    )


@operator.post("/gold")
@require_role("operator")
def add_gold() -> Any:
    helploop = current_app.extensions["helploop"]
    per_intent = request.form.get("per_intent", type=int) or 0
    settings = helploop.settings
    bot_view = production_views(helploop.models.state.production, **settings.replies)
    try:
        with helploop.write_lock, helploop.database.session() as session:
            added = add_gold_from_knowledge_base(
                session,
                per_intent=per_intent,
                policy=helploop.policy,
                seed=int(utcnow().timestamp()),
                bot_view=bot_view,
            )
        how = (
            "drawn where the model in production, not trained on them, was least sure"
            if bot_view is not None
            else "drawn at random: the model in production kept no held-out rows"
        )
        flash(f"Added {added} check questions from the knowledge base ({how}).")
    except GoldError as exc:
        flash(f"Not changed: {exc}")
    return redirect(url_for("operator.gold"))


@operator.post("/gold/<int:item_id>/retire")
@require_role("operator")
def retire_gold_item(item_id: int) -> Any:
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.write_lock, helploop.database.session() as session:
            changed = retire_gold(session, item_id=item_id)
        flash(
            f"Check question {item_id} retired; its answers no longer count in {changed} reviewer gold "
            f"record{'s' if changed != 1 else ''}."
        )
    except GoldError as exc:
        flash(f"Not changed: {exc}")
    return redirect(url_for("operator.gold"))
