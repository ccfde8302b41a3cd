"""The CLI groups: `flask --app authsvc users|sessions|keys|mail|audit|clients ...`."""

import sys
from datetime import timedelta

import click
import marshmallow as ma
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from authsvc import (
    accounts,
    audit,
    challenges,
    identities,
    keys,
    mail,
    mailtokens,
    oauthflows,
    passkey_challenges,
    relay,
    sealing,
    totp,
)
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import AuthEvent, Session, SigningKey, User, utcnow
from authsvc.outages import describe, in_trouble
from authsvc.passwords import hash_password, refuse_weak_password
from authsvc.schemas import CredentialsSchema


class CommandGroup(AppGroup):
    """A group of commands that stop with one line, not a traceback, when the database fails."""

    def invoke(self, ctx):
        """Run the command; a database in trouble is an error message and exit status 1."""
        try:
            return super().invoke(ctx)
        except SQLAlchemyError as error:
            if not in_trouble(error):
                raise
            raise click.ClickException(f"the database is unavailable: {describe(error)}") from None


def with_one_line_errors(group):
    """Return a click group as a CommandGroup: the same commands, its database failures one line."""
    return CommandGroup(
        group.name,
        commands=group.commands,
        callback=group.callback,
        params=group.params,
        help=group.help,
    )


users_cli = CommandGroup("users", help="Manage user accounts.")


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
        # An operator vouches for the address they type.
        email_verified=True,
    )
    db.session.add(user)
    try:
        db.session.flush()
        audit.record("user_created", user.id)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise click.ClickException(
            f"a user with email {credentials['email']} already exists"
        ) from None
    click.echo(f"Created {user.role} {user.email} (id {user.id}).")


def user_by_email(email):
    """Return the user with an email, or stop with an error."""
    user = db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    return user


def change(user, **values):
    """Apply and audit a change to a user, reporting the last-admin refusal as an error."""
    try:
        accounts.update_user(user, **values)
    except Problem as problem:
        raise click.ClickException(problem.detail) from None
    audit.record("user_updated", user.id)
    db.session.commit()


@users_cli.command("list")
def list_users():
    """Print every user: id, email, role, state, creation time."""
    for user in db.session.scalars(sa.select(User).order_by(User.id)):
        state = "disabled" if user.disabled else "active"
        click.echo(
            f"{user.id}\t{user.email}\t{user.role}\t{state}\t{user.created_at:%Y-%m-%dT%H:%M:%SZ}"
        )


@users_cli.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(["user", "admin"]))
def set_role(email, role):
    """Make a user an admin, or a plain user again."""
    user = user_by_email(email)
    change(user, role=role)
    click.echo(f"{user.email} is now {'an admin' if role == 'admin' else 'a plain user'}.")


@users_cli.command("disable")
@click.argument("email")
def disable_user(email):
    """Disable a user: no signin, and every token refused at once."""
    user = user_by_email(email)
    change(user, disabled=True)
    click.echo(f"{user.email} is disabled; their sessions are closed.")


@users_cli.command("enable")
@click.argument("email")
def enable_user(email):
    """Let a disabled user sign in again."""
    user = user_by_email(email)
    change(user, disabled=False)
    click.echo(f"{user.email} is enabled.")


@users_cli.command("verify")
@click.argument("email")
def verify_user(email):
    """Mark a user's address verified."""
    user = user_by_email(email)
    change(user, email_verified=True)
    click.echo(f"{user.email} is verified.")


@users_cli.command("delete")
@click.argument("email")
@click.confirmation_option(prompt="Delete this user and all their sessions?")
def delete_user(email):
    """Delete a user and their sessions."""
    user = user_by_email(email)
    user_id = user.id
    try:
        accounts.delete_user(user)
    except Problem as problem:
        raise click.ClickException(problem.detail) from None
    audit.record("user_deleted", user_id)
    db.session.commit()
    click.echo(f"Deleted {email.strip().lower()}.")


@users_cli.command("mfa-reset")
@click.argument("email")
def mfa_reset(email):
    """Turn a user's MFA off and end their sessions (say, their authenticator is lost)."""
    user = user_by_email(email)
    if not totp.reset(user.id):
        raise click.ClickException(f"{user.email} does not have MFA on")
    db.session.commit()
    click.echo(f"MFA is off for {user.email}; their sessions are closed.")


@users_cli.command("identities")
@click.argument("email")
def list_identities(email):
    """Print the identities at providers linked to a user: id, provider, subject, email, times."""
    user = user_by_email(email)
    linked = identities.of_user(user.id)
    if not linked:
        click.echo(f"{user.email} has no identity at a provider.")
    for identity in linked:
        used = f"{identity.last_used_at:%Y-%m-%dT%H:%M:%SZ}" if identity.last_used_at else "-"
        click.echo(
            f"{identity.id}\t{identity.provider}\t{identity.subject}\t{identity.email or '-'}\t"
            f"{identity.created_at:%Y-%m-%dT%H:%M:%SZ}\t{used}"
        )


sessions_cli = CommandGroup("sessions", help="Maintain the sessions table.")


@sessions_cli.command("purge")
@click.option(
    "--retention",
    type=click.IntRange(min=0),
    help="Seconds a row is kept after it ended [SESSION_RETENTION].",
)
def purge_sessions(retention):
    """Delete sessions, mfaTokens and mailed tokens that ended longer ago than the retention.

    Also the outbox's sent and given-up mails, which no longer hold a body,
    the flows of sign-ins with providers, and passkey challenges.
    """
    if retention is None:
        retention = current_app.config["SESSION_RETENTION"]
    cutoff = utcnow() - timedelta(seconds=retention)
    ended = sa.or_(Session.expires_at < cutoff, Session.revoked_at < cutoff)
    removed = db.session.execute(sa.delete(Session).where(ended)).rowcount
    mfa_tokens, mail_tokens = challenges.purge(cutoff), mailtokens.purge(cutoff)
    mails, flows = relay.purge(cutoff), oauthflows.purge(cutoff)
    ceremonies = passkey_challenges.purge(cutoff)
    audit.record("sessions_purged")
    db.session.commit()
    click.echo(
        f"Removed what ended before {cutoff:%Y-%m-%dT%H:%M:%SZ}: {removed} session(s), "
        f"{mfa_tokens} mfaToken(s), {mail_tokens} mailed token(s), {mails} sent mail(s), "
        f"{flows} provider sign-in flow(s), {ceremonies} passkey challenge(s)."
    )


keys_cli = CommandGroup("keys", help="Manage EdDSA and RS256 signing keys.")


@keys_cli.command("rotate")
def rotate_key():
    """Make a new signing key the active one; older keys still verify until retired."""
    if not keys.asymmetric():
        raise click.ClickException("signing keys are for JWT_ALGORITHM=EdDSA or RS256")
    kid = keys.create_key(current_app.config["JWT_ALGORITHM"])
    audit.record("key_rotated", key_id=kid)
    db.session.commit()
    click.echo(f"Key {kid} ({current_app.config['JWT_ALGORITHM']}) now signs new tokens.")


@keys_cli.command("list")
def list_keys():
    """Print every key: kid, algorithm, created, and active, verifying or retired."""
    rows = db.session.scalars(sa.select(SigningKey).order_by(SigningKey.created_at)).all()
    if not keys.asymmetric():
        click.echo(
            "JWT_ALGORITHM is HS256: JWT_SECRET_KEY signs and verifies every token, "
            "so there is no key list."
        )
        if rows:
            click.echo(
                f"{len(rows)} stored key(s) sign again once JWT_ALGORITHM is EdDSA or RS256."
            )
        return
    if not rows:
        click.echo("No signing keys yet: `keys rotate` makes the first (so does the first signin).")
        return
    live = [row for row in rows if row.retired_at is None]
    active = [row for row in live if row.algorithm == current_app.config["JWT_ALGORITHM"]]
    for row in rows:
        if row.retired_at is not None:
            state = f"retired {row.retired_at:%Y-%m-%dT%H:%M:%SZ}"
        elif active and row is active[-1]:
            state = "active"
        else:
            state = "verifying"
        click.echo(f"{row.kid}\t{row.algorithm}\t{row.created_at:%Y-%m-%dT%H:%M:%SZ}\t{state}")


@keys_cli.command("retire")
@click.argument("kid")
def retire_key(kid):
    """Stop verifying tokens signed with a key and drop it from the JWKS."""
    if not keys.retire_key(kid):
        raise click.ClickException(f"no key {kid} that is not already retired")
    audit.record("key_retired", key_id=kid)
    db.session.commit()
    click.echo(f"Key {kid} is retired: its tokens are refused within seconds.")


@keys_cli.command("reseal")
def reseal():
    """Encrypt every stored secret again with the current JWT_SECRET_KEY.

    After changing JWT_SECRET_KEY, run this with the old value in
    JWT_PREVIOUS_SECRET_KEY; then the old value can go.
    """
    try:
        signing_keys, totp_secrets = keys.reseal_keys(), totp.reseal_secrets()
        mails = mail.reseal_outbox()
    except sealing.SealError as error:
        raise click.ClickException(
            f"{error}; set JWT_PREVIOUS_SECRET_KEY to the old secret"
        ) from None
    db.session.commit()
    click.echo(
        "Sealed again with the current JWT_SECRET_KEY: "
        f"{signing_keys} signing key(s), {totp_secrets} TOTP secret(s), {mails} queued mail(s)."
    )


mail_cli = CommandGroup("mail", help="Send mail and check MAIL_URL.")


@mail_cli.command("send-pending")
def send_pending():
    """Try every pending mail now, without waiting for its backoff; print what became of them."""
    if not mail.enabled():
        raise click.ClickException("MAIL_URL is none: no mail is sent")
    relay.make_all_due()
    tally = relay.send_pending()
    click.echo(f"Sent {tally['sent']}, retried {tally['retried']}, gave up {tally['given_up']}.")


@mail_cli.command("test")
@click.argument("address")
def send_test(address):
    """Send a test mail to ADDRESS now, through MAIL_URL, and print the server's answer."""
    if not mail.enabled():
        raise click.ClickException("MAIL_URL is none: no mail is sent")
    try:
        to = CredentialsSchema().fields["email"].deserialize(address)
        answer = mail.deliver(mail.build_message("test", mail.new_payload(to)))
    except ma.ValidationError as error:
        raise click.ClickException(f"{address}: {' '.join(error.messages)}") from None
    except Exception as error:
        raise click.ClickException(f"not sent: {error!r}") from None
    click.echo(f"Sent to {to}; the server answered: {answer}")


audit_cli = CommandGroup("audit", help="Read the audit trail.")


def user_id_of(email_or_id):
    """Return the user id an email or a numeric id names; an id may be a deleted user's."""
    if email_or_id.isascii() and email_or_id.isdigit():
        return int(email_or_id)
    user_id = db.session.scalar(sa.select(User.id).where(User.email == email_or_id.strip().lower()))
    if user_id is None:
        raise click.ClickException(
            f"no user with email {email_or_id}; find a deleted user's events by id: --user ID"
        )
    return user_id


@audit_cli.command("tail")
@click.option(
    "--user",
    "email_or_id",
    help="Only the events of one user: their email, or their id (also of a deleted user).",
)
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many events.",
)
def audit_tail(email_or_id, lines):
    """Print the newest events of the audit trail, oldest first."""
    query = sa.select(AuthEvent).order_by(AuthEvent.id.desc()).limit(lines)
    if email_or_id:
        query = query.where(AuthEvent.user_id == user_id_of(email_or_id))
    for event in reversed(db.session.scalars(query).all()):
        click.echo(
            f"{event.created_at:%Y-%m-%dT%H:%M:%SZ} {event.source:<3} {event.event:<18} "
            f"user={event.user_id or '-'} session={event.session_id or '-'} "
            f"key={event.key_id or '-'} "
            + (f"client={event.client_id} " if event.client_id else "")
            + f"ip={event.ip or '-'} "
            f"request={event.request_id or '-'} agent={event.user_agent or '-'!r}"
        )


def register_commands(app):
    """Add the CLI groups, and Flask-Migrate's `db`, to `flask --app authsvc`."""
    from flask_migrate import Migrate

    from authsvc.clientcommands import clients_cli

    Migrate(app, db, render_as_batch=True)
    app.cli.add_command(with_one_line_errors(app.cli.commands["db"]))
    app.cli.add_command(users_cli)
    app.cli.add_command(sessions_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(mail_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(clients_cli)
