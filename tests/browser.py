"""Headless Chromium for tests: Debian's chromium and chromedriver, driven by Selenium.

A pytest plugin (conftest.py names it in pytest_plugins): the `browser`
fixture yields a Selenium WebDriver on a fresh profile that reaches loopback
addresses only, and skips without Chromium (fails under CI=true, where
.ci/run installs it). Selenium is given both binaries, so it downloads nothing.

    def test_page(browser, server_url):
        browser.get(f"{server_url}/docs")
        ...
        assert csp_violations(browser) == []
"""

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait
from skips import USED, skip_without

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1024",
    # No network: every request goes to a proxy on a closed port, except
    # those to loopback addresses (the service under test), which Chromium
    # never proxies.
    "--proxy-server=http://127.0.0.1:9",
]

# Runs before any script of every page: records CSP violations as they happen.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.violatedDirective + " blocked " + event.blockedURI);
});
"""


def chromium_options(profile):
    """Return Chromium options: headless, a fresh profile, console and network logs kept."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return options


def descendants(pid):
    """Return the pids of a process's children, their children, and so on (Linux's /proc)."""
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found += [int(child) for child in children]
        pending += [int(child) for child in children]
    return found


def running(pid):
    """Tell whether a process still runs (a zombie has let go of everything: it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def quit_for_good(driver, timeout=10):
    """Quit the browser, and wait until every process chromedriver started has ended.

    driver.quit() can return while a Chromium process still runs, holding
    the connections it opened ahead of need. A sync gunicorn worker that
    accepted one waits on it for a request that never comes: a server
    stopped next took gunicorn's whole graceful timeout to stop (30 s).
    Whatever still runs after `timeout` seconds is killed.
    """
    browser_pids = descendants(driver.service.process.pid)
    driver.quit()
    deadline = time.monotonic() + timeout
    while any(running(pid) for pid in browser_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in browser_pids:
        if running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def browser():
    """Yield a headless Chromium that records CSP violations; skip without Chromium."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        skip_without("Chromium", f"{CHROMIUM} or {CHROMEDRIVER} is missing")
    USED["Chromium"] = CHROMIUM
    with tempfile.TemporaryDirectory(prefix="authsvc-chromium-") as profile:
        driver = webdriver.Chrome(options=chromium_options(profile), service=Service(CHROMEDRIVER))
        try:
            driver.execute_cdp_cmd(
                "Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_VIOLATIONS}
            )
            yield driver
        finally:
            quit_for_good(driver)


def wait_for(driver, condition, timeout=30, message=""):
    """Wait until condition(driver) is truthy and return it; fail after timeout seconds."""
    return WebDriverWait(driver, timeout).until(condition, message)


def csp_violations(driver):
    """Return the CSP violations the current page has reported so far."""
    return driver.execute_script("return window.__cspViolations || [];")


def console_errors(driver):
    """Return the console's errors (SEVERE entries) logged since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def requested_urls(driver):
    """Return every URL the browser requested since the last call (from its network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
