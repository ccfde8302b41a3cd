"""The second factor: TOTP enrollment, signin with a code, recovery codes, turning MFA off.

Codes are made with pyotp from the secret the API returned, as an
authenticator app would. The service counts TOTP steps from totp.clock,
which these tests stop at a fixed moment and move a step at a time, so
neighbouring steps are tested without sleeping and never straddle a real
step boundary.
"""

import re
import threading
from types import SimpleNamespace

import jwt
import pyotp
import pytest
import sqlalchemy as sa
from conftest import PASSWORD, TEST_SECRET, AuthActions, bearer, empty_database, settings
from mailer import mails_to

from authsvc import challenges, create_app, relay, totp
from authsvc.extensions import db
from authsvc.models import AuthEvent, MfaChallenge, RecoveryCode, TotpFactor, User

EMAIL = "user@example.com"
START = 1_800_000_015  # the middle of a 30-second step
RECOVERY_FORMAT = re.compile(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}")


class Clock:
    """The service's TOTP clock, stopped; and the authenticator app beside it."""

    def __init__(self):
        self.now = START

    def tick(self, steps=1):
        """Move the clock on by whole steps."""
        self.now += 30 * steps

    def code(self, secret, steps=0):
        """Return the code an authenticator shows now, or `steps` steps away."""
        return pyotp.TOTP(secret).at(self.now + 30 * steps)


class VerifiedAuthActions(AuthActions):
    """The sign-up helper, whose users have verified addresses: enrolling needs one."""

    def signup(self, email=EMAIL, password=PASSWORD):
        """Sign up through the API, then verify the address as the mailed link would."""
        tokens = super().signup(email, password)
        self.verify(tokens["id"])
        return tokens

    def create_user(self, email=EMAIL, role="user", disabled=False):
        """Insert a user with the test password and a verified address."""
        return self.verify(super().create_user(email, role, disabled))

    def verify(self, user_id):
        """Mark a user's address verified; return the id."""
        return verify_address(self._app, user_id)


def verify_address(app, user_id):
    """Mark a user's address verified, as following the mailed link would; return the id."""
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == user_id).values(email_verified=True))
        db.session.commit()
    return user_id


@pytest.fixture
def auth(app, client, password_hash):
    """Return the sign-up and sign-in helper; its users' addresses are verified."""
    return VerifiedAuthActions(app, client, password_hash)


@pytest.fixture
def clock(monkeypatch):
    """Stop the service's TOTP clock at a fixed moment the test can move."""
    stopped = Clock()
    monkeypatch.setattr(totp, "clock", lambda: stopped.now)
    return stopped


def post(client, path, body, token=None):
    """POST a JSON body, with a Bearer token if given."""
    return client.post(path, json=body, headers=bearer(token) if token else {})


def enroll(client, tokens, password=PASSWORD):
    """Start a TOTP enrollment with a token pair's access token."""
    return post(client, "/users/me/mfa/totp", {"currentPassword": password}, tokens["accessToken"])


def confirm(client, tokens, code):
    """Confirm the pending enrollment with a code."""
    return post(client, "/users/me/mfa/totp/confirm", {"code": code}, tokens["accessToken"])


def password_step(client, email=EMAIL, password=PASSWORD):
    """Sign in with the password; return the mfaToken of the 403 mfa_required."""
    response = post(client, "/auth/signin", {"email": email, "password": password})
    assert response.status_code == 403 and response.json["code"] == "mfa_required", response.json
    return response.json["mfaToken"]


def code_step(client, mfa_token, code):
    """Finish an MFA signin with the mfaToken and a code."""
    return post(client, "/auth/signin/mfa", {"mfaToken": mfa_token, "code": code})


def amr(token):
    """Return the amr claim of an access token."""
    return jwt.decode(token, options={"verify_signature": False})["amr"]


@pytest.fixture
def enrolled(auth, client, clock):
    """Sign up a user and turn MFA on; the clock then stands one step later."""
    tokens = auth.signup()
    secret = enroll(client, tokens).json["secret"]
    codes = confirm(client, tokens, clock.code(secret)).json["recoveryCodes"]
    clock.tick()
    return SimpleNamespace(tokens=tokens, secret=secret, codes=codes)


@pytest.fixture
def mfa_signin(client, clock, enrolled):
    """Return a function that signs the enrolled user in with a fresh code; the clock moves on."""

    def sign_in():
        response = code_step(client, password_step(client), clock.code(enrolled.secret))
        assert response.status_code == 200, response.json
        clock.tick()
        return response.json

    return sign_in


def me(client, tokens):
    """Return the response of /users/me for a token pair."""
    return client.get("/users/me", headers=bearer(tokens["accessToken"]))


def rows(app, model, **where):
    """Return the rows of a table, filtered by column values."""
    with app.app_context():
        return db.session.scalars(sa.select(model).filter_by(**where)).all()


def events(app):
    """Return the audit trail's event names, oldest first."""
    with app.app_context():
        return db.session.scalars(sa.select(AuthEvent.event).order_by(AuthEvent.id)).all()


# Enrollment


def test_enrollment_answers_a_secret_and_its_uri(auth, client):
    """A pending enrollment: a base32 secret and an otpauth URI; MFA is not on yet."""
    tokens = auth.signup()
    response = enroll(client, tokens)
    assert response.status_code == 200 and set(response.json) == {"secret", "otpauthUri"}
    secret = response.json["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert response.json["otpauthUri"] == (
        f"otpauth://totp/authsvc:user%40example.com?secret={secret}&issuer=authsvc"
    )
    assert me(client, tokens).json["mfaEnabled"] is False


def test_enrollment_secret_is_sealed_at_rest(auth, client, app):
    """The stored secret is not the secret, and opens with the sealing key."""
    tokens = auth.signup()
    secret = enroll(client, tokens).json["secret"]
    (factor,) = rows(app, TotpFactor)
    assert secret not in factor.secret and factor.enabled_at is None
    with app.app_context():
        assert totp.sealing.unseal("totp", factor.secret).decode() == secret


def test_enrollment_needs_the_password(auth, client, app):
    """A wrong current password is 403 invalid_password, and no factor is made."""
    response = enroll(client, auth.signup(), password="not-the-password-1")
    assert response.status_code == 403 and response.json["code"] == "invalid_password"
    assert rows(app, TotpFactor) == []
    assert events(app)[-1] == "mfa_password_failed"


def test_enrollment_needs_a_fresh_token(auth, client):
    """An access token from a refresh is not fresh: 401 fresh_token_required."""
    refreshed = client.post("/auth/refresh", headers=bearer(auth.signup()["refreshToken"])).json
    response = enroll(client, refreshed)
    assert response.status_code == 401 and response.json["code"] == "fresh_token_required"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_enrolling_again_replaces_the_pending_secret(auth, client, clock):
    """Only the newest pending secret confirms."""
    tokens = auth.signup()
    first = enroll(client, tokens).json["secret"]
    second = enroll(client, tokens).json["secret"]
    assert first != second
    assert confirm(client, tokens, clock.code(first)).status_code == 403
    assert confirm(client, tokens, clock.code(second)).status_code == 200


def test_enrollment_when_mfa_is_on_is_409(client, mfa_signin):
    """A user with MFA on cannot enroll again (their token is MFA-fresh here)."""
    response = enroll(client, mfa_signin())
    assert response.status_code == 409 and response.json["code"] == "mfa_already_enabled"


def test_issuer_and_mfa_token_lifetime_are_settings(app, database_url):
    """MFA_ISSUER names the service in authenticator apps; MFA_TOKEN_TTL bounds mfaTokens."""
    custom = create_app(settings(database_url, MFA_ISSUER="Example Inc", MFA_TOKEN_TTL=60))
    client = custom.test_client()
    tokens = post(client, "/auth/signup", {"email": EMAIL, "password": PASSWORD}).json
    verify_address(custom, tokens["id"])
    uri = enroll(client, tokens).json["otpauthUri"]
    assert uri.startswith("otpauth://totp/Example%20Inc:user%40example.com?")
    assert uri.endswith("&issuer=Example%20Inc")
    with custom.app_context():
        token = challenges.open_challenge(tokens["id"])
        db.session.commit()
    (challenge,) = rows(app, MfaChallenge, token_digest=totp.digest(token))
    assert (challenge.expires_at - challenge.created_at).total_seconds() == 60


# Confirmation


def test_confirm_without_a_pending_enrollment_is_409(auth, client, clock):
    """Nothing to confirm: 409 no_pending_mfa."""
    response = confirm(client, auth.signup(), "123456")
    assert response.status_code == 409 and response.json["code"] == "no_pending_mfa"


def test_confirm_when_mfa_is_on_is_409(client, clock, enrolled):
    """The enabled factor is no pending enrollment."""
    response = confirm(client, enrolled.tokens, clock.code(enrolled.secret))
    assert response.status_code == 409 and response.json["code"] == "no_pending_mfa"


def test_confirm_with_a_wrong_code_is_403_and_changes_nothing(auth, client, app, clock):
    """A wrong code leaves MFA off and every session open."""
    tokens, other = auth.signup(), auth.signin()
    secret = enroll(client, tokens).json["secret"]
    wrong = clock.code(secret, steps=5)
    response = confirm(client, tokens, wrong)
    assert response.status_code == 403 and response.json["code"] == "invalid_mfa_code"
    assert me(client, tokens).json["mfaEnabled"] is False
    assert me(client, other).status_code == 200
    assert rows(app, TotpFactor)[0].enabled_at is None and events(app)[-1] == "mfa_failed"


def test_confirm_turns_mfa_on_with_ten_recovery_codes(auth, client, clock):
    """Ten distinct recovery codes, xxxx-xxxx-xxxx-xxxx in base32; mfaEnabled is true."""
    tokens = auth.signup()
    response = confirm(client, tokens, clock.code(enroll(client, tokens).json["secret"]))
    assert response.status_code == 200 and set(response.json) == {"recoveryCodes"}
    codes = response.json["recoveryCodes"]
    assert len(set(codes)) == 10 and all(RECOVERY_FORMAT.fullmatch(code) for code in codes)
    assert me(client, tokens).json["mfaEnabled"] is True


def test_confirm_ends_every_other_session(auth, client, clock):
    """The caller's session stays; every other one ends."""
    tokens, other = auth.signup(), auth.signin()
    confirm(client, tokens, clock.code(enroll(client, tokens).json["secret"]))
    assert me(client, other).status_code == 401
    assert client.post("/auth/refresh", headers=bearer(other["refreshToken"])).status_code == 401
    assert me(client, tokens).status_code == 200


def test_recovery_codes_are_stored_as_digests(app, enrolled):
    """Ten rows per user, none holding a code."""
    stored = {row.code_digest for row in rows(app, RecoveryCode)}
    assert len(stored) == 10
    assert stored == {totp.digest(totp.normalised(code)) for code in enrolled.codes}
    assert not {code.upper().replace("-", "") for code in enrolled.codes} & stored


# Signin


def test_signin_with_mfa_asks_for_a_code(client, enrolled):
    """The right password gives 403 mfa_required with an mfaToken, and no tokens."""
    response = post(client, "/auth/signin", {"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 403 and response.content_type == "application/problem+json"
    assert response.json["code"] == "mfa_required"
    assert len(response.json["mfaToken"]) >= 43
    assert not {"accessToken", "refreshToken"} & set(response.json)


def test_signin_with_mfa_and_a_wrong_password_stays_401(client, enrolled):
    """A wrong password is the plain 401 invalid_credentials, without an mfaToken."""
    response = post(client, "/auth/signin", {"email": EMAIL, "password": "not-the-password-1"})
    assert response.status_code == 401 and response.json["code"] == "invalid_credentials"
    assert "mfaToken" not in response.json


def test_signin_of_a_disabled_mfa_user_stays_403_account_disabled(auth, client, enrolled):
    """A disabled account gets account_disabled, not an mfaToken."""
    admin = auth.admin()
    user_id = enrolled.tokens["id"]
    client.patch(f"/users/{user_id}", json={"disabled": True}, headers=bearer(admin["accessToken"]))
    response = post(client, "/auth/signin", {"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 403 and response.json["code"] == "account_disabled"
    assert "mfaToken" not in response.json


def test_signin_with_a_code_opens_a_session(client, clock, enrolled):
    """The code step answers id, email and tokens; amr says pwd and otp."""
    response = code_step(client, password_step(client), clock.code(enrolled.secret))
    assert response.status_code == 200
    assert set(response.json) == {"id", "email", "accessToken", "refreshToken"}
    assert amr(response.json["accessToken"]) == ["pwd", "otp"]
    assert me(client, response.json).json["mfaEnabled"] is True


def test_refresh_keeps_amr(client, mfa_signin):
    """A refreshed access token still says how its session began; refresh tokens do not."""
    tokens = mfa_signin()
    refreshed = client.post("/auth/refresh", headers=bearer(tokens["refreshToken"])).json
    assert amr(refreshed["accessToken"]) == ["pwd", "otp"]
    refresh_claims = jwt.decode(refreshed["refreshToken"], options={"verify_signature": False})
    assert "amr" not in refresh_claims


def test_password_signin_tokens_say_pwd(auth):
    """Without MFA, amr is ["pwd"]."""
    assert amr(auth.signup()["accessToken"]) == ["pwd"]


def test_a_replayed_code_is_refused(client, clock, enrolled):
    """A code signs in once: the same step again is 401 invalid_mfa_code."""
    code = clock.code(enrolled.secret)
    assert code_step(client, password_step(client), code).status_code == 200
    response = code_step(client, password_step(client), code)
    assert response.status_code == 401 and response.json["code"] == "invalid_mfa_code"


def test_the_confirming_code_cannot_sign_in(client, clock, enrolled):
    """The step that confirmed the enrollment counts as used."""
    response = code_step(client, password_step(client), clock.code(enrolled.secret, steps=-1))
    assert response.status_code == 401 and response.json["code"] == "invalid_mfa_code"


@pytest.mark.parametrize(("steps", "status"), [(-1, 200), (1, 200), (-2, 401), (2, 401)])
def test_one_step_of_drift_is_accepted(client, clock, enrolled, steps, status):
    """A code one step off either way works; two steps off does not."""
    clock.tick(2)
    response = code_step(client, password_step(client), clock.code(enrolled.secret, steps))
    assert response.status_code == status


def test_an_older_step_is_refused_after_a_newer_one(client, clock, enrolled):
    """The used step only moves forward: after step n+1, step n is refused."""
    clock.tick()
    assert (
        code_step(client, password_step(client), clock.code(enrolled.secret, 1)).status_code == 200
    )
    response = code_step(client, password_step(client), clock.code(enrolled.secret))
    assert response.status_code == 401


def test_five_wrong_codes_kill_the_mfa_token(client, clock, enrolled):
    """After five wrong codes even the right one is 401 invalid_mfa_token."""
    mfa_token = password_step(client)
    for _ in range(5):
        response = code_step(client, mfa_token, "000000")
        assert response.status_code == 401 and response.json["code"] == "invalid_mfa_code"
    response = code_step(client, mfa_token, clock.code(enrolled.secret))
    assert response.status_code == 401 and response.json["code"] == "invalid_mfa_token"


def test_an_expired_mfa_token_is_refused(client, app, clock, enrolled):
    """An mfaToken past its MFA_TOKEN_TTL is 401 invalid_mfa_token."""
    mfa_token = password_step(client)
    (challenge,) = rows(app, MfaChallenge)
    assert (challenge.expires_at - challenge.created_at).total_seconds() == 300
    with app.app_context():
        db.session.execute(sa.update(MfaChallenge).values(expires_at=challenge.created_at))
        db.session.commit()
    response = code_step(client, mfa_token, clock.code(enrolled.secret))
    assert response.status_code == 401 and response.json["code"] == "invalid_mfa_token"


def test_an_mfa_token_works_once(client, clock, enrolled):
    """A used mfaToken is 401 invalid_mfa_token, whatever the code."""
    mfa_token = password_step(client)
    assert code_step(client, mfa_token, clock.code(enrolled.secret)).status_code == 200
    response = code_step(client, mfa_token, clock.code(enrolled.secret, 1))
    assert response.status_code == 401 and response.json["code"] == "invalid_mfa_token"


@pytest.mark.parametrize("kind", ["accessToken", "refreshToken", "garbage", "empty"])
def test_anything_but_a_live_mfa_token_is_refused(client, clock, enrolled, kind):
    """Tokens of other kinds, and strings, are 401 invalid_mfa_token, with a challenge."""
    mfa_token = enrolled.tokens.get(kind, {"garbage": "x" * 43, "empty": ""}.get(kind))
    response = code_step(client, mfa_token, clock.code(enrolled.secret))
    assert response.status_code == 401 and response.json["code"] == "invalid_mfa_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_disabled_user_cannot_finish_an_mfa_signin(auth, client, clock, enrolled):
    """Disabled between the two steps: 403 account_disabled."""
    admin, mfa_token = auth.admin(), password_step(client)
    user_id = enrolled.tokens["id"]
    client.patch(f"/users/{user_id}", json={"disabled": True}, headers=bearer(admin["accessToken"]))
    response = code_step(client, mfa_token, clock.code(enrolled.secret))
    assert response.status_code == 403 and response.json["code"] == "account_disabled"


# Recovery codes


def test_recovery_codes_work_once_each(client, enrolled):
    """Each code signs in once, as typed or not; amr says recovery."""
    first, second = enrolled.codes[:2]
    response = code_step(client, password_step(client), first)
    assert response.status_code == 200 and amr(response.json["accessToken"]) == ["pwd", "recovery"]
    again = code_step(client, password_step(client), first)
    assert again.status_code == 401 and again.json["code"] == "invalid_mfa_code"
    typed = f" {second.upper().replace('-', ' ')} "
    assert code_step(client, password_step(client), typed).status_code == 200


def test_using_a_recovery_code_is_audited(client, app, enrolled):
    """recovery_code_used follows the signin, with the new session."""
    code_step(client, password_step(client), enrolled.codes[0])
    assert events(app)[-2:] == ["signin_mfa", "recovery_code_used"]


def test_regenerating_recovery_codes_kills_the_old_ones(client, clock, enrolled, mfa_signin):
    """Ten new codes; the old ones no longer sign in, the new ones do."""
    tokens = mfa_signin()
    response = post(
        client,
        "/users/me/mfa/recovery-codes",
        {"code": clock.code(enrolled.secret)},
        tokens["accessToken"],
    )
    assert response.status_code == 200 and len(set(response.json["recoveryCodes"])) == 10
    assert code_step(client, password_step(client), enrolled.codes[0]).status_code == 401
    fresh = response.json["recoveryCodes"][0]
    assert code_step(client, password_step(client), fresh).status_code == 200


@pytest.mark.parametrize("which", ["recovery", "wrong"])
def test_regenerating_needs_a_totp_code(client, enrolled, mfa_signin, which):
    """A recovery code or a wrong code is 403 invalid_mfa_code; the old codes still work."""
    code = enrolled.codes[0] if which == "recovery" else "000000"
    response = post(
        client, "/users/me/mfa/recovery-codes", {"code": code}, mfa_signin()["accessToken"]
    )
    assert response.status_code == 403 and response.json["code"] == "invalid_mfa_code"
    assert code_step(client, password_step(client), enrolled.codes[1]).status_code == 200


def test_regenerating_without_mfa_is_409(auth, client):
    """No MFA, no recovery codes: 409 mfa_not_enabled."""
    response = post(
        client, "/users/me/mfa/recovery-codes", {"code": "123456"}, auth.signup()["accessToken"]
    )
    assert response.status_code == 409 and response.json["code"] == "mfa_not_enabled"


# Freshness for MFA users


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/users/me/mfa/recovery-codes", {"code": "123456"}),
        ("POST", "/users/me/mfa/disable", {"currentPassword": PASSWORD, "code": "123456"}),
        ("POST", "/users/me/mfa/totp", {"currentPassword": PASSWORD}),
        ("DELETE", "/users/me", None),
    ],
)
def test_a_password_only_token_is_not_fresh_for_an_mfa_user(client, enrolled, method, path, body):
    """The token in hand when MFA was turned on is recent, but not fresh any more."""
    response = client.open(
        path, method=method, json=body, headers=bearer(enrolled.tokens["accessToken"])
    )
    assert response.status_code == 401 and response.json["code"] == "fresh_token_required"


def test_a_refreshed_mfa_token_is_not_fresh(client, clock, enrolled, mfa_signin):
    """A second factor does not make a refreshed token fresh."""
    refreshed = client.post("/auth/refresh", headers=bearer(mfa_signin()["refreshToken"])).json
    body = {"code": clock.code(enrolled.secret)}
    response = post(client, "/users/me/mfa/recovery-codes", body, refreshed["accessToken"])
    assert response.status_code == 401 and response.json["code"] == "fresh_token_required"


def test_password_change_keeps_the_sessions_amr(client, clock, enrolled, mfa_signin):
    """The new session of a password change keeps pwd otp, and so its freshness."""
    body = {"currentPassword": PASSWORD, "newPassword": "marble-lantern-quiet-77"}
    tokens = post(client, "/users/me/password", body, mfa_signin()["accessToken"]).json
    assert amr(tokens["accessToken"]) == ["pwd", "otp"]
    codes = post(
        client,
        "/users/me/mfa/recovery-codes",
        {"code": clock.code(enrolled.secret)},
        tokens["accessToken"],
    )
    assert codes.status_code == 200


def test_password_change_does_not_make_a_refreshed_mfa_token_fresh(
    client, clock, enrolled, mfa_signin
):
    """A stolen refresh token and the password do not give a fresh token without the code."""
    refreshed = client.post("/auth/refresh", headers=bearer(mfa_signin()["refreshToken"])).json
    body = {"currentPassword": PASSWORD, "newPassword": "marble-lantern-quiet-77"}
    tokens = post(client, "/users/me/password", body, refreshed["accessToken"]).json
    response = client.delete("/users/me", headers=bearer(tokens["accessToken"]))
    assert response.status_code == 401 and response.json["code"] == "fresh_token_required"


def test_password_change_of_a_password_only_session_stays_pwd(client, enrolled):
    """A password change is no second factor."""
    body = {"currentPassword": PASSWORD, "newPassword": "marble-lantern-quiet-77"}
    tokens = post(client, "/users/me/password", body, enrolled.tokens["accessToken"]).json
    assert amr(tokens["accessToken"]) == ["pwd"]


# Turning MFA off


def disable(client, tokens, code, password=PASSWORD):
    """POST /users/me/mfa/disable."""
    body = {"currentPassword": password, "code": code}
    return post(client, "/users/me/mfa/disable", body, tokens["accessToken"])


def test_disabling_turns_mfa_off(client, app, clock, enrolled, mfa_signin):
    """204; signin gives tokens at once; the factor, codes and mfaTokens are gone."""
    tokens, pending = mfa_signin(), password_step(client)
    assert disable(client, tokens, clock.code(enrolled.secret)).status_code == 204
    assert me(client, tokens).json["mfaEnabled"] is False
    assert post(client, "/auth/signin", {"email": EMAIL, "password": PASSWORD}).status_code == 200
    assert code_step(client, pending, clock.code(enrolled.secret, 1)).json["code"] == (
        "invalid_mfa_token"
    )
    assert [rows(app, table) for table in (TotpFactor, RecoveryCode, MfaChallenge)] == [[]] * 3


def test_disabling_takes_a_recovery_code(client, enrolled, mfa_signin):
    """A user without their authenticator can turn MFA off with a recovery code."""
    assert disable(client, mfa_signin(), enrolled.codes[0]).status_code == 204


@pytest.mark.parametrize(
    ("password", "code", "expected"),
    [("not-the-password-1", None, "invalid_password"), (PASSWORD, "000000", "invalid_mfa_code")],
)
def test_disabling_needs_the_password_and_a_code(
    client, clock, enrolled, mfa_signin, password, code, expected
):
    """A wrong password or code is 403 and MFA stays on."""
    tokens = mfa_signin()
    response = disable(client, tokens, code or clock.code(enrolled.secret), password=password)
    assert response.status_code == 403 and response.json["code"] == expected
    assert me(client, tokens).json["mfaEnabled"] is True


def test_disabling_without_mfa_is_409(auth, client):
    """MFA off: 409 mfa_not_enabled."""
    response = disable(client, auth.signup(), "123456")
    assert response.status_code == 409 and response.json["code"] == "mfa_not_enabled"


def test_admin_reset_turns_mfa_off_and_ends_sessions(auth, client, app, enrolled, mfa_signin):
    """DELETE /users/<id>/mfa: 204, every session of the user ends; again is 409."""
    admin, tokens = auth.admin(), mfa_signin()
    path = f"/users/{tokens['id']}/mfa"
    assert client.delete(path, headers=bearer(admin["accessToken"])).status_code == 204
    assert me(client, tokens).status_code == 401 and me(client, enrolled.tokens).status_code == 401
    assert post(client, "/auth/signin", {"email": EMAIL, "password": PASSWORD}).status_code == 200
    again = client.delete(path, headers=bearer(admin["accessToken"]))
    assert again.status_code == 409 and again.json["code"] == "mfa_not_enabled"
    assert "mfa_reset" in events(app)


@pytest.mark.parametrize(
    ("who", "target", "status"), [("user", "self", 403), ("admin", "nobody", 404)]
)
def test_admin_reset_is_for_admins_and_real_users(auth, client, enrolled, who, target, status):
    """A non-admin gets 403; an unknown user 404."""
    tokens = auth.admin() if who == "admin" else enrolled.tokens
    user_id = enrolled.tokens["id"] if target == "self" else 999999
    response = client.delete(f"/users/{user_id}/mfa", headers=bearer(tokens["accessToken"]))
    assert response.status_code == status


def test_cli_mfa_reset(runner, client, app, enrolled):
    """`users mfa-reset EMAIL` turns MFA off and ends the sessions; again it fails."""
    result = runner.invoke(args=["users", "mfa-reset", "User@Example.com"])
    assert result.exit_code == 0, result.output
    assert me(client, enrolled.tokens).status_code == 401
    assert rows(app, User)[0].mfa_enabled is False
    again = runner.invoke(args=["users", "mfa-reset", EMAIL])
    assert again.exit_code == 1 and "does not have MFA on" in again.output


def test_cli_mfa_reset_of_an_unknown_email_fails(runner):
    """An unknown email is an error."""
    result = runner.invoke(args=["users", "mfa-reset", "nobody@example.com"])
    assert result.exit_code == 1 and "no user" in result.output


# Secrets at rest

NEW_SECRET = "a-brand-new-signing-secret-that-is-long-enough"


def test_keys_reseal_seals_totp_secrets_again(database_url, clock, enrolled):
    """After JWT_SECRET_KEY changes, `keys reseal` keeps every authenticator working."""
    moving = create_app(
        settings(database_url, JWT_SECRET_KEY=NEW_SECRET, JWT_PREVIOUS_SECRET_KEY=TEST_SECRET)
    )
    result = moving.test_cli_runner().invoke(args=["keys", "reseal"])
    assert result.exit_code == 0 and "1 TOTP secret(s)" in result.output
    client = create_app(settings(database_url, JWT_SECRET_KEY=NEW_SECRET)).test_client()
    response = code_step(client, password_step(client), clock.code(enrolled.secret))
    assert response.status_code == 200


def test_a_secret_that_does_not_open_is_a_wrong_code(database_url, clock, enrolled, caplog):
    """JWT_SECRET_KEY changed without reseal: 401 invalid_mfa_code and a log line, not a 500."""
    client = create_app(settings(database_url, JWT_SECRET_KEY=NEW_SECRET)).test_client()
    response = code_step(client, password_step(client), clock.code(enrolled.secret))
    assert response.status_code == 401 and response.json["code"] == "invalid_mfa_code"
    assert "does not open" in caplog.text


# Races


def at_once(count, request):
    """Run `request(index)` in `count` threads released together; return the statuses."""
    barrier, statuses = threading.Barrier(count), [None] * count

    def worker(index):
        barrier.wait()
        statuses[index] = request(index).status_code

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(statuses)


def test_concurrent_signins_with_one_code_let_exactly_one_in(app, clock, enrolled):
    """Eight signins with the same code and eight mfaTokens: exactly one 200."""
    client = app.test_client()
    mfa_tokens = [password_step(client) for _ in range(8)]
    code = clock.code(enrolled.secret)
    statuses = at_once(8, lambda i: code_step(app.test_client(), mfa_tokens[i], code))
    assert statuses == [200] + [401] * 7


def test_concurrent_uses_of_one_mfa_token_let_exactly_one_in(app, enrolled):
    """Eight uses of one mfaToken with eight different recovery codes: exactly one 200."""
    mfa_token = password_step(app.test_client())
    statuses = at_once(8, lambda i: code_step(app.test_client(), mfa_token, enrolled.codes[i]))
    assert statuses == [200] + [401] * 7


# Rate limits


@pytest.fixture
def limited(app, database_url):
    """Return a client of an app on the same database, limiting 3 wrong codes a minute.

    Made after `app`: the limiter is one object, and the app made last sets
    whether it is on.
    """
    config = {
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE_URI": "memory://",
        "RATELIMIT_MFA_PER_USER": "3 per minute",
        "RATELIMIT_PASSWORD_PER_USER": "2 per minute",
    }
    return create_app(settings(database_url, **config)).test_client()


def test_wrong_codes_are_rate_limited_per_user(limited, clock, enrolled):
    """After the limit of wrong codes, even the right one waits: 429 with Retry-After."""
    mfa_token = password_step(limited)
    assert [code_step(limited, mfa_token, "000000").status_code for _ in range(3)] == [401] * 3
    refused = code_step(limited, password_step(limited), clock.code(enrolled.secret))
    assert refused.status_code == 429 and refused.json["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 61


def test_only_wrong_codes_count(limited, clock, enrolled):
    """Right codes and dead mfaTokens never fill the bucket."""
    for _ in range(4):
        assert code_step(limited, "not-a-live-token", "000000").status_code == 401
        assert (
            code_step(limited, password_step(limited), clock.code(enrolled.secret)).status_code
            == 200
        )
        clock.tick()
    assert code_step(limited, password_step(limited), "000000").status_code == 401


def test_wrong_codes_share_one_bucket_across_endpoints(limited, clock, enrolled):
    """Wrong codes on the Bearer endpoints and at signin count together."""
    tokens = code_step(limited, password_step(limited), clock.code(enrolled.secret)).json
    for _ in range(2):
        response = post(
            limited, "/users/me/mfa/recovery-codes", {"code": "000000"}, tokens["accessToken"]
        )
        assert response.status_code == 403
    assert code_step(limited, password_step(limited), "000000").status_code == 401
    clock.tick()
    refused = code_step(limited, password_step(limited), clock.code(enrolled.secret))
    assert refused.status_code == 429


def test_wrong_passwords_share_one_bucket_across_endpoints(auth, limited):
    """A wrong current password at enrollment counts with one at password change."""
    tokens = auth.signup()
    assert enroll(limited, tokens, password="not-the-password-1").status_code == 403
    body = {"currentPassword": "not-the-password-1", "newPassword": "marble-lantern-quiet-77"}
    assert post(limited, "/users/me/password", body, tokens["accessToken"]).status_code == 403
    assert enroll(limited, tokens).status_code == 429


# What never shows


def test_no_answer_after_enrollment_holds_the_secret(auth, client, app, clock, caplog):
    """After the enrollment answer, no response, log line or audit row contains the secret."""
    caplog.set_level("DEBUG")
    tokens = auth.signup()
    secret = enroll(client, tokens).json["secret"]
    answers = [confirm(client, tokens, clock.code(secret))]
    clock.tick()
    mfa_token = password_step(client)
    signed_in = code_step(client, mfa_token, clock.code(secret))
    answers += [signed_in, me(client, signed_in.json), enroll(client, signed_in.json)]
    answers += [
        client.get(path, headers=bearer(signed_in.json["accessToken"]))
        for path in ("/auth/sessions", f"/users/{tokens['id']}")
    ]
    assert all(secret not in answer.get_data(as_text=True) for answer in answers)
    assert secret not in caplog.text
    with app.app_context():
        trail = db.session.execute(sa.select(AuthEvent.__table__)).all()
    assert secret not in repr(trail) and mfa_token not in repr(trail)


def test_every_step_is_audited(client, app, clock, enrolled, mfa_signin):
    """Enrollment, enabling, the challenge, the signin, new codes and disabling each leave a row."""
    tokens = mfa_signin()
    body = {"code": clock.code(enrolled.secret)}
    post(client, "/users/me/mfa/recovery-codes", body, tokens["accessToken"])
    clock.tick()
    disable(client, tokens, clock.code(enrolled.secret))
    trail = [event for event in events(app) if event not in ("signup", "signin")]
    assert trail == [
        "mfa_enrollment_started",
        "mfa_enabled",
        "mfa_challenged",
        "signin_mfa",
        "recovery_codes_regenerated",
        "mfa_disabled",
    ]


def test_the_openapi_document_shows_the_mfa_token(client):
    """Signin's 403 is a problem that may carry mfaToken."""
    spec = client.get("/openapi.json").json
    response = spec["paths"]["/auth/signin"]["post"]["responses"]["403"]
    schema = response["content"]["application/problem+json"]["schema"]["$ref"].split("/")[-1]
    assert "mfaToken" in spec["components"]["schemas"][schema]["properties"]


@pytest.fixture
def mailing(database_url, smtp, mailbox):
    """Yield an app mailing through the test SMTP server, and its mailbox."""
    app = create_app(settings(database_url, MAIL_URL=smtp.url))
    yield SimpleNamespace(app=app, client=app.test_client(), mailbox=mailbox)
    empty_database(app)


def notices(mailing, subject_word):
    """Deliver the outbox; return the mails the user got with a subject word."""
    with mailing.app.app_context():
        relay.send_pending()
    return mails_to(mailing.mailbox.messages, EMAIL, subject_word)


def turn_on(mailing, clock):
    """Sign up and turn MFA on through the mailing app; return the secret and recovery codes."""
    client = mailing.client
    tokens = client.post("/auth/signup", json={"email": EMAIL, "password": PASSWORD}).json
    verify_address(mailing.app, tokens["id"])
    secret = enroll(client, tokens).json["secret"]
    codes = confirm(client, tokens, clock.code(secret)).json["recoveryCodes"]
    clock.tick()
    return secret, codes


def test_turning_mfa_on_mails_a_notice(mailing, clock):
    """Confirming an enrollment mails the account a notice, without the secret."""
    secret, codes = turn_on(mailing, clock)
    (notice,) = notices(mailing, "now on")
    text = notice.get_body(("plain",)).get_content()
    assert secret not in text and not any(code in text for code in codes)


def test_a_recovery_code_signin_mails_a_notice_with_the_codes_left(mailing, clock):
    """Signing in with a recovery code mails a notice saying how many codes are left."""
    _, codes = turn_on(mailing, clock)
    response = code_step(mailing.client, password_step(mailing.client), codes[0])
    assert response.status_code == 200
    (notice,) = notices(mailing, "recovery code")
    assert "9 of your recovery codes" in notice.get_body(("plain",)).get_content()


def test_turning_mfa_off_mails_a_notice(mailing, clock):
    """Disabling MFA mails a notice; an admin's reset says an administrator did it."""
    secret, _ = turn_on(mailing, clock)
    tokens = code_step(mailing.client, password_step(mailing.client), clock.code(secret)).json
    body = {"currentPassword": PASSWORD, "code": clock.code(secret, 1)}
    assert (
        post(mailing.client, "/users/me/mfa/disable", body, tokens["accessToken"]).status_code
        == 204
    )
    (notice,) = notices(mailing, "turned off")
    assert "by an administrator" not in notice.get_body(("plain",)).get_content()


def test_an_admin_reset_mails_a_notice(mailing, clock, runner):
    """`users mfa-reset` mails the user that an administrator turned MFA off."""
    turn_on(mailing, clock)
    result = mailing.app.test_cli_runner().invoke(args=["users", "mfa-reset", EMAIL])
    assert result.exit_code == 0, result.output
    (notice,) = notices(mailing, "turned off")
    assert "by an administrator" in notice.get_body(("plain",)).get_content()
