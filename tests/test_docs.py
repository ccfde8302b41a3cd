"""/docs in a real browser: Swagger UI from authsvc itself, with no network and no CSP violation."""

import pytest
import requests
from browser import console_errors, csp_violations, requested_urls, wait_for
from live import gunicorn, migrated, service_environment
from selenium.webdriver.common.by import By

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("docs")]

HEALTHZ_BLOCK = "//div[contains(@class, 'opblock ')][.//*[@data-path='/healthz']]"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    """Start gunicorn on a migrated database; yield its URL."""
    env = service_environment(tmp_path_factory.mktemp("docs"))
    migrated(env)
    with gunicorn(env, workers=1) as url:
        yield url


def operation_count(url):
    """Count the operations /openapi.json documents."""
    paths = requests.get(f"{url}/openapi.json", timeout=10).json()["paths"]
    return sum(1 for item in paths.values() for method in item if method != "parameters")


def opened_docs(browser, url):
    """Open /docs and wait until Swagger UI shows as many operations as the document has."""
    expected = operation_count(url)
    browser.get(f"{url}/docs")
    wait_for(
        browser,
        lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".opblock")) >= expected,
        message=f"Swagger UI did not render {expected} operations",
    )
    return expected


def off_the_service(url, server_url):
    """Tell whether a URL the browser asked for goes over the network elsewhere.

    chrome:// and data: URLs are the browser's own; only http(s) and ws(s) travel.
    """
    travels = url.split(":", 1)[0] in ("http", "https", "ws", "wss")
    return travels and not url.startswith(f"{server_url}/")


def test_docs_render_every_operation_offline(browser, server_url):
    """Every operation is shown, every request stays on the service, nothing is refused."""
    expected = opened_docs(browser, server_url)
    assert len(browser.find_elements(By.CSS_SELECTOR, ".opblock")) == expected
    assert [url for url in requested_urls(browser) if off_the_service(url, server_url)] == []
    assert csp_violations(browser) == []
    assert console_errors(browser) == []


def test_docs_expand_and_try_an_operation(browser, server_url):
    """Opening every operation and sending one from the page breaks no CSP rule.

    The page clicks every summary in one script: clicked one WebDriver call
    at a time, each opening re-rendered all those already open (30 s).
    """
    expected = opened_docs(browser, server_url)
    browser.execute_script(
        "document.querySelectorAll('.opblock-summary-control').forEach(b => b.click());"
    )
    wait_for(
        browser,
        lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".opblock.is-open")) == expected,
        message="not every operation opened",
    )
    healthz = browser.find_element(By.XPATH, HEALTHZ_BLOCK)
    healthz.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    healthz.find_element(By.CSS_SELECTOR, ".execute").click()
    status = wait_for(
        browser,
        lambda driver: healthz.find_elements(
            By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status"
        ),
        message="the try-it-out request got no answer",
    )
    assert status[0].text.strip() == "200"
    assert csp_violations(browser) == []
    assert console_errors(browser) == []
