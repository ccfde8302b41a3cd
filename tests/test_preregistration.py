"""A second factor needs a verified address: a pre-registration cannot lock the owner out.

Someone signs up with another person's address, which they never verify;
if they could turn TOTP on, the real owner, resetting the password by mail,
would still be locked out by a factor they do not have.
"""

import time

import pyotp
import sqlalchemy as sa
from conftest import PASSWORD, bearer

from authsvc import mailtokens, totp
from authsvc.extensions import db
from authsvc.models import TotpFactor, User

EMAIL = "owner@example.com"
SQUATTER_PASSWORD = "squatters-own-pass-1"


def enroll(client, tokens, password=PASSWORD):
    """Start a TOTP enrollment with a token pair's fresh access token."""
    return client.post(
        "/users/me/mfa/totp",
        json={"currentPassword": password},
        headers=bearer(tokens["accessToken"]),
    )


def confirm(client, tokens, code):
    """Confirm a pending enrollment with a code."""
    return client.post(
        "/users/me/mfa/totp/confirm", json={"code": code}, headers=bearer(tokens["accessToken"])
    )


def outcome(response):
    """Return a response's status and problem code."""
    return response.status_code, (response.get_json(silent=True) or {}).get("code")


def set_verified(app, verified):
    """Mark every user's address verified or not, as an admin could."""
    with app.app_context():
        db.session.execute(sa.update(User).values(email_verified=verified))
        db.session.commit()


def factors_of(app, user_id):
    """Return how many TOTP factors (pending or enabled) a user has."""
    with app.app_context():
        query = sa.select(sa.func.count()).where(TotpFactor.user_id == user_id)
        return db.session.scalar(query)


def test_enrolling_with_an_unverified_address_is_403(app, auth, client):
    """An address never verified cannot start an enrollment, and no factor is stored."""
    tokens = auth.signup(EMAIL)
    assert outcome(enroll(client, tokens)) == (403, "email_not_verified")
    assert factors_of(app, tokens["id"]) == 0


def test_a_pending_enrollment_of_an_unverified_address_cannot_be_confirmed(app, auth, client):
    """An enrollment left pending from before the rule is not turned on while unverified."""
    tokens = auth.signup(EMAIL)
    with app.app_context():
        secret = totp.start_enrollment(db.session.get(User, tokens["id"]))["secret"]
        db.session.commit()
    assert outcome(confirm(client, tokens, pyotp.TOTP(secret).now())) == (403, "email_not_verified")
    assert (
        client.get("/users/me", headers=bearer(tokens["accessToken"])).json["mfaEnabled"] is False
    )


def test_the_owner_resets_the_password_and_is_not_locked_out(app, auth, client):
    """Whatever the squatter tried (enroll, confirm), the owner's reset is all it takes."""
    squatter = auth.signup(EMAIL, SQUATTER_PASSWORD)
    attempt = enroll(client, squatter, SQUATTER_PASSWORD).json
    confirm(client, squatter, pyotp.TOTP(attempt.get("secret") or pyotp.random_base32()).now())
    with app.app_context():
        token = mailtokens.issue(squatter["id"], "password_reset", EMAIL)
        db.session.commit()
    body = {"token": token, "newPassword": "owners-new-password-7"}
    assert client.post("/auth/password-reset/confirm", json=body).status_code == 204
    signin = client.post("/auth/signin", json={"email": EMAIL, "password": body["newPassword"]})
    assert signin.status_code == 200 and "accessToken" in signin.json


def test_a_verified_address_enrolls(app, auth, client):
    """Once the address is verified, the same request starts an enrollment."""
    tokens = auth.signup(EMAIL)
    set_verified(app, True)
    assert enroll(client, tokens).status_code == 200
    assert factors_of(app, tokens["id"]) == 1


def test_a_user_who_has_mfa_keeps_it_unverified(app, auth, client):
    """MFA turned on before the rule (here: the address unverified since) still signs in."""
    tokens = auth.signup(EMAIL)
    set_verified(app, True)
    authenticator = pyotp.TOTP(enroll(client, tokens).json["secret"])
    confirm = {"code": authenticator.now()}
    headers = bearer(tokens["accessToken"])
    assert (
        client.post("/users/me/mfa/totp/confirm", json=confirm, headers=headers).status_code == 200
    )
    set_verified(app, False)
    asked = client.post("/auth/signin", json={"email": EMAIL, "password": PASSWORD})
    assert outcome(asked) == (403, "mfa_required")
    code = authenticator.at(time.time() + 30)
    finished = client.post(
        "/auth/signin/mfa", json={"mfaToken": asked.json["mfaToken"], "code": code}
    )
    assert finished.status_code == 200
