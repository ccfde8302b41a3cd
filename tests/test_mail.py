"""The outbox, the relay and delivery over real SMTP (plain, STARTTLS, TLS): retries, give-ups."""

import logging
import smtplib
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import PASSWORD, TEST_SECRET, empty_database, settings
from live import bound_socket
from mailer import LOGIN, SECRET, Mailbox, self_signed_certificate, smtp_server, text_of
from test_telemetry import samples

from authsvc import create_app, mail, relay
from authsvc.extensions import db
from authsvc.models import AuthEvent, MailOutbox, utcnow

TO = "someone@example.com"


@pytest.fixture
def app(database_url, smtp, mailbox):
    """Yield an app that mails through the test SMTP server."""
    app = create_app(settings(database_url, MAIL_URL=smtp.url))
    yield app
    empty_database(app)


def queue_mails(app, count=1, kind="test"):
    """Queue mails to TO and commit; return their row ids."""
    with app.app_context():
        for _ in range(count):
            mail.queue(kind, TO)
        db.session.commit()
        return db.session.scalars(sa.select(MailOutbox.id).order_by(MailOutbox.id)).all()


def rows(app):
    """Return every outbox row."""
    with app.app_context():
        return db.session.scalars(sa.select(MailOutbox).order_by(MailOutbox.id)).all()


def send_pending(app):
    """Run the relay's pass once."""
    with app.app_context():
        return relay.send_pending()


def make_due(app):
    """Make every pending row due now."""
    with app.app_context():
        db.session.execute(sa.update(MailOutbox).values(next_attempt_at=utcnow()))
        db.session.commit()


def test_a_queued_mail_is_sent_once_and_its_body_dropped(app, mailbox):
    """Sent: one arrival, state sent, no body left, attempts 1."""
    queue_mails(app)
    assert send_pending(app)["sent"] == 1
    assert send_pending(app)["sent"] == 0
    (message,) = mailbox.messages
    assert "MAIL_URL works" in text_of(message)
    (row,) = rows(app)
    assert (row.state, row.message, row.attempts) == ("sent", None, 1)
    assert row.sent_at is not None


def test_the_body_is_sealed_at_rest(app):
    """The stored row does not show the recipient or the text."""
    queue_mails(app, kind="verify_email")
    with app.app_context():
        stored = db.session.scalar(sa.select(MailOutbox.message))
    assert TO not in stored and "verify" not in stored


def test_smtp_down_retries_with_backoff_and_loses_nothing(database_url, mailbox):
    """Refused connections schedule a retry; once the server is up, the mail goes out."""
    reserved = bound_socket()  # refuses connections until the server serves it
    port = reserved.getsockname()[1]
    app = create_app(settings(database_url, MAIL_URL=f"smtp://127.0.0.1:{port}"))
    try:
        queue_mails(app)
        assert send_pending(app) == {"retried": 1}
        (row,) = rows(app)
        assert (row.state, row.attempts) == ("pending", 1)
        assert row.next_attempt_at > utcnow() + timedelta(seconds=30)
        assert row.last_error.startswith("ConnectionRefusedError") and TO not in row.last_error
        assert send_pending(app) == {}  # not due yet
        with smtp_server(mailbox, sock=reserved):
            make_due(app)
            assert send_pending(app) == {"sent": 1}
        assert len(mailbox.messages) == 1
    finally:
        reserved.close()
        empty_database(app)


def test_a_permanent_refusal_gives_up_at_once(app, mailbox):
    """A 5xx answer gives up: body dropped, audited, logged in one line without the address."""
    mailbox.refuse_with = "550 5.1.1 <someone@example.com>: no such user"
    queue_mails(app)
    with capture_log() as lines:
        assert send_pending(app) == {"given_up": 1}
    (row,) = rows(app)
    assert (row.state, row.message, row.last_error) == ("given_up", None, "SMTP 550")
    assert len(lines) == 1 and TO not in lines[0]
    with app.app_context():
        assert db.session.scalar(sa.select(AuthEvent.event)) == "mail_given_up"


def test_a_mail_is_given_up_after_about_a_day(app, mailbox):
    """A temporary failure a day after the mail was queued gives up."""
    mailbox.refuse_with = "451 4.3.0 try later"
    queue_mails(app)
    with app.app_context():
        db.session.execute(sa.update(MailOutbox).values(created_at=utcnow() - timedelta(days=1)))
        db.session.commit()
    assert send_pending(app) == {"given_up": 1}


def test_backoff_doubles_from_a_minute_up_to_an_hour(app):
    """About 60 s, 120 s, 240 s..., never past an hour, with jitter."""
    with app.app_context():
        delays = [relay.retry_delay(attempts).total_seconds() for attempts in range(10)]
    for attempts, delay in enumerate(delays):
        expected = min(60 * 2**attempts, 3600)
        assert 0.75 * expected <= delay <= 1.25 * expected


def test_a_claim_whose_lease_ended_is_taken_over(app, mailbox):
    """A row left 'sending' by a dead worker is sent once its lease ends, not before."""
    queue_mails(app)
    with app.app_context():
        claimed = {"state": "sending", "claim": "dead-worker"}
        db.session.execute(
            sa.update(MailOutbox).values(claimed_until=utcnow() + timedelta(minutes=1), **claimed)
        )
        db.session.commit()
    assert send_pending(app) == {}
    with app.app_context():
        db.session.execute(sa.update(MailOutbox).values(claimed_until=utcnow()))
        db.session.commit()
    assert send_pending(app) == {"sent": 1}


def test_concurrent_relays_send_each_mail_once(app, mailbox):
    """Four relays draining 40 mails at once deliver each exactly once."""
    queue_mails(app, 40)
    barrier = threading.Barrier(4)

    def drain():
        barrier.wait()
        send_pending(app)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    identities = [message["Message-ID"] for message in mailbox.messages]
    assert len(identities) == 40 and len(set(identities)) == 40
    assert {row.state for row in rows(app)} == {"sent"}


def test_the_relay_thread_delivers_after_the_commit(database_url, smtp, mailbox):
    """With MAIL_RELAY on, a commit that queued mail wakes a thread that sends it."""
    app = create_app(settings(database_url, MAIL_URL=smtp.url, MAIL_RELAY=True))
    try:
        queue_mails(app)
        mailbox.wait_for(1, timeout=10)
        assert relay.relay_of(app).running()
    finally:
        relay.relay_of(app).stop()
        empty_database(app)


def test_the_relay_thread_audits_as_the_relay(database_url, smtp, mailbox):
    """What the relay's thread writes to the audit trail is marked source=relay."""
    app = create_app(settings(database_url, MAIL_URL=smtp.url, MAIL_RELAY=True))
    client = app.test_client()
    try:
        client.post("/auth/signup", json={"email": "r@example.com", "password": PASSWORD})
        reset = client.post("/auth/password-reset", json={"email": "r@example.com"})
        assert reset.status_code == 202
        mailbox.wait_for(2, timeout=10)
        with app.app_context():
            sources = dict(db.session.execute(sa.select(AuthEvent.event, AuthEvent.source)).all())
        assert sources["signup"] == "api"
        assert sources["password_reset_requested"] == "relay"
    finally:
        relay.relay_of(app).stop()
        empty_database(app)


def test_the_relay_survives_a_database_failure(tmp_path):
    """A pass that cannot reach the database logs one line, and the relay goes on."""
    app = create_app(settings(f"sqlite:///{tmp_path}/missing/db.sqlite", MAIL_URL="console://"))
    worker = relay.relay_of(app)
    with capture_log() as lines:
        worker.deliver_due()
        worker.deliver_due()
    assert len(lines) == 2 and lines[0].startswith("mail relay: OperationalError")


def test_a_template_error_is_retried_not_lost(app, tmp_path):
    """A broken replacement template leaves the mail pending for a later try."""
    (tmp_path / "test.txt").write_text("{{ no_such_value }}")
    broken = create_app(
        settings(app.config["SQLALCHEMY_DATABASE_URI"], MAIL_TEMPLATES=str(tmp_path))
    )
    queue_mails(broken)
    assert send_pending(broken) == {"retried": 1}
    assert rows(app)[0].last_error == "UndefinedError"


def test_mail_templates_replace_the_built_in_ones(database_url, smtp, mailbox, tmp_path):
    """MAIL_TEMPLATES is searched first; what it lacks comes from the package."""
    (tmp_path / "test.subject.txt").write_text("Our own subject")
    app = create_app(settings(database_url, MAIL_URL=smtp.url, MAIL_TEMPLATES=str(tmp_path)))
    try:
        queue_mails(app)
        send_pending(app)
        (message,) = mailbox.messages
        assert message["Subject"] == "Our own subject"
        assert "MAIL_URL works" in text_of(message)
    finally:
        empty_database(app)


def test_html_parts_are_escaped(app):
    """Values in an HTML template are autoescaped; in text they are not."""
    payload = {"to": TO, "message_id": "<x@y>", "context": {"new_email": "<b>@example.com"}}
    with app.app_context():
        _, text, html = mail.render("email_changed", payload)
    assert "&lt;b&gt;@example.com" in html and "<b>@example.com" in text


def test_console_writes_the_text_to_the_log(database_url):
    """console:// logs the mail, link and all (the development default)."""
    app = create_app(settings(database_url, MAIL_URL=None))
    try:
        assert app.config["MAIL_URL"] == "console://"
        queue_mails(app)
        with capture_log(logging.INFO) as lines:
            assert send_pending(app) == {"sent": 1}
        assert "MAIL_URL works" in lines[0]
    finally:
        empty_database(app)


def test_metrics_count_sent_retried_given_up_and_pending(app, mailbox):
    """The mail counters and the pending gauge are in /metrics."""
    client = app.test_client()
    before = samples(client)
    queue_mails(app, 2)
    send_pending(app)
    mailbox.refuse_with = "451 4.3.0 later"
    queue_mails(app)
    send_pending(app)
    after = samples(client)

    def grew(name):
        return after.get((name, ()), 0) - before.get((name, ()), 0)

    assert (grew("authsvc_mail_sent_total"), grew("authsvc_mail_retried_total")) == (2, 1)
    assert after[("authsvc_mail_pending", ())] == 1


class capture_log:
    """Collect the lines authsvc's mail loggers write at a level or above."""

    def __init__(self, level=logging.WARNING):
        self.handler, self.lines = logging.Handler(level), []
        self.handler.emit = lambda record: self.lines.append(record.getMessage())

    def __enter__(self):
        logging.getLogger("authsvc.mail").addHandler(self.handler)
        return self.lines

    def __exit__(self, *exc_info):
        logging.getLogger("authsvc.mail").removeHandler(self.handler)


def test_send_pending_command_prints_the_tally(app, runner, mailbox):
    """`mail send-pending` delivers everything pending, due or not, and says how it went."""
    queue_mails(app, 2)
    with app.app_context():
        later = utcnow() + timedelta(hours=1)
        db.session.execute(sa.update(MailOutbox).values(next_attempt_at=later))
        db.session.commit()
    result = runner.invoke(args=["mail", "send-pending"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Sent 2, retried 0, gave up 0."


def test_mail_test_command_prints_the_server_answer(app, runner, mailbox):
    """`mail test ADDRESS` sends now and prints the DATA reply."""
    result = runner.invoke(args=["mail", "test", TO])
    assert result.exit_code == 0, result.output
    assert "250 2.0.0 Kept for the tests" in result.output
    assert len(mailbox.messages) == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """Make a self-signed certificate for 127.0.0.1."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize(
    ("scheme", "implicit_tls"),
    [("smtp+starttls", False), ("smtps", True)],
    ids=["starttls", "smtps"],
)
def test_tls_delivery_with_login(monkeypatch, certificate, scheme, implicit_tls):
    """STARTTLS and implicit TLS verify the server's certificate and log in (URL-decoded)."""
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    mailbox = Mailbox()
    with smtp_server(
        mailbox, certificate=certificate, implicit_tls=implicit_tls, with_login=True
    ) as server:
        url = f"{scheme}://{LOGIN}:p%40ss%20word%2F%3A@127.0.0.1:{server.port}"
        app = create_app(settings("sqlite://", MAIL_URL=url))
        with app.app_context():
            answer = mail.deliver(mail.build_message("test", mail.new_payload(TO)))
    assert answer.startswith("250") and len(mailbox.messages) == 1
    assert SECRET == "p@ss word/:"


def test_tls_refuses_an_untrusted_certificate(certificate):
    """Without trusting the certificate, STARTTLS fails (and the mail would be retried)."""
    mailbox = Mailbox()
    with smtp_server(mailbox, certificate=certificate) as server:
        app = create_app(settings("sqlite://", MAIL_URL=f"smtp+starttls://127.0.0.1:{server.port}"))
        with app.app_context(), pytest.raises(Exception) as refused:
            mail.deliver(mail.build_message("test", mail.new_payload(TO)))
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert mailbox.messages == []


def test_reseal_seals_queued_mail_with_the_new_secret(app, runner, database_url, smtp, mailbox):
    """After a JWT_SECRET_KEY change, `keys reseal` keeps queued mail readable."""
    queue_mails(app)
    new_secret = "a-brand-new-signing-key-that-is-long-enough-too"
    bridging = create_app(
        settings(database_url, JWT_SECRET_KEY=new_secret, JWT_PREVIOUS_SECRET_KEY=TEST_SECRET)
    )
    result = bridging.test_cli_runner().invoke(args=["keys", "reseal"])
    assert result.exit_code == 0 and "1 queued mail" in result.output, result.output
    renewed = create_app(settings(database_url, MAIL_URL=smtp.url, JWT_SECRET_KEY=new_secret))
    assert send_pending(renewed) == {"sent": 1}


@pytest.mark.parametrize(
    ("error", "gives_up"),
    [
        (mail.MailRefused(550, b"no such user"), True),
        (mail.MailRefused(552, b"too big"), True),
        (mail.MailRefused(451, b"try later"), False),
        (smtplib.SMTPAuthenticationError(535, b"bad login"), False),
        (smtplib.SMTPConnectError(554, b"no service"), False),
        (smtplib.SMTPResponseException(530, b"STARTTLS first"), False),
        (ConnectionRefusedError(111, "Connection refused"), False),
    ],
)
def test_only_a_5xx_refusal_of_the_mail_gives_up(error, gives_up):
    """A login, greeting or STARTTLS refusal is a setting to fix: retried, not given up."""
    assert mail.permanent(error) is gives_up


def test_a_stopping_relay_gives_its_claim_back(app, mailbox, monkeypatch):
    """A relay told to stop mid-batch sends the mail in hand and releases the rest."""
    queue_mails(app, 3)
    stopping, deliver = threading.Event(), mail.deliver

    def deliver_then_stop(message):
        stopping.set()
        return deliver(message)

    monkeypatch.setattr(mail, "deliver", deliver_then_stop)
    with app.app_context():
        assert relay.send_pending(stopping) == {"sent": 1}
    assert sorted(row.state for row in rows(app)) == ["pending", "pending", "sent"]
    assert {row.claim for row in rows(app)} == {None}
    monkeypatch.undo()
    assert send_pending(app) == {"sent": 2}
