"""Blueprint "pages": the two small HTML pages that mailed links open.

Plain forms that work without JavaScript. Opening a page never uses its
token (mail scanners follow links); only submitting the form does. They are
not part of the API, so they stay out of the OpenAPI document; their
errors other than the form's own (404, 405, 413, 415) are problem+json
as everywhere else.
"""

import marshmallow as ma
from flask import Blueprint, render_template, request

from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.mailflows import (
    check_address_token,
    check_reset_token,
    confirm_address,
    reset_password,
)
from authsvc.schemas import ResetConfirmSchema, TokenSchema

bp = Blueprint("pages", __name__, static_folder="static", static_url_path="/static")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@bp.before_request
def require_a_form():
    """Refuse a submitted page whose body is not a form: 415, as the API refuses non-JSON."""
    if request.method == "POST" and request.mimetype not in FORM_TYPES:
        raise Problem(
            415,
            "unsupported_media_type",
            "This page takes a form, sent as application/x-www-form-urlencoded.",
        )


def page(template, status=200, **context):
    """Render a page of templates/pages/."""
    return render_template(f"pages/{template}", **context), status


def _first_message(error):
    """Return the first message of a marshmallow error, for a form."""
    messages = next(iter(error.messages.values()))
    return messages[0] if isinstance(messages, list) else str(messages)


def opened_link(check_token, template):
    """Show the form a link opens if its token is live; never use the token here."""
    token = request.args.get("token", "")
    try:
        check_token(token)
    except Problem:
        return page("invalid.html", 400)
    return page(template, token=token)


@bp.get("/reset-password")
def reset_password_form():
    """Show the new-password form of a reset link, without using its token."""
    return opened_link(check_reset_token, "reset_password.html")


@bp.post("/reset-password")
def reset_password_submit():
    """Set the new password from the form; show the outcome."""
    form = request.form
    token = form.get("token", "")
    if form.get("newPassword", "") != form.get("repeatPassword", ""):
        return page("reset_password.html", 422, token=token, error="The two passwords differ.")
    try:
        body = ResetConfirmSchema().load({"token": token, "newPassword": form.get("newPassword")})
        reset_password(body["token"], body["new_password"])
    except ma.ValidationError as error:
        return page("reset_password.html", 422, token=token, error=_first_message(error))
    except Problem as problem:
        if problem.status == 422:
            return page("reset_password.html", 422, token=token, error=problem.detail)
        return page("invalid.html", 400)
    db.session.commit()
    return page("done.html", title="Password changed", message="Your password is changed.")


@bp.get("/verify-email")
def verify_email_form():
    """Show the confirm button of a verification link, without using its token."""
    return opened_link(check_address_token, "verify_email.html")


@bp.post("/verify-email")
def verify_email_submit():
    """Verify the address from the form; show the outcome."""
    try:
        body = TokenSchema().load({"token": request.form.get("token", "")})
        confirm_address(body["token"])
    except ma.ValidationError:
        return page("invalid.html", 400)
    except Problem as problem:
        if problem.status == 409:
            return page("done.html", 409, title="Address taken", message=problem.detail)
        return page("invalid.html", 400)
    db.session.commit()
    return page("done.html", title="Address verified", message="Your email address is verified.")
