"""The database tables: users, sessions, second factors, the audit trail, keys, mail, providers."""

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from authsvc.extensions import db

ROLES = ("user", "admin")


def utcnow():
    """Return the current UTC time without tzinfo, as the tables store it."""
    return datetime.now(UTC).replace(tzinfo=None)


class User(db.Model):
    """An account: a normalised email, a bcrypt hash (if it has a password) and a role."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    # NULL for an account made through a provider that has not set a password.
    password_hash: Mapped[str | None] = mapped_column(sa.String(60))
    role: Mapped[str] = mapped_column(sa.String(16), default="user")
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Whether the owner of the address proved it (a mailed link, a reset, an admin).
    email_verified: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    # Whether signin asks for a second factor. Kept on the row the revocation
    # check reads anyway, so /users/me and freshness need no other query.
    mfa_enabled: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    @property
    def has_password(self):
        """Tell whether the account has a password (one made through a provider may not)."""
        return self.password_hash is not None

    sessions: Mapped[list["Session"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        sa.CheckConstraint("role IN ('user', 'admin')", name="role"),
        # Never hand a deleted user's id to a new one (SQLite reuses the
        # highest id otherwise), so ids in the audit trail stay unambiguous.
        {"sqlite_autoincrement": True},
    )


class Session(db.Model):
    """One signed-in device: the digest of its current refresh token and its life.

    The refresh token's jti, iat and exp are kept so that the current token can
    be issued again byte for byte to a client retrying a refresh; the token
    itself is never stored.
    """

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    refresh_digest: Mapped[str] = mapped_column(sa.String(64))
    refresh_jti: Mapped[str] = mapped_column(sa.String(36))
    refresh_iat: Mapped[int]
    refresh_exp: Mapped[int]
    refresh_kid: Mapped[str | None] = mapped_column(sa.String(64))
    previous_digest: Mapped[str | None] = mapped_column(sa.String(64))
    rotated_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    # How the session began (RFC 8176 methods, space-separated, the first
    # factor first): "pwd", "pwd otp", "oauth", "hwk mfa"...; NULL for
    # sessions older than MFA: "pwd".
    amr: Mapped[str | None] = mapped_column(sa.String(32))

    user: Mapped[User] = relationship(back_populates="sessions")


# RFC 8176 methods that prove a second factor: a TOTP code, a recovery code,
# or a method that is multi-factor by itself (a passkey verified by its user).
SECOND_FACTORS = frozenset({"otp", "recovery", "mfa"})


def amr_methods(stored):
    """Return a session's stored amr as the list access tokens carry."""
    return (stored or "pwd").split()


class AuthEvent(db.Model):
    """One line of the audit trail: what happened, to whom, from where.

    user_id is a plain column, not a foreign key, so that the trail outlives
    the accounts it mentions. source says where the change came from: "api"
    (a request), "relay" (the mail relay) or "cli" (an operator's `flask`
    command); key_id names the
    signing key of a key event and client_id the registered service of a
    client event (both are public). No password, token or secret is ever
    recorded.
    """

    __tablename__ = "auth_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    event: Mapped[str] = mapped_column(sa.String(32))
    user_id: Mapped[int | None] = mapped_column(index=True)
    session_id: Mapped[str | None] = mapped_column(sa.String(32))
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    request_id: Mapped[str | None] = mapped_column(sa.String(128))
    source: Mapped[str] = mapped_column(sa.String(16), default="api", server_default="api")
    key_id: Mapped[str | None] = mapped_column(sa.String(64))
    client_id: Mapped[str | None] = mapped_column(sa.String(32))


class SigningKey(db.Model):
    """An EdDSA or RS256 key pair that signs tokens, shared by every instance.

    The private half (column private_pem) is its PKCS#8 PEM sealed with
    sealing.py, so a copy of the database alone does not give away the
    signing key.
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(sa.String(16))
    private_pem: Mapped[str] = mapped_column(sa.Text)
    public_jwk: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]


class TotpFactor(db.Model):
    """A user's TOTP authenticator: pending until confirmed (enabled_at), then in use.

    The secret is sealed with sealing.py. last_used_step is the newest time
    step a code was accepted for; a code of that step or an older one is
    refused, so each code works once.
    """

    __tablename__ = "totp_factors"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    secret: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    enabled_at: Mapped[datetime | None]
    last_used_step: Mapped[int | None] = mapped_column(sa.BigInteger)


class RecoveryCode(db.Model):
    """One single-use recovery code of a user, kept only as a SHA-256 digest."""

    __tablename__ = "recovery_codes"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    code_digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    used_at: Mapped[datetime | None]


class MfaChallenge(db.Model):
    """The second step of an MFA signin: the digest of its mfaToken and its life."""

    __tablename__ = "mfa_challenges"

    token_digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    failures: Mapped[int] = mapped_column(default=0)
    # The first step's methods (RFC 8176): "pwd", or "oauth" for a provider's
    # sign-in; NULL for tokens older than providers: "pwd".
    amr: Mapped[str | None] = mapped_column(sa.String(16))


MAIL_TOKEN_PURPOSES = ("password_reset", "verify_email", "email_change")
OUTBOX_STATES = ("pending", "sending", "sent", "given_up")


class MailToken(db.Model):
    """A token mailed to a user, kept only as its SHA-256 digest, usable once.

    `email` is the address it was mailed to: for an email change, the new
    address; a verification token verifies only that address.
    """

    __tablename__ = "mail_tokens"

    digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(sa.String(16))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(sa.String(254))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    __table_args__ = (
        sa.CheckConstraint(
            "purpose IN ('password_reset', 'verify_email', 'email_change')", name="purpose"
        ),
    )


class MailOutbox(db.Model):
    """One mail to send, written in the transaction that caused it; the relay delivers it.

    `message` is the mail's recipient and content, sealed (sealing.py), and
    dropped once the mail is sent or given up. A claimer marks the rows it
    sends with its `claim` and a lease (`claimed_until`), so a worker that
    dies mid-send holds a row only until the lease ends. `last_error` is
    short and never holds an address or a token.
    """

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claim: Mapped[str | None] = mapped_column(sa.String(32))
    claimed_until: Mapped[datetime | None]
    message: Mapped[str | None] = mapped_column(sa.Text)
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.String(200))

    __table_args__ = (
        sa.CheckConstraint("state IN ('pending', 'sending', 'sent', 'given_up')", name="state"),
        sa.Index("ix_mail_outbox_state_next_attempt_at", "state", "next_attempt_at"),
    )


PASSKEY_CHALLENGE_PURPOSES = ("registration", "authentication")


class Passkey(db.Model):
    """A user's WebAuthn credential: its id, public key and sign count.

    credential_id (base64url) is unique across every user: one credential
    belongs to one account. public_key is the credential's COSE key as the
    authenticator gave it. user_handle is the WebAuthn user.id the
    authenticator stores with the credential and returns at each sign-in.
    sign_count is the last counter the authenticator reported (0 if it keeps
    none); backed_up its backup-state flag at the last ceremony.
    """

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[str] = mapped_column(sa.String(1364), unique=True, index=True)
    public_key: Mapped[bytes] = mapped_column(sa.LargeBinary)
    user_handle: Mapped[str] = mapped_column(sa.String(88))
    sign_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    name: Mapped[str] = mapped_column(sa.String(64))
    backed_up: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]

    # Never hand a removed passkey's id to a new one: audit rows name them.
    __table_args__ = ({"sqlite_autoincrement": True},)


class PasskeyChallenge(db.Model):
    """One WebAuthn ceremony's challenge, kept only as a SHA-256 digest, usable once.

    A registration challenge belongs to its user and remembers the user
    handle its options gave the authenticator; a sign-in challenge belongs
    to nobody until an assertion names its passkey.
    """

    __tablename__ = "passkey_challenges"

    digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(sa.String(16))
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    user_handle: Mapped[str | None] = mapped_column(sa.String(88))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]

    __table_args__ = (
        sa.CheckConstraint("purpose IN ('registration', 'authentication')", name="purpose"),
    )


class Identity(db.Model):
    """An account at a provider linked to a user: the pair (provider, the provider's subject).

    `email` is what the provider said at the last sign-in, for people to read;
    it never changes the account's own address.
    """

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(sa.String(32))
    subject: Mapped[str] = mapped_column(sa.String(255))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]

    __table_args__ = (sa.UniqueConstraint("provider", "subject"),)


OAUTH_PURPOSES = ("signin", "link")


class OAuthFlow(db.Model):
    """One round trip through a provider: from authorize, through the callback, to the code.

    The state and nonce sent to the provider are kept only as SHA-256
    digests; the PKCE verifier sent to it is derived from the state
    (oauthflows.py), so it is not stored at all. `user_id` is the account
    the flow is for: the caller of a link, or, once the callback decided,
    who signs in. The one-time code the app gets is kept as a digest too,
    with the app's S256 codeChallenge it is bound to. `subject` and `email`
    carry a link code's identity from the callback to the link.
    """

    __tablename__ = "oauth_flows"

    state_digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    nonce_digest: Mapped[str | None] = mapped_column(sa.String(64))
    provider: Mapped[str] = mapped_column(sa.String(32))
    purpose: Mapped[str] = mapped_column(sa.String(8))
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    redirect_to: Mapped[str] = mapped_column(sa.String(2048))
    code_challenge: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
    code_digest: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    code_expires_at: Mapped[datetime | None]
    code_used_at: Mapped[datetime | None]
    subject: Mapped[str | None] = mapped_column(sa.String(255))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    new_user: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    __table_args__ = (sa.CheckConstraint("purpose IN ('signin', 'link')", name="purpose"),)
