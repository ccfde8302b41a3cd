"""The one gate: every way in applies the account's rules in the same order.

Each entry of WAYS_IN drives one sign-in path through the API with a factor
that is right, up to the point where the gate decides. The tests then show
that every path refuses a disabled account, refuses an unverified address
under REQUIRE_VERIFIED_EMAIL=1, asks an MFA user for the second step (or,
for a path that proves one, lets them in), and that a session it opens
carries the path's amr, is audited and is counted in /metrics.
"""

from datetime import timedelta

import jwt
import pyotp
import pytest
import sqlalchemy as sa
from authenticator import ORIGIN, RP_ID, Authenticator
from conftest import PASSWORD, empty_database
from oauthhelp import exchange, provider_settings, round_trip
from passkeyflows import add_passkey, passkey_signin
from standins import HostileProvider

from authsvc import create_app, sealing, totp
from authsvc.extensions import db
from authsvc.models import AuthEvent, Identity, TotpFactor, User, utcnow
from authsvc.telemetry import SIGNINS

EMAIL = "user@example.com"
SECRET = pyotp.random_base32()
NOW = 1_800_000_015  # the middle of a TOTP step


@pytest.fixture(scope="module")
def provider():
    """Serve an OpenID Provider (the hostile one, behaving) for the provider's way in."""
    hostile = HostileProvider()
    yield hostile
    hostile.close()


# The software authenticator's relying party, beside the providers' PUBLIC_URL.
PASSKEYS = {"WEBAUTHN_RP_ID": RP_ID, "WEBAUTHN_ORIGINS": [ORIGIN]}


@pytest.fixture
def app(database_url, provider):
    """Yield an app that also lets users sign in with the provider `corp`, and with passkeys."""
    app = create_app(provider_settings(database_url, provider.url, **PASSKEYS))
    yield app
    empty_database(app)


@pytest.fixture(autouse=True)
def stopped_clock(monkeypatch):
    """Stop the TOTP clock, so a code made here is the code the service expects."""
    monkeypatch.setattr(totp, "clock", lambda: NOW)


def make_user(app, password_hash, *, mfa=False):
    """Insert a verified user with the test password and a TOTP factor of SECRET, on with `mfa`."""
    with app.app_context():
        user = User(email=EMAIL, password_hash=password_hash, email_verified=True, mfa_enabled=mfa)
        db.session.add(user)
        db.session.flush()
        db.session.add(
            TotpFactor(
                user_id=user.id,
                secret=sealing.seal("totp", SECRET.encode()),
                enabled_at=utcnow() - timedelta(minutes=1),
            )
        )
        db.session.commit()
        return user.id


def change_user(app, **values):
    """Set columns of the test user (disabled, email_verified...)."""
    if not values:
        return
    with app.app_context():
        db.session.execute(sa.update(User).values(**values))
        db.session.commit()


def password_signin(app, client, **before_gate):
    """The password path: POST /auth/signin, the user changed by `before_gate` first."""
    change_user(app, **before_gate)
    return client.post("/auth/signin", json={"email": EMAIL, "password": PASSWORD})


def mfa_step(app, client, **before_gate):
    """The MFA step: the password (MFA is on), then the change, then a TOTP code."""
    change_user(app, mfa_enabled=True)
    first = password_signin(app, client)
    assert first.json["code"] == "mfa_required", first.json
    change_user(app, **before_gate)
    code = pyotp.TOTP(SECRET).at(NOW)
    return client.post("/auth/signin/mfa", json={"mfaToken": first.json["mfaToken"], "code": code})


def passkey_step(app, client, **before_gate):
    """The passkey path: a passkey of the user, the change, then its assertion."""
    with app.app_context():
        user_id = db.session.scalar(sa.select(User.id).where(User.email == EMAIL))
    key = Authenticator()
    add_passkey(app, user_id, key)
    change_user(app, **before_gate)
    return passkey_signin(client, key)


def provider_signin(app, client, **before_gate):
    """A provider's path: the user's identity at `corp`, the round trip, the change, the code."""
    with app.app_context():
        user_id = db.session.scalar(sa.select(User.id))
        db.session.add(Identity(user_id=user_id, provider="corp", subject="subject-1"))
        db.session.commit()
    answer, verifier = round_trip(client)
    assert "code" in answer, answer
    change_user(app, **before_gate)
    return exchange(client, answer["code"], verifier)


def provider_mfa_step(app, client, **before_gate):
    """A provider's path for an MFA user: the round trip, then the change, then a TOTP code."""
    change_user(app, mfa_enabled=True)
    first = provider_signin(app, client)
    assert first.json["code"] == "mfa_required", first.json
    change_user(app, **before_gate)
    code = pyotp.TOTP(SECRET).at(NOW)
    return client.post("/auth/signin/mfa", json={"mfaToken": first.json["mfaToken"], "code": code})


# name: (drive the path, its amr, whether it proves a second factor by itself)
WAYS_IN = {
    "password": (password_signin, ["pwd"], False),
    "mfa_step": (mfa_step, ["pwd", "otp"], True),
    "passkey": (passkey_step, ["hwk", "mfa"], True),
    "provider": (provider_signin, ["oauth"], False),
    "provider_mfa_step": (provider_mfa_step, ["oauth", "otp"], True),
}


@pytest.fixture(params=sorted(WAYS_IN))
def way(request):
    """Yield each way in."""
    return WAYS_IN[request.param]


def amr(response):
    """Return the amr of the access token a sign-in answered."""
    return jwt.decode(response.json["accessToken"], options={"verify_signature": False})["amr"]


def events(app):
    """Return the audit trail's events, oldest first."""
    with app.app_context():
        return db.session.scalars(sa.select(AuthEvent.event).order_by(AuthEvent.id)).all()


def test_every_way_in_refuses_a_disabled_account(app, client, password_hash, way):
    """A disabled account is 403 account_disabled, and the refusal is audited."""
    drive, _, _ = way
    make_user(app, password_hash, mfa=True)
    response = drive(app, client, disabled=True)
    assert (response.status_code, response.json["code"]) == (403, "account_disabled")
    assert "signin_disabled" in events(app)


@pytest.fixture
def strict(database_url, provider):
    """Return an app with REQUIRE_VERIFIED_EMAIL=1 (mail to the log)."""
    overrides = {"REQUIRE_VERIFIED_EMAIL": True, "MAIL_URL": "console://", **PASSKEYS}
    app = create_app(provider_settings(database_url, provider.url, **overrides))
    yield app
    empty_database(app)


def test_every_way_in_refuses_an_unverified_address_when_required(strict, password_hash, way):
    """Under REQUIRE_VERIFIED_EMAIL=1 an unverified address is 403 email_not_verified."""
    drive, _, _ = way
    make_user(strict, password_hash, mfa=True)
    response = drive(strict, strict.test_client(), email_verified=False)
    assert (response.status_code, response.json["code"]) == (403, "email_not_verified")
    assert "accessToken" not in response.json


def test_every_first_factor_asks_an_mfa_user_for_the_second(app, client, password_hash, way):
    """A path that proves one factor answers mfa_required; one that proves two lets them in."""
    drive, methods, second_factor = way
    make_user(app, password_hash, mfa=True)
    response = drive(app, client, mfa_enabled=True)
    if second_factor:
        assert response.status_code == 200, response.json
        assert amr(response) == methods
    else:
        assert (response.status_code, response.json["code"]) == (403, "mfa_required")
        assert "accessToken" not in response.json and response.json["mfaToken"]


def test_every_way_in_opens_a_counted_session_with_its_amr(app, client, password_hash, way):
    """A session opens with the path's amr; the sign-in is audited and counted."""
    drive, methods, _ = way
    make_user(app, password_hash)
    counted = SIGNINS.labels(methods[0])._value.get()
    response = drive(app, client)
    assert response.status_code == 200, response.json
    assert set(response.json) - {"isNewUser"} == {"id", "email", "accessToken", "refreshToken"}
    assert amr(response) == methods
    assert events(app)[-1] in ("signin", "signin_mfa", "signin_passkey", "signin_oauth")
    assert SIGNINS.labels(methods[0])._value.get() == counted + 1
