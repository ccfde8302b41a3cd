"""A real SMTP server for the tests: aiosmtpd on a loopback port, keeping what it receives."""

import asyncio
import contextlib
import datetime
import email
import email.policy
import ipaddress
import re
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from live import bound_socket

TOKEN_IN_LINK = re.compile(r"[?&]token=([A-Za-z0-9_-]+)")
LOGIN, SECRET = "mailer", "p@ss word/:"


class Mailbox:
    """An aiosmtpd handler that keeps every message, or refuses as told."""

    def __init__(self):
        self.messages, self.lock = [], threading.Lock()
        self.refuse_with = None  # e.g. "550 5.1.1 No such user": refuse every RCPT
        self.delay = 0.0  # seconds each DATA takes to answer

    async def handle_RCPT(self, server, session, envelope, address, options):
        """Accept a recipient, unless told to refuse."""
        if self.refuse_with:
            return self.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        """Keep the message, parsed."""
        if self.delay:
            await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 2.0.0 Kept for the tests"

    def wait_for(self, count, timeout=15.0):
        """Wait until `count` messages arrived; return them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} mail(s), got {len(self.messages)}")

    def clear(self):
        """Forget what arrived, and stop refusing."""
        with self.lock:
            self.messages.clear()
        self.refuse_with, self.delay = None, 0.0


def authenticate(server, session, envelope, mechanism, auth_data):
    """Accept only the tests' login."""
    return AuthResult(
        success=(auth_data.login, auth_data.password) == (LOGIN.encode(), SECRET.encode())
    )


class BoundController(Controller):
    """aiosmtpd's Controller, serving a socket bound beforehand rather than binding a port."""

    def __init__(self, handler, sock, **options):
        self.sock = sock
        super().__init__(handler, hostname="127.0.0.1", port=sock.getsockname()[1], **options)

    def _create_server(self):
        """Serve the bound socket (asyncio makes it listen)."""
        return self.loop.create_server(self._factory_invoker, sock=self.sock, ssl=self.ssl_context)


@contextlib.contextmanager
def smtp_server(mailbox, port=0, certificate=None, implicit_tls=False, with_login=False, sock=None):
    """Serve SMTP on 127.0.0.1; STARTTLS or implicit TLS when given a (cert, key) pair.

    It serves `sock` (from live.bound_socket(), held while the server is down)
    if given, else a socket bound here on `port`, or on a free port.
    """
    options = {}
    if certificate and not implicit_tls:
        options.update(tls_context=server_context(certificate), require_starttls=True)
    if with_login:
        # aiosmtpd does not see that an implicit-TLS connection is encrypted.
        options.update(
            authenticator=authenticate, auth_required=True, auth_require_tls=not implicit_tls
        )
    controller = BoundController(
        mailbox,
        sock or bound_socket(port),
        ssl_context=server_context(certificate) if implicit_tls else None,
        ready_timeout=10,
        **options,
    )
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def free_port():
    """Return a loopback port nobody listens on (racy: prefer live.bound_socket())."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_context(certificate):
    """Return a server TLS context for a (cert path, key path) pair."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def self_signed_certificate(folder):
    """Write a certificate for 127.0.0.1 and its key; return their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authsvc test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp.crt", folder / "smtp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def text_of(message):
    """Return the plain-text part of a received message."""
    return message.get_body(("plain",)).get_content()


def token_in(message):
    """Return the token of the link in a received message."""
    match = TOKEN_IN_LINK.search(text_of(message))
    assert match, text_of(message)
    return match[1]


def mails_to(messages, address, subject_word=""):
    """Return the messages sent to an address, whose subject contains a word."""
    return [m for m in messages if m["To"] == address and subject_word in m["Subject"]]
