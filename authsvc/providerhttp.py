"""Every call authsvc makes to a provider: discovery, its keys, and the OAuth 2 client.

Each request is bounded by OAUTH_TIMEOUT (to connect, and for each read) and
reads at most MAX_BODY bytes. An answer tells a passing trouble
(ProviderUnavailable: no connection, a timeout, a 5xx or a 429) from a
definite one (ProviderRefused: a 4xx, a body that is not the JSON it must
be). The OAuth 2 parts (the authorization URL, the code exchange with the
PKCE verifier) are Authlib's; the metadata and keys are kept per process in
the provider's state (providers.ProviderState).

requests and Authlib's client are imported when a provider is first asked,
not with this module: some 60 ms of every process's start-up (each `flask`
command, each gunicorn), where no provider may be configured at all.
"""

import ipaddress
import json
import time
from urllib.parse import urlsplit

from flask import current_app
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from authsvc.errors import Problem

# Only signatures with a public key: never `none`, never an HMAC keyed by the client secret.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    | {"ES256", "ES384", "ES512", "EdDSA", "Ed25519"}
)
SIGNING_KEY_TYPES = ("RSA", "EC", "OKP")
JWKS_MAX_AGE = 3600  # seconds
MAX_BODY = 1 << 20  # bytes
RETRY_AFTER = "30"  # seconds, on a 503 provider_unavailable

PROVIDER_UNAVAILABLE = Problem(
    503,
    "provider_unavailable",
    "The provider cannot be reached right now; try again after the time in Retry-After.",
    headers={"Retry-After": RETRY_AFTER},
)


class ProviderUnavailable(Exception):
    """A provider could not be reached, or answered 5xx: it may work in a moment."""


class ProviderRefused(Exception):
    """A provider answered, but not what it must: a definite failure."""


def secure_or_loopback(url):
    """Tell whether a URL is https, or http to a loopback address (a provider under test)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return parts.hostname == "localhost"


def _timeout():
    """Return the (connect, read) timeout of every request to a provider."""
    seconds = current_app.config["OAUTH_TIMEOUT"]
    return (seconds, seconds)


def answered_json(response, what, kind=dict):
    """Return the JSON document of a provider's answer, or raise why there is none."""
    if response.status_code >= 500 or response.status_code == 429:
        raise ProviderUnavailable(f"{what} answered {response.status_code}")
    if response.status_code != 200:
        raise ProviderRefused(f"{what} answered {response.status_code}")
    body = response.raw.read(MAX_BODY + 1, decode_content=True)
    try:
        document = json.loads(body) if len(body) <= MAX_BODY else None
    except ValueError:
        document = None
    if not isinstance(document, kind):
        raise ProviderRefused(f"{what} answered something that is not a JSON {kind.__name__}")
    return document


def fetch_json(url, what, headers=None, kind=dict):
    """GET a provider's JSON document, within OAUTH_TIMEOUT."""
    import requests

    try:
        with requests.get(
            url, headers=headers, timeout=_timeout(), allow_redirects=False, stream=True
        ) as response:
            return answered_json(response, what, kind)
    except requests.RequestException as error:
        raise ProviderUnavailable(f"{what}: {type(error).__name__}") from None


def discover(provider):
    """Return a provider's metadata: GitHub's fixed endpoints, or OpenID Connect discovery."""
    if provider.kind == "github":
        return {
            "authorization_endpoint": f"{provider.web_url}/login/oauth/authorize",
            "token_endpoint": f"{provider.web_url}/login/oauth/access_token",
            # GitHub documents client_id and client_secret as form parameters.
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        }
    url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
    document = fetch_json(url, f"discovery at {url}")
    if document.get("issuer") != provider.issuer:
        raise ProviderRefused(
            f"discovery at {url} names the issuer {document.get('issuer')!r}, "
            f"not {provider.issuer!r}"
        )
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = document.get(endpoint)
        if not isinstance(value, str) or not secure_or_loopback(value):
            raise ProviderRefused(f"discovery at {url} gives no https {endpoint}")
    if not id_token_algorithms(document):
        raise ProviderRefused(f"discovery at {url} lists no asymmetric ID token algorithm")
    return document


def metadata(state):
    """Return a provider's metadata, discovering it now if start-up could not."""
    if state.metadata is None:
        try:
            state.metadata = discover(state.provider)
        except ProviderRefused as error:
            raise ProviderUnavailable(str(error)) from None
    return state.metadata


def id_token_algorithms(document):
    """Return the asymmetric algorithms the provider lists for ID tokens (RS256 if none)."""
    listed = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    return [alg for alg in listed if isinstance(alg, str) and alg in ASYMMETRIC_ALGORITHMS]


def signing_keys(state, refresh=False):
    """Return a provider's public signing keys, fetching them when old, missing or `refresh`."""
    stale = time.monotonic() - state.keys_fetched_at > JWKS_MAX_AGE
    if refresh or state.keys is None or stale:
        document = fetch_json(metadata(state)["jwks_uri"], "the JWKS")
        keys = [
            key
            for key in document.get("keys") or []
            if isinstance(key, dict)
            and key.get("kty") in SIGNING_KEY_TYPES
            and key.get("use", "sig") == "sig"
        ]
        try:
            state.keys = KeySet.import_key_set({"keys": keys})
        except (JoseError, ValueError, TypeError, KeyError):
            raise ProviderRefused("the JWKS holds no usable signing key") from None
        state.keys_fetched_at = time.monotonic()
    return state.keys


def client(state):
    """Return an Authlib OAuth 2 client of a provider, its requests bounded by OAUTH_TIMEOUT."""
    from authlib.integrations.requests_client import OAuth2Session

    provider, document = state.provider, metadata(state)
    methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    return OAuth2Session(
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        token_endpoint_auth_method=(
            "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
        ),
        scope=provider.scopes,
        redirect_uri=provider.callback_url,
        code_challenge_method="S256",
        default_timeout=_timeout(),
    )


def authorization_url(state, flow_state, verifier, nonce):
    """Return the provider's authorization URL for a flow: state, PKCE S256 and (OIDC) nonce."""
    extra = {"nonce": nonce} if state.provider.kind == "oidc" else {}
    url, _ = client(state).create_authorization_url(
        metadata(state)["authorization_endpoint"], state=flow_state, code_verifier=verifier, **extra
    )
    return url


def exchange_code(state, code, verifier):
    """Trade the provider's code for its tokens (with the PKCE verifier); return them."""
    import requests
    from authlib.integrations.requests_client import OAuthError

    try:
        token = client(state).fetch_token(
            metadata(state)["token_endpoint"], code=code, code_verifier=verifier
        )
    except requests.HTTPError as error:
        if error.response is not None and error.response.status_code < 500:
            raise ProviderRefused(
                f"the token endpoint answered {error.response.status_code}"
            ) from None
        raise ProviderUnavailable("the token endpoint answered 5xx") from None
    except requests.RequestException as error:
        raise ProviderUnavailable(f"the token endpoint: {type(error).__name__}") from None
    except (OAuthError, ValueError) as error:
        raise ProviderRefused(f"the token endpoint refused the code: {error}") from None
    if not isinstance(token.get("access_token"), str):
        raise ProviderRefused("the token endpoint gave no access token")
    return token
