"""HTML pages for reviewers and operators: login, review queue, guidelines, stats, operator overview."""

from admin_ui.setup import init_admin

__all__ = ["init_admin"]
