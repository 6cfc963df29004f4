"""Reviewer pages: the queue (one item at a time, keyboard first), guidelines and the reviewer's own stats."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from admin_ui.setup import require_role
from bot.language import NAMES as LANGUAGE_NAMES
from core.kb_files import metadata_text
from core.knowledge_base import intent_examples, reviewer_notes
from core.models import Judgement, ReviewItem, ReviewItemTurn, Turn, User, VerifiedPair
from crowd_feedback.gold import GoldError, bot_view_of, gold_from_item
from crowd_feedback.guidelines import (
    Guidelines,
    GuidelinesError,
    current_guidelines,
    guidelines_diff,
    guidelines_history,
    guidelines_unread,
    guidelines_version,
    mark_guidelines_read,
    save_guidelines,
)
from crowd_feedback.quality import label_mixups
from crowd_feedback.review import (
    MAX_BULK_SETTLE,
    NEW_INTENT,
    NOT_A_QUESTION,
    REASONS,
    ReviewError,
    ReviewPolicy,
    changeable_judgement,
    customer_picks,
    find_items,
    in_practice,
    item_posterior,
    judgement_counts,
    member_questions,
    needs_conversation,
    next_item,
    operator_resolve,
    operator_resolve_many,
    practice_available,
    practice_feedback,
    read_after,
    redact_reported_item,
    release_claim,
    report_personal_data,
    reviewer_stats,
    reviewer_weight,
    submit_judgement,
    waiting_for,
    withdraw_judgement,
)
from crowd_feedback.workforce import FAST_SECONDS, answer_record

review = Blueprint(
    "review", __name__, url_prefix="/review", template_folder="templates", static_folder="static"
)


def typical_first() -> Callable[[str, str], tuple[float, int, str]] | None:
    """The order of an intent's examples on the review pages: those the production model, without having
    seen them, read surely as that intent first (by tenths of probability, and within a tenth the shortest:
    one clear line), then examples it never scored (added since it was built), then the ones it reads as
    another intent (ambiguous or mislabelled: a poor definition to show a reviewer). None without a model:
    the shortest first."""
    engine = current_app.extensions["helploop"].models.state.production
    if engine is None:
        return None

    def rank(name: str, text: str) -> tuple[float, int, str]:
        typical = engine.example_typicality(name, text)
        return (-round(typical, 1) if typical is not None else -0.5, len(text), text)

    return rank


def known_intents() -> tuple[list[str], dict[str, str]]:
    """Intent names and titles of the model in production (the labels a reviewer can choose)."""
    helploop = current_app.extensions["helploop"]
    engine = helploop.models.state.production
    if engine is None:
        return [], {}
    names = [label for label in engine.labels if label != "oos"]
    return names, {name: engine.knowledge[name].title for name in names if name in engine.knowledge}


def intent_tags() -> dict[str, str]:
    """Each intent's metadata as one line ("product: savings · region: uk"), for the intents that have any:
    in a knowledge base of several products it tells look-alike intents apart."""
    engine = current_app.extensions["helploop"].models.state.production
    if engine is None:
        return {}
    return {
        name: metadata_text(info.metadata, between=" · ", colon=": ")
        for name, info in engine.knowledge.items()
        if info.metadata
    }


@review.get("/")
@require_role("reviewer", "operator")
def home() -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        user = session.get(User, current_user.id)
        stats = reviewer_stats(session, reviewer=user)
        suspended_reason = user.suspended_reason
        practice = _practice_left(session, user, helploop.policy)
        unread = _unread(session, user)
        waiting = waiting_for(session, reviewer=user)
        last = last_answer(session, user, known_intents()[1])
    return render_template(
        "admin/review_home.html",
        waiting=waiting,
        stats=stats,
        suspended_reason=suspended_reason,
        practice=practice,
        unread=unread,
        last=last,
    )


def _unread(session: Any, user: User) -> dict[str, Any] | None:
    """For a reviewer who has not read the guidelines in use: whether they changed since they last read them
    (and when), for the banner that sends them there. Operators write the guidelines: no banner."""
    if user.role != "reviewer":
        return None
    guidelines = guidelines_unread(session, user=user)
    if guidelines is None:
        return None
    return {"changed": user.guidelines_read is not None, "at": guidelines.created_at}


def context_lines(context: list[dict[str, Any]] | None, titles: dict[str, str]) -> list[dict[str, str]]:
    """An item's earlier turns as the review pages show them: the customer's words (redacted), or the title of
    the chip they clicked (with the words of a choice typed instead, ``typed``), and, in words, what the bot
    did with them."""

    def title(intent: str | None) -> str:
        return titles.get(intent or "", intent or "an intent")

    lines = []
    for turn in context or []:
        status = turn.get("status")
        clicked = title(turn.get("intent")) if turn.get("clicked") else ""
        if status == "answered":
            bot = "answered it" if clicked else f"answered “{title(turn.get('intent'))}”"
            if turn.get("helpful") is False:
                bot += "; the customer marked it unhelpful"
        elif status == "clarify":
            bot = "asked “did you mean…”"  # the customer's pick, if any, is the click that follows
        elif status == "handoff":
            bot = "handed over to a person"
        elif status == "off_topic":
            bot = "said it has no answer to that (off topic) and offered a person"
        elif status == "asked_for_person":
            bot = "passed it to a person (the customer asked for one)"
        else:
            bot = "small talk"
        text = str(turn.get("text", ""))
        typed = text if clicked and not text.startswith("/") else ""  # a choice typed ("the second one")
        lines.append({"text": text, "clicked": clicked, "typed": typed, "bot": bot})
    return lines


def _bot_view(view: dict[str, Any]) -> list[dict[str, Any]]:
    """What the production model makes of a check question that has no turn behind it (one from the
    knowledge base), filled into ``view`` as a real item's logged answer would be: without it, the missing
    "the bot said" and suggestions would give every such check question away. Returns its candidates."""
    helploop = current_app.extensions["helploop"]
    engine = helploop.models.state.production
    if engine is None:
        return []
    # Where the model kept what members that had not seen the question made of it, that; else its own view
    # (it was trained on the question, so it is surer than on real traffic).
    prediction = engine.held_out_prediction(view["text"]) or engine.predict(view["text"])
    shown = bot_view_of(prediction, **helploop.settings.replies)
    view["bot_answer"], view["bot_confidence"], view["bot_intent"] = (
        shown.answer,
        shown.confidence,
        shown.intent,
    )
    return shown.candidates


def _practice_left(session: Any, user: User, policy: ReviewPolicy) -> dict[str, int] | None:
    """Practice done and its length, counting only the check questions there are to practise on: with
    none (a new installation) a reviewer starts on real questions and is told nothing about practice."""
    if not in_practice(user, policy):
        return None
    done = user.gold_answered
    available = practice_available(session, reviewer=user)
    if available == 0:
        return None
    return {"done": done, "of": done + min(policy.qualification_items - done, available)}


def item_language(session: Session, item_id: int) -> str | None:
    """The name of the other language the item's shown question (its first member turn) was written in, when
    the bot declined it for that (``bot.language``); None otherwise."""
    code = session.scalar(
        select(Turn.language)
        .join(ReviewItemTurn, ReviewItemTurn.turn_id == Turn.id)
        .where(ReviewItemTurn.item_id == item_id)
        .order_by(ReviewItemTurn.turn_id)
        .limit(1)
    )
    return LANGUAGE_NAMES.get(code, code) if code else None


@review.get("/next")
@require_role("reviewer", "operator")
def next_page() -> Any:
    helploop = current_app.extensions["helploop"]
    names, titles = known_intents()
    with helploop.database.session() as session:
        user = session.get(User, current_user.id)
        try:
            item = next_item(session, reviewer=user, policy=helploop.policy)
        except ReviewError as exc:
            flash(str(exc))
            return redirect(url_for("review.home"))
        last = last_answer(session, user, titles)
        if item is None:
            return render_template("admin/review_empty.html", last=last)
        view = {
            "id": item.id,
            "text": item.text,
            "cluster_size": item.cluster_size,
            "reasons": item.reasons,
            "bot_answer": item.bot_answer,
            "bot_confidence": item.bot_confidence,
            "bot_intent": item.bot_intent,
            "is_gold": item.is_gold,  # never shown: gold items look like any other (but in practice)
            "context": context_lines(item.context, titles),
            "language": None if item.is_gold else item_language(session, item.id),
        }
        candidates = list(item.candidates or [])
        if item.is_gold and not candidates:
            candidates = _bot_view(view)  # a check question from the knowledge base: no turn behind it
        suggestions = [c["intent"] for c in candidates if c.get("intent") in titles][:5]
        members = member_questions(session, item=item, limit=helploop.policy.members_shown)
        examples = intent_examples(
            session, names=suggestions, per_intent=2, exclude=item.text, rank=typical_first()
        )
        notes = reviewer_notes(session, names=suggestions)
        practice = _practice_left(session, user, helploop.policy) if item.is_gold else None
        unread = _unread(session, user)
    others = [n for n in sorted(names) if n not in suggestions]
    return render_template(
        "admin/review_item.html",
        item=view,
        suggestions=suggestions,
        examples=examples,
        notes=notes,
        members=members,
        others=others,
        titles=titles,
        tags=intent_tags(),
        new_intent=NEW_INTENT,
        not_a_question=NOT_A_QUESTION,
        practice=practice,
        unread=unread,
        last=last,
    )


@review.get("/items/<int:item_id>/intents/<name>")
@require_role("reviewer", "operator")
def intent_info(item_id: int, name: str) -> Any:
    """One intent as the review page describes its suggestions (title, two examples, the operators' note), for
    an intent a reviewer found by searching. The item's own question is never one of the examples: a check
    question from the knowledge base would otherwise show its own key."""
    helploop = current_app.extensions["helploop"]
    names, titles = known_intents()
    with helploop.database.session() as session:
        item = session.get(ReviewItem, item_id)
        if item is None or name not in names:
            what = "item" if item is None else "intent"
            return jsonify(error={"code": "not_found", "message": f"no such {what}"}), 404
        examples = intent_examples(
            session, names=[name], per_intent=2, exclude=item.text, rank=typical_first()
        ).get(name, [])
        note = reviewer_notes(session, names=[name]).get(name, "")
    return jsonify(
        name=name,
        title=titles.get(name, name),
        examples=examples,
        note=note,
        tags=intent_tags().get(name, ""),
    )


@review.post("/items/<int:item_id>")
@require_role("reviewer", "operator")
def submit(item_id: int) -> Any:
    helploop = current_app.extensions["helploop"]
    names, _ = known_intents()
    choice = request.form.get("choice") or ""
    if choice == "__search__":
        choice = (request.form.get("search") or "").strip()
    answer = request.form.get("answer_ok")
    answer_ok = {"yes": True, "no": False}.get(answer or "")
    # Member questions shown with a ticked "asks the same" box; an unticked one is not sent by the browser.
    kept = set(request.form.getlist("same"))
    member_checks = {text: text in kept for text in request.form.getlist("member")}
    # Shown only with earlier turns; an unticked box is not sent, hence the marker that it was shown.
    needs_context = "needs_context" in request.form if request.form.get("context_shown") else None
    with helploop.database.session() as session:
        user = session.get(User, current_user.id)
        try:
            with helploop.write_lock:
                item = submit_judgement(
                    session,
                    item_id=item_id,
                    reviewer=user,
                    label=choice,
                    answer_ok=answer_ok,
                    new_intent_text=request.form.get("new_intent_text"),
                    member_checks=member_checks,
                    known_intents=names,
                    policy=helploop.policy,
                    active_seconds=_seconds(request.form.get("active_seconds")),
                    needs_context=needs_context,
                )
                feedback = practice_feedback(session, user, item, choice, helploop.policy)
                session.commit()
        except ReviewError as exc:
            session.rollback()
            flash(f"Not saved: {exc}")
            return redirect(url_for("review.next_page"))
    if feedback is None:
        flash("Saved. Here is the next one.")
    else:
        verdict = "Right" if feedback.right else f"Not quite: you answered “{feedback.chosen}”"
        flash(
            f"Practice question {feedback.number} of {feedback.of}. {verdict}; the expected answer is "
            f"“{feedback.expected}”."
        )
    return redirect(url_for("review.next_page"))


def _seconds(raw: str | None) -> float | None:
    """The page's active time as sent (empty without JavaScript, or anything a browser made up: None)."""
    try:
        value = float(raw or "")
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


@review.post("/items/<int:item_id>/change")
@require_role("reviewer", "operator")
def change(item_id: int) -> Any:
    """Take back the reviewer's last answer and show its question again (``withdraw_judgement``)."""
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        user = session.get(User, current_user.id)
        try:
            with helploop.write_lock:
                withdraw_judgement(session, item_id=item_id, reviewer=user, policy=helploop.policy)
                session.commit()
        except ReviewError as exc:
            session.rollback()
            flash(f"Not changed: {exc}.")
            return redirect(url_for("review.next_page"))
    flash("Your answer was taken back: answer this question again.")
    return redirect(url_for("review.next_page"))


def last_answer(session: Any, user: User, titles: dict[str, str]) -> dict[str, Any] | None:
    """The reviewer's last answer as the review pages offer to change it, or None when it cannot be."""
    helploop = current_app.extensions["helploop"]
    judgement = changeable_judgement(session, reviewer=user, policy=helploop.policy)
    if judgement is None:
        return None
    if judgement.label == NEW_INTENT:
        label = "none fits" + (f" (“{judgement.new_intent_text}”)" if judgement.new_intent_text else "")
    elif judgement.label == NOT_A_QUESTION:
        label = "not a real question"
    else:
        label = titles.get(judgement.label, judgement.label)
    return {"item_id": judgement.item_id, "text": judgement.item.text, "label": label}


@review.post("/items/<int:item_id>/privacy")
@require_role("reviewer", "operator")
def report_privacy(item_id: int) -> Any:
    """The reviewer sees personal data that redaction missed: the item goes to an operator."""
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        try:
            with helploop.write_lock:
                report_personal_data(session, item_id=item_id, reviewer=session.get(User, current_user.id))
                session.commit()
        except ReviewError as exc:
            session.rollback()
            flash(f"Not reported: {exc}.")
            return redirect(url_for("review.next_page"))
    flash(
        "Thank you: an operator will take the personal data out before anyone sees it again. "
        "Here is the next one."
    )
    return redirect(url_for("review.next_page"))


@review.post("/items/<int:item_id>/redact")
@require_role("operator")
def redact_by_hand(item_id: int) -> Any:
    """An operator's hand redaction of an item's question and earlier turns; it goes back to the queue."""
    helploop = current_app.extensions["helploop"]
    context = request.form.getlist("context_text") if request.form.get("context_shown") else None
    with helploop.database.session() as session:
        try:
            with helploop.write_lock:
                redact_reported_item(
                    session,
                    item_id=item_id,
                    text=request.form.get("text") or "",
                    context_texts=context,
                    operator=session.get(User, current_user.id),
                )
                session.commit()
        except ReviewError as exc:
            session.rollback()
            flash(f"Not saved: {exc}.")
            return redirect(url_for("review.item_detail", item_id=item_id))
    flash(f"Item {item_id} redacted: reviewers see it so from now on.")
    return redirect(url_for("review.item_detail", item_id=item_id))


@review.post("/items/<int:item_id>/skip")
@require_role("reviewer", "operator")
def skip(item_id: int) -> Any:
    helploop = current_app.extensions["helploop"]
    with helploop.database.session() as session:
        if session.get(ReviewItem, item_id) is None:
            abort(404)
        release_claim(session, item_id=item_id, reviewer=session.get(User, current_user.id))
    # Skipping once puts the item back; the reviewer gets the next most urgent one they have not claimed.
    return redirect(url_for("review.next_page"))


HISTORY_PAGE = 50


def _page() -> int:
    """The ``page`` asked for (1 for anything that is not a page number)."""
    return max(request.args.get("page", 1, type=int) or 1, 1)


def _pages(total: int, size: int) -> int:
    return max((total + size - 1) // size, 1)


@review.get("/history")
@require_role("reviewer", "operator")
def history() -> Any:
    """The reviewer's own answers, newest first, with the label each item settled on, and the labels they
    most often give where the crowd settled on another (with that intent's note): how a reviewer learns."""
    helploop = current_app.extensions["helploop"]
    page = _page()
    with helploop.database.session() as session:
        records, total = answer_record(
            session, reviewer_id=current_user.id, limit=HISTORY_PAGE, offset=(page - 1) * HISTORY_PAGE
        )
        mixups = label_mixups(session, reviewer_id=current_user.id, min_times=1, limit=5)
        notes = reviewer_notes(session, names=[m.settled for m in mixups])
        stats = reviewer_stats(session, reviewer=session.get(User, current_user.id))
    _, titles = known_intents()
    # No "change your last answer" here: beside a list that never shows check questions, it would show one.
    return render_template(
        "admin/review_history.html",
        records=records,
        total=total,
        page=page,
        pages=_pages(total, HISTORY_PAGE),
        mixups=mixups,
        notes=notes,
        titles=titles,
        stats=stats,
        new_intent=NEW_INTENT,
        not_a_question=NOT_A_QUESTION,
    )


@review.get("/guidelines")
@require_role("reviewer", "operator")
def guidelines() -> Any:
    """The guidelines in use (reading them marks them read); operators also get the editor, the history and
    any earlier version (``?version=N``)."""
    helploop = current_app.extensions["helploop"]
    operator = current_user.role == "operator"
    wanted = request.args.get("version", type=int)
    with helploop.database.session() as session:
        current = current_guidelines(session)
        shown = current
        if wanted is not None and wanted != current.version:
            if not operator:
                abort(404)
            try:
                shown = guidelines_version(session, version=wanted)
            except GuidelinesError:
                abort(404)
        else:
            mark_guidelines_read(session, user_id=current_user.id, version=current.version)
        history = guidelines_history(session) if operator else []
    return _guidelines_page(shown, current, history, draft=None)


def _guidelines_page(
    shown: Guidelines,
    current: Guidelines,
    history: list[Guidelines],
    *,
    draft: str | None,
    error: str | None = None,
    status: int = 200,
) -> Any:
    return (
        render_template(
            "admin/guidelines.html",
            shown=shown,
            current=current,
            history=history,
            draft=current.text if draft is None else draft,
            error=error,
            # For an earlier version: what using it again would change in the guidelines in use.
            diff=guidelines_diff(current, shown) if shown.version != current.version else [],
        ),
        status,
    )


@review.post("/guidelines")
@require_role("operator")
def save_guidelines_page() -> Any:
    """Save the edited guidelines (or, with ``restore``, an earlier version's text) as a new version:
    reviewers are asked to read them again before their next item."""
    helploop = current_app.extensions["helploop"]
    text = request.form.get("text", "")
    with helploop.write_lock, helploop.database.session() as session:
        try:
            restore = request.form.get("restore", "").strip()
            if restore:
                if not restore.isdigit():
                    raise GuidelinesError(f"restore: {restore!r} is not a version number")
                text = guidelines_version(session, version=int(restore)).text
            saved = save_guidelines(session, text=text, author=current_user.username)
        except GuidelinesError as exc:
            session.rollback()
            current = current_guidelines(session)
            return _guidelines_page(
                current, current, guidelines_history(session), draft=text, error=str(exc), status=400
            )
        if saved is not None:
            mark_guidelines_read(session, user_id=current_user.id, version=saved.version)
    if saved is None:
        flash("Not changed: that is the text in use.")
    else:
        flash(
            f"Guidelines saved as version {saved.version}. "
            "Reviewers are asked to read them before their next item."
        )
    return redirect(url_for("review.guidelines"))


ITEMS_PAGE = 200


@review.get("/items")
@require_role("operator")
def items() -> Any:
    """Review items by status, narrowed by words, routing reason and the bot's intent; any number of them
    can be ticked and settled with one label."""
    helploop = current_app.extensions["helploop"]
    status = request.args.get("status", "pending")
    filters = {
        key: (request.args.get(key) or "").strip() for key in ("q", "reason", "bot_intent", "reported")
    }
    page = _page()
    with helploop.database.session() as session:
        try:
            rows, total = find_items(
                session,
                status=status,
                text=filters["q"],
                reason=filters["reason"],
                bot_intent=filters["bot_intent"],
                reported=filters["reported"] == "1",
                limit=ITEMS_PAGE,
                offset=(page - 1) * ITEMS_PAGE,
            )
        except ReviewError as exc:
            abort(400, str(exc))
        counts = judgement_counts(session, item_ids=[r.id for r in rows])
        view = [
            {
                "id": r.id,
                "text": r.text,
                "reasons": r.reasons,
                "bot_intent": r.bot_intent,
                "size": r.cluster_size,
                "judgements": counts.get(r.id, 0),
                "required": r.required_judgements,
                "label": r.resolved_label,
                "confidence": r.resolved_confidence,
            }
            for r in rows
        ]
    names, titles = known_intents()
    return render_template(
        "admin/items.html",
        items=view,
        status=status,
        total=total,
        page=page,
        pages=_pages(total, ITEMS_PAGE),
        filters=filters,
        reasons=REASONS,
        max_bulk=MAX_BULK_SETTLE,
        intents=sorted(names),
        special=[NEW_INTENT, NOT_A_QUESTION],
    )


@review.post("/items/settle")
@require_role("operator")
def settle_many() -> Any:
    """Settle every ticked item with one label, all or none."""
    helploop = current_app.extensions["helploop"]
    names, _ = known_intents()
    label = (request.form.get("label") or "").strip()
    raw = request.form.getlist("item")
    back = {key: request.form.get(key, "") for key in ("status", "q", "reason", "bot_intent")}
    with helploop.database.session() as session:
        try:
            if not all(value.isdigit() for value in raw):
                raise ReviewError("item ids must be numbers")
            with helploop.write_lock:
                settled = operator_resolve_many(
                    session,
                    item_ids=[int(value) for value in raw],
                    label=label,
                    known_intents=names,
                    operator=session.get(User, current_user.id),
                    policy=helploop.policy,
                )
                session.commit()
            flash(f"{len(settled)} item{'' if len(settled) == 1 else 's'} settled as {label}.")
        except ReviewError as exc:
            session.rollback()
            flash(f"Nothing settled: {exc}")
    query: dict[str, Any] = {k: v for k, v in back.items() if v}
    return redirect(url_for("review.items", **query))


@review.get("/items/<int:item_id>")
@require_role("operator")
def item_detail(item_id: int) -> Any:
    """Everything about one item for an operator: the questions, the bot's shortlist, each judgement with the
    reviewer's weight, the customers' "did you mean" choice, the posterior over labels (why it resolved or
    escalated), its training pairs."""
    helploop = current_app.extensions["helploop"]
    names, titles = known_intents()
    with helploop.database.session() as session:
        item = session.get(ReviewItem, item_id)
        if item is None:
            abort(404)
        members = member_questions(session, item=item, limit=None)
        judgements = []
        checks: dict[str, list[bool]] = {text: [] for text in members}
        for judgement, reviewer in session.execute(
            select(Judgement, User)
            .join(User, User.id == Judgement.reviewer_id)
            .where(Judgement.item_id == item.id)
            .order_by(Judgement.id)
        ):
            judgements.append(
                {
                    "reviewer": reviewer.username,
                    "weight": 0.0 if reviewer.suspended_at else reviewer_weight(reviewer, helploop.policy),
                    "suspended": reviewer.suspended_at is not None,
                    "label": judgement.label,
                    "proposal": judgement.new_intent_text,
                    "answer_ok": judgement.answer_ok,
                    "at": judgement.created_at,
                    "seconds": judgement.seconds,
                    "needs_context": judgement.needs_context,
                }
            )
            for text, same in (judgement.member_checks or {}).items():
                checks.setdefault(text, []).append(bool(same))
        posterior = (
            item_posterior(session, item=item, known_intents=names, policy=helploop.policy)
            if judgements
            else {}
        )
        top = sorted(((p, label) for label, p in posterior.items() if p >= 0.005), reverse=True)[:6]
        pick = customer_picks(session, item_ids=[item.id]).get(item.id)
        member_ids = select(ReviewItemTurn.turn_id).where(ReviewItemTurn.item_id == item.id)
        declined = session.scalar(  # the choices offered for its question (or its answer's) declined
            select(func.count())
            .select_from(Turn)
            .where(
                Turn.declined_at.is_not(None),
                or_(Turn.id.in_(member_ids), Turn.rated_turn_id.in_(member_ids)),
            )
        )
        view = {
            "id": item.id,
            "status": item.status,
            "gold": item.is_gold,
            "gold_label": item.gold_label,
            "kb_intent": item.kb_intent,
            "text": item.text,
            "reasons": item.reasons or [],
            "size": item.cluster_size,
            "required": item.required_judgements,
            "bot_intent": item.bot_intent,
            "bot_answer": item.bot_answer,
            "bot_confidence": item.bot_confidence,
            "candidates": item.candidates or [],
            "label": item.resolved_label,
            "confidence": item.resolved_confidence,
            "resolved_at": item.resolved_at,
            "settled_by": item.settled_by,
            "created_at": item.created_at,
            "context": context_lines(item.context, titles),
            "context_texts": [turn.get("text", "") for turn in item.context or []],
            "needs_conversation": needs_conversation(session, item=item),
            "read_after": read_after(session, item=item),
            "privacy_reported_at": item.privacy_reported_at,
            "privacy_reported_by": item.privacy_reported_by,
            "declined": int(declined or 0),
        }
        pairs = [
            (p.text, p.intent, p.weight)
            for p in session.scalars(select(VerifiedPair).where(VerifiedPair.item_id == item.id))
        ]
    return render_template(
        "admin/item.html",
        item=view,
        members=[(text, sum(v), len(v) - sum(v)) for text, v in checks.items()],
        judgements=judgements,
        posterior=[(label, p) for p, label in top],
        pick=pick,
        threshold=helploop.policy.posterior_threshold,
        pairs=pairs,
        titles=titles,
        intents=sorted(names),
        special=[NEW_INTENT, NOT_A_QUESTION],
        fast_seconds=FAST_SECONDS,
    )


@review.post("/items/<int:item_id>/gold")
@require_role("operator")
def make_gold(item_id: int) -> Any:
    """Use a resolved item's question, with its settled label, as a new check question."""
    helploop = current_app.extensions["helploop"]
    try:
        with helploop.write_lock, helploop.database.session() as session:
            gold = gold_from_item(session, item_id=item_id, policy=helploop.policy)
            flash(f"Check question {gold.id} added: “{gold.text}” → {gold.gold_label}.")
    except GoldError as exc:
        flash(f"Not changed: {exc}")
    return redirect(url_for("review.item_detail", item_id=item_id))


@review.post("/items/<int:item_id>/settle")
@require_role("operator")
def settle(item_id: int) -> Any:
    """An operator settles an escalated (or any) item; its label counts as verified."""
    helploop = current_app.extensions["helploop"]
    names, _ = known_intents()
    with helploop.database.session() as session:
        try:
            with helploop.write_lock:
                operator_resolve(
                    session,
                    item_id=item_id,
                    label=(request.form.get("label") or "").strip(),
                    known_intents=names,
                    operator=session.get(User, current_user.id),
                    policy=helploop.policy,
                )
                session.commit()
            flash(f"Item {item_id} settled.")
        except ReviewError as exc:
            session.rollback()
            flash(f"Not saved: {exc}")
    if request.form.get("back") == "item":
        return redirect(url_for("review.item_detail", item_id=item_id))
    return redirect(url_for("review.items", status=request.form.get("back", "escalated")))
