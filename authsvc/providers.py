"""The providers users may sign in with: their settings, the presets, and start-up's check.

OAUTH_PROVIDERS names them. A provider is OpenID Connect (any issuer, and the
preset `google`), whose metadata comes from discovery and whose ID tokens
are verified with its JWKS (oidc.py), or GitHub (OAuth 2 with its user and
emails APIs, github.py). Towards every one of them authsvc is a confidential
client of the authorization code flow with PKCE; the calls themselves live
in providerhttp.py.

Start-up checks each provider and stops, with one line naming it, on a
missing client id or secret, an unknown preset, an issuer that is not https
(loopback aside), or discovery that fails for good (an answer that is not
the document: a 404, a body that is not JSON, an `issuer` that differs). A
provider that cannot be reached then (no connection, a timeout, a 5xx) does
not stop it: it is logged, and discovery is tried again at each use, which
answers 503 provider_unavailable until it succeeds.
"""

import logging
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import current_app
from joserfc.jwk import KeySet
from werkzeug.routing import BaseConverter

import config
from authsvc.providerhttp import (
    ProviderRefused,
    ProviderUnavailable,
    discover,
    secure_or_loopback,
)

log = logging.getLogger(__name__)

NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class ProviderName(BaseConverter):
    """A provider's name in a URL: /users/me/identities/<provider> never takes an identity's id."""

    regex = NAME.pattern
    openapi = {"type": "string", "pattern": f"^{NAME.pattern}$"}


PRESETS = {
    "google": {"issuer": "https://accounts.google.com", "display_name": "Google"},
    "github": {"display_name": "GitHub", "scopes": "read:user user:email"},
}
OIDC_SCOPES = "openid email profile"


@dataclass(frozen=True)
class Provider:
    """One provider of OAUTH_PROVIDERS, as its settings describe it."""

    name: str
    display_name: str
    kind: str  # "oidc" or "github"
    client_id: str
    client_secret: str
    scopes: str
    trust_email: bool
    callback_url: str
    issuer: str | None = None
    web_url: str | None = None
    api_url: str | None = None


@dataclass
class ProviderState:
    """A provider and what this process learnt of it: its metadata and its keys."""

    provider: Provider
    metadata: dict | None = None
    keys: KeySet | None = None
    keys_fetched_at: float = field(default=0.0)

    @property
    def name(self):
        """Return the provider's name."""
        return self.provider.name


def _provider(settings, name):
    """Return a Provider from its OAUTH_<NAME>_* settings, or stop start-up with why."""
    if not NAME.fullmatch(name):
        raise config.ConfigError(
            f"OAUTH_PROVIDERS: {name!r} is not a provider name ([a-z][a-z0-9_]*)"
        )
    prefix = f"OAUTH_{name.upper()}_"
    issuer, preset = settings.get(prefix + "ISSUER"), PRESETS.get(name)
    if preset and issuer:
        raise config.ConfigError(
            f"{prefix}ISSUER: {name} is a preset; name your own issuer otherwise"
        )
    if not preset and not issuer:
        raise config.ConfigError(
            f"OAUTH_PROVIDERS: {name} is not a preset (google, github) and {prefix}ISSUER is unset"
        )
    for required in ("CLIENT_ID", "CLIENT_SECRET"):
        if not settings.get(prefix + required):
            raise config.ConfigError(f"{prefix}{required} is missing (provider {name})")
    kind = "github" if name == "github" else "oidc"
    web_url = settings["OAUTH_GITHUB_URL"] if kind == "github" else None
    issuer = issuer or (preset or {}).get("issuer")
    for setting, url in ((prefix + "ISSUER", issuer), ("OAUTH_GITHUB_URL", web_url)):
        if url is not None and not secure_or_loopback(url):
            raise config.ConfigError(
                f"{setting} must be an https URL (provider {name}), not {url!r}"
            )
    scopes = settings.get(prefix + "SCOPES") or (preset or {}).get("scopes") or OIDC_SCOPES
    if kind == "oidc" and "openid" not in scopes.split():
        raise config.ConfigError(f"{prefix}SCOPES must include openid (provider {name})")
    return Provider(
        name=name,
        display_name=settings.get(prefix + "NAME") or (preset or {}).get("display_name") or name,
        kind=kind,
        client_id=settings[prefix + "CLIENT_ID"],
        client_secret=settings[prefix + "CLIENT_SECRET"],
        scopes=" ".join(scopes.split()),
        trust_email=config._flag(settings, prefix + "TRUST_EMAIL", preset is not None),
        callback_url=f"{settings['PUBLIC_URL']}/auth/oauth/{name}/callback",
        issuer=issuer if kind == "oidc" else None,
        web_url=web_url,
        api_url=_github_api(web_url) if web_url else None,
    )


def _github_api(web_url):
    """Return GitHub's API for its web address: api.github.com, or <url>/api/v3 (Enterprise)."""
    return (
        "https://api.github.com"
        if urlsplit(web_url).hostname == "github.com"
        else f"{web_url}/api/v3"
    )


def _check_redirect_urls(urls):
    """Refuse an OAUTH_REDIRECT_URLS entry that is not an absolute URL without a fragment."""
    for url in urls:
        parts = urlsplit(url)
        web = parts.scheme in ("http", "https") and parts.hostname
        if not (web or "." in parts.scheme) or parts.fragment or "#" in url:
            raise config.ConfigError(
                f"OAUTH_REDIRECT_URLS must hold absolute http(s) URLs (or an app's "
                f"reverse-domain scheme, com.example.app:/cb) without a fragment, not {url!r}"
            )


def configure_providers(app):
    """Check every provider of OAUTH_PROVIDERS and discover what can be discovered now."""
    settings, states = app.config, {}
    for name in settings["OAUTH_PROVIDERS"]:
        if name in states:
            raise config.ConfigError(f"OAUTH_PROVIDERS names {name} twice")
        states[name] = ProviderState(_provider(settings, name))
    if states and not settings["OAUTH_REDIRECT_URLS"]:
        raise config.ConfigError(
            "OAUTH_REDIRECT_URLS is unset: no sign-in could come back to an app"
        )
    _check_redirect_urls(settings["OAUTH_REDIRECT_URLS"])
    app.extensions["authsvc-providers"] = states
    with app.app_context():
        for state in states.values():
            try:
                state.metadata = discover(state.provider)
            except ProviderRefused as error:
                raise config.ConfigError(f"provider {state.provider.name}: {error}") from None
            except ProviderUnavailable as error:
                log.warning("provider %s is unreachable for now: %s", state.provider.name, error)


def enabled():
    """Return the providers users may sign in with, in the order OAUTH_PROVIDERS names them."""
    return [state.provider for state in current_app.extensions["authsvc-providers"].values()]


def state_of(name):
    """Return the state of an enabled provider, or None."""
    return current_app.extensions["authsvc-providers"].get(name)
