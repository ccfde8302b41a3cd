"""Password reset, verified addresses and email change, through a real SMTP server."""

import logging
import threading

import pytest
import sqlalchemy as sa
from conftest import PASSWORD, bearer, empty_database, settings
from mailer import mails_to, token_in

from authsvc import create_app, mailtokens, relay
from authsvc.extensions import db
from authsvc.models import AuthEvent, MailOutbox, MailToken, User

EMAIL = "user@example.com"
NEW_PASSWORD = "marble-lantern-quiet-77"
INVALID = (400, "invalid_token")


@pytest.fixture
def app(database_url, smtp, mailbox):
    """Yield an app that mails through the test SMTP server; tests run the relay's pass."""
    app = create_app(settings(database_url, MAIL_URL=smtp.url))
    yield app
    empty_database(app)


def deliver(app):
    """Run one pass of the relay; return its tally."""
    with app.app_context():
        return relay.send_pending()


def mailed(app, mailbox, address, subject_word=""):
    """Deliver the outbox; return the mails an address got with a subject word."""
    deliver(app)
    return mails_to(mailbox.messages, address, subject_word)


def reset_token(app, client, mailbox, email=EMAIL):
    """Ask for a reset and return the token of the mail it sent."""
    mailbox.clear()
    assert client.post("/auth/password-reset", json={"email": email}).status_code == 202
    (message,) = mailed(app, mailbox, email, "Reset")
    return token_in(message)


def confirm(client, token, password=NEW_PASSWORD):
    """Confirm a reset."""
    return client.post(
        "/auth/password-reset/confirm", json={"token": token, "newPassword": password}
    )


def verify(client, token):
    """Use a verification or email-change token."""
    return client.post("/auth/verify-email", json={"token": token})


def outcome(response):
    """Return a problem's status and code."""
    return response.status_code, response.json["code"]


def me(client, access_token):
    """Return the caller's user object."""
    return client.get("/users/me", headers=bearer(access_token)).json


def events(app):
    """Return the audit trail's event names, oldest first."""
    with app.app_context():
        return db.session.scalars(sa.select(AuthEvent.event).order_by(AuthEvent.id)).all()


def signin_status(client, email=EMAIL, password=PASSWORD):
    """Return the status of a signin."""
    return client.post("/auth/signin", json={"email": email, "password": password}).status_code


def test_signup_mails_a_link_that_verifies_the_address(app, auth, client, mailbox):
    """The verification mail's token verifies the address once."""
    tokens = auth.signup()
    (message,) = mailed(app, mailbox, EMAIL, "Confirm your email")
    assert me(client, tokens["accessToken"])["emailVerified"] is False
    assert verify(client, token_in(message)).status_code == 204
    assert me(client, tokens["accessToken"])["emailVerified"] is True
    assert outcome(verify(client, token_in(message))) == INVALID
    assert "email_verified" in events(app)


def test_mail_has_text_and_html_parts_and_headers(app, auth, mailbox):
    """A mail is multipart/alternative, with From, Date and Message-ID."""
    auth.signup()
    (message,) = mailed(app, mailbox, EMAIL)
    assert message.get_content_type() == "multipart/alternative"
    assert message.get_body(("html",)).get_content().count("/verify-email?token=") == 1
    assert message["From"] == app.config["MAIL_FROM"]
    assert message["Date"] and message["Message-ID"].startswith("<")


def test_password_reset_end_to_end(app, auth, client, mailbox):
    """Reset: new password works, the old one and every session do not, a notice arrives."""
    tokens = auth.signup()
    other_device = auth.signin()
    assert confirm(client, reset_token(app, client, mailbox)).status_code == 204
    assert signin_status(client) == 401
    assert signin_status(client, password=NEW_PASSWORD) == 200
    for session in (tokens, other_device):
        assert client.get("/users/me", headers=bearer(session["accessToken"])).status_code == 401
    (notice,) = mailed(app, mailbox, EMAIL, "password was changed")
    assert "token=" not in notice.get_body(("plain",)).get_content()
    fresh = auth.signin(password=NEW_PASSWORD)
    assert me(client, fresh["accessToken"])["emailVerified"] is True
    assert {"password_reset_requested", "password_reset"} <= set(events(app))


def test_reset_request_answers_the_same_for_every_address(app, auth, client):
    """Known, unknown and disabled accounts get the same empty 202."""
    auth.create_user(EMAIL)
    auth.create_user("off@example.com", disabled=True)
    answers = []
    for email in (EMAIL, "nobody@example.com", "off@example.com"):
        response = client.post("/auth/password-reset", json={"email": email})
        answers.append((response.status_code, response.data, response.content_type))
    assert answers == [(202, b"", None)] * 3


def test_only_a_real_enabled_account_gets_a_reset_mail(app, auth, client, mailbox):
    """The relay drops the requests of unknown and disabled accounts."""
    auth.create_user("off@example.com", disabled=True)
    for email in ("nobody@example.com", "off@example.com"):
        client.post("/auth/password-reset", json={"email": email})
    assert deliver(app)["dropped"] == 2
    assert mailbox.messages == []
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(MailOutbox)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(MailToken)) == 0


def test_a_new_reset_request_kills_the_older_token(app, auth, client, mailbox):
    """Only the newest reset link works."""
    auth.create_user(EMAIL)
    first = reset_token(app, client, mailbox)
    second = reset_token(app, client, mailbox)
    assert outcome(confirm(client, first)) == INVALID
    assert confirm(client, second).status_code == 204


def test_a_password_change_kills_reset_tokens(app, auth, client, mailbox):
    """POST /users/me/password makes earlier reset links useless."""
    tokens = auth.signup()
    token = reset_token(app, client, mailbox)
    body = {"currentPassword": PASSWORD, "newPassword": "silver-harbor-dune-19"}
    changed = client.post("/users/me/password", json=body, headers=bearer(tokens["accessToken"]))
    assert changed.status_code == 200
    assert outcome(confirm(client, token)) == INVALID


def test_a_reset_ends_the_other_reset_tokens(app, auth, client, mailbox):
    """A second, still live, reset token of the user dies with the reset."""
    user_id = auth.create_user(EMAIL)
    token = reset_token(app, client, mailbox)
    with app.app_context():
        spare = mailtokens.issue(user_id, "password_reset", EMAIL)
        db.session.commit()
    assert confirm(client, token).status_code == 204
    assert outcome(confirm(client, spare)) == INVALID


def test_a_weak_password_leaves_the_token_usable(app, auth, client, mailbox):
    """422 weak_password does not use the token up."""
    auth.create_user(EMAIL)
    token = reset_token(app, client, mailbox)
    assert outcome(confirm(client, token, "password1234")) == (422, "weak_password")
    assert confirm(client, token).status_code == 204


def test_a_dead_token_is_invalid_whatever_the_password(app, auth, client):
    """An unknown token is 400 even with a weak password: the token is checked first."""
    auth.create_user(EMAIL)
    assert outcome(confirm(client, "no-such-token", "password1234")) == INVALID


def test_concurrent_confirmations_one_wins(app, auth, client, mailbox):
    """Eight confirmations of one token at once: one 204, seven 400."""
    auth.create_user(EMAIL)
    token = reset_token(app, client, mailbox)
    barrier, statuses = threading.Barrier(8), []

    def attempt():
        own = app.test_client()
        barrier.wait()
        statuses.append(confirm(own, token).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [204] + [400] * 7


def test_expired_tokens_are_invalid(app, auth, client, mailbox):
    """A reset or verification token past its lifetime is refused."""
    auth.signup()
    (verification,) = mailed(app, mailbox, EMAIL, "Confirm")
    token = reset_token(app, client, mailbox)
    with app.app_context():
        db.session.execute(sa.update(MailToken).values(expires_at=MailToken.created_at))
        db.session.commit()
    assert outcome(confirm(client, token)) == INVALID
    assert outcome(verify(client, token_in(verification))) == INVALID


def test_short_lifetimes_come_from_the_settings(database_url, smtp, auth, mailbox):
    """PASSWORD_RESET_TTL and EMAIL_VERIFY_TTL set the tokens' expiry."""
    app = create_app(
        settings(database_url, MAIL_URL=smtp.url, PASSWORD_RESET_TTL=60, EMAIL_VERIFY_TTL=120)
    )
    with app.app_context():
        user = User(email=EMAIL, password_hash="x" * 60)
        db.session.add(user)
        db.session.flush()
        mailtokens.issue(user.id, "password_reset", EMAIL)
        mailtokens.issue(user.id, "verify_email", EMAIL)
        db.session.commit()
        rows = db.session.execute(
            sa.select(MailToken.purpose, MailToken.created_at, MailToken.expires_at)
        ).all()
    empty_database(app)
    lifetimes = {row.purpose: (row.expires_at - row.created_at).total_seconds() for row in rows}
    assert lifetimes == {
        "password_reset": 60,
        "verify_email": 120,
    }


def test_a_token_works_only_for_its_purpose(app, auth, client, mailbox):
    """A verification token cannot reset a password, nor a reset token verify."""
    auth.signup()
    (verification,) = mailed(app, mailbox, EMAIL, "Confirm")
    token = reset_token(app, client, mailbox)
    assert outcome(confirm(client, token_in(verification))) == INVALID
    assert outcome(verify(client, token)) == INVALID
    assert confirm(client, token).status_code == 204


def test_every_refused_token_gets_the_same_answer(app, auth, client, mailbox):
    """Unknown, used and wrong-purpose tokens answer the same problem."""
    auth.signup()
    (verification,) = mailed(app, mailbox, EMAIL, "Confirm")
    used = reset_token(app, client, mailbox)
    confirm(client, used)
    answers = {
        confirm(client, token).get_data()
        for token in ("unknown", used, token_in(verification), "é" * 10)
    }
    assert len(answers) == 1


def test_resend_mails_a_new_link_and_keeps_the_old(app, auth, client, mailbox):
    """Resend is 202 with a new link; both links verify; then 409 already_verified."""
    tokens = auth.signup()
    (first,) = mailed(app, mailbox, EMAIL, "Confirm")
    resent = client.post("/auth/verify-email/resend", headers=bearer(tokens["accessToken"]))
    assert (resent.status_code, resent.data) == (202, b"")
    second = mailed(app, mailbox, EMAIL, "Confirm")[-1]
    assert token_in(second) != token_in(first)
    assert verify(client, token_in(first)).status_code == 204
    assert verify(client, token_in(second)).status_code == 204
    again = client.post("/auth/verify-email/resend", headers=bearer(tokens["accessToken"]))
    assert outcome(again) == (409, "already_verified")


def change_email(client, access_token, new_email, password=PASSWORD):
    """Ask to move the caller to a new address."""
    body = {"newEmail": new_email, "currentPassword": password}
    return client.post("/users/me/email", json=body, headers=bearer(access_token))


def test_email_change_end_to_end(app, auth, client, mailbox):
    """Nothing changes until the link is used; then the address moves and the old one hears."""
    tokens = auth.signup()
    old_reset = reset_token(app, client, mailbox)
    assert change_email(client, tokens["accessToken"], "New@Example.com").status_code == 202
    (message,) = mailed(app, mailbox, "new@example.com", "new email")
    assert me(client, tokens["accessToken"])["email"] == EMAIL
    assert verify(client, token_in(message)).status_code == 204
    user = me(client, tokens["accessToken"])
    assert (user["email"], user["emailVerified"]) == ("new@example.com", True)
    assert mailed(app, mailbox, EMAIL, "was changed")
    assert outcome(confirm(client, old_reset)) == INVALID
    assert signin_status(client, "new@example.com") == 200
    assert {"email_change_requested", "email_changed"} <= set(events(app))


@pytest.mark.parametrize(
    ("new_email", "password", "expected"),
    [
        (EMAIL, PASSWORD, (422, "validation_error")),
        ("taken@example.com", PASSWORD, (409, "email_taken")),
        ("fresh@example.com", "wrong-password-42", (403, "invalid_password")),
    ],
)
def test_email_change_refusals(app, auth, client, mailbox, new_email, password, expected):
    """The same address is 422, a taken one 409, a wrong password 403; nothing is mailed."""
    auth.create_user("taken@example.com")
    tokens = auth.signup()
    deliver(app)
    mailbox.clear()
    assert outcome(change_email(client, tokens["accessToken"], new_email, password)) == expected
    assert mailed(app, mailbox, new_email) == []


@pytest.mark.parametrize("how", ["reset", "change"])
def test_a_new_password_voids_a_pending_email_change(app, auth, client, mailbox, how):
    """Whoever asked for an email change with the old password cannot finish it afterwards."""
    tokens = auth.signup()
    change_email(client, tokens["accessToken"], "thief@example.com")
    (message,) = mailed(app, mailbox, "thief@example.com", "new email")
    if how == "reset":
        assert confirm(client, reset_token(app, client, mailbox)).status_code == 204
    else:
        body = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
        headers = bearer(tokens["accessToken"])
        assert client.post("/users/me/password", json=body, headers=headers).status_code == 200
    assert outcome(verify(client, token_in(message))) == INVALID
    assert signin_status(client, password=NEW_PASSWORD) == 200


def test_email_taken_meanwhile_is_409_and_keeps_the_token(app, auth, client, mailbox):
    """Someone takes the new address before the link is used: 409; the token stays usable."""
    tokens = auth.signup()
    change_email(client, tokens["accessToken"], "wanted@example.com")
    (message,) = mailed(app, mailbox, "wanted@example.com", "new email")
    squatter = auth.signup("wanted@example.com")
    assert outcome(verify(client, token_in(message))) == (409, "email_taken")
    client.delete("/users/me", headers=bearer(squatter["accessToken"]))
    assert verify(client, token_in(message)).status_code == 204


def test_a_verification_link_is_void_once_the_address_changed(app, auth, client, mailbox):
    """A verification token mailed to the old address verifies nothing after a change."""
    tokens = auth.signup()
    (verification,) = mailed(app, mailbox, EMAIL, "Confirm")
    change_email(client, tokens["accessToken"], "moved@example.com")
    (change,) = mailed(app, mailbox, "moved@example.com", "new email")
    verify(client, token_in(change))
    assert outcome(verify(client, token_in(verification))) == INVALID


@pytest.fixture
def strict(database_url, smtp, mailbox):
    """Return an app with REQUIRE_VERIFIED_EMAIL=1 and rate limits on."""
    app = create_app(
        settings(
            database_url,
            MAIL_URL=smtp.url,
            REQUIRE_VERIFIED_EMAIL=True,
            RATELIMIT_ENABLED=True,
            RATELIMIT_MAIL_PER_EMAIL="2 per hour",
        )
    )
    yield app
    empty_database(app)


def test_required_verification_signup_opens_no_session(strict, mailbox):
    """Signup answers {id, email, emailVerified: false} without tokens, and mails a link."""
    client = strict.test_client()
    response = client.post("/auth/signup", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 201
    assert set(response.json) == {"id", "email", "emailVerified"}
    assert response.json["emailVerified"] is False
    assert len(mailed(strict, mailbox, EMAIL, "Confirm")) == 1


def test_required_verification_refuses_signin_until_verified(strict, mailbox):
    """Right password: 403 email_not_verified and a new link; wrong password: 401."""
    client = strict.test_client()
    client.post("/auth/signup", json={"email": EMAIL, "password": PASSWORD})
    assert signin_status(client, password="wrong-password-42") == 401
    refused = client.post("/auth/signin", json={"email": EMAIL, "password": PASSWORD})
    assert outcome(refused) == (403, "email_not_verified")
    links = mailed(strict, mailbox, EMAIL, "Confirm")
    assert len(links) == 2
    assert verify(client, token_in(links[-1])).status_code == 204
    assert signin_status(client) == 200


def test_required_verification_mails_within_the_limit_only(strict, mailbox):
    """Signins of an unverified account mail at most RATELIMIT_MAIL_PER_EMAIL links."""
    client = strict.test_client()
    client.post("/auth/signup", json={"email": EMAIL, "password": PASSWORD})
    assert [signin_status(client) for _ in range(4)] == [403] * 4
    assert len(mailed(strict, mailbox, EMAIL, "Confirm")) == 1 + 2


def test_required_verification_checks_disabled_first(strict, auth):
    """A disabled, unverified account hears account_disabled."""
    auth.create_user(EMAIL, disabled=True)
    response = strict.test_client().post(
        "/auth/signin", json={"email": EMAIL, "password": PASSWORD}
    )
    assert outcome(response) == (403, "account_disabled")


@pytest.fixture
def mailless(database_url):
    """Yield an app with MAIL_URL=none."""
    app = create_app(settings(database_url, MAIL_URL="none"))
    yield app
    empty_database(app)


def test_without_mail_the_mailing_endpoints_are_503(mailless):
    """Reset, resend and email change answer 503 mail_unavailable; signup works, unmailed."""
    client = mailless.test_client()
    tokens = client.post("/auth/signup", json={"email": EMAIL, "password": PASSWORD}).json
    headers = bearer(tokens["accessToken"])
    unavailable = (503, "mail_unavailable")
    assert outcome(client.post("/auth/password-reset", json={"email": EMAIL})) == unavailable
    assert outcome(client.post("/auth/verify-email/resend", headers=headers)) == unavailable
    assert outcome(change_email(client, tokens["accessToken"], "n@example.com")) == unavailable
    with mailless.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(MailOutbox)) == 0


def test_mail_unavailable_says_when_to_retry(mailless):
    """Every 503 carries Retry-After, mail_unavailable too."""
    client = mailless.test_client()
    tokens = client.post("/auth/signup", json={"email": EMAIL, "password": PASSWORD}).json
    for response in (
        client.post("/auth/password-reset", json={"email": EMAIL}),
        client.post("/auth/verify-email/resend", headers=bearer(tokens["accessToken"])),
        change_email(client, tokens["accessToken"], "n@example.com"),
    ):
        assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0


def test_without_mail_tokens_mailed_earlier_still_work(mailless, auth):
    """A token from before MAIL_URL=none still resets the password."""
    user_id = auth.create_user(EMAIL)
    with mailless.app_context():
        token = mailtokens.issue(user_id, "password_reset", EMAIL)
        db.session.commit()
    assert confirm(mailless.test_client(), token).status_code == 204


def test_admins_set_email_verified(app, auth, client):
    """PATCH emailVerified; user objects carry it everywhere."""
    user_id = auth.create_user(EMAIL)
    admin = bearer(auth.admin()["accessToken"])
    patched = client.patch(f"/users/{user_id}", json={"emailVerified": True}, headers=admin)
    assert patched.status_code == 200 and patched.json["emailVerified"] is True
    assert client.get(f"/users/{user_id}", headers=admin).json["emailVerified"] is True
    listed = {
        user["email"]: user["emailVerified"] for user in client.get("/users", headers=admin).json
    }
    assert listed == {EMAIL: True, "admin@example.com": False}


@pytest.fixture
def limited(database_url, smtp, mailbox):
    """Return a client of an app with tight mail limits; ask for it after `auth`."""
    # The limiter is one object: the app made last decides whether it is on.
    app = create_app(
        settings(
            database_url,
            MAIL_URL=smtp.url,
            RATELIMIT_ENABLED=True,
            RATELIMIT_MAIL_PER_EMAIL="2 per hour",
            RATELIMIT_RESET_PER_ADDRESS="5 per minute",
            RATELIMIT_PASSWORD_PER_USER="2 per minute",
        )
    )
    yield app.test_client()
    empty_database(app)


def reset_statuses(client, email, count, address="127.0.0.1"):
    """Ask for `count` resets of an address from a client address; return the statuses."""
    return [
        client.post(
            "/auth/password-reset", json={"email": email}, environ_base={"REMOTE_ADDR": address}
        ).status_code
        for _ in range(count)
    ]


def test_reset_requests_per_target_are_limited_account_or_not(auth, limited):
    """The third request for one address in an hour is 429, whether it has an account or not."""
    auth.create_user(EMAIL)
    assert reset_statuses(limited, EMAIL, 3) == [202, 202, 429]
    assert reset_statuses(limited, "nobody@example.com", 3, "10.0.0.2") == [202, 202, 429]
    refused = limited.post("/auth/password-reset", json={"email": EMAIL})
    assert refused.json["code"] == "rate_limited" and int(refused.headers["Retry-After"]) > 0


def test_reset_requests_per_client_address_are_limited(auth, limited):
    """A sixth reset a minute from one address is 429, whatever the target; others go on."""
    statuses = [reset_statuses(limited, f"u{i}@example.com", 1)[0] for i in range(6)]
    assert statuses == [202] * 5 + [429]
    assert reset_statuses(limited, "u9@example.com", 1, "10.0.0.9") == [202]


def test_email_change_mails_are_limited_per_new_address(auth, limited):
    """Change requests to one new address count only when a mail was queued."""
    auth.create_user(EMAIL)
    tokens = auth.signin()
    statuses = [
        change_email(limited, tokens["accessToken"], "target@example.com").status_code
        for _ in range(3)
    ]
    assert statuses == [202, 202, 429]


def test_wrong_passwords_share_one_bucket(auth, limited):
    """Wrong current passwords at /users/me/password and /users/me/email count together."""
    auth.create_user(EMAIL)
    tokens = auth.signin()
    headers = bearer(tokens["accessToken"])
    wrong = {"currentPassword": "wrong-password-42", "newPassword": NEW_PASSWORD}
    assert limited.post("/users/me/password", json=wrong, headers=headers).status_code == 403
    wrong_change = change_email(limited, tokens["accessToken"], "x@example.com", "wrong-pass-42")
    assert wrong_change.status_code == 403
    assert change_email(limited, tokens["accessToken"], "x@example.com").status_code == 429


class LogLines(logging.Handler):
    """Every log line authsvc writes, whatever its logger."""

    NAMES = ("", "authsvc", "authsvc.access", "authsvc.mail")

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        """Keep the formatted line."""
        self.lines.append(record.getMessage())

    def __enter__(self):
        for name in self.NAMES:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc_info):
        for name in self.NAMES:
            logging.getLogger(name).removeHandler(self)


def test_no_token_in_logs_audit_rows_or_responses(database_url, smtp, mailbox, auth):
    """Every mailed token stays out of the logs, the audit trail, the outbox and the answers."""
    app = create_app(settings(database_url, MAIL_URL=smtp.url, ACCESS_LOG=True))
    client, answers = app.test_client(), []
    try:
        with LogLines() as log:
            tokens = client.post("/auth/signup", json={"email": EMAIL, "password": PASSWORD}).json
            answers.append(client.post("/auth/password-reset", json={"email": EMAIL}))
            answers.append(change_email(client, tokens["accessToken"], "next@example.com"))
            deliver(app)
            mailed_tokens = [token_in(message) for message in mailbox.messages]
            answers.append(confirm(client, mailed_tokens[1]))
            answers += [verify(client, token) for token in (mailed_tokens[0], mailed_tokens[2])]
            mailbox.refuse_with = "550 5.7.1 refused"
            deliver(app)
        with app.app_context():
            stored = [
                repr(row)
                for table in (AuthEvent.__table__, MailOutbox.__table__)
                for row in db.session.execute(sa.select(table)).all()
            ]
        seen = log.lines + stored + [repr(a.headers) + a.get_data(as_text=True) for a in answers]
        assert len(mailed_tokens) == 3 and log.lines
        assert not [text for text in seen for token in mailed_tokens if token in text]
    finally:
        empty_database(app)


def test_cli_users_are_verified_and_users_verify_marks_one(app, auth, runner):
    """`users create` makes verified users; `users verify EMAIL` verifies one."""
    created = runner.invoke(
        args=["users", "create", "cli@example.com", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert created.exit_code == 0, created.output
    auth.create_user(EMAIL)
    verified = runner.invoke(args=["users", "verify", EMAIL])
    assert verified.exit_code == 0 and "verified" in verified.output
    with app.app_context():
        flags = dict(db.session.execute(sa.select(User.email, User.email_verified)).all())
    assert flags == {"cli@example.com": True, EMAIL: True}
