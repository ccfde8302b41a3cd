"""Identities at providers, and the rules of who signs in with one.

An identity is the pair (provider, the provider's subject: `sub`, or
GitHub's numeric user id), never an email. At the callback of a sign-in,
admit() applies the contract's rules in order:

1. a known identity signs its user in (a disabled user: account_disabled);
2. an unknown identity whose email matches an account links to it only if
   the provider is trusted for email (OAUTH_<NAME>_TRUST_EMAIL) and says
   that address is verified; otherwise account_exists, and the user signs
   in the usual way and links the provider from the account;
3. linking so to an account whose address was never verified first strips
   it of everything a pre-registration by someone else could hold
   (strip_pre_registration);
4. an unknown identity whose email matches no account makes one, with no
   password, verified if the provider is trusted and says so (otherwise
   it is mailed the usual verification link); no email: email_missing;
5. linking from a signed-in account (link()) needs no email match; an
   identity linked to another user is identity_taken;
6. the provider never changes an account's email.

Nothing here commits: the caller does. Two first sign-ins of one identity
at once are settled by the unique indexes (on the identity, and on the
email); the loser's caller tries again and finds rule 1.
"""

import marshmallow as ma
import sqlalchemy as sa
from flask import current_app

from authsvc import accounts, audit, mail, mailflows, mailtokens, providers
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import (
    Identity,
    MfaChallenge,
    Passkey,
    PasskeyChallenge,
    RecoveryCode,
    TotpFactor,
    User,
    utcnow,
)
from authsvc.oidc import ProviderIdentity
from authsvc.schemas import Email
from authsvc.telemetry import count_oauth
from authsvc.tokens import revoke_sessions_of

identities = Identity.__table__
IDENTITY_TAKEN = Problem(
    409, "identity_taken", "This account at the provider is linked to an account already."
)


class Refused(Exception):
    """A callback that lets nobody in; `code` is the error the app's redirect carries."""

    def __init__(self, code, user_id=None):
        super().__init__(code)
        self.code, self.user_id = code, user_id


def usable_email(address):
    """Return a provider's address as authsvc stores addresses, or None if it cannot be one."""
    if not isinstance(address, str):
        return None
    try:
        return Email().deserialize(address)
    except ma.ValidationError:
        return None


def document(identity):
    """Return an identity as the API shows it."""
    return {
        "id": identity.id,
        "provider": identity.provider,
        "email": identity.email,
        "created_at": identity.created_at,
        "last_used_at": identity.last_used_at,
    }


def of_user(user_id):
    """Return a user's identities, oldest first."""
    query = sa.select(Identity).where(Identity.user_id == user_id).order_by(Identity.id)
    return db.session.scalars(query).all()


def _notify(user, provider_name, kind):
    """Mail a user that a provider was linked to or unlinked from the account."""
    if mail.enabled():
        state = providers.state_of(provider_name)
        display_name = state.provider.display_name if state else provider_name
        mail.queue(kind, user.email, provider=display_name)


def _add(user, provider_name, found):
    """Link an identity to a user (flushing, so a unique index can say no)."""
    now = utcnow()
    identity = Identity(
        user_id=user.id,
        provider=provider_name,
        subject=found.subject,
        email=usable_email(found.email),
        created_at=now,
        last_used_at=now,
    )
    db.session.add(identity)
    db.session.flush()
    return identity


def strip_pre_registration(user):
    """Remove what an unverified account may hold from whoever registered it, and verify it.

    Before a provider that proved this address lets its owner in (rule 3):
    the password, the TOTP enrollment (pending or on), recovery codes and
    mfaTokens, identities at other providers, passkeys and their pending
    challenges, every session, and every live mailed token (a pending email
    change included) go; the address becomes verified; the owner is mailed a
    notice and the trail says so.
    """
    for table in (TotpFactor, RecoveryCode, MfaChallenge, Identity, Passkey, PasskeyChallenge):
        db.session.execute(sa.delete(table).where(table.user_id == user.id))
    for purpose in ("password_reset", "email_change", "verify_email"):
        mailtokens.kill(user.id, purpose)
    revoke_sessions_of(user.id)
    user.password_hash, user.mfa_enabled, user.email_verified = None, False, True
    if mail.enabled():
        mail.queue("pre_registration_removed", user.email)
    audit.record("pre_registration_removed", user.id)


def _known(provider, found):
    """Sign in the user of a known identity (rule 1), noting when it was used."""
    identity = db.session.scalar(
        sa.select(Identity).where(
            Identity.provider == provider.name, Identity.subject == found.subject
        )
    )
    if identity is None:
        return None
    user = db.session.get(User, identity.user_id)
    if user.disabled:
        raise Refused("account_disabled", user.id)
    identity.last_used_at = utcnow()
    identity.email = usable_email(found.email) or identity.email
    return user


def admit(provider, found):
    """Decide who a provider's user is (rules 1 to 4); return the user and whether they are new."""
    user = _known(provider, found)
    if user is not None:
        return user, False
    email = usable_email(found.email)
    if email is None:
        raise Refused("email_missing")
    trusted = provider.trust_email and found.email_verified
    user = db.session.scalar(sa.select(User).where(User.email == email))
    if user is not None:
        if not trusted:
            raise Refused("account_exists", user.id)
        if user.disabled:
            raise Refused("account_disabled", user.id)
        if not user.email_verified:
            strip_pre_registration(user)
        _add(user, provider.name, found)
        audit.record("identity_linked", user.id)
        _notify(user, provider.name, "identity_linked")
        count_oauth(provider.name, "linked")
        return user, False
    user = User(email=email, password_hash=None, email_verified=trusted)
    db.session.add(user)
    db.session.flush()
    _add(user, provider.name, found)
    if not trusted and not current_app.config["REQUIRE_VERIFIED_EMAIL"]:
        # Under REQUIRE_VERIFIED_EMAIL=1 the token exchange's refusal mails it.
        mailflows.send_verification(user)
    audit.record("signup_oauth", user.id)
    count_oauth(provider.name, "signup")
    return user, True


def link(user, provider_name, subject, email, session_id=None):
    """Link an identity to a signed-in user (rule 5); one linked already (to anyone) is 409.

    A race with another link of the same identity ends in the unique index
    (IntegrityError), which the caller answers the same way.
    """
    taken = db.session.scalar(
        sa.select(Identity.id).where(
            Identity.provider == provider_name, Identity.subject == subject
        )
    )
    if taken is not None:
        raise IDENTITY_TAKEN
    identity = _add(user, provider_name, ProviderIdentity(subject, email, False))
    audit.record("identity_linked", user.id, session_id)
    _notify(user, provider_name, "identity_linked")
    count_oauth(provider_name, "linked")
    return identity


def unlink(user, identity_id, session_id=None):
    """Remove one of a user's identities unless it is their last way in; tell whether it was."""
    mine = sa.and_(identities.c.id == identity_id, identities.c.user_id == user.id)
    name = db.session.scalar(sa.select(identities.c.provider).where(mine))
    if name is None or not accounts.remove_way_in(user.id, identities.delete().where(mine)):
        return False
    audit.record("identity_unlinked", user.id, session_id)
    _notify(user, name, "identity_unlinked")
    count_oauth(name, "unlinked")
    return True
