"""Mail: the outbox rows a change writes, their rendering, and their delivery.

A change that mails someone adds an outbox row in its own transaction
(queue()); once that transaction commits, the relay (relay.py) delivers the
row. The row holds the recipient and what the templates need, sealed with a
key derived from JWT_SECRET_KEY. Templates (text, HTML and subject per kind)
come from MAIL_TEMPLATES first, then from the package. Delivery is SMTP
through the standard library, or the log for console://.
"""

import email.policy
import json
import logging
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

import jinja2
import sqlalchemy as sa
from flask import current_app

from authsvc import sealing
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import MailOutbox
from authsvc.telemetry import log_lines_to_stderr

MAIL_UNAVAILABLE_RETRY_AFTER = 3600  # seconds

# The flag a session carries from queue() to its commit, which wakes the relay.
QUEUED = "authsvc-mail-queued"

log = logging.getLogger("authsvc.mail")


def enabled():
    """Tell whether authsvc sends mail (MAIL_URL is not `none`)."""
    return current_app.config["MAIL_SERVER"] is not None


def require_mail():
    """Refuse a request that would send a mail when MAIL_URL is `none`.

    Every 503 says when to try again; this one lasts until an operator sets
    MAIL_URL, so the wait it suggests is long.
    """
    if not enabled():
        raise Problem(
            503,
            "mail_unavailable",
            "This service sends no mail (MAIL_URL=none).",
            headers={"Retry-After": str(MAIL_UNAVAILABLE_RETRY_AFTER)},
        )


def seal_payload(payload):
    """Seal what a row needs to become a mail."""
    return sealing.seal("mail", json.dumps(payload).encode())


def unseal_payload(sealed):
    """Open what seal_payload() sealed."""
    return json.loads(sealing.unseal("mail", sealed))


def new_payload(to, **context):
    """Return a row's payload: the recipient, a Message-ID kept across retries, the context."""
    domain = parseaddr(current_app.config["MAIL_FROM"])[1].rpartition("@")[2] or "localhost"
    return {"to": to, "message_id": make_msgid("authsvc", domain=domain), "context": context}


def queue(kind, to, **context):
    """Add a mail to the current transaction; the relay sends it after the commit."""
    db.session.add(MailOutbox(kind=kind, message=seal_payload(new_payload(to, **context))))
    db.session.info[QUEUED] = True


def reseal_outbox():
    """Seal every queued mail again with the current JWT_SECRET_KEY; return how many."""
    rows = db.session.scalars(sa.select(MailOutbox).where(MailOutbox.message.is_not(None))).all()
    for row in rows:
        row.message = sealing.reseal("mail", row.message)
    return len(rows)


def _templates():
    """Return this app's Jinja environment for mail: MAIL_TEMPLATES first, then the package's."""
    environment = current_app.extensions.get("authsvc-mail-templates")
    if environment is None:
        loaders = [jinja2.PackageLoader("authsvc", "templates/mail")]
        if current_app.config["MAIL_TEMPLATES"]:
            loaders.insert(0, jinja2.FileSystemLoader(current_app.config["MAIL_TEMPLATES"]))
        environment = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        current_app.extensions["authsvc-mail-templates"] = environment
    return environment


def render(kind, payload):
    """Return the subject, text and HTML of a mail of a kind."""
    templates = _templates()
    context = {"email": payload["to"], **payload["context"]}
    subject = templates.get_template(f"{kind}.subject.txt").render(context)
    text = templates.get_template(f"{kind}.txt").render(context)
    html = templates.get_template(f"{kind}.html").render(context)
    return " ".join(subject.split()), text, html


def build_message(kind, payload):
    """Return the multipart (text and HTML) message of an outbox payload."""
    subject, text, html = render(kind, payload)
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = Address(addr_spec=payload["to"])
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = payload["message_id"]
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def _connect(server):
    """Open an SMTP connection as MAIL_URL says, with TLS and login where asked."""
    timeout = current_app.config["MAIL_TIMEOUT"]
    if server.scheme == "smtps":
        context = ssl.create_default_context()
        smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=timeout)
    try:
        if server.scheme == "smtp+starttls":
            smtp.starttls(context=ssl.create_default_context())
        if server.username:
            smtp.login(server.username, server.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


class MailRefused(smtplib.SMTPResponseException):
    """The server refused this mail: its answer to MAIL FROM, RCPT TO or DATA."""


def _expect(reply, *codes):
    """Raise the server's refusal of the mail unless its reply code is one of `codes`."""
    code, text = reply
    if code not in codes:
        raise MailRefused(code, text)


def deliver(message):
    """Send one message now; return the server's answer to its DATA (or the log's)."""
    server = current_app.config["MAIL_SERVER"]
    if server.scheme == "console":
        text = message.get_body(("plain",)).get_content()
        log.info("mail to %s: %s\n\n%s", message["To"], message["Subject"], text)
        return "250 written to the log (MAIL_URL=console://)"
    sender = parseaddr(message["From"])[1]
    with _connect(server) as smtp:
        smtp.ehlo_or_helo_if_needed()
        _expect(smtp.mail(sender), 250)
        _expect(smtp.rcpt(message["To"].addresses[0].addr_spec), 250, 251)
        try:
            code, text = smtp.data(message.as_bytes(policy=email.policy.SMTP))
        except smtplib.SMTPDataError as error:
            raise MailRefused(error.smtp_code, error.smtp_error) from None
        _expect((code, text), 250)
    return f"{code} {text.decode(errors='replace')}"


def permanent(error):
    """Tell whether retrying cannot help: a 5xx refusal of the mail itself.

    A 5xx at connecting, STARTTLS or login is about the server or the
    settings, which an operator can fix: those are retried.
    """
    return isinstance(error, MailRefused) and 500 <= error.smtp_code < 600


def describe(error):
    """Describe a failure in a few words, never with an address or a token."""
    if isinstance(error, smtplib.SMTPResponseException):
        return f"SMTP {error.smtp_code}"
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    return type(error).__name__


def configure_mail_log():
    """Send mail's log lines (console:// mail, the relay's failures) to stderr, once."""
    log_lines_to_stderr(log, logging.INFO, "%(asctime)s %(name)s %(levelname)s: %(message)s")
