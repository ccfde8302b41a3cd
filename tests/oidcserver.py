"""The real OpenID Provider of the tests: panva's oidc-provider (tests/oidc/server.js) on loopback.

.ci/run installs it with `npm ci --prefix tests/oidc`; without Node or its
node_modules the tests that need it are skipped (and fail under CI=true).
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time

import requests
from conftest import USED, skip_without
from live import ROOT, free_port

SERVER = ROOT / "tests" / "oidc" / "server.js"
CLIENT_ID = "authsvc-test"
CLIENT_SECRET = "a-secret-of-the-real-test-provider"


def require_node():
    """Skip (fail under CI=true) unless node and the provider's node_modules are there."""
    node = shutil.which("node")
    if node is None or not (SERVER.parent / "node_modules" / "oidc-provider").is_dir():
        skip_without(
            "Node", "node or tests/oidc/node_modules is missing: npm ci --prefix tests/oidc"
        )
    USED["Node"] = node
    return node


@contextlib.contextmanager
def oidc_provider(redirect_uris, client_id=CLIENT_ID, client_secret=CLIENT_SECRET):
    """Run the test provider on a free loopback port for these redirect URIs; yield its issuer."""
    node, port = require_node(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "OIDC_PORT": str(port),
        "OIDC_CLIENT_ID": client_id,
        "OIDC_CLIENT_SECRET": client_secret,
        "OIDC_REDIRECT_URIS": ",".join(redirect_uris),
    }
    issuer = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([node, str(SERVER)], env=env, stdout=log, stderr=log)
        try:
            wait_for_discovery(issuer, process, log)
            yield issuer
        finally:
            process.terminate()
            process.wait(timeout=10)


def wait_for_discovery(issuer, process, log):
    """Wait until the provider answers its discovery document; fail with its output if not."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            url = f"{issuer}/.well-known/openid-configuration"
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    log.seek(0)
    raise RuntimeError(f"oidc-provider did not start: {log.read().decode()}")


def provider_overrides(issuer, name="local"):
    """Return the settings that make the test provider an authsvc provider called `name`."""
    prefix = f"OAUTH_{name.upper()}_"
    return {
        "OAUTH_PROVIDERS": [name],
        prefix + "ISSUER": issuer,
        prefix + "CLIENT_ID": CLIENT_ID,
        prefix + "CLIENT_SECRET": CLIENT_SECRET,
        prefix + "TRUST_EMAIL": "1",
        prefix + "NAME": "Local test provider",
    }
