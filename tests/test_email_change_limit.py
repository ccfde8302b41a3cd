"""Email changes per user: a signed-in user cannot test which addresses have accounts.

`POST /users/me/email` answers 409 email_taken for a registered address, so
every request counts against RATELIMIT_EMAIL_CHANGE_PER_USER, whatever its
answer; only the 429s themselves do not.
"""

import pytest
from conftest import PASSWORD, bearer, settings

from authsvc import create_app


@pytest.fixture
def limited(app, database_url):
    """Return a client of an app on the test database allowing 5 email changes an hour."""
    config = {
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE_URI": "memory://",
        "RATELIMIT_EMAIL_CHANGE_PER_USER": "5 per hour",
        "RATELIMIT_PASSWORD_PER_USER": "100 per minute",
    }
    return create_app(settings(database_url, **config)).test_client()


def change_email(client, tokens, new_email, password=PASSWORD):
    """Ask to move the caller to a new address; return the status."""
    body = {"newEmail": new_email, "currentPassword": password}
    return client.post("/users/me/email", json=body, headers=bearer(tokens["accessToken"]))


def test_a_user_cannot_test_more_addresses_than_the_limit(auth, limited):
    """Five probes of taken addresses answer 409; the sixth, taken or not, is 429."""
    for i in range(8):
        auth.create_user(f"taken{i}@example.com")
    tokens = auth.signup("prober@example.com")
    statuses = [
        change_email(limited, tokens, f"taken{i}@example.com").status_code for i in range(8)
    ]
    assert statuses == [409] * 5 + [429] * 3
    refused = change_email(limited, tokens, "free@example.com")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    ("new_email", "password", "status"),
    [
        ("prober@example.com", PASSWORD, 422),
        ("not an address {i}", PASSWORD, 422),
        ("free{i}@example.com", "not-the-password-1", 403),
        ("free{i}@example.com", PASSWORD, 202),
    ],
)
def test_every_answer_counts(auth, limited, new_email, password, status):
    """422s, 403s and 202s fill the bucket as 409s do; nothing but the 429s escapes it."""
    tokens = auth.signup("prober@example.com")
    answers = [
        change_email(limited, tokens, new_email.format(i=i), password).status_code for i in range(5)
    ]
    assert answers == [status] * 5
    assert change_email(limited, tokens, "other@example.com").status_code == 429


def test_the_limit_is_per_user(auth, limited):
    """One user's full bucket leaves another user's alone."""
    first, second = auth.signup("first@example.com"), auth.signup("second@example.com")
    for _ in range(5):
        change_email(limited, first, "second@example.com")
    assert change_email(limited, first, "x@example.com").status_code == 429
    assert change_email(limited, second, "first@example.com").status_code == 409
