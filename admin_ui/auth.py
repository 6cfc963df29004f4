"""Login and logout (form posts carry a CSRF token; sessions expire)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from admin_ui.setup import CurrentUser
from crowd_feedback.reviewers import authenticate

auth = Blueprint("auth", __name__, template_folder="templates")


def _home_for(role: str) -> str:
    return url_for("operator.overview") if role == "operator" else url_for("review.home")


@auth.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(_home_for(current_user.role))
    error = None
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        password = request.form.get("password") or ""
        helploop = current_app.extensions["helploop"]
        with helploop.database.session() as db:
            user = authenticate(db, username=username, password=password)
            wrapped = CurrentUser(user) if user is not None else None
        if wrapped is None:
            error = "Wrong username or password."
        else:
            session.clear()
            session.permanent = True
            login_user(wrapped)
            target = request.args.get("next") or ""
            if not target.startswith("/") or target.startswith("//"):
                target = _home_for(wrapped.role)  # never redirect off-site
            return redirect(target)
    return render_template("admin/login.html", error=error), 401 if error else 200


@auth.post("/logout")
def logout() -> Any:
    logout_user()
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))
