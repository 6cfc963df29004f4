"""What can be tested of the container without a Docker engine: the entrypoint script and the files."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from core import migrate

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
HELPLOOP = Path(sys.executable).parent / "helploop"


def run_entrypoint(tmp_path: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "HELPLOOP_INSTANCE_PATH": str(tmp_path / "instance"),
        "HELPLOOP_BIN": str(HELPLOOP),
        **env,
    }
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *command],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_entrypoint_migrates_then_runs_the_command(tmp_path: Path) -> None:
    result = run_entrypoint(tmp_path, str(HELPLOOP), "db", "current")
    assert result.returncode == 0, result.stderr
    head = migrate.head_revision()
    assert f"database at revision {head}" in result.stdout  # from the upgrade step
    assert f"current: {head}  head: {head}" in result.stdout  # from the command it exec'd


def test_entrypoint_gives_up_on_an_unreachable_database(tmp_path: Path) -> None:
    result = run_entrypoint(
        tmp_path,
        "true",
        HELPLOOP_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1",
        HELPLOOP_DB_WAIT_SECONDS="1",
    )
    assert result.returncode == 1
    assert "database not reachable" in result.stderr


def test_entrypoint_refuses_placeholder_secret_in_production(tmp_path: Path) -> None:
    result = run_entrypoint(tmp_path, "true", HELPLOOP_ENVIRONMENT="production", HELPLOOP_DB_WAIT_SECONDS="1")
    assert result.returncode != 0
    assert "placeholder" in result.stderr


def test_image_and_compose_files_are_consistent() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert 'ENTRYPOINT ["helploop-entrypoint"]' in dockerfile
    for package in ("bot", "core", "crowd_feedback", "training", "serving", "admin_ui"):
        assert f"COPY {package} ./{package}" in dockerfile
    for line in dockerfile.splitlines():  # every file the image copies is in the repository
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert "requirements-large.txt" in dockerfile and "all-mpnet-base-v2" in dockerfile
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    app = compose["services"]["app"]
    assert app["environment"]["HELPLOOP_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "HELPLOOP_SECRET_KEY" in app["environment"]
    assert {"db", "redis"} <= set(compose["services"])
    # Every setting the compose file sets is one the app reads (a typo would be silently ignored there).
    from core.settings import Settings

    fields = {f"HELPLOOP_{name.upper()}" for name in Settings.__dataclass_fields__}
    entrypoint_only = {"HELPLOOP_DEMO"}  # read by docker/entrypoint.sh
    assert set(app["environment"]) - entrypoint_only <= fields, set(app["environment"]) - fields
    assert app["environment"]["HELPLOOP_KEEP_MODELS"] == "${HELPLOOP_KEEP_MODELS:-10}"
    assert app["environment"]["HELPLOOP_TRAIN_EVERY_HOURS"] == "${HELPLOOP_TRAIN_EVERY_HOURS:-24}"
    # Daily pg_dump backups on their own volume, in a folder the image makes for its user, with the tools.
    backups = app["environment"]["HELPLOOP_BACKUP_DIR"]
    assert f"backups:{backups}" in app["volumes"] and "backups" in compose["volumes"]
    assert (
        f"mkdir -p /var/lib/helploop {backups}" in dockerfile
        and f"chown helploop /var/lib/helploop {backups}" in (dockerfile)
    )
    assert "postgresql-client" in dockerfile
