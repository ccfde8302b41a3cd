"""The run's closing line (tests/skips.py), in a pytest of its own, serial and under xdist."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SAMPLE = """
import pytest
from skips import USED, skip_without

def test_redis_a():
    skip_without("Redis", "redis://127.0.0.1:1: refused")

def test_redis_b():
    skip_without("Redis", "redis://127.0.0.1:1: refused")

def test_something_else():
    pytest.skip("not today")

def test_uses_postgres():
    USED["PostgreSQL"] = "postgresql://db"
"""
XDIST = ("-p", "xdist.plugin", "-n", "2")
REDIS_SKIPS = "2 Redis test(s) (redis://127.0.0.1:1: refused; to include them, start Redis"


def closing_line(folder, *options):
    """Run pytest with the skips plugin on a folder (CI unset); return its closing line.

    Only the plugins named load, which spares a second or more per process.
    """
    env = {**os.environ, "PYTHONPATH": str(TESTS), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("CI", None)
    command = [sys.executable, "-m", "pytest", "-p", "skips", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, *options, str(folder)], cwd=folder, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("authsvc: ")][-1]


@pytest.mark.parametrize("options", [(), XDIST], ids=["serial", "xdist"])
def test_closing_line_counts_skips_by_their_reasons(tmp_path, options):
    """Skips are counted by service, with why and how to include them; others say -rs."""
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    line = closing_line(tmp_path, *options)
    assert line.startswith(f"authsvc: skipped {REDIS_SKIPS}")
    assert line.endswith("; 1 other test(s) (pytest -rs says why)")


@pytest.mark.parametrize("options", [(), XDIST], ids=["serial", "xdist"])
def test_closing_line_names_what_every_worker_used(tmp_path, options):
    """With nothing skipped, the line names the services the tests used, in any worker."""
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    line = closing_line(tmp_path, *options, "-k", "postgres")
    assert line == "authsvc: nothing skipped; used PostgreSQL (postgresql://db)"
