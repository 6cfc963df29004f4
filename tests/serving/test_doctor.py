"""`helploop doctor`: each check says ok, warn or fail for the right reason; a failure fails the command."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from core import migrate
from core.backup import scheduled_backup
from core.db import Database
from core.kb_files import IntentData, KnowledgeBaseData
from core.models import Job, utcnow
from core.registry import register_model_version, set_deployment
from core.settings import Settings, load_settings
from serving import doctor
from serving.doctor import run_checks
from tests.conftest import TOY

TOY_KB = KnowledgeBaseData(
    {
        name: IntentData(name=name, title=name, answer=f"About {name}.", examples=list(rows))
        for name, rows in TOY.items()
    }
)


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(
        {"environment": "testing", "instance_path": str(tmp_path / "instance"), **overrides}, environ={}
    )


def _by_name(checks: list[Any]) -> dict[str, Any]:
    return {c.name: c for c in checks}


def _migrated(settings: Settings, revision: str = "head") -> Database:
    database = Database(settings)
    migrate.upgrade(database.engine, revision)
    return database


def _register(session: Any, version: str, path: str) -> None:
    register_model_version(
        session, version=version, bundle_path=path, data_hash="h" * 64, metrics={}, kb_version_id=None
    )


def _doctor(settings: Settings, *args: str) -> Any:
    from serving.cli import main

    return CliRunner().invoke(main, ["doctor", *args], obj={"settings": settings}, catch_exceptions=False)


def test_a_fresh_installation_fails_on_what_stops_it_from_answering(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _migrated(settings).dispose()
    checks = _by_name(run_checks(settings))
    assert [c.status for c in checks.values()] == [
        "ok", "ok", "fail", "fail", "ok", "ok", "ok", "ok", "warn", "ok", "ok", "warn"
    ]  # fmt: skip
    assert checks["models"].detail.startswith("no model is registered: build one")
    assert checks["knowledge base"].detail.startswith("empty: import one")
    assert checks["backups"].detail.startswith("no scheduled backups: set HELPLOOP_BACKUP_DIR")
    assert checks["alerts"].detail.startswith("no ops webhook")
    assert checks["review queue"].detail == "0 pending, 0 escalated, 0 check questions, 0 active accounts"
    result = _doctor(settings)
    assert result.exit_code == 1
    assert "FAIL  models           no model is registered" in result.output
    assert result.output.splitlines()[-1] == "2 failed, 2 warning(s), 8 ok"
    as_json = json.loads(_doctor(settings, "--json").output)
    assert as_json["summary"] == {"healthy": False, "ok": 8, "warn": 2, "fail": 2}
    assert [c["name"] for c in as_json["checks"]][:3] == ["database", "schema", "models"]


def test_an_old_schema_fails_and_the_checks_that_need_it_are_not_run(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _migrated(settings, "0021").dispose()
    checks = _by_name(run_checks(settings))
    assert checks["schema"].status == "fail"
    assert checks["schema"].detail == (
        f"revision 0021, this version needs {migrate.head_revision()}: run `helploop db upgrade`"
    )
    assert checks["models"].detail == "not checked: the schema is not this version's"
    unreachable = _settings(tmp_path, database_url="postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    checks = _by_name(run_checks(unreachable))
    assert checks["database"].status == "fail" and "cannot reach" in checks["database"].detail
    assert "secret" not in checks["database"].detail  # the password is never printed
    assert checks["workers"].detail == "not checked: the database cannot be reached"


def test_a_serving_installation_is_healthy_and_a_missing_bundle_fails_it(
    tmp_path: Path, toy_bundles: dict[str, Path]
) -> None:
    from core.knowledge_base import import_knowledge_base

    folder = tmp_path / "backups"
    settings = _settings(tmp_path, backup_dir=str(folder), ops_webhook_url="https://ops.example.com/hook")
    database = _migrated(settings)
    with database.session() as session:
        import_knowledge_base(session, incoming=TOY_KB, source="test")
        for version, path in toy_bundles.items():
            _register(session, version, str(path))
    scheduled_backup(settings.database_url, folder, keep=3)
    checks = run_checks(settings)
    assert {c.name: c.status for c in checks if c.status != "ok"} == {}, checks
    named = _by_name(checks)
    assert named["models"].detail == "production v2 (bundles and encoders present)"
    assert named["knowledge base"].detail.startswith(f"{len(TOY)} intents")
    assert _doctor(settings).exit_code == 0

    with database.session() as session:  # a canary whose bundle is gone
        _register(session, "v3", str(tmp_path / "gone"))
        set_deployment(
            session, production_version="v2", canary_version="v3", canary_share=0.1, actor="t", reason="t"
        )
    models = _by_name(run_checks(settings))["models"]
    assert models.status == "fail"
    assert models.detail == f"canary v3: {tmp_path / 'gone'} is not a model bundle (no manifest.json)"

    # An encoder that is neither installed nor in the bundle fails the model that needs it.
    broken = tmp_path / "broken"
    shutil.copytree(toy_bundles["v1"], broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["config"]["encoder"]["source"] = "no-such-encoder-package"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with database.session() as session:
        _register(session, "v4", str(broken))
        set_deployment(session, production_version="v4", actor="t", reason="t")
    models = _by_name(run_checks(settings))["models"]
    assert models.status == "fail" and "production v4: encoder minilm: encoder 'no-such-encoder-package'" in (
        models.detail
    )
    database.dispose()


def test_workers_backups_disk_and_rate_limits_warn_or_fail_when_they_should(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "backups"
    settings = _settings(tmp_path, backup_dir=str(folder), embedded_worker=False)
    database = _migrated(settings)
    now = utcnow()
    with database.session() as session:
        session.add(
            Job(
                kind="export",
                params={},
                created_by="t",
                status="queued",
                created_at=now - timedelta(minutes=11),
            )
        )
        session.add(Job(kind="export", params={}, created_by="t", status="queued", created_at=now))
        session.add(
            Job(
                kind="train",
                params={},
                created_by="t",
                status="running",
                lease_expires_at=now - timedelta(minutes=1),
            )
        )
    database.dispose()
    scheduled_backup(settings.database_url, folder, keep=3, now=now - timedelta(days=3))
    monkeypatch.setattr(doctor, "LOW_DISK_BYTES", 1 << 60)  # every disk is "low"
    checks = _by_name(run_checks(settings, now=now))
    workers = checks["workers"]
    assert workers.status == "warn"
    assert (
        "1 job(s) queued for over 10 minutes" in workers.detail
        and "start `helploop worker`" in workers.detail
    )
    assert "1 running job(s) whose worker stopped heartbeating" in workers.detail
    assert checks["backups"].status == "warn" and checks["backups"].detail.endswith(
        "72.0 h old, 1 kept: the daily backup has missed a day"
    )
    assert checks["disk"].status == "warn" and checks["disk"].detail.startswith("low on space: models (")
    closed = _settings(tmp_path, ratelimit_storage_url="redis://127.0.0.1:1/0")
    limits = _by_name(run_checks(closed))["rate limits"]
    assert limits.status == "fail" and limits.detail.startswith("storage redis://127.0.0.1:1/0")
    assert _by_name(run_checks(_settings(tmp_path, ratelimit_enabled=False)))["rate limits"].status == "warn"


@pytest.mark.postgres
def test_on_postgresql_the_database_checks_run(tmp_path: Path, postgres_schema_url: str) -> None:
    checks = _by_name(run_checks(_settings(tmp_path, database_url=postgres_schema_url)))
    assert checks["database"].status == "ok" and checks["database"].detail.startswith("postgresql at ")
    assert checks["schema"].detail == f"at revision {migrate.head_revision()}"
    assert checks["backups"].detail.startswith("no scheduled backups: set HELPLOOP_BACKUP_DIR")
    assert checks["workers"].status == "ok"


def test_a_redis_rate_limit_storage_that_answers_is_ok(tmp_path: Path) -> None:
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at 127.0.0.1:6379: {exc}")
    settings = _settings(tmp_path, ratelimit_storage_url="redis://127.0.0.1:6379/15")
    limits = _by_name(run_checks(settings))["rate limits"]
    assert (limits.status, limits.detail) == ("ok", "storage redis://127.0.0.1:6379/15 answers")


def test_the_review_queue_warns_when_the_crowd_loop_stalls(tmp_path: Path) -> None:
    from core.models import ReviewItem
    from crowd_feedback.review import ReviewPolicy, add_gold_item
    from crowd_feedback.reviewers import create_user

    settings = _settings(tmp_path)
    database = _migrated(settings)
    now = utcnow()
    with database.session() as session:
        session.add(ReviewItem(text="where is my card", status="pending", created_at=now - timedelta(days=8)))
        session.add(ReviewItem(text="lost it", status="escalated", created_at=now - timedelta(days=1)))
    queue = _by_name(run_checks(settings, now=now))["review queue"]
    assert queue.status == "warn"
    assert queue.detail.startswith("1 pending (oldest 8.0 days), 1 escalated, 0 check questions, 0 active")
    assert "1 item(s) escalated to an operator" in queue.detail
    assert "no account can review them" in queue.detail and "has waited over 7 days" in queue.detail
    assert "no check questions" not in queue.detail  # nobody to measure yet
    with database.session() as session:
        create_user(session, username="rita", password="correct horse battery staple", role="reviewer")
    queue = _by_name(run_checks(settings, now=now))["review queue"]
    assert "no account can review them" not in queue.detail
    assert "no check questions: reviewers' accuracy is not measured" in queue.detail
    with database.session() as session:
        add_gold_item(session, text="where is my card?", label="card_arrival", policy=ReviewPolicy())
        session.query(ReviewItem).filter_by(status="escalated").update({"status": "resolved"})
        session.query(ReviewItem).filter_by(status="pending", is_gold=False).update({"created_at": now})
    queue = _by_name(run_checks(settings, now=now))["review queue"]
    assert (queue.status, queue.detail) == (
        "ok",
        "1 pending (oldest 0.0 days), 0 escalated, 1 check questions, 1 active accounts",
    )
    database.dispose()


def test_two_factor_keys_in_the_clear_warn_and_keys_sealed_under_another_secret_fail(tmp_path: Path) -> None:
    import pyotp

    from core.models import User
    from crowd_feedback import two_factor
    from crowd_feedback.reviewers import create_user

    settings = _settings(tmp_path, secret_key="the first secret key")
    database = _migrated(settings)
    assert _by_name(run_checks(settings))["two-factor keys"].detail == "0 stored, sealed with the secret key"
    key = two_factor.new_key()
    with database.session() as session:
        for name in ("omar", "rita"):
            user = create_user(session, username=name, password="correct horse battery", role="operator")
            two_factor.enable(
                session,
                user_id=user.id,
                password="correct horse battery",
                key=key,
                code=pyotp.TOTP(key).now(),
                sealer=settings.sealer(),
            )
    keys = _by_name(run_checks(settings))["two-factor keys"]
    assert (keys.status, keys.detail) == ("ok", "2 stored, sealed with the secret key")
    with database.session() as session:  # as stored before sealing
        session.query(User).filter_by(username="rita").update({"totp_secret": key})
    keys = _by_name(run_checks(settings))["two-factor keys"]
    assert (keys.status, keys.detail) == (
        "warn",
        "1 stored in the clear (from before sealing): `helploop db upgrade` seals them",
    )
    # A restore under another secret key: omar's sealed key cannot be opened, until the old key is a fallback.
    changed = _settings(tmp_path, secret_key="a new secret key")
    keys = _by_name(run_checks(changed))["two-factor keys"]
    assert keys.status == "fail" and keys.detail.startswith("1 cannot be opened with the secret key")
    assert _doctor(changed).exit_code == 1
    both = _settings(
        tmp_path, secret_key="a new secret key", secret_key_fallbacks="an-older-one, the first secret key"
    )
    keys = _by_name(run_checks(both))["two-factor keys"]
    assert (keys.status, keys.detail) == (
        "warn",
        "1 stored in the clear (from before sealing); 1 sealed under an earlier secret key (a fallback): "
        "`helploop db upgrade` seals them",
    )
    database.dispose()


@pytest.mark.postgres
def test_scheduled_postgresql_backups_need_a_pg_dump_as_new_as_the_server(
    tmp_path: Path, postgres_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil as shell
    import subprocess

    if shell.which("pg_dump") is None:
        pytest.skip("PostgreSQL's client tools (pg_dump, pg_restore) are not installed")
    settings = _settings(tmp_path, database_url=postgres_schema_url, backup_dir=str(tmp_path / "b"))
    backups = _by_name(run_checks(settings))["backups"]
    assert (backups.status, backups.detail) == (
        "warn",
        f"none in {tmp_path / 'b'} yet (a worker takes the first one)",
    )
    real_run = subprocess.run

    def old_client(command: list[str], *args: Any, **kwargs: Any) -> Any:
        if command[-1] == "--version":
            return subprocess.CompletedProcess(command, 0, stdout="pg_dump (PostgreSQL) 9.6.24\n", stderr="")
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", old_client)
    backups = _by_name(run_checks(settings))["backups"]
    assert backups.status == "fail"
    assert backups.detail.startswith("the daily pg_dump cannot run: pg_dump is version 9 and the server ")
    real_which = shell.which
    monkeypatch.setattr(shell, "which", lambda name, *a, **k: None if name == "pg_dump" else real_which(name))
    backups = _by_name(run_checks(settings))["backups"]
    assert backups.status == "fail" and "pg_dump is not installed" in backups.detail


def test_single_sign_on_is_checked_only_when_configured(tmp_path: Path) -> None:
    from tests.serving.conftest import live
    from tests.serving.fake_idp import FakeIdP

    assert "single sign-on" not in _by_name(run_checks(_settings(tmp_path)))
    provider = FakeIdP()
    with live(provider.app()) as address:
        provider.issuer = address
        sso = {
            "sso_issuer": address,
            "sso_client_id": "c",
            "sso_client_secret": "s",
            "sso_reviewer_groups": "x",
        }
        check = _by_name(run_checks(_settings(tmp_path, **sso, sso_name="Okta")))["single sign-on"]
        assert (check.status, check.detail) == ("ok", f"Okta at {address} answers")
        provider.issuer_in_document = "https://evil.example.com"
        check = _by_name(run_checks(_settings(tmp_path, **sso)))["single sign-on"]
        assert check.status == "fail" and "names the issuer 'https://evil.example.com'" in check.detail
    check = _by_name(run_checks(_settings(tmp_path, **sso)))["single sign-on"]  # the provider is gone
    assert check.status == "fail" and "cannot be read" in check.detail


def test_the_widget_check_names_the_sites_and_warns_in_production_about_any_site(tmp_path: Path) -> None:
    from datetime import timedelta

    from core.models import Conversation, utcnow

    settings = _settings(tmp_path)
    database = _migrated(settings)
    with database.session() as session:
        for site in ("https://shop.example.com", "https://help.example.com", "https://shop.example.com"):
            session.add(Conversation(site=site, page_url=site + "/", last_activity_at=utcnow()))
        old = utcnow() - timedelta(days=31)
        session.add(
            Conversation(site="https://old.example", page_url="https://old.example/", last_activity_at=old)
        )
        session.commit()
    database.dispose()
    widget = _by_name(run_checks(settings))["widget"]
    assert (widget.status, widget.detail) == (
        "ok",
        "answered on 2 sites in 30 days: https://shop.example.com, https://help.example.com; "
        "allowed: any site",
    )
    production = {"environment": "production", "secret_key": "a real secret key " * 3}
    widget = _by_name(run_checks(_settings(tmp_path, **production)))["widget"]
    assert widget.status == "warn"
    assert "any site may use it (HELPLOOP_WIDGET_ORIGINS=*)" in widget.detail
    assert "no HELPLOOP_PUBLIC_URL" in widget.detail
    listed = _settings(
        tmp_path,
        **production,
        widget_origins="https://shop.example.com",
        public_url="https://bot.example.com",
    )
    widget = _by_name(run_checks(listed))["widget"]
    assert widget.status == "ok" and widget.detail.endswith("; allowed: https://shop.example.com")
