"""authsvc settings, read from the environment when the app is created.

Every setting has a name in the operating contract (README, "Configuration").
A value that does not parse stops the service at start-up with one line that
says what to fix, rather than failing later on a request.
"""

import os
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

import limits
import sqlalchemy as sa

ENVIRONMENTS = ("development", "testing", "production")
ALGORITHMS = ("HS256", "EdDSA", "RS256")
MIN_SECRET_BYTES = 32
MIN_SECRET_DISTINCT = 10
# DATABASE_URL schemes, and the SQLAlchemy driver each means: hosting
# platforms write PostgreSQL URLs as postgres:// or postgresql://.
DATABASE_SCHEMES = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite+pysqlite",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
# RATELIMIT_STORAGE_URI schemes authsvc's limits can count in (authsvc/slots.py).
LIMIT_STORAGE_SCHEMES = ("memory", "redis", "rediss", "redis+unix", "redis+sentinel")

# Every environment variable authsvc reads, gunicorn.conf.py's included: the
# one list the near-miss warning (authsvc/startup.py) compares names with.
# A new setting joins it here.
SETTING_NAMES = """
    ACCESS_LOG ACCESS_TOKEN_TTL AUTHSVC_ENV BCRYPT_ROUNDS CORS_ORIGINS DATABASE_TIMEOUT
    DATABASE_URL EMAIL_VERIFY_TTL EMAIL_VERIFY_URL FRESH_TOKEN_TTL JWT_ALGORITHM JWT_AUDIENCE
    JWT_ISSUER JWT_PREVIOUS_SECRET_KEY JWT_SECRET_KEY MAIL_FROM MAIL_GIVE_UP_AFTER
    MAIL_POLL_INTERVAL MAIL_RELAY MAIL_RETRY_BASE MAIL_RETRY_MAX MAIL_TEMPLATES MAIL_TIMEOUT
    MAIL_URL MAX_CONTENT_LENGTH MFA_ISSUER MFA_TOKEN_TTL OAUTH_GITHUB_URL OAUTH_PROVIDERS
    OAUTH_REDIRECT_URLS OAUTH_TIMEOUT PASSWORD_MIN_SCORE PASSWORD_RESET_TTL PASSWORD_RESET_URL
    PORT PROMETHEUS_MULTIPROC_DIR PUBLIC_URL RATELIMIT_EMAIL_CHANGE_PER_USER RATELIMIT_ENABLED
    RATELIMIT_INTROSPECT_PER_CLIENT RATELIMIT_KEY_PREFIX RATELIMIT_MAIL_PER_EMAIL
    RATELIMIT_MFA_PER_USER RATELIMIT_OAUTH_PER_ADDRESS RATELIMIT_PASSWORD_PER_USER
    RATELIMIT_REFRESH_PER_SESSION RATELIMIT_RESET_PER_ADDRESS RATELIMIT_SIGNIN_PER_ADDRESS
    RATELIMIT_SIGNIN_PER_EMAIL RATELIMIT_SIGNUP_PER_ADDRESS RATELIMIT_STORAGE_URI
    REFRESH_REUSE_GRACE REFRESH_TOKEN_TTL REQUIRE_VERIFIED_EMAIL SESSION_MAX_AGE
    SESSION_RETENTION TRUSTED_PROXIES WEBAUTHN_ORIGINS WEBAUTHN_RP_ID WEBAUTHN_RP_NAME
    WEBAUTHN_TIMEOUT WEB_CONCURRENCY
"""
SETTINGS = frozenset(SETTING_NAMES.split())
# Settings of each sign-in provider, OAUTH_<NAME>_<SUFFIX>, for the names in
# OAUTH_PROVIDERS and the presets.
PROVIDER_SETTINGS = ("CLIENT_ID", "CLIENT_SECRET", "ISSUER", "SCOPES", "NAME", "TRUST_EMAIL")
PROVIDER_PRESETS = ("google", "github")


class ConfigError(SystemExit):
    """A setting is missing or wrong; the message says which and how to fix it."""

    def __init__(self, message):
        super().__init__(f"authsvc: {message}")


def _integer(environ, name, default, minimum=0, maximum=None):
    """Read an integer setting within bounds."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, not {value}")
    return value


def _flag(environ, name, default):
    """Read a boolean setting written as 1/0, true/false, yes/no or on/off."""
    raw = environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0, not {raw!r}")


def _rate(environ, name, default):
    """Read a rate limit such as '10 per minute;50 per hour'."""
    value = environ.get(name) or default
    try:
        limits.parse_many(value)
    except ValueError:
        raise ConfigError(f"{name} must be a rate such as '10 per minute', not {value!r}") from None
    return value


def _list(environ, name):
    """Read a comma-separated list setting."""
    return [item.strip() for item in environ.get(name, "").split(",") if item.strip()]


def database_url(url):
    """Return a DATABASE_URL as SQLAlchemy opens it (postgres:// means postgresql+psycopg://).

    None stays None: configure_database() then picks the instance folder's SQLite file.
    """
    if url is None:
        return None
    hint = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"DATABASE_URL must be a URL such as {hint}") from None
    driver = DATABASE_SCHEMES.get(parsed.drivername)
    if driver is None:
        raise ConfigError(f"DATABASE_URL must be {hint}, not a {parsed.drivername}:// URL")
    if driver == parsed.drivername:
        return url
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _limit_storage(environ):
    """Read RATELIMIT_STORAGE_URI: memory:// or a Redis URL."""
    value = environ.get("RATELIMIT_STORAGE_URI") or "memory://"
    if urlsplit(value).scheme not in LIMIT_STORAGE_SCHEMES:
        scheme = urlsplit(value).scheme or "bare"
        raise ConfigError(
            f"RATELIMIT_STORAGE_URI must be memory:// or redis://HOST:PORT/DB, not a {scheme} URL"
        )
    return value


def _choice(environ, name, default, choices):
    """Read a setting that must be one of a few words."""
    value = environ.get(name) or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def from_environment(environ=os.environ):
    """Return the Flask config mapping described by the environment."""
    env = _choice(environ, "AUTHSVC_ENV", "development", ENVIRONMENTS)
    testing = env == "testing"
    access_ttl = _integer(environ, "ACCESS_TOKEN_TTL", 900, minimum=1)
    refresh_ttl = _integer(environ, "REFRESH_TOKEN_TTL", 604800, minimum=1)
    issuer = environ.get("JWT_ISSUER") or None
    audience = environ.get("JWT_AUDIENCE") or None
    return {
        "AUTHSVC_ENV": env,
        "TESTING": testing,
        "SQLALCHEMY_DATABASE_URI": database_url(environ.get("DATABASE_URL") or None),
        "DATABASE_TIMEOUT": _integer(environ, "DATABASE_TIMEOUT", 5, minimum=1),
        "JWT_SECRET_KEY": environ.get("JWT_SECRET_KEY") or None,
        "JWT_PREVIOUS_SECRET_KEY": environ.get("JWT_PREVIOUS_SECRET_KEY") or None,
        "JWT_ALGORITHM": _choice(environ, "JWT_ALGORITHM", "HS256", ALGORITHMS),
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(seconds=access_ttl),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(seconds=refresh_ttl),
        "JWT_ENCODE_ISSUER": issuer,
        "JWT_DECODE_ISSUER": issuer,
        # Not flask-jwt-extended's JWT_*_AUDIENCE, which would put aud on refresh
        # tokens too: tokens.py puts it on access tokens, extensions.py checks it.
        "JWT_AUDIENCE": audience,
        # A lower cost keeps the test suite fast; production keeps bcrypt's 12.
        "BCRYPT_ROUNDS": _integer(environ, "BCRYPT_ROUNDS", 4 if testing else 12, 4, 31),
        "SESSION_MAX_AGE": _integer(environ, "SESSION_MAX_AGE", 2592000, minimum=1),
        "REFRESH_REUSE_GRACE": _integer(environ, "REFRESH_REUSE_GRACE", 10),
        "FRESH_TOKEN_TTL": _integer(environ, "FRESH_TOKEN_TTL", 900),
        "MAX_CONTENT_LENGTH": _integer(environ, "MAX_CONTENT_LENGTH", 16384, 1),
        "PASSWORD_MIN_SCORE": _integer(environ, "PASSWORD_MIN_SCORE", 2, 0, 4),
        "RATELIMIT_ENABLED": _flag(environ, "RATELIMIT_ENABLED", True),
        "RATELIMIT_STORAGE_URI": _limit_storage(environ),
        # Deployments (or test runs) sharing one Redis keep their counters apart.
        "RATELIMIT_KEY_PREFIX": environ.get("RATELIMIT_KEY_PREFIX") or "authsvc",
        "RATELIMIT_SIGNIN_PER_ADDRESS": _rate(
            environ, "RATELIMIT_SIGNIN_PER_ADDRESS", "30 per minute;300 per hour"
        ),
        "RATELIMIT_SIGNIN_PER_EMAIL": _rate(
            environ, "RATELIMIT_SIGNIN_PER_EMAIL", "10 per minute;50 per hour"
        ),
        "RATELIMIT_SIGNUP_PER_ADDRESS": _rate(
            environ, "RATELIMIT_SIGNUP_PER_ADDRESS", "20 per minute;200 per hour"
        ),
        "RATELIMIT_REFRESH_PER_SESSION": _rate(
            environ, "RATELIMIT_REFRESH_PER_SESSION", "60 per minute"
        ),
        "RATELIMIT_PASSWORD_PER_USER": _rate(
            environ, "RATELIMIT_PASSWORD_PER_USER", "5 per minute;20 per hour"
        ),
        "RATELIMIT_MFA_PER_USER": _rate(
            environ, "RATELIMIT_MFA_PER_USER", "5 per minute;20 per hour"
        ),
        "RATELIMIT_INTROSPECT_PER_CLIENT": _rate(
            environ, "RATELIMIT_INTROSPECT_PER_CLIENT", "6000 per minute"
        ),
        "MFA_TOKEN_TTL": _integer(environ, "MFA_TOKEN_TTL", 300, minimum=1),
        "MFA_ISSUER": environ.get("MFA_ISSUER") or "authsvc",
        "SESSION_RETENTION": _integer(environ, "SESSION_RETENTION", 2592000),
        "ACCESS_LOG": _flag(environ, "ACCESS_LOG", not testing),
        "TRUSTED_PROXIES": _integer(environ, "TRUSTED_PROXIES", 0),
        "CORS_ORIGINS": _list(environ, "CORS_ORIGINS"),
        **_mail_settings(environ),
        **_webauthn_settings(environ),
        **_oauth_settings(environ),
    }


def _webauthn_settings(environ):
    """Return the passkeys' settings; check_webauthn() fills in what derives from PUBLIC_URL."""
    return {
        "WEBAUTHN_RP_ID": environ.get("WEBAUTHN_RP_ID") or None,
        "WEBAUTHN_RP_NAME": environ.get("WEBAUTHN_RP_NAME") or "authsvc",
        "WEBAUTHN_ORIGINS": _list(environ, "WEBAUTHN_ORIGINS"),
        "WEBAUTHN_TIMEOUT": _integer(environ, "WEBAUTHN_TIMEOUT", 300, minimum=1),
    }


def _mail_settings(environ):
    """Return the settings of mail: delivery, links, lifetimes, limits, the relay."""
    return {
        # None until configure_mail() applies the environment's default.
        "MAIL_URL": environ.get("MAIL_URL") or None,
        "MAIL_FROM": environ.get("MAIL_FROM") or "authsvc <no-reply@localhost>",
        "MAIL_TEMPLATES": environ.get("MAIL_TEMPLATES") or None,
        "PUBLIC_URL": (environ.get("PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/"),
        "PASSWORD_RESET_URL": environ.get("PASSWORD_RESET_URL") or None,
        "EMAIL_VERIFY_URL": environ.get("EMAIL_VERIFY_URL") or None,
        "PASSWORD_RESET_TTL": _integer(environ, "PASSWORD_RESET_TTL", 3600, minimum=1),
        "EMAIL_VERIFY_TTL": _integer(environ, "EMAIL_VERIFY_TTL", 86400, minimum=1),
        "REQUIRE_VERIFIED_EMAIL": _flag(environ, "REQUIRE_VERIFIED_EMAIL", False),
        "RATELIMIT_MAIL_PER_EMAIL": _rate(environ, "RATELIMIT_MAIL_PER_EMAIL", "3 per hour"),
        "RATELIMIT_RESET_PER_ADDRESS": _rate(
            environ, "RATELIMIT_RESET_PER_ADDRESS", "10 per minute;100 per hour"
        ),
        "RATELIMIT_EMAIL_CHANGE_PER_USER": _rate(
            environ, "RATELIMIT_EMAIL_CHANGE_PER_USER", "5 per hour"
        ),
        "MAIL_RELAY": _flag(environ, "MAIL_RELAY", True),
        "MAIL_POLL_INTERVAL": _integer(environ, "MAIL_POLL_INTERVAL", 30, minimum=1),
        "MAIL_RETRY_BASE": _integer(environ, "MAIL_RETRY_BASE", 60, minimum=1),
        "MAIL_RETRY_MAX": _integer(environ, "MAIL_RETRY_MAX", 3600, minimum=1),
        "MAIL_GIVE_UP_AFTER": _integer(environ, "MAIL_GIVE_UP_AFTER", 86400, minimum=0),
        "MAIL_TIMEOUT": _integer(environ, "MAIL_TIMEOUT", 10, minimum=1),
    }


def _oauth_settings(environ):
    """Return the settings of sign-in with providers; providers.py checks them at start-up."""
    names = [name.lower() for name in _list(environ, "OAUTH_PROVIDERS")]
    settings = {
        "OAUTH_PROVIDERS": names,
        "OAUTH_REDIRECT_URLS": _list(environ, "OAUTH_REDIRECT_URLS"),
        "OAUTH_GITHUB_URL": (environ.get("OAUTH_GITHUB_URL") or "https://github.com").rstrip("/"),
        "OAUTH_TIMEOUT": _integer(environ, "OAUTH_TIMEOUT", 5, minimum=1, maximum=60),
        "RATELIMIT_OAUTH_PER_ADDRESS": _rate(
            environ, "RATELIMIT_OAUTH_PER_ADDRESS", "30 per minute;300 per hour"
        ),
    }
    for name in names:
        for field in PROVIDER_SETTINGS:
            key = f"OAUTH_{name.upper()}_{field}"
            if environ.get(key):
                settings[key] = environ[key]
    return settings


# Settings that no environment changes: how authsvc uses its libraries.
FIXED = {
    "JWT_TOKEN_LOCATION": ["headers"],
    "JWT_COOKIE_CSRF_PROTECT": False,
    # nbf goes on access tokens only; refresh tokens carry exactly the claims
    # the contract lists, so they can be issued again byte for byte.
    "JWT_ENCODE_NBF": False,
    "SQLALCHEMY_TRACK_MODIFICATIONS": False,
    "RATELIMIT_STORAGE_OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
    "API_TITLE": "authsvc",
    "API_VERSION": "1.0.0",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
}


def check_secret(config):
    """Refuse to run in production without a strong JWT_SECRET_KEY."""
    if config["AUTHSVC_ENV"] != "production":
        return
    secret = config.get("JWT_SECRET_KEY") or ""
    if len(secret.encode()) < MIN_SECRET_BYTES or len(set(secret)) < MIN_SECRET_DISTINCT:
        raise ConfigError(
            "set JWT_SECRET_KEY to a random secret of at least "
            f"{MIN_SECRET_BYTES} bytes and {MIN_SECRET_DISTINCT} different characters "
            "(AUTHSVC_ENV=production), for example "
            "the output of: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )


def development_secret(instance_path):
    """Return the instance folder's random signing secret, creating it once."""
    path = os.path.join(instance_path, "jwt-secret")
    if not os.path.exists(path):
        os.makedirs(instance_path, exist_ok=True)
        draft = f"{path}.{os.getpid()}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as written:
            written.write(secrets.token_urlsafe(48))
        try:
            # link() fails if another process got there first: theirs wins.
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    with open(path) as stored:
        return stored.read().strip()
