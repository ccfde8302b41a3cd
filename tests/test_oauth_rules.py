"""Who signs in with a provider: the six rules of the contract, each both ways.

1. a known identity signs its user in (a disabled one: account_disabled);
2. an unknown identity whose email matches an account links to it only from
   a provider trusted for email that says the address is verified;
3. an account whose address was never verified loses what its maker set
   before the provider's user gets in (the pre-registration takeover);
4. an unknown email makes an account without a password; no email:
   email_missing;
5. linking from an account (test_oauth_identities.py);
6. the provider never changes an account's email.
"""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from authenticator import Authenticator
from conftest import PASSWORD, bearer, empty_database
from oauthhelp import exchange, fixtures, provider_settings, round_trip, sign_in
from passkeyflows import add_passkey, passkey_signin

from authsvc import create_app, mailtokens, sealing
from authsvc.extensions import db
from authsvc.models import (
    AuthEvent,
    Identity,
    MailOutbox,
    MailToken,
    MfaChallenge,
    Passkey,
    RecoveryCode,
    TotpFactor,
    User,
    utcnow,
)

hostile, github, app = fixtures()
EMAIL = "ada@example.com"


def user_row(app, email=EMAIL):
    """Return a user's row, detached."""
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == email))
        db.session.expunge_all()
        return user


def count(app, model, **where):
    """Count the rows of a table that match column values."""
    with app.app_context():
        query = sa.select(sa.func.count()).select_from(model).filter_by(**where)
        return db.session.scalar(query)


def outbox_kinds(app):
    """Return the kinds of the mails queued, oldest first."""
    with app.app_context():
        return db.session.scalars(sa.select(MailOutbox.kind).order_by(MailOutbox.id)).all()


def link_identity(app, email=EMAIL, subject="subject-1", provider="corp"):
    """Link an identity straight into the database."""
    with app.app_context():
        user_id = db.session.scalar(sa.select(User.id).where(User.email == email))
        db.session.add(Identity(user_id=user_id, provider=provider, subject=subject))
        db.session.commit()


def test_rule_1_a_known_identity_signs_its_user_in(app, client, auth, hostile):
    """The identity decides, not the email: a new provider email still finds the same user."""
    auth.create_user("someone@example.com")
    link_identity(app, "someone@example.com")
    response = sign_in(client)
    assert response.status_code == 200, response.json
    assert (response.json["email"], response.json["isNewUser"]) == ("someone@example.com", False)


def test_rule_1_a_disabled_users_identity_is_account_disabled(app, client, auth):
    """A known identity of a disabled account comes back with error=account_disabled."""
    auth.create_user(EMAIL, disabled=True)
    link_identity(app)
    assert round_trip(client)[0] == {"error": "account_disabled"}
    assert "signin_disabled" in events(app)


def events(app):
    """Return the audit trail's events, oldest first."""
    with app.app_context():
        return db.session.scalars(sa.select(AuthEvent.event).order_by(AuthEvent.id)).all()


def verified_user(app, auth, email=EMAIL):
    """Create a user with a password and a verified address; return their id."""
    user_id = auth.create_user(email)
    with app.app_context():
        db.session.execute(sa.update(User).values(email_verified=True))
        db.session.commit()
    return user_id


def test_rule_2_a_trusted_verified_email_links_to_the_account(app, client, auth):
    """A provider's verified address links to its account, which keeps its password."""
    user_id = verified_user(app, auth)
    response = sign_in(client)
    assert (response.json["id"], response.json["isNewUser"]) == (user_id, False)
    assert count(app, Identity, user_id=user_id, subject="subject-1") == 1
    assert user_row(app).password_hash is not None
    assert "identity_linked" in outbox_kinds(app) and "identity_linked" in events(app)


@pytest.mark.parametrize("email_verified", [False, None, "true"])
def test_rule_2_an_unverified_email_does_not_link(app, client, auth, hostile, email_verified):
    """email_verified false, missing, or not JSON true: account_exists, and nothing links."""
    verified_user(app, auth)
    hostile.email_verified = email_verified
    assert round_trip(client)[0] == {"error": "account_exists"}
    assert count(app, Identity) == 0 and "oauth_account_exists" in events(app)


def test_rule_2_an_untrusted_provider_does_not_link(database_url, hostile, github, auth):
    """OAUTH_<NAME>_TRUST_EMAIL=0: even a verified address is account_exists."""
    untrusted = create_app(provider_settings(database_url, hostile.url, OAUTH_CORP_TRUST_EMAIL="0"))
    with untrusted.app_context():
        db.session.add(User(email=EMAIL, password_hash="x", email_verified=True))
        db.session.commit()
    assert round_trip(untrusted.test_client())[0] == {"error": "account_exists"}
    assert count(untrusted, Identity) == 0
    empty_database(untrusted)


@pytest.fixture
def pre_registered(app, client, auth):
    """Sign up EMAIL, unverified, with a password, MFA, codes, a passkey, mail tokens, a session.

    The passkey stands for one registered while the address counted as
    verified (an admin's PATCH can unverify it later).
    """
    tokens = auth.signup(EMAIL)
    tokens["passkey"] = Authenticator()
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == EMAIL))
        user.mfa_enabled = True
        secret = sealing.seal("totp", b"JBSWY3DPEHPK3PXP")
        db.session.add(TotpFactor(user_id=user.id, secret=secret, enabled_at=utcnow()))
        db.session.add(RecoveryCode(user_id=user.id, code_digest="0" * 64))
        expires = utcnow() + timedelta(minutes=5)
        db.session.add(MfaChallenge(token_digest="1" * 64, user_id=user.id, expires_at=expires))
        db.session.add(Identity(user_id=user.id, provider="github", subject="attacker"))
        mailtokens.issue(user.id, "email_change", "attacker@example.com")
        db.session.commit()
        add_passkey(app, user.id, tokens["passkey"])
    return tokens


def test_rule_3_a_pre_registration_loses_its_password_factor_and_sessions(
    app, client, pre_registered
):
    """The owner signs in through the provider; what the maker set is gone."""
    response = sign_in(client)
    assert response.status_code == 200, response.json
    assert response.json["isNewUser"] is False
    old = client.get("/users/me", headers=bearer(pre_registered["accessToken"]))
    assert old.status_code == 401
    signin = client.post("/auth/signin", json={"email": EMAIL, "password": PASSWORD})
    assert signin.status_code == 401
    user = user_row(app)
    assert (user.password_hash, user.mfa_enabled, user.email_verified) == (None, False, True)
    for model in (TotpFactor, RecoveryCode, MfaChallenge, Passkey):
        assert count(app, model, user_id=user.id) == 0
    assert passkey_signin(client, pre_registered["passkey"]).status_code == 401


def test_rule_3_the_takeover_kills_links_mailed_tokens_and_says_so(app, client, pre_registered):
    """Other identities and a pending email change die; a notice is mailed and audited."""
    sign_in(client)
    user = user_row(app)
    with app.app_context():
        providers = db.session.scalars(sa.select(Identity.provider).filter_by(user_id=user.id))
        assert list(providers) == ["corp"]
        live = sa.select(sa.func.count()).where(MailToken.used_at.is_(None))
        assert db.session.scalar(live) == 0
    assert "pre_registration_removed" in outbox_kinds(app)
    assert "pre_registration_removed" in events(app)


def test_rule_3_a_verified_account_keeps_everything(app, client, auth):
    """An account whose address was verified is linked, not stripped."""
    tokens = auth.signup(EMAIL)
    with app.app_context():
        db.session.execute(sa.update(User).values(email_verified=True))
        db.session.commit()
    assert sign_in(client).status_code == 200
    assert client.get("/users/me", headers=bearer(tokens["accessToken"])).status_code == 200
    assert user_row(app).password_hash is not None
    assert "pre_registration_removed" not in events(app)


def test_rule_3_an_untrusted_answer_leaves_a_pre_registration_alone(
    app, client, hostile, pre_registered
):
    """An unverified provider address is account_exists: the pre-registration stays as it was."""
    hostile.email_verified = False
    assert round_trip(client)[0] == {"error": "account_exists"}
    user = user_row(app)
    assert user.password_hash is not None and user.mfa_enabled is True


def test_rule_4_an_untrusted_address_makes_an_unverified_account_and_mails_it(app, client, hostile):
    """A new address the provider does not vouch for starts unverified, with a verification mail."""
    hostile.email_verified = False
    response = sign_in(client)
    assert response.json["isNewUser"] is True
    user = user_row(app)
    assert (user.email_verified, user.password_hash) == (False, None)
    assert outbox_kinds(app) == ["verify_email"]


def test_rule_4_no_email_is_email_missing_and_makes_nobody(app, client, hostile):
    """Neither the ID token nor userinfo gives an address: error=email_missing."""
    hostile.email = None
    hostile.userinfo = {"sub": "subject-1"}
    assert round_trip(client)[0] == {"error": "email_missing"}
    assert count(app, User) == 0 and "oauth_email_missing" in events(app)


@pytest.mark.parametrize("email", ["not-an-address", "admin@ex\u0430mple.com"])
def test_rule_4_an_address_authsvc_cannot_take_is_email_missing(app, client, hostile, email):
    """An address that is not one (or not ASCII) is no usable email."""
    hostile.email = email
    assert round_trip(client)[0] == {"error": "email_missing"}
    assert count(app, User) == 0


def test_rule_4_under_require_verified_email_an_unverified_account_gets_no_tokens(
    database_url, hostile, github
):
    """REQUIRE_VERIFIED_EMAIL=1: the token exchange answers 403 email_not_verified."""
    settings = provider_settings(
        database_url, hostile.url, REQUIRE_VERIFIED_EMAIL=True, MAIL_URL="console://"
    )
    strict = create_app(settings)
    hostile.email_verified = False
    response = sign_in(strict.test_client())
    assert (response.status_code, response.json["code"]) == (403, "email_not_verified")
    assert outbox_kinds(strict) == ["verify_email"]
    empty_database(strict)


def test_rule_6_the_provider_never_changes_the_accounts_email(app, client, hostile):
    """A later sign-in with another provider address leaves the account's address alone."""
    sign_in(client)
    hostile.email = "ada.lovelace@example.com"
    response = sign_in(client)
    assert response.json["email"] == EMAIL
    assert user_row(app).email == EMAIL


def test_a_failed_callback_creates_no_user_and_links_nothing(app, client, hostile, auth):
    """A provider error after the state: no account, no identity."""
    verified_user(app, auth)
    hostile.claims = {"aud": "another-client"}
    assert round_trip(client)[0] == {"error": "provider_error"}
    assert count(app, Identity) == 0 and count(app, User) == 1


def test_an_mfa_user_takes_the_second_step_after_the_provider(app, client, auth):
    """A linked MFA user gets mfa_required with an mfaToken, not tokens."""
    verified_user(app, auth)
    link_identity(app)
    with app.app_context():
        db.session.execute(sa.update(User).values(mfa_enabled=True))
        db.session.commit()
    response = sign_in(client)
    assert (response.status_code, response.json["code"]) == (403, "mfa_required")
    assert response.json["mfaToken"] and "accessToken" not in response.json


def test_a_signin_code_is_useless_at_the_link_endpoint(client, auth):
    """A sign-in code presented to POST /users/me/identities is invalid_grant."""
    tokens = auth.signup("other@example.com")
    answer, verifier = round_trip(client)
    response = client.post(
        "/users/me/identities",
        json={"code": answer["code"], "codeVerifier": verifier},
        headers=bearer(tokens["accessToken"]),
    )
    assert (response.status_code, response.json["code"]) == (400, "invalid_grant")
    assert exchange(client, answer["code"], verifier).status_code == 200
