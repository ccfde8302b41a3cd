"""The `users` CLI group: `flask --app authsvc users create EMAIL`."""

import sys

import click
import marshmallow as ma
from flask.cli import AppGroup
from sqlalchemy.exc import IntegrityError

from authsvc.extensions import db
from authsvc.models import User
from authsvc.passwords import hash_password
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
    except ma.ValidationError as error:
        for field, messages in error.messages.items():
            click.echo(f"Error: {field}: {' '.join(messages)}", err=True)
        sys.exit(1)
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


def register_commands(app):
    """Add the CLI groups to `flask --app authsvc`."""
    app.cli.add_command(users_cli)
