"""The ``helploop`` command line. Thin: parse arguments, open a session, call domain functions, report."""

from __future__ import annotations

import getpass
import io
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click

from core.kb_files import (
    KnowledgeBaseFormatError,
    read_knowledge_base,
    read_knowledge_base_files,
    read_labelled_csv,
    utf8_text,
    write_knowledge_base,
)
from core.settings import OPS_EVENT_KINDS, Settings, SettingsError, load_settings

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
EXIT_USAGE = 2
SEALED_KEYS_REVISION = 57  # from this migration on, the two-factor keys are stored sealed (core.sealed)


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj.get("settings") if ctx.obj else None
    if settings is None:
        try:
            settings = load_settings()
        except SettingsError as exc:
            raise click.ClickException(f"settings: {exc}") from None
        ctx.ensure_object(dict)["settings"] = settings
    return settings


def _database(settings: Settings) -> Any:
    from core.db import Database

    return Database(settings)


def _job_worker(database: Any, settings: Settings, **options: Any) -> Any:
    """A job worker that knows every job kind (the crowd's are registered by this, the composing layer)."""
    from serving.job_kinds import install as install_job_kinds
    from training.jobs import Worker

    install_job_kinds()
    return Worker(database, settings, **options)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _Commands(click.Group):
    """Every command: a database that cannot be used (a wrong address, a PostgreSQL database not created
    yet, the server down, a SQLite file another process holds locked) ends it with one line that names the
    database (its password hidden) and the driver's reason, instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import OperationalError

        try:
            return super().invoke(ctx)
        except OperationalError as exc:
            _fail(unusable_database(exc, ctx.obj.get("settings") if ctx.obj else None), 1)


def unusable_database(exc: Exception, settings: Settings | None) -> str:
    from sqlalchemy.engine import make_url

    reason = next((line.strip() for line in str(getattr(exc, "orig", exc)).splitlines() if line.strip()), "")
    where = ""
    if settings is not None and settings.database_url:
        try:
            where = f" at {make_url(settings.database_url).render_as_string(hide_password=True)}"
        except Exception:  # noqa: BLE001 - the reason alone then
            where = ""
    if "locked" in reason:  # SQLite: another process is writing (a long import, a restore)
        hint = "another process is writing to it: try again when it has finished"
    else:
        hint = "is it running, and does the database exist? HELPLOOP_DATABASE_URL sets it"
    return f"cannot use the database{where}: {reason or type(exc).__name__} ({hint})"


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """HelpLoop: a self-hosted customer-service bot that learns from its own traffic."""
    ctx.ensure_object(dict)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ----------------------------------------------------------------------------------------------- db


def _migrate(
    database: Any, revision: str = "head", *, down: bool = False, settings: Settings | None = None
) -> None:
    """Migrate to ``revision``; a run the migrations refuse (core.migrate.MigrationError: it is undone) ends
    the command with one line instead of a traceback. Upgraded from before migration 0057, the two-factor
    keys stored in the clear are sealed with ``settings``' secret key (core.sealed)."""
    from core import migrate

    try:
        (migrate.downgrade if down else migrate.upgrade)(database.engine, revision)
    except migrate.MigrationError as exc:
        _fail(f"{exc}; the database stays at revision {migrate.current_revision(database.engine)}", 1)
    current = migrate.current_revision(database.engine) or ""
    if down or settings is None or not current.isdigit() or int(current) < SEALED_KEYS_REVISION:
        return
    from crowd_feedback.two_factor import seal_stored_keys

    with database.session() as session:
        in_clear, resealed = seal_stored_keys(session, settings.sealer())
    if in_clear:
        click.echo(f"sealed {in_clear} two-factor keys stored in the clear (their sessions end once)")
    if resealed:
        click.echo(
            f"sealed {resealed} two-factor keys again under the current secret key (their sessions end "
            "once): the earlier key can leave HELPLOOP_SECRET_KEY_FALLBACKS once no session needs it"
        )


@main.group()
def db() -> None:
    """The database: migrations, backup and restore (with the model bundles it serves)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply migrations up to REVISION."""
    from core import migrate

    settings = _settings(ctx)
    database = _database(settings)
    _migrate(database, revision, settings=settings)
    click.echo(f"database at revision {migrate.current_revision(database.engine)}")


@db.command("downgrade")
@click.argument("revision")
@click.pass_context
def db_downgrade(ctx: click.Context, revision: str) -> None:
    """Revert migrations down to REVISION (e.g. base)."""
    from core import migrate

    database = _database(_settings(ctx))
    _migrate(database, revision, down=True)
    click.echo(f"database at revision {migrate.current_revision(database.engine)}")


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Show the applied and the newest revision."""
    from core import migrate

    database = _database(_settings(ctx))
    click.echo(f"current: {migrate.current_revision(database.engine)}  head: {migrate.head_revision()}")


@db.command("search-index")
@click.pass_context
def db_search_index(ctx: click.Context) -> None:
    """Build the conversation search's index again (SQLite FTS5 trigrams; PostgreSQL pg_trgm): for one that
    `helploop doctor` calls stale, or where the first build could not make one."""
    from core.turn_search import rebuild_index_online

    database = _database(_settings(ctx))
    built = rebuild_index_online(database.engine)  # PostgreSQL: built beside the old one, turns still logged
    if not built:
        raise click.ClickException(
            "no index could be built here (SQLite without FTS5 trigrams, or PostgreSQL without the right to "
            "create pg_trgm); searches read every turn"
        )
    click.echo(f"search index built ({database.engine.dialect.name})")


def _pages_bar(label: str) -> Any:
    from tqdm import tqdm

    bar = tqdm(total=0, unit="page", desc=label, leave=False, disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, progress


@db.command("backup")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--models/--no-models",
    default=True,
    show_default=True,
    help="Also copy the bundles of the models that serve and that a rollback returns to into "
    "OUT's folder/models (once per version), so a restore serves without retraining.",
)
@click.pass_context
def db_backup(ctx: click.Context, out: Path, models: bool) -> None:
    """Back the database up to OUT while the app keeps running, with the model bundles it needs beside it:
    the embedded SQLite consistently copied, or PostgreSQL as a pg_dump archive (name it .dump)."""
    from core.backup import BackupError, backup_database

    settings = _settings(ctx)
    bar, progress = _pages_bar("backup")
    try:
        info = backup_database(settings.database_url, out, progress=progress)
    except BackupError as exc:
        _fail(str(exc))
    finally:
        bar.close()
    click.echo(
        f"backed up the database ({info.bytes / 1e6:,.1f} MB, schema revision {info.revision}) to {out}"
    )
    if models:
        from training.model_backup import MODELS_FOLDER, backup_bundles

        database = _database(settings)
        try:
            copies = backup_bundles(database, out.parent, backup_file=out)
        finally:
            database.dispose()
        folder = out.parent / MODELS_FOLDER
        if copies.copied:
            click.echo(
                f"copied {len(copies.copied)} model bundle(s) ({copies.copied_bytes / 1e6:,.1f} MB) to "
                f"{folder}: {', '.join(copies.copied)}"
            )
        if copies.present:
            click.echo(f"already in {folder}: {', '.join(copies.present)}")
        for version, why in copies.missing.items():
            click.echo(f"warning: model {version} not copied: {why}", err=True)
        if copies.removed:
            click.echo(f"removed copies no backup there needs: {', '.join(copies.removed)}")
        for path in copies.unreadable:
            click.echo(f"warning: could not read {path}: no copy was removed", err=True)


@db.command("restore")
@click.argument("backup", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Confirm: the web app and the workers are stopped.")
@click.pass_context
def db_restore(ctx: click.Context, backup: Path, yes: bool) -> None:
    """Make BACKUP (from `helploop db backup`) the database, keep a copy of the one it replaces, migrate it
    to this version's schema and copy back the model bundles it needs. Stop the web app and the workers
    first: a restore is refused while they are connected."""
    from core import migrate
    from core.backup import BackupError, check_backup, restore_database

    settings = _settings(ctx)
    try:
        if not yes:  # only the check (with --yes, the restore makes the same one)
            _fail(
                f"{backup} is a good backup (schema revision {check_backup(backup)}). Stop the web app and "
                "the workers (they hold the database open), then run this again with --yes"
            )
        bar, progress = _pages_bar("restore")
        try:
            info = restore_database(settings.database_url, backup, progress=progress)
        finally:
            bar.close()
    except BackupError as exc:
        _fail(str(exc))
    from training.model_backup import MODELS_FOLDER, restore_bundles

    database = _database(settings)
    try:
        _migrate(database, settings=settings)
        now = migrate.current_revision(database.engine)
        bundles = restore_bundles(database, backup.parent)
    finally:
        database.dispose()
    kept = f"; the database it replaced is at {info.previous}" if info.previous else ""
    click.echo(f"restored {backup} (schema revision {info.revision}, now {now}){kept}")
    for version, path in bundles.restored:
        click.echo(f"model {version}: bundle copied back from {backup.parent / MODELS_FOLDER} to {path}")
    for version, path, why in bundles.missing:
        click.echo(
            f"warning: model {version} serves (or a rollback returns to it) but its bundle is not at {path} "
            f"({why}): copy it back from the model folder's own backup, or retrain (`helploop train --wait`) "
            "and promote",
            err=True,
        )


def _require_schema(database: Any) -> None:
    from core import migrate

    if not migrate.is_up_to_date(database.engine):
        _fail("the database schema is not up to date: run `helploop db upgrade` first")


def _production_engine(database: Any, *, fallback: str) -> Any:
    """The model in production, with the knowledge base's current answers: its members and held-out rows
    (the encoder loads only if something predicts). None when there is none, or it cannot be read
    (a warning says so, and what happens instead: ``fallback``)."""
    from bot.engine import AnsweringEngine, BundleError
    from core.knowledge_base import read_answer_book
    from core.registry import serving_plan

    with database.session() as session:
        plan = serving_plan(session)
        book = read_answer_book(session)
    if plan is None or plan["production"] is None:
        return None
    try:
        engine = AnsweringEngine.load(plan["production"][1], runtime="torch")
    except BundleError as exc:
        click.echo(f"warning: {exc}; {fallback}", err=True)
        return None
    if book is not None:
        engine.update_answers(book.intents, book.metadata)
        engine.update_synonyms(book.synonyms)
    return engine


# ----------------------------------------------------------------------------------------------- kb


@main.group()
def kb() -> None:
    """Knowledge base: import (CSV, Excel, JSON, Rasa, Azure, FAQ pages as HTML or Markdown, help documents as
    Word or PDF) and export (CSV, JSON, Rasa)."""


@kb.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--replace", is_flag=True, help="Replace the whole knowledge base instead of merging.")
@click.pass_context
def kb_import(ctx: click.Context, files: tuple[str, ...], replace: bool) -> None:
    """Import FILES, all or nothing: examples CSV + answers CSV, an FAQ sheet (question,answer) as CSV or
    .xlsx, JSON, Rasa nlu.yml + domain.yml, an Azure question answering / QnA Maker export (.tsv, .json,
    or the .zip Language Studio downloads), an FAQ page saved as .html or written in Markdown (.md), or a
    help document or manual as Word (.docx) or PDF (.pdf): its questions in a heading style, larger type or
    bold, ending with "?". A web address (https://…) is fetched and read as the file it gives: the company's
    FAQ page."""
    from core.kb_checks import text_findings
    from core.knowledge_base import import_knowledge_base, load_knowledge_base
    from core.web_import import WebImportError, fetch_page

    settings = _settings(ctx)
    loaded: list[tuple[str, bytes]] = []
    fetched_from: dict[str, str] = {}  # a fetched file's name: its address, the source of its questions
    for given in files:
        if not re.match(r"^https?://", given, re.IGNORECASE):
            path = Path(given)
            if not path.is_file():
                _fail(f"{given}: file not found")
            loaded.append((str(path), path.read_bytes()))
            continue
        click.echo(f"fetching {given} ...", err=True)
        try:
            loaded.append(
                fetch_page(
                    given,
                    limit_bytes=settings.max_upload_bytes,
                    allow_private=settings.import_private_addresses,
                )
            )
            fetched_from[loaded[-1][0]] = given
        except WebImportError as exc:
            _fail(f"{exc} (nothing was imported)")
    bars: dict[str, Any] = {}

    def pages(file: str, done: int, of: int) -> None:  # a PDF is read page by page: a bar per file
        from tqdm import tqdm

        bar = bars.get(file)
        if bar is None:
            bar = bars[file] = tqdm(total=of, desc=Path(file).name, unit="page", file=sys.stderr)
        bar.total = max(bar.total or 0, of)
        bar.update(done - bar.n)

    try:
        incoming = read_knowledge_base_files(loaded, progress=pages, sources=fetched_from)
    except KnowledgeBaseFormatError as exc:
        _fail(str(exc))
        return
    finally:
        for bar in bars.values():
            bar.close()
    database = _database(settings)
    _require_schema(database)
    try:
        with database.session() as session:
            result = import_knowledge_base(
                session, incoming=incoming, source="import: " + ", ".join(files), replace=replace
            )
            conflicts = len(text_findings(load_knowledge_base(session)).conflicts)
    except KnowledgeBaseFormatError as exc:
        _fail(f"{exc} (nothing was imported)")
        return
    click.echo(
        f"imported: {result.intents_created} intents created, {result.intents_updated} updated, "
        f"{result.examples_added} examples added, {result.examples_removed} removed; knowledge base now "
        f"{result.intent_count} intents / {result.example_count} examples (version {result.kb_version_id}, "
        f"hash {result.data_hash[:12]})"
    )
    if result.gone_text():
        click.echo(result.gone_text())
    if conflicts:
        click.echo(
            f"check: {_n(conflicts, 'question')} filed under more than one intent "
            "(`helploop kb check` lists them)"
        )


@kb.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "rasa"]), required=True)
@click.argument("out", type=click.Path())
@click.pass_context
def kb_export(ctx: click.Context, fmt: str, out: str) -> None:
    """Export the knowledge base to OUT (a directory for csv/rasa, a file or directory for json)."""
    from core.knowledge_base import load_knowledge_base

    database = _database(_settings(ctx))
    _require_schema(database)
    with database.session() as session:
        data = load_knowledge_base(session)
    if not data.intents:
        _fail("the knowledge base is empty; nothing to export")
    for path in write_knowledge_base(data, fmt, out):
        click.echo(f"wrote {path}")


@kb.command("check")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--model",
    "model_dir",
    type=click.Path(file_okay=False),
    help="Judge the examples with this model bundle (default: the one in production; none for FILES).",
)
@click.option("--no-model", is_flag=True, help="Text checks only.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too, not only on errors.")
@click.option(
    "--limit", type=click.IntRange(0, 100_000), default=20, show_default=True, help="Rows per list."
)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), help="Write the report."
)
@click.pass_context
def kb_check(
    ctx: click.Context,
    files: tuple[str, ...],
    model_dir: str | None,
    no_model: bool,
    strict: bool,
    limit: int,
    json_out: str | None,
) -> None:
    """Check the knowledge base (FILES, or the one in the database with the crowd's verified pairs): a
    question under two intents (error), intents with few examples, examples the model reads as another
    intent (warnings), a question twice in one intent, intents the model mixes up. Exit 1 on an error
    (or on a warning with --strict), 0 otherwise."""
    from bot.engine import AnsweringEngine, BundleError
    from training.kb_check import check_current_knowledge_base, check_knowledge_base

    engine = None
    if model_dir and not no_model:
        try:
            engine = AnsweringEngine.load(Path(model_dir), runtime="torch")
        except BundleError as exc:
            _fail(f"{model_dir}: {exc}")
    if files:
        try:
            kb_data = read_knowledge_base(files)
        except KnowledgeBaseFormatError as exc:
            _fail(str(exc))
        report = check_knowledge_base(kb_data, engine=engine)
        if engine is None and not no_model:
            report.model_note = "no model given: --model DIR judges the examples with one"
    else:
        database = _database(_settings(ctx))
        _require_schema(database)
        if engine is None and not no_model:
            engine = _production_engine(database, fallback="checking the text only")
        with database.session() as session:
            report = check_current_knowledge_base(session, engine=engine)
        if no_model:
            report.model_note = "--no-model"
        if not report.intents:
            _fail("the knowledge base is empty: import one with `helploop kb import`")
    if json_out:
        text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
        if json_out == "-":
            click.echo(text, nl=False)
        else:
            Path(json_out).write_text(text, encoding="utf-8")
    if json_out != "-":
        for line in kb_check_lines(report, limit=limit):
            click.echo(line)
    if report.errors or (strict and report.warnings):
        sys.exit(1)


def _listed(items: list[Any], limit: int, line: Any) -> list[str]:
    shown = items if limit == 0 else items[:limit]
    more = (
        [f"  … and {len(items) - len(shown)} more (--limit 0 lists all)"] if len(shown) < len(items) else []
    )
    return [f"  {line(item)}" for item in shown] + more


def _n(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def kb_check_lines(report: Any, *, limit: int) -> list[str]:
    """The report as the terminal shows it (``limit`` rows per list, 0: all)."""
    lines = [f"knowledge base: {_n(report.intents, 'intent')}, {_n(report.examples, 'example')}"]
    if report.label_issues is not None:
        lines.append(
            f"model {report.model_version}: held-out rows for {report.checked_examples} of the examples"
        )
    else:
        lines.append(f"model: not used ({report.model_note})")
    if report.conflicts:
        lines.append(f"error: {_n(len(report.conflicts), 'question')} filed under more than one intent")
        lines += _listed(
            report.conflicts,
            limit,
            lambda c: f"{c.question!r}: " + ", ".join(f"{p.intent} ({p.source})" for p in c.places),
        )
    if report.thin:
        lines.append(f"warning: {_n(len(report.thin), 'intent')} with fewer than {report.few} examples")
        lines += _listed(report.thin, limit, lambda t: f"{t.intent}: {t.examples}")
    if report.label_issues:
        lines.append(
            f"warning: {_n(len(report.label_issues), 'example')} the model, not trained on them, reads as "
            "another intent (most lopsided first)"
        )
        lines += _listed(
            report.label_issues,
            limit,
            lambda i: (
                f"{i.given} -> {i.suggested} ({i.suggested_probability:.2f} against "
                f"{i.given_probability:.2f}; {i.members_agreeing} of {i.members} members): {i.text!r}"
            ),
        )
    if report.kept:
        lines.append(f"note: {_n(len(report.kept), 'flagged example')} kept as they are by operators")
    if report.duplicates:
        lines.append(
            f"note: {_n(len(report.duplicates), 'question')} twice in one intent "
            "(each spelling is trained on)"
        )
        lines += _listed(
            report.duplicates, limit, lambda d: f"{d.intent}: " + " / ".join(repr(t) for t in d.spellings)
        )
    if report.shared_answers:
        lines.append(f"note: {_n(len(report.shared_answers), 'answer')} given by several intents")
        lines += _listed(report.shared_answers, limit, lambda a: f"{', '.join(a.intents)}: {a.answer[:80]!r}")
    if report.confusions:
        lines.append(
            f"note: {_n(len(report.confusions), 'pair')} of intents the model mixes up "
            "(a reviewer note helps)"
        )
        lines += _listed(
            report.confusions,
            limit,
            lambda c: (
                f"{c.first} <-> {c.second}: {c.first_as_second} of {c.first_examples} read as "
                f"{c.second}, {c.second_as_first} of {c.second_examples} as {c.first}"
            ),
        )
    lines.append(f"{_n(report.errors, 'error')}, {_n(report.warnings, 'warning')}")
    return lines


@kb.command("versions")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.pass_context
def kb_versions(ctx: click.Context, limit: int) -> None:
    """List knowledge-base versions, newest first (every import, edit and restore is one)."""
    from core.knowledge_base import list_kb_versions

    database = _database(_settings(ctx))
    _require_schema(database)
    with database.session() as session:
        lines = [
            f"{v.id}\t{v.created_at:%Y-%m-%d %H:%M}\t{v.intent_count} intents\t{v.example_count} examples\t"
            f"{v.source}"
            for v in list_kb_versions(session, limit=limit)
        ]
    if not lines:
        click.echo("no knowledge-base versions yet: import one with `helploop kb import`")
    for line in lines:
        click.echo(line)


@kb.command("sources")
@click.pass_context
def kb_sources(ctx: click.Context) -> None:
    """List the FAQ pages, help documents and web addresses intents were imported from, with how many
    intents each: importing one again (the same file name or address) brings it up to date, removing the
    questions it no longer has."""
    from core.knowledge_base import load_knowledge_base

    database = _database(_settings(ctx))
    _require_schema(database)
    with database.session() as session:
        sources = load_knowledge_base(session).sources()
    if not sources:
        click.echo("no intents came from an FAQ page, a document or a web address")
    for source, count in sources:
        click.echo(f"{count}\t{source}")


@kb.command("restore")
@click.argument("version", type=int)
@click.option("--actor", default=lambda: _cli_actor(), show_default="cli:$USER")
@click.pass_context
def kb_restore(ctx: click.Context, version: int, actor: str) -> None:
    """Make knowledge-base VERSION current again (as a new version; nothing in between is lost)."""
    from core.knowledge_base import restore_kb_version

    database = _database(_settings(ctx))
    _require_schema(database)
    try:
        with database.session() as session:
            result = restore_kb_version(session, version_id=version, actor=actor)
    except KnowledgeBaseFormatError as exc:
        _fail(f"{exc.message} (nothing was restored)")
    click.echo(
        f"restored version {version} as version {result.kb_version_id}: {result.intent_count} intents / "
        f"{result.example_count} examples"
    )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the checks and a summary.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check that this installation can serve, learn and recover: the database and its schema, the model
    bundles that serve and their encoders, the knowledge base, the workers, the review queue, backups,
    disk, rate limits and alerts. Exit status 1 when a check fails (a warning does not fail it)."""
    from serving.doctor import FAIL, WARN, run_checks, summary

    checks = run_checks(_settings(ctx))
    totals = summary(checks)
    if as_json:
        click.echo(json.dumps({"checks": [c.to_dict() for c in checks], "summary": totals}, indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            mark = {"ok": "ok  ", WARN: "WARN", FAIL: "FAIL"}[check.status]
            click.echo(f"{mark}  {check.name:<{width}}  {check.detail}")
        click.echo(f"{totals['fail']} failed, {totals['warn']} warning(s), {totals['ok']} ok")
    if not totals["healthy"]:
        sys.exit(1)


# -------------------------------------------------------------------------------------------- model


@main.command()
@click.option("--onnx/--no-onnx", default=True, show_default=True, help="Also export the int8 ONNX encoder.")
@click.pass_context
def build(ctx: click.Context, onnx: bool) -> None:
    """Fit the engine on the knowledge base in the database, save the bundle and register it."""
    from training.build import EmptyKnowledgeBaseError, build_model

    settings = _settings(ctx)
    database = _database(settings)
    _require_schema(database)
    try:
        with database.session() as session:
            result = build_model(session, settings, progress=True, onnx=onnx)
    except EmptyKnowledgeBaseError as exc:
        _fail(str(exc))
        return
    metrics = result.metrics
    click.echo(
        f"model {result.version} saved to {result.bundle_path}\n"
        f"held-out accuracy {metrics['accuracy']:.4f}, ECE {metrics['ece']:.4f}"
    )


def _load_engine(ctx: click.Context, model: str | None, runtime: str) -> Any:
    from bot.engine import AnsweringEngine, BundleError

    settings = _settings(ctx)
    path = model
    book = None
    if path is None:
        from core.knowledge_base import read_answer_book
        from core.registry import latest_model_version

        database = _database(settings)
        _require_schema(database)
        with database.session() as session:
            row = latest_model_version(session)
            path = row.bundle_path if row else None
            book = read_answer_book(session)  # answers edited since the build, as the web app serves them
        if path is None:
            _fail("no model has been built yet: run `helploop build` (or `make demo`)")
    from bot.runtime import configure_inference_threads

    configure_inference_threads(settings.torch_threads)
    try:
        engine = AnsweringEngine.load(str(path), runtime=runtime, threads=settings.torch_threads)
    except BundleError as exc:
        _fail(str(exc))
    from serving.model_holder import read_as_set

    read_as_set(
        engine,
        spelling_correction=settings.spelling_correction,
        keyword_share=settings.keyword_share,
        negation=settings.negation,
    )
    if model is None and book is not None:
        engine.update_answers(book.intents, book.metadata)
        engine.update_synonyms(book.synonyms)
    return engine


@main.command()
@click.argument("text")
@click.option(
    "--model", type=click.Path(file_okay=False), help="Bundle directory (default: newest registered)."
)
@click.option("--runtime", type=click.Choice(["auto", "torch", "onnx"]), default="auto", show_default=True)
@click.option(
    "--metadata",
    "pairs",
    multiple=True,
    metavar="KEY:VALUE",
    help="Answer only from intents with this metadata (repeat for several: all must match).",
)
@click.pass_context
def predict(ctx: click.Context, text: str, model: str | None, runtime: str, pairs: tuple[str, ...]) -> None:
    """Answer TEXT and print the full result as JSON."""
    from bot.engine import MetadataFilter

    settings = _settings(ctx)
    if not text.strip() or len(text) > settings.max_message_length:
        _fail(f"text must be 1 to {settings.max_message_length} characters")
    split = [pair.partition(":") for pair in pairs]
    bad = [
        pair for pair, (key, colon, value) in zip(pairs, split, strict=True) if not (key and colon and value)
    ]
    if bad:
        _fail(f"--metadata {bad[0]!r}: write it as KEY:VALUE")
    only = MetadataFilter.of([(key, value) for key, _, value in split]) if split else None
    engine = _load_engine(ctx, model, runtime)
    click.echo(json.dumps(engine.predict(text, only=only).to_dict(), indent=2, ensure_ascii=False))


@main.command()
@click.option(
    "--model", type=click.Path(file_okay=False), help="Bundle directory (default: newest registered)."
)
@click.option("--runtime", type=click.Choice(["auto", "torch", "onnx"]), default="auto", show_default=True)
@click.option("--log/--no-log", default=True, show_default=True, help="Log each turn to the database.")
@click.pass_context
def chat(ctx: click.Context, model: str | None, runtime: str, log: bool) -> None:
    """Talk to the current model in the terminal (empty line or Ctrl-D quits)."""
    from serving.terminal import run_terminal_chat

    settings = _settings(ctx)
    engine = _load_engine(ctx, model, runtime)
    database = _database(settings) if log else None
    run_terminal_chat(engine, database=database, settings=settings)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.pass_context
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Run the web app (chat API, widget, demo page) with the development server, one process.
    Production: gunicorn -c serving/gunicorn.conf.py "serving:create_app()"."""
    from serving.app import create_app

    settings = _settings(ctx)
    database = _database(settings)
    _require_schema(database)
    app = create_app(
        {name: getattr(settings, name) for name in settings.__dataclass_fields__ if name != "extra"}
    )
    click.echo(f"HelpLoop on http://{host}:{port}/ (API docs at /docs); Ctrl-C stops")
    app.run(host=host, port=port, threaded=True, use_reloader=False)


@main.command()
@click.option("--chat", "mode", flag_value="chat", help="Start the terminal chat instead of the web app.")
@click.option("--serve", "mode", flag_value="serve", default=True, help="Serve the web app (default).")
@click.option("--no-chat", "--prepare-only", "mode", flag_value="none", help="Only prepare, then exit.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.pass_context
def demo(ctx: click.Context, mode: str, port: int) -> None:
    """Prepare the demo (migrate, import the bundled BANKING77 knowledge base, build) and serve it."""
    from sqlalchemy import exists, select

    from core.knowledge_base import count_intents, import_knowledge_base
    from core.models import ReviewItem
    from core.registry import latest_model_version
    from training.build import build_model

    settings = _settings(ctx)
    database = _database(settings)
    _migrate(database, settings=settings)
    with database.session() as session:
        if count_intents(session) == 0:
            incoming = read_knowledge_base([DEMO_DATA / "examples.csv", DEMO_DATA / "answers.csv"])
            import_knowledge_base(session, incoming=incoming, source="demo: BANKING77 (CC BY 4.0)")
            click.echo(f"imported the demo knowledge base: {len(incoming.intents)} intents")
    with database.session() as session:
        if latest_model_version(session) is None:
            click.echo("building the demo model (first run only, a few minutes on 2 CPU cores)...")
            result = build_model(session, settings, progress=True, onnx=True)
            click.echo(f"model {result.version} ready")
    with database.session() as session:
        has_gold = session.scalar(select(exists().where(ReviewItem.is_gold.is_(True))))
    if not has_gold:  # first run: check questions, so reviewers practise and their accuracy is measured
        ctx.invoke(crowd_gold, per_intent=2, seed=0)
    if mode != "chat":
        _hint_first_operator(database, port)
    if mode == "chat":
        ctx.invoke(chat)
    elif mode == "serve":
        ctx.invoke(serve, host="127.0.0.1", port=port)


def _hint_first_operator(database: Any, port: int) -> None:
    """The operator pages need an account; until there is one, say how to make it."""
    from crowd_feedback.reviewers import active_operators

    with database.session() as session:
        operators = active_operators(session)
    if not operators:
        click.echo(
            "no operator account yet: create one with "
            "`.venv/bin/helploop users create --role operator --username NAME` (it asks for a password), "
            f"then sign in at http://127.0.0.1:{port}/login for the operator and reviewer pages"
        )


# --------------------------------------------------------------------------------------------- jobs


@main.command()
@click.option("--wait", is_flag=True, help="Follow the run's progress until it ends (runs a local worker).")
@click.option("--onnx/--no-onnx", default=True, show_default=True)
@click.option(
    "--fine-tune",
    is_flag=True,
    help="Fine-tune the transformer members first (contrastive + classification head; GPU when present).",
)
@click.option(
    "--epochs",
    default=None,
    type=click.FloatRange(0, 100),
    help="Contrastive epochs (default: the recipe's; 0 skips the stage).",
)
@click.option(
    "--head-epochs",
    default=None,
    type=click.FloatRange(0, 100),
    help="Classification-head epochs (default: the recipe's; 0 skips the stage).",
)
@click.option(
    "--interpolation",
    default=None,
    type=click.FloatRange(0, 1),
    help="WiSE-FT: share of the tuned weights mixed with the pretrained ones (default: the recipe's, 1).",
)
@click.option(
    "--max-steps", default=-1, show_default=True, type=int, help="Cap on contrastive steps (-1: none)."
)
@click.option(
    "--self-training/--no-self-training",
    default=None,
    help="Self-train the members on the turn log's questions (default: HELPLOOP_SELF_TRAINING).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Fit even when a registered model was fitted from exactly the same data, settings and code.",
)
@click.pass_context
def train(
    ctx: click.Context,
    wait: bool,
    onnx: bool,
    fine_tune: bool,
    epochs: float | None,
    head_epochs: float | None,
    interpolation: float | None,
    max_steps: int,
    self_training: bool | None,
    force: bool,
) -> None:
    """Queue a retraining run (knowledge base + crowd-verified pairs) and print its job id. A run with
    nothing new to learn (a registered model was fitted from the same data and settings) builds no model
    unless --force is given."""
    from training.build import EmptyKnowledgeBaseError, require_knowledge_base
    from training.jobs import enqueue

    settings = _settings(ctx)
    database = _database(settings)
    _require_schema(database)
    with database.session() as session:
        try:
            require_knowledge_base(session)
        except EmptyKnowledgeBaseError as exc:
            _fail(str(exc))
        params: dict[str, Any] = {"onnx": onnx}
        if self_training is not None:
            params["self_training"] = self_training
        if force:
            params["force"] = True
        if fine_tune:
            recipe: dict[str, Any] = {"max_steps": max_steps}
            if epochs is not None:
                recipe["epochs"] = epochs
            if head_epochs is not None:
                recipe["head_epochs"] = head_epochs
            if interpolation is not None:
                recipe["interpolation"] = interpolation
            params["fine_tune"] = recipe
        elif epochs is not None or head_epochs is not None or interpolation is not None:
            raise click.UsageError("--epochs, --head-epochs and --interpolation need --fine-tune")
        job = enqueue(session, kind="train", params=params, created_by=_cli_actor())
        job_id = job.id
    click.echo(f"queued training run {job_id}")
    if not wait:
        return
    worker = _job_worker(database, settings, poll_seconds=0.5)
    worker.start()
    final = _follow(database, job_id)
    worker.stop()
    if final != "succeeded":
        sys.exit(1)


def _follow(database: Any, job_id: int) -> str:
    import time as clock

    from tqdm.auto import tqdm

    from core.models import Job

    bar = tqdm(total=100, desc=f"run {job_id}", unit="%", bar_format="{l_bar}{bar}| {n:.0f}% {postfix}")
    try:
        while True:
            with database.session() as session:
                job = session.get(Job, job_id)
                assert job is not None
                status, progress, step, error, result = (
                    job.status,
                    job.progress,
                    job.step,
                    job.error,
                    job.result,
                )
                eta = job.eta_seconds
            bar.n = round(progress * 100, 1)
            bar.set_postfix_str(f"{status} · {step}" + (f" · eta {eta:.0f}s" if eta else ""))
            bar.refresh()
            if status in ("succeeded", "failed", "cancelled"):
                break
            clock.sleep(0.5)
    finally:
        bar.close()
    if status == "succeeded" and result and result.get("unchanged"):
        role = f" ({result['same_as_role']})" if result.get("same_as_role") else ""
        click.echo(
            f"run {job_id}: nothing new to learn since model {result['same_as']}{role}: the same knowledge "
            "base, verified pairs, log questions, settings and HelpLoop code; no model built "
            "(--force fits anyway)"
        )
    elif status == "succeeded" and result and "version" not in result:
        click.echo(f"job {job_id} succeeded: " + ", ".join(f"{k} {v}" for k, v in result.items()))
    elif status == "succeeded" and result:
        click.echo(
            f"run {job_id} succeeded: model {result['version']} "
            f"(held-out accuracy {result['metrics']['accuracy']:.4f}, "
            f"{result.get('crowd_pairs', 0)} crowd pairs"
            + (
                f", {result['out_of_scope_pairs']} of them questions no intent answers, handed to a person"
                if result.get("out_of_scope_pairs")
                else ""
            )
            + ")"
        )
        st = result.get("self_training")
        if st:
            verdict = "added" if st["kept"] else "left out (the held-out rows fared worse)"
            click.echo(
                f"self-training: {st['pseudo_labelled']} of {st['traffic_rows']} log questions "
                f"at or above {st['threshold']:g}, {verdict}"
            )
    else:
        click.echo(f"run {job_id} {status}" + (f": {error.splitlines()[0]}" if error else ""), err=True)
    return status


@main.command()
@click.option("--once", is_flag=True, help="Look once (schedules, watches), run at most one job, then exit.")
@click.pass_context
def worker(ctx: click.Context, once: bool) -> None:
    """Run queued jobs (training, exports, re-aggregation) and, beside them on a second thread, the schedules
    (the daily retention) and watches (the canary guard, the ops webhook's deliveries). Several workers may
    run at once; each claims its own job."""
    import time as clock

    settings = _settings(ctx)
    database = _database(settings)
    _require_schema(database)
    runner = _job_worker(database, settings)
    click.echo(f"worker {runner.worker_id} started")
    if once:
        for done in runner.look_around():
            click.echo(done)
    else:
        # Paid once here instead of in the first fine-tuning run (8.5-15 s on the GPU machines), before the
        # watcher's thread starts importing too; --once skips it.
        from training.finetune import preload_trainer

        try:
            click.echo(f"trainer loaded in {preload_trainer():.1f} s")
        except RuntimeError as exc:  # a worker without the training extras still runs every other job
            click.echo(f"trainer not loaded: {exc}", err=True)
        runner.start_watcher()
    while True:
        job_id = runner.run_once()
        if job_id is not None:
            click.echo(f"finished job {job_id}")
        if once:
            return
        if job_id is None:
            clock.sleep(runner.poll_seconds)


@main.group(invoke_without_command=True)
@click.pass_context
def jobs(ctx: click.Context) -> None:
    """List recent jobs (or cancel one)."""
    if ctx.invoked_subcommand is not None:
        return
    from sqlalchemy import select

    from core.models import Job

    database = _database(_settings(ctx))
    _require_schema(database)
    with database.session() as session:
        for job in session.scalars(select(Job).order_by(Job.id.desc()).limit(20)):
            click.echo(
                f"{job.id:>5}  {job.kind:<8} {job.status:<10} {job.progress * 100:5.1f}%  {job.step:<14} "
                f"{job.created_at:%Y-%m-%d %H:%M}  {job.created_by}"
            )


@jobs.command("cancel")
@click.argument("job_id", type=int)
@click.pass_context
def jobs_cancel(ctx: click.Context, job_id: int) -> None:
    from training.jobs import JobError, request_cancel

    database = _database(_settings(ctx))
    _require_schema(database)
    try:
        with database.session() as session:
            job = request_cancel(session, job_id=job_id)
            status = job.status
    except JobError as exc:
        _fail(str(exc))
    click.echo(f"job {job_id}: cancel requested ({status})")


@main.group(invoke_without_command=True)
@click.option("--kind", type=click.Choice(OPS_EVENT_KINDS), default=None, help="Only this kind.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.pass_context
def events(ctx: click.Context, kind: str | None, limit: int) -> None:
    """Ops events (deployment changes, finished jobs, suspended reviewers, escalated items), newest first,
    with their delivery to the ops webhook (or send a test event)."""
    if ctx.invoked_subcommand is not None:
        return
    from core.events import recent_events

    database = _database(_settings(ctx))
    _require_schema(database)
    with database.session() as session:
        rows = [
            f"{e.id:>5}  {e.created_at:%Y-%m-%d %H:%M}  {e.kind:<18} {e.status:<9}"
            + (f" ({e.attempts} attempts: {e.last_error})" if e.last_error else "")
            + f"  {e.text}"
            for e in recent_events(session, kind=kind, limit=limit)
        ]
    click.echo("\n".join(rows) if rows else "no events")


@events.command("test")
@click.pass_context
def events_test(ctx: click.Context) -> None:
    """Record a test event; a worker sends it to the ops webhook within seconds."""
    from core.events import emit

    settings = _settings(ctx)
    database = _database(settings)
    _require_schema(database)
    with database.session() as session:
        event_id = emit(
            session,
            "test",
            f"Test message from HelpLoop, sent by {_cli_actor()} from the command line.",
            path="/operator/activity",
        ).id
    where = settings.ops_webhook_url or "nowhere: HELPLOOP_OPS_WEBHOOK_URL is not set"
    click.echo(f"test event {event_id} recorded; a worker sends it to {where}")


# --------------------------------------------------------------------------------------------- mail


@main.group()
def mail() -> None:
    """Replies by e-mail (HELPLOOP_SMTP_URL, HELPLOOP_MAIL_FROM)."""


@mail.command("test")
@click.option("--to", "address", required=True, help="The address to send the test e-mail to.")
@click.pass_context
def mail_test(ctx: click.Context, address: str) -> None:
    """Send one test e-mail now through the SMTP server set up, as the live chat's replies go out: exits
    non-zero with the server's words when it refuses."""
    import smtplib

    from core.mail import email_address
    from serving.mail import Mailer, failure

    settings = _settings(ctx)
    if not settings.mail_on:
        _fail("replies by e-mail are not set up: set HELPLOOP_SMTP_URL and HELPLOOP_MAIL_FROM")
    if email_address(address) is None:
        _fail(f"--to: {address!r} is no e-mail address")
    mailer = Mailer(settings)
    try:
        message_id = mailer.send_test(address)
    except (smtplib.SMTPException, OSError) as exc:
        _fail(f"{mailer.server.describe()} did not take it: {failure(exc).error}")
    click.echo(f"sent to {address} through {mailer.server.describe()} (Message-ID {message_id})")


# ----------------------------------------------------------------------------------------- channels


@main.group(invoke_without_command=True)
@click.pass_context
def channels(ctx: click.Context) -> None:
    """Messaging apps (Telegram, WhatsApp, Messenger): which are set up, their webhook addresses, and their
    messages of the last 24 hours (sent, waiting, failed with the last error)."""
    if ctx.invoked_subcommand is not None:
        return
    from datetime import timedelta

    from core.channels import CHANNELS, counts
    from core.models import utcnow

    settings = _settings(ctx)
    database = _database(settings)
    _require_schema(database)
    with database.session() as session:
        figures = counts(session, since=utcnow() - timedelta(hours=24))
    base = settings.public_url.rstrip("/") or "https://<this app's address>"
    for name in CHANNELS:
        if name not in settings.channels:
            click.echo(f"{name}: not set up")
            continue
        line = figures[name]
        click.echo(
            f"{name}: webhook {base}/channels/{name}/webhook; last 24 h: {line.chats} new conversations, "
            f"{line.sent} messages sent, {line.pending} waiting, {line.failed} failed"
            + (f" (last error: {line.last_error})" if line.last_error else "")
        )
        if name == "whatsapp":  # after the 24-hour reply window
            template = settings.whatsapp_template
            click.echo(
                f"  after 24 h: the template {template[0]} ({template[1]}) asks the customer to write back"
                if template
                else "  after 24 h: replies do not reach the customer (no HELPLOOP_WHATSAPP_REOPEN_TEMPLATE)"
            )
        elif name == "messenger":
            click.echo(
                "  the team's replies go with the HUMAN_AGENT tag: taken for 7 days"
                if settings.messenger_human_agent
                else "  the team's replies are taken for 24 hours (HELPLOOP_MESSENGER_HUMAN_AGENT off)"
            )


@channels.command("connect")
@click.argument("channel", type=click.Choice(["telegram"]))
@click.option("--url", default=None, help="The webhook's public address (default: HELPLOOP_PUBLIC_URL's).")
@click.pass_context
def channels_connect(ctx: click.Context, channel: str, url: str | None) -> None:
    """Register this app's webhook with Telegram (setWebhook, with the webhook secret), so the bot's chats
    reach HelpLoop. WhatsApp's and Messenger's webhooks are entered in Meta's app dashboard instead (address
    and verify token: see `helploop channels`)."""
    from core.channels import telegram_webhook_address
    from serving.channels import ConnectError, connect_telegram

    settings = _settings(ctx)
    if channel not in settings.channels:
        _fail("telegram is not set up: set HELPLOOP_TELEGRAM_BOT_TOKEN and HELPLOOP_TELEGRAM_WEBHOOK_SECRET")
    if url is None:
        if not settings.public_url:
            _fail("give --url https://… or set HELPLOOP_PUBLIC_URL (the address Telegram can reach)")
        url = telegram_webhook_address(settings.public_url)
    if not url.startswith("https://"):
        _fail(f"Telegram sends updates to https addresses only, not {url!r}")
    try:
        connect_telegram(settings, url)
    except ConnectError as exc:
        _fail(str(exc), code=1)
    click.echo(f"telegram: updates now go to {url}")


# -------------------------------------------------------------------------------------------- users


@main.group()
def users() -> None:
    """Reviewer and operator accounts."""


@users.command("create")
@click.option("--username", required=True)
@click.option("--role", required=True, type=click.Choice(["reviewer", "operator"]))
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts).")
@click.pass_context
def users_create(ctx: click.Context, username: str, role: str, password_stdin: bool) -> None:
    """Create an account (the first operator is made this way)."""
    from crowd_feedback.reviewers import AccountError, create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    database = _database(_settings(ctx))
    _require_schema(database)
    try:
        with database.session() as session:
            user = create_user(session, username=username, password=password, role=role, actor=_cli_actor())
            user_id = user.id
    except AccountError as exc:
        _fail(str(exc))
        return
    click.echo(f"created {role} {username} (id {user_id})")


def _cli_actor() -> str:
    """Who ran the command, for the audit trail: $USER, else the account's name (containers, cron and
    ``docker compose exec`` often set no $USER)."""
    name = os.environ.get("USER")
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no name in the environment and none in the password database
            name = "unknown"
    return f"cli:{name}"


@users.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """Every account: role, status (active, suspended and why, deactivated), gold record, two-factor sign-in,
    last sign-in, e-mail address (where a forgotten password's link goes; "-": none), last change."""
    from crowd_feedback.reviewers import list_accounts

    database = _database(_settings(ctx))
    _require_schema(database)
    with database.session() as session:
        rows = list_accounts(session)
    click.echo(
        f"{'username':<20} {'role':<9} {'status':<11} {'gold':>7}  {'2FA':<3}  {'signed in (UTC)':<16}  "
        f"{'e-mail':<30}  last change"
    )
    for row in rows:
        status = "deactivated" if not row.active else "suspended" if row.suspended_reason else "active"
        login = f"{row.last_login_at:%Y-%m-%d %H:%M}" if row.last_login_at else "never"
        second = "sso" if row.sso else "on" if row.two_factor else "off"
        click.echo(
            f"{row.username:<20} {row.role:<9} {status:<11} {row.gold:>7}  {second:<3}  {login:<16}  "
            f"{row.email or '-':<30}  {row.last_event}"
        )
        if row.suspended_reason and row.active:
            click.echo(f"{'':<20} suspended: {row.suspended_reason}")


def _account_change(ctx: click.Context, change: Any, done: str) -> None:
    """Run ``change(session)`` in one transaction; an AccountError exits non-zero and changes nothing."""
    from crowd_feedback.reviewers import AccountError

    database = _database(_settings(ctx))
    _require_schema(database)
    try:
        with database.session() as session:
            change(session)
    except AccountError as exc:
        _fail(str(exc))
    click.echo(done)


@users.command("set-password")
@click.option("--username", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (scripts).")
@click.pass_context
def users_set_password(ctx: click.Context, username: str, password_stdin: bool) -> None:
    """Set a new password (ends the account's open sessions)."""
    from crowd_feedback.reviewers import set_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    _account_change(
        ctx,
        lambda session: set_password(session, username=username, password=password, actor=_cli_actor()),
        f"new password set for {username}",
    )


@users.command("set-email")
@click.option("--username", required=True)
@click.option("--email", required=True, help="The address ('' removes it).")
@click.pass_context
def users_set_email(ctx: click.Context, username: str, email: str) -> None:
    """Set the address a link to set a new password goes to, when its owner forgets theirs (each person can
    set their own on their account page)."""
    from crowd_feedback.reviewers import set_email

    _account_change(
        ctx,
        lambda session: set_email(session, username=username, email=email, actor=_cli_actor()),
        f"e-mail address of {username} set to {email.strip().lower()}"
        if email.strip()
        else f"e-mail address of {username} removed",
    )


def _users_set_active(ctx: click.Context, username: str, reason: str, *, active: bool) -> None:
    from crowd_feedback.reviewers import set_active

    _account_change(
        ctx,
        lambda session: set_active(
            session, username=username, active=active, actor=_cli_actor(), reason=reason
        ),
        f"{username} {'reactivated' if active else 'deactivated'}",
    )


@users.command("deactivate")
@click.option("--username", required=True)
@click.option("--reason", default="", help="Why (kept in the audit trail).")
@click.pass_context
def users_deactivate(ctx: click.Context, username: str, reason: str) -> None:
    """No more logins; open sessions end and claimed items go back to the queue."""
    _users_set_active(ctx, username, reason, active=False)


@users.command("reactivate")
@click.option("--username", required=True)
@click.option("--reason", default="", help="Why (kept in the audit trail).")
@click.pass_context
def users_reactivate(ctx: click.Context, username: str, reason: str) -> None:
    """Let a deactivated account log in again."""
    _users_set_active(ctx, username, reason, active=True)


@users.command("reinstate")
@click.option("--username", required=True)
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.pass_context
def users_reinstate(ctx: click.Context, username: str, reason: str) -> None:
    """Lift the gold check's suspension of a reviewer; their gold record starts again."""
    from crowd_feedback.reviewers import reinstate

    _account_change(
        ctx,
        lambda session: reinstate(session, username=username, actor=_cli_actor(), reason=reason),
        f"{username} reinstated (gold record starts again)",
    )


@users.command("reset-two-factor")
@click.option("--username", required=True)
@click.option("--reason", required=True, help="Why, e.g. 'phone lost, identity checked by call' (audited).")
@click.pass_context
def users_reset_two_factor(ctx: click.Context, username: str, reason: str) -> None:
    """Turn two-factor sign-in off for an account whose phone is lost (the person signs in with the password,
    then sets it up again); its open sessions end. For the last operator, when nobody can sign in to do it."""
    from crowd_feedback.two_factor import reset

    _account_change(
        ctx,
        lambda session: reset(session, username=username, actor=_cli_actor(), reason=reason),
        f"two-factor sign-in reset for {username}: they sign in with the password and set it up again",
    )


@users.command("unlink-sso")
@click.option("--username", required=True)
@click.option("--reason", required=True, help="Why, e.g. 'moving to the new identity provider' (audited).")
@click.pass_context
def users_unlink_sso(ctx: click.Context, username: str, reason: str) -> None:
    """Undo an account's link to single sign-on: it signs in with a password again (set one with
    `helploop users set-password`). The way back in when the identity provider is gone or replaced."""
    from crowd_feedback.single_sign_on import unlink

    _account_change(
        ctx,
        lambda session: unlink(session, username=username, actor=_cli_actor(), reason=reason),
        f"{username} is unlinked from single sign-on: it signs in with its password (set one first)",
    )


@main.group()
def tokens() -> None:
    """API tokens for the admin API (/api/v1/admin: knowledge base, retraining, rollout), one per use."""


@tokens.command("create")
@click.option("--username", required=True, help="The operator the token acts as.")
@click.option("--name", required=True, help="What it is for, e.g. 'ci deploy'.")
@click.pass_context
def tokens_create(ctx: click.Context, username: str, name: str) -> None:
    """Create a token and print it once (only its hash is kept): put it in your CI's secret store."""
    from crowd_feedback.reviewers import AccountError, create_api_token

    database = _database(_settings(ctx))
    _require_schema(database)
    try:
        with database.session() as session:
            token, secret = create_api_token(session, username=username, name=name, actor=_cli_actor())
            token_id = token.id
    except AccountError as exc:
        _fail(str(exc))
    click.echo(f"created token {token_id} ({name}) for {username}; it is shown only now:", err=True)
    click.echo(secret)


@tokens.command("list")
@click.pass_context
def tokens_list(ctx: click.Context) -> None:
    """Every token: id, operator, name, first characters, created, last used, revoked."""
    from crowd_feedback.reviewers import list_api_tokens

    database = _database(_settings(ctx))
    _require_schema(database)

    def when(moment: Any) -> str:
        return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"

    with database.session() as session:
        rows = [
            f"{t.id}\t{t.user.username}\t{t.name}\t{t.prefix}…\tcreated {when(t.created_at)}\t"
            f"used {when(t.last_used_at)}\t{'revoked ' + when(t.revoked_at) if t.revoked_at else 'active'}"
            for t in list_api_tokens(session)
        ]
    click.echo("\n".join(rows) if rows else "no API tokens")


@tokens.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def tokens_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke a token: it stops working at once."""
    from crowd_feedback.reviewers import revoke_api_token

    _account_change(
        ctx,
        lambda session: revoke_api_token(session, token_id=token_id, actor=_cli_actor()),
        f"revoked token {token_id}",
    )


# -------------------------------------------------------------------------------------------- crowd


@main.group()
def crowd() -> None:
    """Crowd labels: truth inference."""


def _read_crowd_csv(
    path: str, columns: tuple[str, ...], *, optional: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """The rows' values of ``columns``, then of those ``optional`` columns the header has (read once)."""
    import csv

    file = Path(path)
    if not file.is_file():
        _fail(f"{path}: file not found")
    rows: list[tuple[str, ...]] = []
    with io.StringIO(_utf8_file(path), newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            header = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in columns if c not in header]
            columns += tuple(c for c in optional if c in header)
            if missing:
                _fail(
                    f"{path}:1: header must have the columns {', '.join(columns)} "
                    f"(missing: {', '.join(missing)})"
                )
            for row in reader:
                values = tuple((row.get(c) or "").strip() for c in columns)
                for column, value in zip(columns, values, strict=True):
                    if not value:
                        _fail(f"{path}:{reader.line_num}: field '{column}' is empty")
                rows.append(values)
        except csv.Error as exc:
            _fail(f"{path}:{reader.reader.line_num}: not a CSV row ({exc})")  # DictReader's lags a row
    if not rows:
        _fail(f"{path}: no rows")
    return rows


def _utf8_file(path: str) -> str:
    try:
        return utf8_text(path, Path(path).read_bytes())
    except KnowledgeBaseFormatError as exc:
        _fail(str(exc))


@crowd.command("aggregate")
@click.option(
    "--answers",
    "answers_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="CSV with item,worker,label rows.",
)
@click.option(
    "--method",
    default="hierarchical_ds",
    show_default=True,
    type=click.Choice(["majority", "dawid_skene", "one_coin", "hierarchical_ds"]),
)
@click.option(
    "--truth", "truth_file", type=click.Path(dir_okay=False), help="CSV item,label: print accuracy."
)
@click.option(
    "--model-votes",
    "model_votes_file",
    type=click.Path(dir_okay=False),
    help=(
        "CSV item,label[,confidence]: the model's predictions as one more voter, trusted as far as its "
        "confidence (without that column: a worker whose accuracy is estimated like anyone's)."
    ),
)
@click.option(
    "--out",
    "out_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Write item,label,confidence here.",
)
def crowd_aggregate(
    answers_file: str, method: str, truth_file: str | None, model_votes_file: str | None, out_file: str
) -> None:
    """Infer one label per item from several workers' labels (no database needed)."""
    import csv
    import time as clock

    from crowd_feedback.aggregation import answers_from_rows, get_strategy, with_model_votes

    # Every input is read and checked before anything is fitted or written.
    rows = _read_crowd_csv(answers_file, ("item", "worker", "label"))
    answers = answers_from_rows((row[0], row[1], row[2]) for row in rows)
    truth: dict[str, str] = {}
    if truth_file:
        truth = {row[0]: row[1] for row in _read_crowd_csv(truth_file, ("item", "label"))}
        if not {a.item for a in answers} & set(truth):
            _fail(f"{truth_file}: no item in common with {answers_file}")
    confident: dict[str, tuple[str, float]] | None = None
    if model_votes_file:
        rows = _read_crowd_csv(model_votes_file, ("item", "label"), optional=("confidence",))
        if len(rows[0]) == 3:  # the file has a confidence column
            confident = {}
            for line, (item, label, text) in enumerate(rows, start=2):
                try:
                    confidence = float(text)
                except ValueError:
                    confidence = -1.0
                if not 0.0 <= confidence <= 1.0:
                    _fail(f"{model_votes_file}:{line}: field 'confidence' must be a number from 0 to 1")
                confident[item] = (label, confidence)
        else:
            votes = {row[0]: row[1] for row in rows}
            try:
                answers = with_model_votes(answers, votes)
            except ValueError as exc:
                _fail(f"{answers_file}: {exc}")
    started = clock.perf_counter()
    result = get_strategy(method).aggregate(answers, model_votes=confident)
    seconds = clock.perf_counter() - started
    labels, confidences = result.labels(), result.confidences()
    target = Path(out_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")  # the file appears whole or not at all
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item", "label", "confidence"])
        for item in result.items:
            writer.writerow([item, labels[item], f"{confidences[item]:.6f}"])
    partial.replace(target)
    click.echo(
        f"{method}: {len(result.items)} items, {len(answers)} answers, "
        f"{len(result.worker_accuracy)} workers in {seconds:.2f}s; wrote {out_file}"
    )
    if truth:
        known = [item for item in truth if item in labels]
        accuracy = sum(labels[item] == truth[item] for item in known) / len(known)
        click.echo(f"accuracy on {len(known)} items with truth: {accuracy:.4f}")


@crowd.command("gold")
@click.option("--per-intent", default=2, show_default=True, type=click.IntRange(1, 50))
@click.option("--seed", default=0, show_default=True)
@click.pass_context
def crowd_gold(ctx: click.Context, per_intent: int, seed: int) -> None:
    """Add check questions with known answers, drawn from the knowledge base's examples (never one that is
    gold already)."""
    from crowd_feedback.gold import GoldError, add_gold_from_knowledge_base, production_views
    from crowd_feedback.review import ReviewPolicy

    settings = _settings(ctx)
    database = _database(settings)
    _require_schema(database)
    engine = _production_engine(database, fallback="drawing at random")
    bot_view = production_views(engine, **settings.replies)
    try:
        with database.session() as session:
            added = add_gold_from_knowledge_base(
                session,
                per_intent=per_intent,
                policy=ReviewPolicy.from_settings(settings),
                seed=seed,
                bot_view=bot_view,
            )
    except GoldError as exc:
        _fail(str(exc))
    how = (
        "drawn where the production model, not trained on them, was least sure"
        if bot_view is not None
        else "drawn at random: no production model with held-out rows"
    )
    click.echo(f"added {added} gold items ({how})")


@crowd.command("guidelines")
@click.option(
    "--file",
    "path",
    default=None,
    help="Markdown file to save as the new version (default: print the guidelines in use)",
)
@click.option("--actor", default=lambda: _cli_actor(), show_default="cli:$USER")
@click.pass_context
def crowd_guidelines(ctx: click.Context, path: str | None, actor: str) -> None:
    """Print the reviewing guidelines in use, or save a Markdown file as their new version (reviewers are
    asked to read them before their next item). Kept in version control, they can be pushed from CI."""
    from crowd_feedback.guidelines import GuidelinesError, current_guidelines, save_guidelines

    settings = _settings(ctx)
    database = _database(settings)
    _require_schema(database)
    if path is None:
        with database.session() as session:
            shown = current_guidelines(session)
        click.echo(shown.text)
        return
    file = Path(path)
    if not file.is_file():
        _fail(f"{path}: file not found")
    text = _utf8_file(path)
    try:
        with database.session() as session:
            saved = save_guidelines(session, text=text, author=actor)
    except GuidelinesError as exc:
        _fail(f"{path}: {exc}")
    if saved is None:
        click.echo("not changed: that is the text in use")
    else:
        click.echo(f"saved as guidelines version {saved.version}")


_actor = click.option("--actor", default=lambda: _cli_actor(), show_default="cli:$USER")
_reason = click.option("--reason", required=True, help="Why (kept in the audit trail).")
_override = click.option("--override-reason", help="Deploy even though the promotion gate found it worse.")


@main.group()
def models() -> None:
    """Built models: list them, delete the bundles nothing needs any more."""


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


@models.command("list")
@click.pass_context
def models_list(ctx: click.Context) -> None:
    """Every registered model, newest first: built, gate, what it does now, bundle size (or when pruned)."""
    from sqlalchemy import select

    from core.models import ModelVersion
    from training.model_retention import folder_bytes, model_roles

    database = _database(_settings(ctx))
    _require_schema(database)
    with database.session() as session:
        rows = session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())).all()
        roles = model_roles(session)
    if not rows:
        click.echo("no model has been built yet")
        return
    for row in rows:
        gate = ((row.metrics or {}).get("gate") or {}).get("decision") or "-"
        if row.pruned_at is not None:
            state = f"pruned {row.pruned_at:%Y-%m-%d %H:%M} by {row.pruned_by}"
        else:
            size = folder_bytes(Path(row.bundle_path))
            state = f"{_size(size)} at {row.bundle_path}" if size else f"bundle missing at {row.bundle_path}"
        role = roles.get(row.version, "")
        click.echo(
            f"{row.version}  built {row.created_at:%Y-%m-%d %H:%M}  gate {gate:<8} {state}  {role}".rstrip()
        )


@models.command("prune")
@click.option(
    "--keep",
    default=5,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Keep the bundles of this many newest models.",
)
@click.option(
    "--keep-rollbacks",
    default=2,
    show_default=True,
    type=click.IntRange(0, 100),
    help="Keep the last N earlier production models (what a rollback returns to).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@_actor
@click.pass_context
def models_prune(ctx: click.Context, keep: int, keep_rollbacks: int, dry_run: bool, actor: str) -> None:
    """Delete the bundles of old models. Those serving (production, canary, shadow), the ones a rollback can
    return to, the newest and any outside the model folder are always kept; a pruned version stays listed but
    can no longer be deployed."""
    from training.model_retention import prune_models

    settings = _settings(ctx)
    database = _database(settings)
    _require_schema(database)
    report = prune_models(
        database, settings, keep=keep, keep_rollbacks=keep_rollbacks, actor=actor, dry_run=dry_run
    )
    verb = "would delete" if dry_run else "deleted"
    for entry in report.pruned:
        if entry.version in report.failed:
            click.echo(f"could not delete {entry.path}: {report.failed[entry.version]}", err=True)
        else:
            click.echo(f"{verb} {entry.version} ({_size(entry.bytes)}, {entry.path})")
    for kept in report.kept:
        click.echo(f"kept {kept.version}: {kept.why}")
    click.echo(f"{verb} {len(report.pruned) - len(report.failed)} bundle(s), {_size(report.freed_bytes)}")
    if report.failed:
        sys.exit(1)


@models.command("backup")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def models_backup(ctx: click.Context, folder: Path) -> None:
    """Copy the bundles of the models that serve and that a rollback returns to into FOLDER/models, once
    per version (what `db backup` does beside an SQLite backup; with PostgreSQL, run it next to pg_dump)."""
    from training.model_backup import MODELS_FOLDER, backup_bundles

    settings = _settings(ctx)
    database = _database(settings)
    _require_schema(database)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        copies = backup_bundles(database, folder)
    finally:
        database.dispose()
    click.echo(
        f"{MODELS_FOLDER}/ in {folder}: copied {len(copies.copied)} ({_size(copies.copied_bytes)}), "
        f"{len(copies.present)} there already, {len(copies.removed)} removed"
    )
    for version, why in copies.missing.items():
        click.echo(f"warning: model {version} not copied: {why}", err=True)
    if copies.missing:
        sys.exit(1)


@models.command("restore")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.pass_context
def models_restore(ctx: click.Context, folder: Path) -> None:
    """Copy back from FOLDER/models each bundle the database serves or rolls back to that is missing from
    its path (after `pg_restore`; `db restore` does it by itself). Exit 1 when one is still missing."""
    from training.model_backup import restore_bundles

    settings = _settings(ctx)
    database = _database(settings)
    _require_schema(database)
    try:
        bundles = restore_bundles(database, folder)
    finally:
        database.dispose()
    for version, path in bundles.restored:
        click.echo(f"model {version}: bundle copied back to {path}")
    for version, path, why in bundles.missing:
        click.echo(f"error: model {version} has no bundle at {path} ({why})", err=True)
    if not bundles.restored and not bundles.missing:
        click.echo("every bundle the database needs is in place")
    if bundles.missing:
        sys.exit(1)


@main.group()
def deploy() -> None:
    """What serves traffic: status, shadow, canary, promote, rollback (every change is recorded)."""


def _deploy(
    ctx: click.Context,
    action: str,
    *,
    actor: str,
    reason: str,
    version: str | None = None,
    share: float = 0.1,
    override_reason: str | None = None,
) -> None:
    from training.rollout import RolloutError, apply_action, describe

    database = _database(_settings(ctx))
    _require_schema(database)
    try:
        with database.session() as session:
            row = apply_action(
                session,
                action=action,
                actor=actor,
                reason=reason,
                version=version,
                share=share,
                override_reason=override_reason,
            )
            click.echo(describe(row))
    except RolloutError as exc:
        _fail(str(exc))


@deploy.command("status")
@click.pass_context
def deploy_status(ctx: click.Context) -> None:
    """The deployment in force and the ten before it."""
    from sqlalchemy import select

    from core.models import Deployment
    from crowd_feedback.outcomes import canary_comparison, promotion_effects
    from training.rollout import describe

    database = _database(_settings(ctx))
    _require_schema(database)
    with database.session() as session:
        rows = session.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(11)).all()
        click.echo(describe(rows[0] if rows else None))
        for row in rows[1:]:
            click.echo(f"  earlier ({row.created_at:%Y-%m-%d %H:%M}): {describe(row)}")
        canary = canary_comparison(session)
        effects = promotion_effects(session, limit=1)
    if canary is not None:
        click.echo(f"canary on live traffic since {canary.at:%Y-%m-%d %H:%M} UTC (production -> canary):")
        _print_differences(canary)
    if effects:
        last = effects[0]
        click.echo(
            f"last model change {last.at:%Y-%m-%d %H:%M} UTC, production's questions 7 days before -> after "
            f"({last.baseline.version} -> {last.candidate.version}):"
        )
        _print_differences(last)


def _print_differences(comparison: Any) -> None:
    for d in comparison.differences:
        if d.interval is None:
            click.echo(f"  {d.outcome:<20} no data")
            continue
        low, high = d.interval
        click.echo(
            f"  {d.outcome:<20} {d.baseline_share:6.1%} of {d.baseline[1]:<6} -> {d.candidate_share:6.1%} of "
            f"{d.candidate[1]:<6} {d.difference * 100:+5.1f} points ({low * 100:+.1f} to {high * 100:+.1f})  "
            f"{d.verdict}"
        )


@deploy.command("shadow")
@click.argument("version")
@_actor
@_reason
@click.pass_context
def deploy_shadow(ctx: click.Context, version: str, actor: str, reason: str) -> None:
    """Score VERSION on live traffic without showing it."""
    _deploy(ctx, "shadow", version=version, actor=actor, reason=reason)


@deploy.command("canary")
@click.argument("version")
@click.option("--share", default=0.1, show_default=True, type=click.FloatRange(0.0, 1.0))
@_actor
@_reason
@_override
@click.pass_context
def deploy_canary(
    ctx: click.Context, version: str, share: float, actor: str, reason: str, override_reason: str | None
) -> None:
    """Serve VERSION to a share of sessions. Refused when the promotion gate found it worse."""
    _deploy(
        ctx,
        "canary",
        version=version,
        share=share,
        actor=actor,
        reason=reason,
        override_reason=override_reason,
    )


@deploy.command("promote")
@click.argument("version")
@_actor
@_reason
@_override
@click.pass_context
def deploy_promote(
    ctx: click.Context, version: str, actor: str, reason: str, override_reason: str | None
) -> None:
    """Make VERSION the production model (clears canary and shadow). Refused when the gate found it worse."""
    _deploy(ctx, "promote", version=version, actor=actor, reason=reason, override_reason=override_reason)


@deploy.command("rollback")
@_actor
@_reason
@click.pass_context
def deploy_rollback(ctx: click.Context, actor: str, reason: str) -> None:
    """Back to the production model before the current one (one action, no restart)."""
    _deploy(ctx, "rollback", actor=actor, reason=reason)


@deploy.command("end-canary")
@_actor
@_reason
@click.pass_context
def deploy_end_canary(ctx: click.Context, actor: str, reason: str) -> None:
    """Take the canary out; production (and any shadow) stay as they are."""
    _deploy(ctx, "end_canary", actor=actor, reason=reason)


@deploy.command("end-shadow")
@_actor
@_reason
@click.pass_context
def deploy_end_shadow(ctx: click.Context, actor: str, reason: str) -> None:
    """Stop scoring the shadow model; production (and any canary) stay as they are."""
    _deploy(ctx, "end_shadow", actor=actor, reason=reason)


@deploy.command("precision")
@click.argument("target", required=False)
@_actor
@click.option("--reason", help="Why (kept in the audit trail); needed to change it.")
@click.pass_context
def deploy_precision(ctx: click.Context, target: str | None, actor: str, reason: str | None) -> None:
    """How sure the bot must be to answer. Without TARGET: the precision in force and, for the production
    model, what each offered precision would answer (measured on its held-out rows). TARGET (e.g. 0.90, or
    'built' for the models' own): applied to every serving model within a poll, no retraining, no restart."""
    from core.registry import answer_policy_history, serving_plan
    from training.rollout import RolloutError, precision_options, set_answer_precision

    database = _database(_settings(ctx))
    _require_schema(database)
    with database.session() as session:
        if target is not None:
            if not reason:
                _fail("give --reason (it is kept in the audit trail)")
            value: float | None = None
            if target != "built":
                try:
                    value = float(target)
                except ValueError:
                    _fail(f"TARGET must be a precision such as 0.90, or 'built', not {target!r}")
            try:
                set_answer_precision(session, target_precision=value, actor=actor, reason=reason or "")
            except RolloutError as exc:
                _fail(str(exc))
        history = answer_policy_history(session, limit=5)
        plan = serving_plan(session)
    in_force = history[0].target_precision if history else None
    click.echo(f"answer precision: {'as each model was built' if in_force is None else f'{in_force:.2f}'}")
    for row in history:
        value_text = "built" if row.target_precision is None else f"{row.target_precision:.2f}"
        click.echo(f"  {row.created_at:%Y-%m-%d %H:%M} {value_text} by {row.actor}: {row.reason}")
    if plan is None or plan["production"] is None:
        click.echo("no model has been built yet")
        return
    version, path = plan["production"]
    options = precision_options(path)
    if not options:
        click.echo(f"production model {version} was built before precision options: rebuild to choose one")
        return
    click.echo(f"production model {version} (on its held-out rows):")
    click.echo("  precision  answers  measured  threshold  margin")
    for option in options:
        measured = "-" if option.precision is None else f"{option.precision:.3f}"
        mark = " (built)" if option.built else ""
        click.echo(
            f"  {option.target:9.2f}  {option.coverage:7.1%}  {measured:>8}  {option.threshold:9.3f}"
            f"  {option.margin:6.2f}{mark}"
        )


@crowd.command("reaggregate")
@click.option(
    "--method",
    default="hierarchical_ds",
    show_default=True,
    type=click.Choice(["majority", "dawid_skene", "one_coin", "hierarchical_ds"]),
)
@click.option("--wait", is_flag=True, help="Run it now in this process and print the summary.")
@click.pass_context
def crowd_reaggregate(ctx: click.Context, method: str, wait: bool) -> None:
    """Queue a bulk re-aggregation of every judgement (a job): resolutions and verified pairs follow."""
    from serving.job_kinds import install as install_job_kinds
    from training.jobs import enqueue

    install_job_kinds()

    settings = _settings(ctx)
    database = _database(settings)
    _require_schema(database)
    with database.session() as session:
        job_id = enqueue(session, kind="reaggregate", params={"method": method}, created_by=_cli_actor()).id
    click.echo(f"queued re-aggregation job {job_id}")
    if wait:
        worker = _job_worker(database, settings, poll_seconds=0.5)
        worker.start()
        status = _follow(database, job_id)
        worker.stop()
        if status != "succeeded":
            sys.exit(1)


@crowd.command("export")
@click.argument("what", type=click.Choice(["items", "pairs", "answers", "turns"]))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="The file to write.")
@click.option("--format", "fmt", default="csv", show_default=True, type=click.Choice(["csv", "jsonl"]))
@click.pass_context
def crowd_export(ctx: click.Context, what: str, out: str, fmt: str) -> None:
    """Export review items (with judgements), verified pairs, item,worker,label answers, or the turn log
    (redacted text)."""
    from tqdm import tqdm

    from crowd_feedback.export import ExportError, count_rows, write_export

    database = _database(_settings(ctx))
    _require_schema(database)
    try:
        with database.session() as session:
            total = count_rows(session, what)
            with tqdm(total=total, unit="row", desc=f"export {what}", disable=None) as bar:

                def report(fraction: float, _step: str) -> None:
                    bar.update(round(fraction * total) - bar.n)

                summary = write_export(session, what=what, fmt=fmt, out=out, report=report)
                bar.update(summary["rows"] - bar.n)
    except ExportError as exc:
        _fail(str(exc))
    click.echo(
        f"wrote {summary['rows']} rows to {out} ({summary['bytes']} bytes, sha256 {summary['sha256'][:12]})"
    )


@crowd.command("suggestions")
@click.pass_context
def crowd_suggestions(ctx: click.Context) -> None:
    """New-intent suggestions: questions reviewers found no intent for, most asked first."""
    from crowd_feedback.suggestions import intent_suggestions

    database = _database(_settings(ctx))
    _require_schema(database)
    with database.session() as session:
        rows = intent_suggestions(session)
    if not rows:
        click.echo("no open suggestions")
        return
    click.echo(f"{'item':>6}  {'asked':>5}  {'status':<9}  question  [reviewers proposed]")
    for row in rows:
        proposed = "; ".join(f"{text} x{n}" if n > 1 else text for text, n in row.proposals)
        question = row.question if len(row.question) <= 70 else row.question[:67] + "..."
        click.echo(f"{row.item_id:>6}  {row.asked:>5}  {row.status:<9}  {question}  [{proposed}]")


@crowd.command("reviewers")
@click.option(
    "--days", default=30, show_default=True, type=click.IntRange(1, 365), help="How many days back."
)
@click.pass_context
def crowd_reviewers(ctx: click.Context, days: int) -> None:
    """Each reviewer's work: judgements, agreement with the final label, gold, median time; and the hours it
    took and what one resolved item cost in people's time."""
    from crowd_feedback.workforce import duration_text, workforce

    database = _database(_settings(ctx))
    _require_schema(database)
    since = datetime.now(UTC) - timedelta(days=days)
    with database.session() as session:
        work = workforce(session, since=since)

    def share(value: float | None) -> str:
        return f"{value:.0%}" if value is not None else "-"

    click.echo(
        f"{'username':<20} {'role':<9} {'status':<11} {'judged':>6} {'agree':>6} {'gold':>7} {'median':>8} "
        f"{'/hour':>6}"
    )
    for p in work.people:
        median = f"{p.median_seconds:.1f}s" if p.median_seconds is not None else "-"
        per_hour = f"{p.per_hour:.0f}" if p.per_hour is not None else "-"
        click.echo(
            f"{p.username:<20} {p.role:<9} {p.status:<11} {p.judgements:>6} {share(p.agreement):>6} "
            f"{p.gold_correct:>3}/{p.gold_answered:<3} {median:>8} {per_hour:>6}"
            + ("  FAST" if p.fast else "")
        )
    effort = work.effort

    line = (
        f"last {days} days: {effort.judgements} judgement{'' if effort.judgements == 1 else 's'}, "
        f"{effort.resolved_items} item{'' if effort.resolved_items == 1 else 's'} resolved"
    )
    if effort.timed:
        line += f", {duration_text(effort.work_seconds)} of review"
    if effort.seconds_per_resolved is not None:
        line += f", {duration_text(effort.seconds_per_resolved)} of people's time per resolved item"
    click.echo(line)


@crowd.command("adopt")
@click.argument("items", nargs=-1, required=True, type=int)
@click.option("--intent", "name", required=True, help="The new intent's name.")
@click.option("--answer", required=True, help="What the bot answers.")
@click.option("--title", default="", help="What customers see in 'did you mean...'.")
@click.pass_context
def crowd_adopt(ctx: click.Context, items: tuple[int, ...], name: str, answer: str, title: str) -> None:
    """Create a new intent from suggestions ITEMS: their questions become its examples (retrain next)."""
    from crowd_feedback.suggestions import SuggestionError, adopt_suggestions

    database = _database(_settings(ctx))
    _require_schema(database)
    try:
        with database.session() as session:
            adopted = adopt_suggestions(
                session, item_ids=items, name=name, answer=answer, title=title, actor=_cli_actor()
            )
    except SuggestionError as exc:
        _fail(str(exc))
    click.echo(
        f"intent {adopted.intent} created with {adopted.examples} example questions from items "
        f"{', '.join(map(str, adopted.items))} (knowledge base version {adopted.kb_version_id}); "
        "retrain to make the bot answer it"
    )


@main.group()
def conversations() -> None:
    """Personal data in the turn log: redact old originals, erase a customer's conversation."""


@conversations.command("redact-old")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Redact originals older than this (default: HELPLOOP_TURN_RETENTION_DAYS).",
)
@click.option("--wait", is_flag=True, help="Run it now in this process with a progress bar.")
@click.pass_context
def conversations_redact_old(ctx: click.Context, days: int | None, wait: bool) -> None:
    """Queue the retention job (it also runs daily by itself when HELPLOOP_TURN_RETENTION_DAYS is set)."""
    from training.jobs import enqueue

    settings = _settings(ctx)
    days = days or settings.turn_retention_days
    if days <= 0:
        _fail("say how old: --days N, or set HELPLOOP_TURN_RETENTION_DAYS")
    database = _database(settings)
    _require_schema(database)
    worker = _job_worker(database, settings, poll_seconds=0.5)  # registers the job kinds
    with database.session() as session:
        job_id = enqueue(session, kind="retention", params={"days": days}, created_by=_cli_actor()).id
    click.echo(f"queued retention job {job_id}: originals older than {days} days")
    if wait:
        worker.start()
        status = _follow(database, job_id)
        worker.stop()
        if status != "succeeded":
            sys.exit(1)


@conversations.command("erase")
@click.argument("session_id")
@click.option("--actor", default=lambda: _cli_actor(), show_default="cli:$USER")
@click.pass_context
def conversations_erase(ctx: click.Context, session_id: str, actor: str) -> None:
    """Delete a customer's conversation and its turns (and review items only it fed), on request."""
    from core.registry import NotFoundError
    from core.turn_search import compact_index
    from crowd_feedback.retention import erase_conversation

    database = _database(_settings(ctx))
    _require_schema(database)
    try:
        with database.session() as session:
            erased = erase_conversation(session, conversation_id=session_id, actor=actor)
            session.commit()
            compact_index(session)  # the erased texts' entries leave the search index (in steps)
    except NotFoundError as exc:
        _fail(str(exc))
    click.echo(
        f"erased session {session_id}: {erased['turns']} turns, {erased['review_items']} pending review items"
    )
    if not database.checkpoint():
        click.echo("the write-ahead log is in use by another process: it is emptied at its next checkpoint")


@main.command()
def redact() -> None:
    """Read text on stdin, write it with personal data replaced by placeholders to stdout."""
    from core.redaction import redact as redact_text

    for line in sys.stdin:
        sys.stdout.write(redact_text(line))


# --------------------------------------------------------------------------------------------- eval


@main.command("eval")
@click.option("--train", "train_file", required=True, type=click.Path(dir_okay=False))
@click.option("--test", "test_file", required=True, type=click.Path(dir_okay=False))
@click.option("--val", "val_file", type=click.Path(dir_okay=False), help="Used only to fit calibration/gate.")
@click.option("--shots", type=click.IntRange(min=1), help="Use N training rows per label.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--target-precision", type=click.FloatRange(0.5, 0.999), help="Gate target (default: settings)."
)
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write all metrics here.")
@click.option("--save-model", type=click.Path(file_okay=False), help="Also save the fitted bundle here.")
@click.pass_context
def evaluate(
    ctx: click.Context,
    train_file: str,
    test_file: str,
    val_file: str | None,
    shots: int | None,
    seed: int,
    target_precision: float | None,
    runtime: str,
    json_out: str | None,
    save_model: str | None,
) -> None:
    """Fit the default engine on TRAIN and evaluate on TEST (no database, no network)."""
    from serving.evaluate import run_evaluation

    settings = _settings(ctx)
    try:
        train = read_labelled_csv(train_file)
        test = read_labelled_csv(test_file)
        val = read_labelled_csv(val_file) if val_file else None
    except KnowledgeBaseFormatError as exc:
        _fail(str(exc))
        return
    result = run_evaluation(
        settings,
        train=train,
        test=test,
        val=val,
        shots=shots,
        seed=seed,
        target_precision=target_precision,
        runtime=runtime,
        save_model=save_model,
    )
    click.echo(result.table())
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result.metrics, indent=2))
        click.echo(f"wrote {json_out}")


if __name__ == "__main__":  # pragma: no cover
    main()
