"""The reset and verification pages in a real headless Chromium, against gunicorn over HTTP.

Opening a mailed link shows a form and uses nothing; submitting it does the
work; the pages raise no Content-Security-Policy error. Needs Debian's
`chromium` and `chromium-driver` (and Selenium): skipped without them,
required under CI=true.
"""

import shutil
import tempfile
import time

import pytest
import requests
from browser import quit_for_good
from live import bound_socket, gunicorn, migrated, service_environment, url_of
from mailer import Mailbox, mails_to, smtp_server
from skips import CI

PASSWORD = "violet-kettle-orbit-42"
NEW_PASSWORD = "marble-lantern-quiet-77"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("pages_browser")]


@pytest.fixture(scope="module")
def browser(service):
    """Start headless Chromium through Debian's chromedriver; yield the driver.

    It needs the service so that it is started after it and quits before
    it: a Chromium still running holds the connections it opened ahead of
    need, and a sync gunicorn worker waiting on one for a request kept the
    service from stopping for gunicorn's whole graceful timeout (30 s).
    """
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        missing(f"selenium is not installed: {error}")
    if not (shutil.which("chromium") and shutil.which(CHROMEDRIVER)):
        missing("Debian's chromium and chromium-driver are not installed")
    profile = tempfile.mkdtemp(prefix="authsvc-chromium-")
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        quit_for_good(driver)
        shutil.rmtree(profile, ignore_errors=True)


def missing(reason):
    """Skip without a browser, or fail under CI=true, where one is required."""
    if CI:
        pytest.fail(f"headless Chromium is required under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """Run gunicorn whose links point at itself, mailing a test SMTP server."""
    box, sock = Mailbox(), bound_socket()
    with sock, smtp_server(box) as smtp:
        env = service_environment(
            tmp_path_factory.mktemp("browser"),
            MAIL_URL=f"smtp://127.0.0.1:{smtp.port}",
            MAIL_POLL_INTERVAL="1",
            PUBLIC_URL=url_of(sock),
        )
        migrated(env)
        with gunicorn(env, sock=sock) as url:
            yield url, box


def link_in(box, email, subject_word):
    """Wait for a mail; return the link in its text."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = mails_to(list(box.messages), email, subject_word)
        if found:
            words = found[-1].get_body(("plain",)).get_content().split()
            return next(word for word in words if "token=" in word)
        time.sleep(0.05)
    raise AssertionError(f"no {subject_word!r} mail to {email}")


def csp_errors(driver):
    """Return the browser's console lines about the Content Security Policy."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
    ]


def heading(driver, expected=None):
    """Return the page's first heading, waiting a little for `expected` (a form's answer).

    While a submitted form's answer loads, the old heading goes stale and the
    new document may have no heading yet: both mean "not yet", not a failure.
    """
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + 10
    while True:
        try:
            text = driver.find_element(By.TAG_NAME, "h1").text
        except (NoSuchElementException, StaleElementReferenceException):
            text = None
        if expected is None or text == expected or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def wait_for_error(driver):
    """Wait for the form to come back with the weak-password message; tell whether it did."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        errors = driver.find_elements(By.ID, "error")
        if errors and "too easy to guess" in errors[0].text:
            return True
        time.sleep(0.05)
    return False


def test_verification_link_in_chromium(browser, service):
    """Opening the link twice shows the button and verifies nothing; clicking it verifies."""
    from selenium.webdriver.common.by import By

    url, box = service
    tokens = requests.post(
        f"{url}/auth/signup", json={"email": "chrome@example.com", "password": PASSWORD}
    ).json()
    link = link_in(box, "chrome@example.com", "Confirm")
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    for _ in range(2):
        browser.get(link)
        assert heading(browser) == "Confirm your email address"
    assert requests.get(f"{url}/users/me", headers=headers).json()["emailVerified"] is False
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert heading(browser, "Address verified") == "Address verified"
    assert requests.get(f"{url}/users/me", headers=headers).json()["emailVerified"] is True
    assert csp_errors(browser) == []


def test_reset_link_in_chromium(browser, service):
    """The reset form refuses a weak password, keeps the token, then sets a strong one."""
    from selenium.webdriver.common.by import By

    url, box = service
    requests.post(f"{url}/auth/signup", json={"email": "reset@example.com", "password": PASSWORD})
    requests.post(f"{url}/auth/password-reset", json={"email": "reset@example.com"})
    link = link_in(box, "reset@example.com", "Reset")
    browser.get(link)
    assert heading(browser) == "Choose a new password"
    stylesheet = browser.execute_script(
        "return getComputedStyle(document.querySelector('main')).maxWidth"
    )
    assert stylesheet != "none"  # the service's own stylesheet applied under the CSP

    def fill(password):
        for name in ("newPassword", "repeatPassword"):
            field = browser.find_element(By.NAME, name)
            field.clear()
            field.send_keys(password)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    fill("password1234")
    assert wait_for_error(browser)
    fill(NEW_PASSWORD)
    assert heading(browser, "Password changed") == "Password changed"
    signin = {"email": "reset@example.com", "password": NEW_PASSWORD}
    assert requests.post(f"{url}/auth/signin", json=signin).status_code == 200
    browser.get(link)
    assert heading(browser, "This link does not work") == "This link does not work"
    assert csp_errors(browser) == []
