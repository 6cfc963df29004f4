"""``helploop doctor``: is this installation able to serve, learn and recover? One line per check.

Each check says ``ok``, ``warn`` (works, but something an operator should know: no backups, no one told of
failures, a queue no worker or reviewer takes) or ``fail`` (something that stops the bot from answering or
the loop from running: the database, the schema, the model bundles and their encoders). The command exits 1
when any check fails, so a deployment pipeline can run it after an upgrade or a restore.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from core.backup import BACKUP_STALE_AFTER, pg_tools_problem, stored_backups
from core.db import Database, sqlite_path
from core.settings import PLACEHOLDER_SECRET, Settings

OK, WARN, FAIL = "ok", "warn", "fail"
QUEUED_TOO_LONG = timedelta(minutes=10)  # a job queued this long: no worker is taking jobs
LOW_DISK_BYTES = 1 << 30  # below 1 GiB free, the next bundle or backup may not fit
REVIEW_BEHIND = timedelta(days=7)  # a pending review item older than this: reviewers are not keeping up


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _database(settings: Settings, database: Database) -> Check:
    try:
        with database.engine.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - whatever the driver raises, the answer is "unreachable"
        first_line = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        return Check("database", FAIL, f"cannot reach {database.engine.url.render_as_string()}: {first_line}")
    where = sqlite_path(settings.database_url) or database.engine.url.render_as_string(hide_password=True)
    return Check("database", OK, f"{database.engine.dialect.name} at {where}")


def _schema(database: Database) -> Check:
    from core import migrate

    current, head = migrate.current_revision(database.engine), migrate.head_revision()
    if current != head:
        return Check(
            "schema",
            FAIL,
            f"revision {current or 'none'}, this version needs {head}: run `helploop db upgrade`",
        )
    from core.turn_search import index_state

    with database.engine.connect() as connection:
        search = index_state(connection)
    if search == "stale":
        return Check(
            "schema",
            WARN,
            f"at revision {head}; the conversation search index misses its triggers (new turns are not "
            "found): run `helploop db search-index`",
        )
    if search == "missing":
        return Check("schema", OK, f"at revision {head} (no search index: a search reads every turn)")
    return Check("schema", OK, f"at revision {head}")


def _bundle_problem(path: str) -> str | None:
    """Why the bundle at ``path`` could not serve (None: it can): its files, and each encoder it needs."""
    from bot.encoders import EncoderUnavailableError, resolve_encoder_path
    from bot.engine import AnsweringEngine, BundleError

    try:
        engine = AnsweringEngine.load(path)
    except BundleError as exc:
        return str(exc)
    for encoder in engine.config.encoder_configs():
        name = str(encoder["name"])
        if name in engine.encoders:
            continue  # served from the bundle's own ONNX export
        source = str(encoder["source"])
        if (Path(path) / source).is_dir():
            continue  # a fine-tuned encoder inside the bundle
        try:
            resolve_encoder_path(source)
        except EncoderUnavailableError as exc:
            return f"encoder {name}: {exc}"
    return None


def _models(database: Database) -> Check:
    from core.registry import serving_plan

    with database.session() as session:
        plan = serving_plan(session)
    if plan is None:
        return Check(
            "models", FAIL, "no model is registered: build one (`helploop build` or `helploop train`)"
        )
    said, failed = [], []
    for arm in ("production", "canary", "shadow"):
        if plan[arm] is None:
            continue
        version, path = plan[arm]
        problem = _bundle_problem(path)
        if problem:
            failed.append(f"{arm} {version}: {problem}")
        else:
            said.append(f"{arm} {version}")
    if failed:
        return Check("models", FAIL, "; ".join(failed))
    return Check("models", OK, ", ".join(said) + " (bundles and encoders present)")


def _knowledge_base(database: Database) -> Check:
    from core.models import ExampleQuestion, Intent

    with database.session() as session:
        intents = session.scalar(select(func.count()).select_from(Intent)) or 0
        examples = session.scalar(select(func.count()).select_from(ExampleQuestion)) or 0
    if not intents:
        return Check("knowledge base", FAIL, "empty: import one (`helploop kb import FILE`)")
    return Check("knowledge base", OK, f"{intents} intents, {examples} example questions")


def _workers(settings: Settings, database: Database, now: datetime) -> Check:
    from core.models import Job, as_utc

    with database.session() as session:
        queued = session.scalars(select(Job).where(Job.status == "queued")).all()
        running = session.scalars(select(Job).where(Job.status == "running")).all()
    waiting = [j for j in queued if now - as_utc(j.created_at) > QUEUED_TOO_LONG]
    lost = [j for j in running if j.lease_expires_at is not None and as_utc(j.lease_expires_at) < now]
    notes = []
    if waiting:
        where = (
            "the web process runs one (HELPLOOP_EMBEDDED_WORKER): is the web app running?"
            if settings.embedded_worker
            else "start `helploop worker`"
        )
        oldest = min(as_utc(j.created_at) for j in waiting)
        notes.append(
            f"{len(waiting)} job(s) queued for over {QUEUED_TOO_LONG.seconds // 60} minutes (oldest since "
            f"{oldest:%Y-%m-%d %H:%M} UTC): no worker is taking jobs; {where}"
        )
    if lost:
        notes.append(
            f"{len(lost)} running job(s) whose worker stopped heartbeating: retried once a worker runs"
        )
    if notes:
        return Check("workers", WARN, "; ".join(notes))
    return Check("workers", OK, f"{len(queued)} queued, {len(running)} running")


def _review_queue(settings: Settings, database: Database, now: datetime) -> Check:
    """The crowd loop: items waiting, escalated to an operator, people to review them, check questions to
    measure them by."""
    from core.models import ReviewItem, User, as_utc
    from crowd_feedback.gold import RETIRED

    with database.session() as session:
        pending = session.scalars(
            select(ReviewItem.created_at).where(ReviewItem.is_gold.is_(False), ReviewItem.status == "pending")
        ).all()
        escalated = session.scalar(
            select(func.count())
            .select_from(ReviewItem)
            .where(ReviewItem.is_gold.is_(False), ReviewItem.status == "escalated")
        )
        gold = session.scalar(
            select(func.count())
            .select_from(ReviewItem)
            .where(ReviewItem.is_gold.is_(True), ReviewItem.status != RETIRED)
        )
        reviewers = session.scalar(
            select(func.count()).select_from(User).where(User.active.is_(True), User.suspended_at.is_(None))
        )
    oldest = max((now - as_utc(t) for t in pending), default=None)
    said = f"{len(pending)} pending"
    if oldest is not None:
        said += f" (oldest {oldest.total_seconds() / 86400:.1f} days)"
    said += f", {escalated} escalated, {gold} check questions, {reviewers} active accounts"
    notes = []
    if escalated:
        notes.append(f"{escalated} item(s) escalated to an operator wait on the Review items page")
    if pending and not reviewers:
        notes.append("items wait but no account can review them (`helploop users create --role reviewer`)")
    if oldest is not None and oldest > REVIEW_BEHIND:
        notes.append(f"reviewers are behind: an item has waited over {REVIEW_BEHIND.days} days")
    if settings.gold_rate > 0 and reviewers and not gold:
        notes.append("no check questions: reviewers' accuracy is not measured (`helploop crowd gold`)")
    if notes:
        return Check("review queue", WARN, said + ": " + "; ".join(notes))
    return Check("review queue", OK, said)


def _backups(settings: Settings, now: datetime) -> Check:
    if not settings.backup_dir:
        return Check(
            "backups",
            WARN,
            "no scheduled backups: set HELPLOOP_BACKUP_DIR (or run `helploop db backup FILE`)",
        )
    if not settings.is_sqlite:
        problem = pg_tools_problem(settings.database_url)
        if problem:
            return Check("backups", FAIL, f"the daily pg_dump cannot run: {problem}")
    files = stored_backups(Path(settings.backup_dir))
    if not files:
        return Check("backups", WARN, f"none in {settings.backup_dir} yet (a worker takes the first one)")
    age = now - files[0].taken_at
    detail = f"newest {files[0].path.name}, {age.total_seconds() / 3600:.1f} h old, {len(files)} kept"
    if age > BACKUP_STALE_AFTER:
        return Check("backups", WARN, detail + ": the daily backup has missed a day")
    return Check("backups", OK, detail)


def _disk(settings: Settings) -> Check:
    places = {"models": Path(settings.model_dir)}
    database_file = sqlite_path(settings.database_url)
    if database_file is not None:
        places["database"] = database_file.parent
    if settings.backup_dir:
        places["backups"] = Path(settings.backup_dir)
    low, said = [], []
    for what, path in places.items():
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent  # a folder not made yet: the disk it will be on
        free = shutil.disk_usage(existing).free
        said.append(f"{what} {free / (1 << 30):.1f} GiB free")
        if free < LOW_DISK_BYTES:
            low.append(f"{what} ({path}): {free / (1 << 20):.0f} MiB free")
    if low:
        return Check("disk", WARN, "low on space: " + "; ".join(low))
    return Check("disk", OK, ", ".join(said))


def _rate_limits(settings: Settings) -> Check:
    if not settings.ratelimit_enabled:
        return Check(
            "rate limits", WARN, "off (HELPLOOP_RATELIMIT_ENABLED=false): login and chat are unlimited"
        )
    url = settings.ratelimit_storage_url
    if url.startswith("memory://"):
        return Check(
            "rate limits", OK, "counted in each process's memory (one process; use Redis for several)"
        )
    from limits.storage import storage_from_string

    try:
        reachable = storage_from_string(url).check()
    except Exception as exc:  # noqa: BLE001 - a driver error means the same: not reachable
        return Check("rate limits", FAIL, f"storage {url} unusable: {exc}")
    if not reachable:
        return Check("rate limits", FAIL, f"storage {url} does not answer")
    return Check("rate limits", OK, f"storage {url} answers")


def _alerts(settings: Settings) -> Check:
    if settings.environment == "development" and settings.secret_key == PLACEHOLDER_SECRET:
        secret = " The secret key is the development placeholder (production refuses it)."
    else:
        secret = ""
    if not settings.ops_webhook_url:
        return Check(
            "alerts",
            WARN,
            "no ops webhook (HELPLOOP_OPS_WEBHOOK_URL): failed jobs and deployment changes are only on the "
            "Activity page." + secret,
        )
    return Check("alerts", WARN if secret else OK, "ops webhook set." + secret)


def _single_sign_on(settings: Settings) -> Check:
    """The identity provider's discovery document: reachable, naming the configured issuer, with the
    endpoints the sign-in uses (otherwise nobody linked to it can sign in)."""
    import requests

    url = settings.sso_issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=5)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        return Check("single sign-on", FAIL, f"{url} cannot be read: {exc}")
    issuer = str(document.get("issuer", ""))
    if issuer.rstrip("/") != settings.sso_issuer.rstrip("/"):
        return Check("single sign-on", FAIL, f"{url} names the issuer {issuer!r}, not the one configured")
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not document.get(k)]
    if missing:
        return Check("single sign-on", FAIL, f"{url} lacks {', '.join(missing)}")
    return Check("single sign-on", OK, f"{settings.sso_name} at {settings.sso_issuer} answers")


def _two_factor_keys(settings: Settings, database: Database) -> Check:
    """The two-factor keys stored: sealed and readable (ok), some still in the clear (warn: an upgrade seals
    them), some sealed under a secret key this server no longer has (fail: those people's app codes are
    refused)."""
    from crowd_feedback.two_factor import stored_keys

    with database.session() as session:
        keys = stored_keys(session, settings.sealer())
    if keys.unreadable:
        return Check(
            "two-factor keys",
            FAIL,
            f"{keys.unreadable} cannot be opened with the secret key (it changed?): put the key they were "
            "sealed with in HELPLOOP_SECRET_KEY_FALLBACKS; until then those people sign in with a recovery "
            "code or have it reset (`helploop users reset-two-factor`)",
        )
    if keys.in_clear or keys.under_fallback:
        notes = []
        if keys.in_clear:
            notes.append(f"{keys.in_clear} stored in the clear (from before sealing)")
        if keys.under_fallback:
            notes.append(f"{keys.under_fallback} sealed under an earlier secret key (a fallback)")
        return Check("two-factor keys", WARN, "; ".join(notes) + ": `helploop db upgrade` seals them")
    return Check("two-factor keys", OK, f"{keys.sealed} stored, sealed with the secret key")


def _channels(settings: Settings, database: Database, now: datetime) -> Check:
    """The messaging apps set up: Telegram's webhook registered here (its own last delivery error), and
    the outbox of the last 24 hours: failed messages, and messages waiting for minutes (no web process is
    sending them, or the app refuses them)."""
    from datetime import timedelta

    from sqlalchemy import func, select

    from core.channels import counts
    from core.models import ChannelMessage
    from serving.channels import Telegram

    notes, said, failed = [], [], False
    with database.session() as session:
        figures = counts(session, since=now - timedelta(hours=24))
        stuck = session.scalar(
            select(func.count())
            .select_from(ChannelMessage)
            .where(ChannelMessage.status == "pending", ChannelMessage.created_at < now - timedelta(minutes=5))
        )
    for name in settings.channels:
        line = figures[name]
        said.append(f"{name}: {line.sent} sent in 24 h")
        if line.failed:
            notes.append(f"{name}: {line.failed} messages failed in 24 h (last: {line.last_error})")
    if stuck:
        notes.append(f"{stuck} messages waiting for more than 5 minutes (is a web process running?)")
    if "telegram" in settings.channels:
        info: dict[str, Any] | None = None
        try:
            info = Telegram(settings).webhook_info()
        except (OSError, ValueError) as exc:
            failed = True
            notes.append(f"telegram: getWebhookInfo failed: {exc}")
        if info is not None and not info.get("url"):
            failed = True
            notes.append("telegram: no webhook registered (`helploop channels connect telegram`)")
        elif info is not None and info.get("last_error_message"):
            notes.append(f"telegram: its last delivery to the webhook failed: {info['last_error_message']}")
    if notes:
        return Check("channels", FAIL if failed else WARN, "; ".join(notes))
    return Check("channels", OK, ", ".join(said))


def _mail(settings: Settings, database: Database, now: datetime) -> Check:
    """Replies by e-mail: the SMTP server answers, encrypts and takes the login (nothing is sent), and the
    last 24 hours' e-mails (failed ones with the server's words)."""
    import smtplib

    from core.channels import counts
    from core.mail import EMAIL
    from serving.mail import Mailer

    with database.session() as session:
        line = counts(session, since=now - timedelta(hours=24))[EMAIL]
    said = f"{line.sent} sent in 24 h"
    mailer = Mailer(settings, timeout=10)
    try:
        server = mailer.check() + (" answers, login accepted" if mailer.server.username else " answers")
    except (smtplib.SMTPException, OSError) as exc:
        return Check("e-mail", FAIL, f"the SMTP server refused or cannot be reached: {exc}; {said}")
    if line.failed:
        failed = f"{line.failed} e-mails failed in 24 h (last: {line.last_error})"
        return Check("e-mail", WARN, f"{server}; {failed}; {said}")
    return Check("e-mail", OK, f"{server}; {said}")


def _widget(settings: Settings, database: Database, now: datetime) -> Check:
    """Which sites may put the chat on their pages, and which it answered on in the last 30 days."""
    from core.registry import widget_sites

    with database.session() as session:
        seen = widget_sites(session, since=now - timedelta(days=30))
    allowed = settings.widget_origin_set
    said = f"answered on {len(seen)} site{'' if len(seen) == 1 else 's'} in 30 days" + (
        ": " + ", ".join(s.site for s in seen[:5]) + (" …" if len(seen) > 5 else "") if seen else ""
    )
    notes = []
    if allowed is None:
        notes.append("any site may use it (HELPLOOP_WIDGET_ORIGINS=*): list your own sites there")
    if not settings.public_url:
        notes.append("no HELPLOOP_PUBLIC_URL: the install page's tag uses the address it was opened at")
    if notes and settings.environment == "production":
        return Check("widget", WARN, said + "; " + "; ".join(notes))
    where = "any site" if allowed is None else ", ".join(sorted(allowed))
    return Check("widget", OK, f"{said}; allowed: {where}")


def run_checks(settings: Settings, *, now: datetime | None = None) -> list[Check]:
    """Every check, in order; after a database that cannot be reached, the checks that need it are skipped
    (said as failed)."""
    from core.models import utcnow

    now = now or utcnow()
    database = Database(settings)
    try:
        checks = [_database(settings, database)]
        needs_database: list[tuple[str, Callable[[], Check]]] = [
            ("schema", lambda: _schema(database)),
            ("models", lambda: _models(database)),
            ("knowledge base", lambda: _knowledge_base(database)),
            ("workers", lambda: _workers(settings, database, now)),
            ("review queue", lambda: _review_queue(settings, database, now)),
            ("two-factor keys", lambda: _two_factor_keys(settings, database)),
            ("widget", lambda: _widget(settings, database, now)),
        ]
        if settings.channels:
            needs_database.append(("channels", lambda: _channels(settings, database, now)))
        if settings.mail_on:
            needs_database.append(("e-mail", lambda: _mail(settings, database, now)))
        reachable = checks[0].status == OK
        for name, check in needs_database:
            if not reachable:
                checks.append(Check(name, FAIL, "not checked: the database cannot be reached"))
            elif name != "schema" and checks[1].status == FAIL:
                checks.append(Check(name, FAIL, "not checked: the schema is not this version's"))
            else:
                checks.append(check())
    finally:
        database.dispose()
    checks += [_backups(settings, now), _disk(settings), _rate_limits(settings), _alerts(settings)]
    if settings.sso_issuer:
        checks.append(_single_sign_on(settings))
    return checks


def summary(checks: list[Check]) -> dict[str, Any]:
    counts = {status: sum(c.status == status for c in checks) for status in (OK, WARN, FAIL)}
    return {"healthy": counts[FAIL] == 0, **counts}
