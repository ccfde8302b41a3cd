"""Slow clients against bare gunicorn and through nginx: how long GET /healthz then takes.

`python -m bench.slow_clients` starts the real service (`gunicorn wsgi:app`
with gunicorn.conf.py's workers, production settings, SQLite in a temporary
folder) and, in front of it, nginx with deploy/nginx/authsvc.conf as
tests/test_deploy.py runs it. For each count of slow clients, each of which
sends a signin's headers and one byte of a 100-byte body and then nothing,
it times one `GET /healthz` straight to gunicorn and one through nginx,
giving up after BENCH_SLOW_TIMEOUT seconds. Every socket and process it
opens is closed when it ends.

BENCH_SLOW_CLIENTS: the counts, comma-separated (default 3,4,8,50);
BENCH_SLOW_TIMEOUT: seconds a probe waits (default 20).
"""

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import servers

sys.path.insert(0, str(servers.ROOT / "tests"))

from deployment import SERVER_NAME, SlowClients, client_context, nginx, nginx_binary
from live import gunicorn, migrated, service_environment

BODY = b'{"email": "slow@example.com", "password": "violet-kettle-orbit-42"}'.ljust(100)
RECOVERY_TIMEOUT = 60


def probe(port, timeout, context=None):
    """Return the seconds one GET /healthz takes, or None if it gets no 200 within `timeout`."""
    if context:
        connection = http.client.HTTPSConnection(
            SERVER_NAME, port, timeout=timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(SERVER_NAME, port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()
    return time.monotonic() - started if status == 200 else None


def measure(port, count, timeout, context=None):
    """Return the probe's time while `count` slow clients hold connections to `port`."""
    with SlowClients(port, BODY, count, rate=0, context=context, timeout=timeout):
        return probe(port, timeout, context)


def wait_recovered(port):
    """Wait until gunicorn answers again once the slow clients are gone."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while time.monotonic() < deadline:
        if probe(port, 5) is not None:
            return
    raise RuntimeError(f"gunicorn did not recover within {RECOVERY_TIMEOUT} s")


def shown(seconds, timeout):
    """Say how long a probe took, or that it timed out."""
    return f"timed out after {timeout} s" if seconds is None else f"{seconds * 1000:.0f} ms"


def nginx_version():
    """Return what `nginx -v` says."""
    return subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True).stderr.strip()


def main():
    """Start gunicorn and nginx, measure each count of slow clients, print the table."""
    counts = [int(count) for count in os.environ.get("BENCH_SLOW_CLIENTS", "3,4,8,50").split(",")]
    timeout = int(os.environ.get("BENCH_SLOW_TIMEOUT", "20"))
    if nginx_binary() is None:
        sys.exit("bench.slow_clients needs nginx: apt-get install nginx")
    workers = servers.service_settings()["workers"]
    folder = Path(tempfile.mkdtemp(prefix="authsvc-slow-"))
    try:
        env = service_environment(folder, TRUSTED_PROXIES="1")
        migrated(env)
        with gunicorn(env, workers=workers, log_path=folder / "gunicorn.log") as direct:
            port = int(direct.rsplit(":", 1)[1])
            with nginx(folder / "nginx", f"127.0.0.1:{port}") as proxy:
                context = client_context(proxy.certificate)
                cores = os.cpu_count()
                print(f"gunicorn: {workers} sync workers on {cores} cores; {nginx_version()}")
                print(f"{'slow clients':>12}  {'bare gunicorn':<22}  through nginx")
                for count in counts:
                    bare = measure(port, count, timeout)
                    wait_recovered(port)
                    proxied = measure(proxy.https_port, count, timeout, context)
                    print(f"{count:>12}  {shown(bare, timeout):<22}  {shown(proxied, timeout)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
