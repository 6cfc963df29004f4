"""Imports run one way: serving/admin_ui -> crowd_feedback/training -> bot, core. bot and core are pure."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {
    "bot": set(),
    "core": set(),
    "crowd_feedback": {"bot", "core"},
    "training": {"bot", "core"},
    # The app factory composes the HTML blueprints of admin_ui; admin_ui never imports serving.
    "serving": {"bot", "core", "crowd_feedback", "training", "admin_ui"},
    "admin_ui": {"bot", "core", "crowd_feedback", "training"},  # never serving
}
FORBIDDEN_THIRD_PARTY = {"bot": {"flask", "sqlalchemy", "alembic", "psycopg"}}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_run_downwards(package: str) -> None:
    own = set(ALLOWED)
    for path in sorted((ROOT / package).rglob("*.py")):
        imported = imported_top_levels(path)
        wrong = (imported & own) - ALLOWED[package] - {package}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"
        banned = imported & FORBIDDEN_THIRD_PARTY.get(package, set())
        assert not banned, f"{path.relative_to(ROOT)} imports {sorted(banned)}"


def test_the_fine_tuning_benches_need_no_database_or_web_stack() -> None:
    """bench/fine_tune.py, bench/recipe_validate.py and bench/trainer_profile.py run on a bare GPU machine
    whose image has PyTorch and transformers but no SQLAlchemy or Flask (bench/gpu_check.sh): the engine, the
    KB file readers and the fine-tuning import neither."""
    probe = textwrap.dedent(
        """
        import importlib.abc, sys

        BLOCKED = {"sqlalchemy", "alembic", "psycopg", "flask", "werkzeug", "redis", "pydantic"}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, Block())
        sys.path[:0] = [".", "bench"]
        import bot.engine, core.kb_files, training.finetune  # noqa: E401
        import fine_tune, recipe_validate, trainer_profile  # noqa: E401
        print("imported", sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "imported []"
