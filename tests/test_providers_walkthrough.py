"""docs/providers.md runs as printed: its walk-through and its JavaScript and Python examples.

The service is started as the document's settings block says (those
OAUTH_* values, read from the document), with the local test provider of
tests/oidc on a free port instead of 9000 and gunicorn on another instead
of 8000. The walk-through blocks (after `<!-- walkthrough -->`, as in the
README) run twice under bash; the JavaScript example runs in Node and the
Python one in this interpreter, each for a whole sign-in.
"""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from live import ROOT, free_port, gunicorn, migrated, service_environment
from oidc.sign_in import sign_in
from oidcserver import oidc_provider, require_node
from test_walkthrough import walkthrough_blocks

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("providers_walkthrough")]

DOCUMENT = ROOT / "docs" / "providers.md"
DOCUMENTED_BASE = "http://127.0.0.1:8000"
DOCUMENTED_ISSUER = "http://127.0.0.1:9000"
APP = "http://127.0.0.1:5173/signed-in"


def block_after(marker):
    """Return the fenced block that follows a marker line in docs/providers.md."""
    pattern = rf"^<!-- {re.escape(marker)} -->\n(?:[ \t]*\n)*```[a-z]*\n(.*?)^```"
    return re.search(pattern, DOCUMENT.read_text(), re.M | re.S)[1]


def documented_settings():
    """Return the NAME=value settings the document's settings block gives `make run`."""
    words = shlex.split(block_after("provider-settings").replace("\\\n", " "))
    return dict(word.split("=", 1) for word in words if "=" in word)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """Run the test provider and gunicorn with the document's settings; yield their env."""
    documented = documented_settings()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client = (documented["OAUTH_LOCAL_CLIENT_ID"], documented["OAUTH_LOCAL_CLIENT_SECRET"])
    with oidc_provider([f"{base}/auth/oauth/local/callback"], *client) as issuer:
        folder = tmp_path_factory.mktemp("providers-walkthrough")
        env = service_environment(folder, AUTHSVC_ENV="development", MAIL_URL="console://")
        env.update(documented, OAUTH_LOCAL_ISSUER=issuer, PUBLIC_URL=base)
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env["PATH"]])
        migrated(env)
        with gunicorn(env, workers=1, port=port):
            yield {**env, "BASE": base}


def test_the_settings_block_is_the_walkthroughs_provider():
    """The document's settings name the local provider at its documented address."""
    settings = documented_settings()
    assert settings["OAUTH_PROVIDERS"] == "local"
    assert settings["OAUTH_LOCAL_ISSUER"] == DOCUMENTED_ISSUER
    assert settings["OAUTH_REDIRECT_URLS"] == APP


def test_the_walkthrough_runs_twice(service):
    """The walk-through's blocks exit 0 on a fresh service, and again."""
    script = "set -euo pipefail\n" + "\n".join(walkthrough_blocks(DOCUMENT.read_text()))
    for run in ("first", "second"):
        result = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, env=service, capture_output=True, timeout=120
        )
        output = (result.stdout + result.stderr).decode()
        assert result.returncode == 0, f"{run} run:\n{output}"
        assert '"isNewUser":true' in output.replace(" ", "")


def test_the_python_example_signs_in(service):
    """start_sign_in() and finish_sign_in() as printed, against the service."""
    example = {}
    exec(block_after("example: python"), example)  # the document's own code
    example["AUTHSVC"] = service["BASE"]
    url, verifier = example["start_sign_in"]("local")
    landed = sign_in(url, "python-example", APP)
    code = landed.split("code=", 1)[1]
    assert example["finish_sign_in"](code, verifier)["email"] == "python-example@example.com"
    with pytest.raises(RuntimeError, match="invalid_grant"):
        example["finish_sign_in"](code, verifier)


def run_javascript(service, driver):
    """Run the document's JavaScript example, then `driver`, in Node; return what it prints."""
    source = block_after("example: javascript").replace(DOCUMENTED_BASE, service["BASE"])
    result = subprocess.run(
        [require_node(), "--input-type=module", "-e", f"{source}\n{driver}"],
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_javascript_example_signs_in(service):
    """startSignIn() and finishSignIn() as printed, in Node 20, against the service."""
    started = run_javascript(service, 'console.log(JSON.stringify(await startSignIn("local")));')
    code = sign_in(started["url"], "javascript-example", APP).split("code=", 1)[1]
    driver = f"console.log(JSON.stringify(await finishSignIn({json.dumps(code)}, "
    driver += f"{json.dumps(started['verifier'])})));"
    assert run_javascript(service, driver)["email"] == "javascript-example@example.com"
