"""Registered services: the clients that may ask authsvc about a token (RFC 7662).

An operator registers one with `flask --app authsvc clients create NAME`.
Its id is random, not a sequence, and public; its secret is 256 random bits,
shown once and stored only as a SHA-256 digest, compared in constant time.
Deleting a client refuses its credentials on the very next request: every
request reads the row again.
"""

import hashlib
import hmac
import re
import secrets
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from authsvc.extensions import db
from authsvc.models import utcnow
from authsvc.revocation import reading_engine

# 128 random bits in hex: URL-safe, and never starting with "-", so that
# `clients delete ID` never reads an id as an option.
CLIENT_ID = re.compile(r"[0-9a-f]{32}")
MAX_NAME_LENGTH = 100
# What an unknown client id is compared against, so that it costs what a known one does.
NO_SUCH_DIGEST = hashlib.sha256(b"no registered client has this digest").hexdigest()


class Client(db.Model):
    """A registered service: its public id, a name for people, its secret's digest."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(MAX_NAME_LENGTH), unique=True)
    secret_digest: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


clients = Client.__table__
DIGEST_OF = sa.select(clients.c.secret_digest).where(clients.c.id == sa.bindparam("client_id"))


class ClientError(ValueError):
    """A client cannot be created or deleted; the message says why, in one line."""


def secret_digest(secret):
    """Return the SHA-256 hex digest a client secret is stored as."""
    return hashlib.sha256(secret.encode()).hexdigest()


def clean_name(name):
    """Return a client's name trimmed; refuse an empty, overlong or unprintable one."""
    name = name.strip()
    if not name:
        raise ClientError("the name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ClientError(f"the name must be at most {MAX_NAME_LENGTH} characters")
    if not name.isprintable():
        raise ClientError("the name must be printable (no tabs, newlines or control characters)")
    return name


def create_client(name):
    """Register a client and flush it; return it and its secret, which is never stored.

    Two clients of one name are refused by the unique index, also when two
    operators race.
    """
    secret = secrets.token_urlsafe(32)
    client = Client(
        id=secrets.token_hex(16),
        name=clean_name(name),
        secret_digest=secret_digest(secret),
        created_at=utcnow(),
    )
    db.session.add(client)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise ClientError(f"a client named {client.name!r} already exists") from None
    return client, secret


def all_clients():
    """Return every registered client, oldest first."""
    return db.session.scalars(sa.select(Client).order_by(Client.created_at, Client.id)).all()


def delete_client(client_id):
    """Delete a client; its credentials are refused from the next request on.

    Refuse an id that names no client.
    """
    delete = sa.delete(Client).where(Client.id == client_id)
    if not CLIENT_ID.fullmatch(client_id) or db.session.execute(delete).rowcount != 1:
        raise ClientError(f"no client with id {client_id!r}")


def lookup_id(client_id):
    """Return a presented client id to look up: itself if well formed, else one no client has.

    A malformed id (a NUL byte, say, which PostgreSQL refuses in text) then
    costs the same query as an unknown one.
    """
    return client_id if CLIENT_ID.fullmatch(client_id) else ""


def stored_digest(client_id):
    """Return a client's stored secret digest, or None: one query by primary key.

    It goes through the revocation check's plain Core connection, as it runs
    on introspection requests.
    """
    with reading_engine().connect() as connection:
        return connection.execute(DIGEST_OF, {"client_id": lookup_id(client_id)}).scalar()


def secret_matches(digest, secret):
    """Tell whether a secret is the one a stored digest was made from, in constant time.

    No digest (an unknown client) is compared too, against one no secret has,
    so that it costs what a known client does.
    """
    matches = hmac.compare_digest(digest or NO_SUCH_DIGEST, secret_digest(secret))
    return digest is not None and matches
