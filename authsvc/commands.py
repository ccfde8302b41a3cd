"""The CLI groups: `flask --app authsvc users ...` and `... audit tail`."""

import sys

import click
import marshmallow as ma
import sqlalchemy as sa
from flask.cli import AppGroup
from sqlalchemy.exc import IntegrityError

from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import AuthEvent, User
from authsvc.passwords import hash_password, refuse_weak_password
from authsvc.schemas import CredentialsSchema

users_cli = AppGroup("users", help="Manage user accounts.")


@users_cli.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def create_user(email, admin, password_stdin):
    """Create a user; without --password-stdin, prompt twice for the password."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        credentials = CredentialsSchema().load({"email": email, "password": password})
        refuse_weak_password(credentials["password"], credentials["email"])
    except ma.ValidationError as error:
        for field, messages in error.messages.items():
            click.echo(f"Error: {field}: {' '.join(messages)}", err=True)
        sys.exit(1)
    except Problem as problem:
        raise click.ClickException(problem.detail) from None
    user = User(
        email=credentials["email"],
        password_hash=hash_password(credentials["password"]),
        role="admin" if admin else "user",
    )
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise click.ClickException(
            f"a user with email {credentials['email']} already exists"
        ) from None
    click.echo(f"Created {user.role} {user.email} (id {user.id}).")


audit_cli = AppGroup("audit", help="Read the audit trail.")


@audit_cli.command("tail")
@click.option("--user", "email", help="Only the events of the user with this email.")
@click.option("-n", "--lines", default=20, show_default=True, help="How many events.")
def audit_tail(email, lines):
    """Print the newest events of the audit trail, oldest first."""
    query = sa.select(AuthEvent).order_by(AuthEvent.id.desc()).limit(lines)
    if email:
        user_id = db.session.scalar(sa.select(User.id).where(User.email == email.strip().lower()))
        if user_id is None:
            raise click.ClickException(f"no user with email {email}")
        query = query.where(AuthEvent.user_id == user_id)
    for event in reversed(db.session.scalars(query).all()):
        click.echo(
            f"{event.created_at:%Y-%m-%dT%H:%M:%SZ} {event.event:<14} "
            f"user={event.user_id or '-'} session={event.session_id or '-'} "
            f"ip={event.ip or '-'} request={event.request_id or '-'} "
            f"agent={event.user_agent or '-'!r}"
        )


def register_commands(app):
    """Add the CLI groups to `flask --app authsvc`."""
    app.cli.add_command(users_cli)
    app.cli.add_command(audit_cli)
