"""deploy/ for tests: nginx in front of a live gunicorn, and the settings file as a host reads it.

The nginx site runs as it is in the repo, with only what a host changes put
in: the server name, the certificate, gunicorn's address, the listen ports
(free loopback ones) and the log folder. nginx runs in the foreground with a
temporary prefix; the certificate is self-signed, made here. The example
settings file is read by sh, as deploy/authsvc-flask reads it.
"""

import contextlib
import datetime
import http.client
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from live import ROOT, free_port

SITE = ROOT / "deploy" / "nginx" / "authsvc.conf"
ENV_EXAMPLE = ROOT / "deploy" / "authsvc.env.example"
SERVER_NAME = "127.0.0.1"
START_TIMEOUT = 10

# nginx's own settings around the site, with every path in the test's folder,
# and the http-level settings of Debian's nginx.conf that the site must
# override (old TLS versions, gzip). {user} is for a root run: nginx's
# workers would otherwise be `nobody`, who cannot enter a private folder.
MAIN = """{user}
worker_processes 1;
pid {folder}/nginx.pid;
events {{ worker_connections 768; }}
http {{
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    gzip on;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/authsvc.conf;
}}
"""


class Proxy(NamedTuple):
    """A running nginx: its HTTPS and HTTP URLs and the certificate clients must trust."""

    https: str
    http: str
    certificate: str
    https_port: int


def sourced(text, folder):
    """Return the variables a `NAME=value` file sets when sh sources it (as authsvc-flask does)."""
    path = Path(folder) / "authsvc.env"
    path.write_text(text)
    result = subprocess.run(
        ["sh", "-c", 'set -a; . "$0"; exec env -0', str(path)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        timeout=10,
        check=True,
    )
    pairs = (item.split("=", 1) for item in result.stdout.decode().split("\0") if item)
    return {name: value for name, value in pairs if name not in ("PATH", "PWD", "SHLVL", "_")}


def nginx_binary():
    """Return the path of nginx, or None where it is not installed."""
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
    )


def self_signed_certificate(folder):
    """Write a certificate for 127.0.0.1 and localhost, and its key; return both paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authsvc test")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(SERVER_NAME))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = Path(folder) / "cert.pem", Path(folder) / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def site_for_host(text, *, upstream, http_port, https_port, certificate, key, folder):
    """Return the site file with this host's values put in for the placeholders."""
    replacements = {
        # The certificate paths first: they hold the server name too.
        "/etc/letsencrypt/live/auth.example.com/fullchain.pem": str(certificate),
        "/etc/letsencrypt/live/auth.example.com/privkey.pem": str(key),
        "server_name auth.example.com;": f"server_name {SERVER_NAME};",
        "server 127.0.0.1:8000;": f"server {upstream};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "/var/log/nginx/": f"{folder}/",
    }
    for placeholder, value in replacements.items():
        if placeholder not in text:
            raise ValueError(f"{SITE.name} lacks {placeholder!r}: update tests/deployment.py")
        text = text.replace(placeholder, value)
    return text


def main_configuration(folder):
    """Return an nginx.conf that includes the site, with every path in `folder`."""
    user = "user root;" if os.geteuid() == 0 else ""
    return MAIN.format(user=user, folder=folder)


@contextlib.contextmanager
def nginx(folder, upstream):
    """Run nginx in the foreground with the repo's site in front of `upstream`; yield a Proxy."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    certificate, key = self_signed_certificate(folder)
    http_port, https_port = free_port(), free_port()
    (folder / "authsvc.conf").write_text(
        site_for_host(
            SITE.read_text(),
            upstream=upstream,
            http_port=http_port,
            https_port=https_port,
            certificate=certificate,
            key=key,
            folder=folder,
        )
    )
    (folder / "nginx.conf").write_text(main_configuration(folder))
    command = [nginx_binary(), "-p", f"{folder}/", "-c", str(folder / "nginx.conf")]
    command += ["-e", str(folder / "error.log"), "-g", "daemon off;"]
    with open(folder / "nginx.out", "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_listening(process, https_port, folder)
        yield Proxy(
            f"https://{SERVER_NAME}:{https_port}",
            f"http://{SERVER_NAME}:{http_port}",
            str(certificate),
            https_port,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_listening(process, port, folder):
    """Wait until nginx accepts connections on `port`; raise with its output if it never does."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((SERVER_NAME, port), 0.5):
            return
        time.sleep(0.05)
    process.kill()
    process.wait()
    said = [(folder / name).read_text(errors="replace") for name in ("nginx.out", "error.log")]
    raise RuntimeError("nginx did not start:\n" + "\n".join(said))


def client_context(certificate):
    """Return a TLS client context that trusts `certificate` and speaks HTTP/1.1."""
    context = ssl.create_default_context(cafile=certificate)
    context.set_alpn_protocols(["http/1.1"])
    return context


class SlowClients:
    """Connections that each send a signin's headers, then its body `rate` bytes a second.

    `rate=0` sends one byte of the body and nothing more. Every socket is
    closed when the block ends; the trickle stops then, or at `finish()`.
    """

    def __init__(self, port, body, count, rate=1, context=None, timeout=10):
        self.port, self.body, self.count, self.rate = port, body, count, rate
        self.context, self.timeout = context, timeout
        self.sockets, self.sent = [], []
        self.stopped = threading.Event()
        self.errors = []
        self.trickler = threading.Thread(target=self.trickle, daemon=True)

    def __enter__(self):
        """Open every connection and send its headers and first byte; start the trickle."""
        try:
            for _ in range(self.count):
                self.sockets.append(self.open())
                self.sent.append(1)
        except BaseException:
            self.close()
            raise
        if self.rate:
            self.trickler.start()
        return self

    def __exit__(self, *exc_info):
        """Stop the trickle and close every socket."""
        self.close()

    def open(self):
        """Connect, send a signin's headers and the first byte of its body; return the socket."""
        sock = socket.create_connection((SERVER_NAME, self.port), timeout=self.timeout)
        if self.context:
            sock = self.context.wrap_socket(sock, server_hostname=SERVER_NAME)
        head = (
            f"POST /auth/signin HTTP/1.1\r\nHost: {SERVER_NAME}:{self.port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + self.body[:1])
        return sock

    def trickle(self):
        """Send each connection its next `rate` bytes every second until stopped."""
        while not self.stopped.wait(1):
            for index, sock in enumerate(self.sockets):
                chunk = self.body[self.sent[index] : self.sent[index] + self.rate]
                if not chunk:
                    continue
                try:
                    sock.sendall(chunk)
                except OSError as error:
                    self.errors.append(error)
                    return
                self.sent[index] += len(chunk)

    def wait_sent(self, count, timeout=30):
        """Wait until every connection has sent `count` bytes of its body."""
        deadline = time.monotonic() + timeout
        while min(self.sent) < count and not self.errors:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the slow clients sent {min(self.sent)} bytes, not {count}")
            time.sleep(0.1)

    def stop(self):
        """Stop the trickle."""
        self.stopped.set()
        if self.trickler.is_alive():
            self.trickler.join(timeout=self.timeout)

    def finish(self):
        """Stop trickling, send every body's rest at once and return the response statuses."""
        self.stop()
        for index, sock in enumerate(self.sockets):
            sock.sendall(self.body[self.sent[index] :])
        statuses = []
        for sock in self.sockets:
            response = http.client.HTTPResponse(sock, method="POST")
            response.begin()
            response.read()
            statuses.append(response.status)
        return statuses

    def close(self):
        """Stop the trickle and close every socket."""
        self.stop()
        for sock in self.sockets:
            sock.close()
