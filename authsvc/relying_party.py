"""The passkeys' relying party: its id and the origins ceremonies may come from.

WEBAUTHN_RP_ID defaults to PUBLIC_URL's host and WEBAUTHN_ORIGINS to its
origin. Browsers refuse an IP address as a relying party id, so a loopback
PUBLIC_URL (make run's http://127.0.0.1:8000) gives `localhost`, and the same
origin with `localhost` is accepted as well. An id that is not the host of
every origin, or a parent domain of it, stops start-up with one line.
"""

import ipaddress
import re
from urllib.parse import urlsplit

from config import ConfigError

# A relying party id: ASCII labels (an internationalised name in its xn-- form).
DOMAIN_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def _loopback(host):
    """Tell whether a host is a loopback IP address (127.0.0.1, ::1...)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _web_origin(value, name):
    """Return an http(s) origin as browsers write it (no path, no default port), or refuse it."""
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError:
        port = 0
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or port == 0
    ):
        raise ConfigError(
            f"{name} must hold origins such as https://auth.example.com, not {value!r}"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")


def _fits(rp_id, origin):
    """Tell whether a relying party id is an origin's host or a parent domain of it.

    Browsers also refuse a public suffix (com, co.uk) as the id; without the
    public suffix list, only one-label ids other than localhost are refused
    here. A loopback address counts as localhost.
    """
    host = urlsplit(origin).hostname
    if _loopback(host):
        host = "localhost"
    return host == rp_id or host.endswith(f".{rp_id}")


def _default_origins(public, loopback):
    """Return PUBLIC_URL's origin, and the same with localhost where its host is a loopback one."""
    origins = [public._replace(path="", query="", fragment="").geturl()]
    if loopback:
        origins.append(f"{public.scheme}://localhost" + (f":{public.port}" if public.port else ""))
    return origins


def check_webauthn(config):
    """Settle the passkeys' relying party id and origins; refuse an id that fits no origin.

    By default the id is PUBLIC_URL's host and the origin PUBLIC_URL's;
    browsers refuse an IP address as the id, so a loopback PUBLIC_URL gives
    `localhost`, and its origin with `localhost` is accepted as well.
    """
    public = urlsplit(config["PUBLIC_URL"])
    loopback = _loopback(public.hostname or "")
    origins = config.get("WEBAUTHN_ORIGINS") or _default_origins(public, loopback)
    origins = list(dict.fromkeys(_web_origin(item, "WEBAUTHN_ORIGINS") for item in origins))
    rp_id = (config.get("WEBAUTHN_RP_ID") or ("localhost" if loopback else public.hostname)).lower()
    if _loopback(rp_id) or not DOMAIN_NAME.fullmatch(rp_id):
        raise ConfigError(
            f"WEBAUTHN_RP_ID must be a domain name such as example.com, not {rp_id!r}"
        )
    if "." not in rp_id and rp_id != "localhost":
        raise ConfigError(f"WEBAUTHN_RP_ID must be a registrable domain, not the suffix {rp_id!r}")
    for origin in origins:
        if not _fits(rp_id, origin):
            raise ConfigError(
                f"WEBAUTHN_RP_ID {rp_id!r} must be the host of every WEBAUTHN_ORIGINS origin "
                f"or a parent domain of it, and {origin} is neither"
            )
    config["WEBAUTHN_RP_ID"], config["WEBAUTHN_ORIGINS"] = rp_id, origins
