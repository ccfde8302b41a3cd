"""What a run skipped and used, said in one closing line: a pytest plugin (conftest names it).

A test that needs a service this machine lacks calls skip_without(), which
skips it with the reason "no SERVICE (why)", or fails it under CI=true; one
that uses a service notes it in USED. The run then ends with one line:

    authsvc: nothing skipped; used PostgreSQL (...), Redis (...)
    authsvc: skipped 12 PostgreSQL test(s) (why; to include them, ...)

Under pytest-xdist the line is written by the controller, which receives
every worker's skip reports, and each worker's USED when it finishes.

PYTEST_DONT_REWRITE: it holds no assert, and conftest imports it before
pytest registers it as a plugin.
"""

import os
import re

import pytest

CI = os.environ.get("CI", "").lower() == "true"
HOW_TO_INCLUDE = {
    "PostgreSQL": "start PostgreSQL on 127.0.0.1:5432 (user postgres, database test) "
    "or set TEST_POSTGRES_URL",
    "Redis": "start Redis on 127.0.0.1:6379 or set TEST_REDIS_URL",
    "Chromium": "apt-get install chromium chromium-driver",
}
SKIP_REASON = re.compile(r"no (?P<service>\w+) \((?P<why>.*)\)", re.DOTALL)
USED = {}


def skip_without(service, why):
    """Skip a test that needs a service this machine lacks; fail it under CI=true."""
    if CI:
        pytest.fail(f"{service} is required under CI=true: {why}")
    pytest.skip(f"no {service} ({why})")


def describe_skipped(service, count, why):
    """Say how many tests a missing service skipped, why, and how to include them."""
    if service not in HOW_TO_INCLUDE:
        return f"{count} other test(s) (pytest -rs says why)"
    return f"{count} {service} test(s) ({why}; to include them, {HOW_TO_INCLUDE[service]})"


def closing_line(skip_reasons, used):
    """Return the run's closing line, from its skip reasons and the services it used."""
    skipped = {}
    for reason in skip_reasons:
        match = SKIP_REASON.fullmatch(reason.removeprefix("Skipped: "))
        service, why = (match["service"], match["why"]) if match else ("other", reason)
        skipped.setdefault(service, [0, why])[0] += 1
    if skipped:
        # In a fixed order, whichever xdist worker reported first: services, then others.
        ordered = sorted(skipped.items(), key=lambda item: (item[0] == "other", item[0]))
        return "authsvc: skipped " + "; ".join(
            describe_skipped(service, count, why) for service, (count, why) in ordered
        )
    listed = ", ".join(f"{service} ({where})" for service, where in sorted(used.items()))
    return "authsvc: nothing skipped" + (f"; used {listed}" if listed else "")


def pytest_sessionfinish(session):
    """Under pytest-xdist, hand the services this worker used to the controller."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["authsvc_used"] = dict(USED)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """Gather the services an xdist worker used (the controller runs this hook)."""
    USED.update(getattr(node, "workeroutput", {}).get("authsvc_used", {}))


def pytest_terminal_summary(terminalreporter):
    """End the run with one line: what was skipped, why, and how to include it."""
    reasons = [
        # A skip's longrepr is (path, line, reason); from an xdist worker it may be a list.
        report.longrepr[2] if isinstance(report.longrepr, tuple | list) else ""
        for report in terminalreporter.stats.get("skipped", [])
    ]
    terminalreporter.write_line(closing_line(reasons, USED))
