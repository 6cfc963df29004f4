"""Imports run one way: serving/admin_ui -> crowd_feedback/training -> bot, core. bot and core are pure."""

import ast
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
