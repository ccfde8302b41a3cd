"""The walk-throughs, taken from the pages themselves and run with bash against gunicorn.

README.md, docs/second-factor.md and docs/recovery.md each have one: every
fenced block that follows a `<!-- walkthrough -->` line is part of it; a
page's blocks are joined in order into one script, as a reader pasting them
one after another into one shell would run them. The script
runs under `set -euo pipefail`, twice against the same service and database
(the walk-through must be re-runnable), and must exit 0 both times.

It runs at the top of the clone, with the virtualenv's `flask` first on
PATH, and sees BASE (the service's URL), DATABASE_URL and JWT_SECRET_KEY
(the service's own, so the flask CLI acts on the same database) and
SERVER_LOG (the file gunicorn and the app write their output to). The
service mails to its log (MAIL_URL=console://), as `make run` does; where
the reader would copy a reset token from that log and paste it, the test
writes each token the log shows to the script's stdin.
"""

import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from live import ROOT, gunicorn, migrated, service_environment

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("walkthrough")]

MARKER = "<!-- walkthrough -->"
BLOCK = re.compile(r"^<!-- walkthrough -->\n(?:[ \t]*\n)*```[a-z]*\n(.*?)^```", re.M | re.S)
RESET_TOKEN = re.compile(rb"/reset-password\?token=([A-Za-z0-9_-]+)")


def walkthrough_blocks(markdown):
    """Return the code of each fenced block that follows a walkthrough marker, in order."""
    blocks = BLOCK.findall(markdown)
    markers = sum(line.strip() == MARKER for line in markdown.splitlines())
    assert markers == len(blocks), f"{markers} {MARKER} lines, but {len(blocks)} blocks after one"
    return blocks


@pytest.fixture(scope="module")
def walkthrough_environment(tmp_path_factory):
    """Start gunicorn as `make run` would (development settings); yield the script's env."""
    folder = tmp_path_factory.mktemp("walkthrough")
    env = service_environment(folder, AUTHSVC_ENV="development", MAIL_URL="console://")
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env["PATH"]])
    migrated(env)
    log_path = folder / "server.log"
    with gunicorn(env, log_path=log_path) as url:
        yield {**env, "BASE": url, "SERVER_LOG": str(log_path)}


WALKTHROUGHS = ("README.md", "docs/second-factor.md", "docs/recovery.md")


@pytest.mark.parametrize("page", WALKTHROUGHS)
def test_walkthrough_blocks_are_found(page):
    """Each page has a walk-through, and every marker is followed by a fenced block."""
    assert walkthrough_blocks((ROOT / page).read_text())


def test_a_marker_needs_a_fenced_block():
    """A marker followed by prose instead of a block is refused."""
    assert walkthrough_blocks(f"{MARKER}\n\n```sh\necho one\n```\n") == ["echo one\n"]
    with pytest.raises(AssertionError):
        walkthrough_blocks(f"{MARKER}\nsome prose\n```sh\necho one\n```\n")


def paste_reset_tokens(script, log_path, since):
    """Write each reset token the log shows past offset `since` to the script's stdin."""
    pasted = set()
    while script.poll() is None:
        with open(log_path, "rb") as log:
            log.seek(since)
            for token in RESET_TOKEN.findall(log.read()):
                if token not in pasted:
                    pasted.add(token)
                    script.stdin.write(token + b"\n")
                    script.stdin.flush()
        time.sleep(0.1)


@pytest.mark.parametrize("page", WALKTHROUGHS)
def test_walkthrough_runs_twice_against_gunicorn(walkthrough_environment, page):
    """A page's walk-through exits 0 on a fresh service and again on the same one."""
    blocks = walkthrough_blocks((ROOT / page).read_text())
    script = "set -euo pipefail\n" + "\n".join(blocks)
    log_path = walkthrough_environment["SERVER_LOG"]
    for run in ("first", "second"):
        since = os.path.getsize(log_path)
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(
                ["bash", "-c", script],
                cwd=ROOT,
                env=walkthrough_environment,
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            paster = threading.Thread(target=paste_reset_tokens, args=(process, log_path, since))
            paster.start()
            try:
                process.wait(timeout=120)
            finally:
                process.kill()
                paster.join()
                process.stdin.close()
            output.seek(0)
            assert process.returncode == 0, f"{page}, {run} run:\n{output.read().decode()}"
