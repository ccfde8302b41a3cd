"""The files in deploy/ that no test can run for real: checked as what reads them reads them.

tests/test_deploy.py runs the nginx site for real; the systemd unit, the
environment file and the CLI wrapper need a host of their own, so here they
go through systemd's own checker and through sh.
"""

import os
import re
import shutil
import subprocess

import pytest
from conftest import skip_without
from deployment import ENV_EXAMPLE, sourced
from live import ROOT

import config
from authsvc import mail_settings

DEPLOY = ROOT / "deploy"
# The one complaint systemd-analyze has off the host: the virtualenv is not here.
ABSENT = re.compile(r"Command /opt/authsvc/venv/bin/\w+ is not executable")


def test_the_example_environment_names_every_setting():
    """deploy/authsvc.env.example has a line for every setting config.py reads."""
    read = set()

    class Recording(dict):
        """An empty environment that notes every name asked for."""

        def get(self, name, default=None):
            """Note the name; answer as an empty environment would."""
            read.add(name)
            return default

    config.from_environment(Recording())
    example = ENV_EXAMPLE.read_text()
    missing = sorted(name for name in read if f"{name}=" not in example)
    assert read and not missing


def test_the_example_environment_is_production_and_wants_its_secret(tmp_path):
    """As shipped, the example reads as production behind one proxy, and refuses to run unfilled."""
    settings = config.from_environment(sourced(ENV_EXAMPLE.read_text(), tmp_path))
    assert settings["AUTHSVC_ENV"] == "production"
    assert settings["TRUSTED_PROXIES"] == 1
    assert settings["MAIL_FROM"] == "authsvc <no-reply@example.com>"
    assert settings["RATELIMIT_STORAGE_URI"].startswith("redis://")
    assert settings["MAX_CONTENT_LENGTH"] == 16384  # nginx's client_max_body_size 16k
    with pytest.raises(config.ConfigError, match="JWT_SECRET_KEY"):
        config.check_secret(settings)


def test_every_value_in_the_example_environment_parses(tmp_path):
    """With every commented setting turned on, each example value is one authsvc accepts."""
    text = re.sub(r"^#([A-Z][A-Z0-9_]*=)", r"\1", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    environ = sourced(text, tmp_path)
    settings = config.from_environment(environ)
    assert settings["RATELIMIT_SIGNIN_PER_ADDRESS"] == "30 per minute;300 per hour"
    assert settings["CORS_ORIGINS"] == ["https://app.example.com"]
    assert environ["OAUTH_CORP_NAME"] == "Example Corp"
    assert mail_settings.parse_mail_url(settings["MAIL_URL"]).port == 587


def test_the_systemd_unit_verifies():
    """systemd-analyze finds nothing wrong in deploy/authsvc.service but the absent virtualenv."""
    if shutil.which("systemd-analyze") is None:
        skip_without("systemd", "apt-get install systemd")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(DEPLOY / "authsvc.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [line for line in result.stderr.splitlines() if not ABSENT.search(line)]
    assert complaints == []


def test_the_cli_wrapper_is_plain_sh():
    """deploy/authsvc-flask parses as POSIX sh and is executable."""
    wrapper = DEPLOY / "authsvc-flask"
    assert os.access(wrapper, os.X_OK)
    assert subprocess.run(["sh", "-n", str(wrapper)], timeout=10).returncode == 0
