"""Accounts for reviewers and operators: creation and password checks (hashed, never stored in clear)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from core.models import User

ROLES = ("reviewer", "operator")
USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,80}$")
MIN_PASSWORD = 10


class AccountError(ValueError):
    pass


def create_user(session: Session, *, username: str, password: str, role: str) -> User:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if not USERNAME.match(username):
        raise AccountError("username: 3-80 letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password must have at least {MIN_PASSWORD} characters")
    if session.scalars(select(User).where(User.username == username)).first() is not None:
        raise AccountError(f"user {username!r} already exists")
    user = User(username=username, password_hash=generate_password_hash(password), role=role)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None or not user.active or not check_password_hash(user.password_hash, password):
        return None
    return user
