"""Play the browser's part at the local test provider (tests/oidc/server.js) with requests.

Follows redirects from a URL (authsvc's authorize, or the provider's own
authorization URL), fills the provider's login form with a login and its
consent form, and stops at the first redirect to a URL that starts with
`stop_at` (authsvc's callback, or the app's redirectTo), which it returns
without opening. With `decline`, it cancels at the consent page instead.

    python tests/oidc/sign_in.py URL LOGIN STOP_AT    # prints where the browser lands
"""

import sys
from html.parser import HTMLParser
from urllib.parse import urljoin

import requests

MAX_STEPS = 20
TIMEOUT = 10


class Forms(HTMLParser):
    """Collect a page's forms (action, fields) and its links."""

    def __init__(self):
        super().__init__()
        self.forms, self.links = [], []

    def handle_starttag(self, tag, attrs):
        """Note each form, each named input of the form being read, and each link."""
        attributes = dict(attrs)
        if tag == "form":
            self.forms.append((attributes.get("action", ""), {}))
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1][1][attributes["name"]] = attributes.get("value", "")
        elif tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])


def answer_page(session, url, page, login, decline):
    """Fill and send the form a provider page shows; return the response."""
    parser = Forms()
    parser.feed(page)
    if not parser.forms:
        raise RuntimeError(f"no form at {url}: {page[:300]}")
    action, fields = parser.forms[0]
    if fields.get("prompt") == "login":
        fields.update(login=login, password="any password will do")
    elif decline:
        abort = next(link for link in parser.links if "/abort" in link)
        return session.get(urljoin(url, abort), allow_redirects=False, timeout=TIMEOUT)
    return session.post(urljoin(url, action), data=fields, allow_redirects=False, timeout=TIMEOUT)


def sign_in(url, login, stop_at, decline=False):
    """Sign in as `login` from `url`; return the first redirect that starts with stop_at."""
    session = requests.Session()
    response = session.get(url, allow_redirects=False, timeout=TIMEOUT)
    for _ in range(MAX_STEPS):
        if response.is_redirect:
            target = urljoin(response.url, response.headers["Location"])
            if target.startswith(stop_at):
                return target
            response = session.get(target, allow_redirects=False, timeout=TIMEOUT)
        elif response.status_code == 200 and "html" in response.headers.get("Content-Type", ""):
            response = answer_page(session, response.url, response.text, login, decline)
        else:
            raise RuntimeError(f"{response.status_code} at {response.url}: {response.text[:300]}")
    raise RuntimeError(f"no redirect to {stop_at} after {MAX_STEPS} steps")


if __name__ == "__main__":
    print(sign_in(*sys.argv[1:4]))
