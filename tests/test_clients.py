"""The `clients` CLI group and the clients table: registered services, their secrets, the trail."""

import hashlib
import re
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from introspecting import answer, introspect

from authsvc.clients import Client
from authsvc.extensions import db
from authsvc.models import AuthEvent

URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")


def create(runner, name="billing"):
    """Run `clients create NAME`; return the id and secret it printed."""
    result = runner.invoke(args=["clients", "create", name])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(": ")[0] for line in lines] == ["client_id", "client_secret"]
    return SimpleNamespace(id=lines[0].split(": ")[1], secret=lines[1].split(": ")[1])


def stored_clients(app):
    """Return every row of the clients table."""
    with app.app_context():
        return db.session.execute(sa.select(Client.__table__)).all()


def events(app):
    """Return the audit trail's (event, source, client_id), oldest first."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(AuthEvent.event, AuthEvent.source, AuthEvent.client_id).order_by(AuthEvent.id)
        )
        return [tuple(row) for row in rows]


def test_create_prints_an_id_and_a_secret_once(runner, app):
    """Two lines, URL-safe values; the table keeps only the secret's SHA-256 digest."""
    made = create(runner)
    assert URL_SAFE.fullmatch(made.id) and URL_SAFE.fullmatch(made.secret)
    assert len(made.secret) >= 43  # 256 random bits
    (row,) = stored_clients(app)
    assert (row.id, row.name) == (made.id, "billing")
    assert row.secret_digest == hashlib.sha256(made.secret.encode()).hexdigest()
    assert made.secret not in repr(row)


def test_ids_and_secrets_are_random_and_not_sequential(runner):
    """Two clients share nothing: neither id nor secret."""
    first, second = create(runner, "one"), create(runner, "two")
    assert first.id != second.id and first.secret != second.secret
    assert not first.id.isdigit() and len(first.id) >= 22


def test_list_prints_id_name_and_created_never_the_secret(runner):
    """`clients list`: one tab-separated line per client, oldest first, without secrets."""
    first, second = create(runner, "billing"), create(runner, "reports")
    result = runner.invoke(args=["clients", "list"])
    assert result.exit_code == 0
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [line[:2] for line in lines] == [[first.id, "billing"], [second.id, "reports"]]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line[2]) for line in lines)
    assert first.secret not in result.output and second.secret not in result.output


def test_list_says_so_when_there_is_no_client(runner):
    """With no client, `clients list` prints nothing on stdout and a hint on stderr."""
    result = runner.invoke(args=["clients", "list"])
    assert result.exit_code == 0 and result.stdout == ""
    assert "clients create" in result.stderr


def test_delete_refuses_the_client_at_once(runner, auth, client):
    """`clients delete ID`: the client's very next introspection is 401."""
    made = create(runner)
    token = auth.signup()["accessToken"]
    assert answer(client, made, token)["active"] is True
    result = runner.invoke(args=["clients", "delete", made.id])
    assert result.exit_code == 0 and made.id in result.output
    assert introspect(client, made, token).status_code == 401


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", ""], "the name must not be empty"),
        (["create", "   "], "the name must not be empty"),
        (["create", "x" * 101], "at most 100 characters"),
        (["create", "two\nlines"], "must be printable"),
        (["delete", "0" * 32], "no client with id"),
        (["delete", "not-an-id"], "no client with id"),
    ],
    ids=["empty", "blank", "too-long", "newline", "unknown-id", "malformed-id"],
)
def test_bad_names_and_unknown_ids_are_one_line_errors(runner, app, args, message):
    """A bad NAME or an unknown ID: one line on stderr, exit status 1, nothing stored."""
    result = runner.invoke(args=["clients", *args])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert stored_clients(app) == [] and events(app) == []


def test_a_duplicate_name_is_refused(runner, app):
    """Two clients cannot share a name (the unique index decides, also in a race)."""
    create(runner, "billing")
    result = runner.invoke(args=["clients", "create", " billing "])
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert len(stored_clients(app)) == 1


def test_every_command_is_audited_from_the_cli(runner, app):
    """create, list and delete each write an audit row with source=cli; no secret in the trail."""
    made = create(runner)
    runner.invoke(args=["clients", "list"])
    runner.invoke(args=["clients", "delete", made.id])
    assert events(app) == [
        ("client_created", "cli", made.id),
        ("clients_listed", "cli", None),
        ("client_deleted", "cli", made.id),
    ]
    tail = runner.invoke(args=["audit", "tail"]).output
    assert f"client={made.id}" in tail and made.secret not in tail
