"""Mail's settings, settled at start-up: MAIL_URL parsed, the link templates checked.

Production refuses to start without MAIL_URL (`none` says mail is off on
purpose) and with `console://`, which writes tokens to the log.
REQUIRE_VERIFIED_EMAIL=1 with MAIL_URL=none is refused everywhere: it would
lock every new user out.
"""

import os
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from config import ConfigError

# MAIL_URL schemes and the port each uses when the URL names none.
MAIL_SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465, "console": None}


class MailServer(NamedTuple):
    """Where mail goes: a parsed MAIL_URL."""

    scheme: str
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None


def parse_mail_url(url):
    """Return the MailServer a MAIL_URL names, or None for `none`; refuse anything else."""
    if url == "none":
        return None
    hint = "smtp://[user:pass@]host[:port], smtp+starttls://..., smtps://..., console:// or none"
    parts = urlsplit(url)
    if parts.scheme not in MAIL_SCHEMES:
        raise ConfigError(f"MAIL_URL must be {hint}, not a {parts.scheme or 'bare'} URL")
    if parts.scheme == "console":
        return MailServer("console")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError("MAIL_URL has a port that is not a number from 1 to 65535")
    port = port or MAIL_SCHEMES[parts.scheme]
    if not parts.hostname:
        raise ConfigError(f"MAIL_URL names no host; it must be {hint}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return MailServer(parts.scheme, parts.hostname, port, username, password)


def _link_template(config, name, path):
    """Return a link setting with `{token}`, defaulting to authsvc's own page."""
    template = config.get(name) or f"{config['PUBLIC_URL']}/{path}?token={{token}}"
    if "{token}" not in template or urlsplit(template).scheme not in ("http", "https"):
        raise ConfigError(f"{name} must be an http(s) URL containing {{token}}, not {template!r}")
    return template


def check_mail(config):
    """Settle MAIL_URL and the link templates; refuse what production must not run with.

    Return the parsed MAIL_URL (None for `none`).
    """
    production = config["AUTHSVC_ENV"] == "production"
    if not config.get("MAIL_URL"):
        if production:
            raise ConfigError(
                "set MAIL_URL (AUTHSVC_ENV=production): smtp://, smtp+starttls://, smtps://, "
                "or none to run without mail"
            )
        config["MAIL_URL"] = "console://"
    server = parse_mail_url(config["MAIL_URL"])
    if production and server is not None and server.scheme == "console":
        raise ConfigError(
            "MAIL_URL=console:// writes tokens to the log and is for development; "
            "set an SMTP URL or none (AUTHSVC_ENV=production)"
        )
    if server is None and config["REQUIRE_VERIFIED_EMAIL"]:
        raise ConfigError(
            "REQUIRE_VERIFIED_EMAIL=1 needs mail: MAIL_URL=none would lock every new user out"
        )
    templates = config.get("MAIL_TEMPLATES")
    if templates and not os.path.isdir(templates):
        raise ConfigError(f"MAIL_TEMPLATES must be a folder of mail templates, not {templates!r}")
    if urlsplit(config["PUBLIC_URL"]).scheme not in ("http", "https"):
        raise ConfigError(f"PUBLIC_URL must be an http(s) URL, not {config['PUBLIC_URL']!r}")
    config["PASSWORD_RESET_URL"] = _link_template(config, "PASSWORD_RESET_URL", "reset-password")
    config["EMAIL_VERIFY_URL"] = _link_template(config, "EMAIL_VERIFY_URL", "verify-email")
    return server
