"""An OpenID Connect provider's answer at the callback: its ID token, checked, and its user.

The ID token is checked in this order, and any failure is the provider's
error (the callback redirects with error=provider_error):

1. its `alg` is one of the asymmetric algorithms (RS*, PS*, ES*, EdDSA) the
   provider's discovery lists: never `none`, never HMAC, whatever a library
   would accept;
2. its signature verifies with the provider's JWKS; an unknown `kid` makes
   authsvc fetch the JWKS again, once;
3. its claims (Authlib's OpenID Connect rules, authlib.oidc.core): `iss` is
   the issuer, `aud` holds the client id (with `azp` the client id when
   there are several audiences), `exp` is in the future and `iat` not, both
   within LEEWAY, and `at_hash` matches when present;
4. `iat` is at most ID_TOKEN_MAX_AGE old, and `nonce` is the one the flow
   sent (its digest, as the flow row keeps it).

The email comes from the ID token or, when the ID token carries none (as
certified providers do when userinfo can tell), from userinfo, whose `sub`
must be the ID token's. `email_verified` counts only as JSON `true`.
"""

import base64
import hmac
import json
import time
from typing import NamedTuple

from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError

from authsvc import providerhttp
from authsvc.oauthflows import digest
from authsvc.providerhttp import ProviderRefused

LEEWAY = 60  # seconds of clock skew allowed
ID_TOKEN_MAX_AGE = 600  # seconds: an ID token is made at the code exchange, moments ago
MAX_SUBJECT = 255  # characters, as OpenID Connect Core allows a `sub`


class ProviderIdentity(NamedTuple):
    """Who the provider says the user is: its subject, and an email if it gave one."""

    subject: str
    email: str | None
    email_verified: bool


def _header(id_token):
    """Return the JOSE header of a compact JWS, unverified, or refuse it."""
    try:
        encoded = id_token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, UnicodeDecodeError, AttributeError):
        raise ProviderRefused("the ID token is not a JWS") from None
    if not isinstance(header, dict):
        raise ProviderRefused("the ID token's header is not a JSON object")
    return header


def _verified(state, id_token, algorithms):
    """Return the ID token's header and claims once its signature verifies with the JWKS."""
    keys = providerhttp.signing_keys(state)
    kid = _header(id_token).get("kid")
    if kid is not None and not any(key.kid == kid for key in keys):
        keys = providerhttp.signing_keys(state, refresh=True)
    try:
        token = jwt.decode(id_token, keys, algorithms=algorithms)
    except InvalidKeyIdError:
        raise ProviderRefused("the ID token is signed with a key the JWKS does not hold") from None
    except (JoseError, ValueError, TypeError) as error:
        raise ProviderRefused(f"the ID token does not verify: {type(error).__name__}") from None
    return token.header, token.claims


def verify_id_token(state, id_token, nonce_digest, access_token=None):
    """Return the claims of a provider's ID token after every check above, or refuse it."""
    if not isinstance(id_token, str):
        raise ProviderRefused("the token endpoint gave no ID token")
    algorithms = providerhttp.id_token_algorithms(providerhttp.metadata(state))
    if _header(id_token).get("alg") not in algorithms:
        raise ProviderRefused("the ID token's alg is not one of the provider's asymmetric ones")
    header, claims = _verified(state, id_token, algorithms)
    provider = state.provider
    options = {
        "iss": {"essential": True, "value": provider.issuer},
        "aud": {"essential": True, "value": provider.client_id},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "sub": {"essential": True},
    }
    params = {"client_id": provider.client_id, "access_token": access_token}
    checked = CodeIDToken(claims, header, options, params)
    try:
        checked.validate(leeway=LEEWAY)
    except JoseError as error:
        raise ProviderRefused(f"the ID token's claims are wrong: {error}") from None
    if claims["iat"] < time.time() - ID_TOKEN_MAX_AGE - LEEWAY:
        raise ProviderRefused("the ID token was issued too long ago")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(digest(nonce), nonce_digest or ""):
        raise ProviderRefused("the ID token's nonce is not the flow's")
    return claims


def _email(source):
    """Return the email and whether it is verified, from the ID token's claims or userinfo."""
    email = source.get("email")
    return (email if isinstance(email, str) else None), source.get("email_verified") is True


def identity(state, token, nonce_digest):
    """Return who an OpenID Connect provider's tokens say the user is."""
    claims = verify_id_token(state, token.get("id_token"), nonce_digest, token["access_token"])
    email, verified = _email(claims)
    userinfo_endpoint = providerhttp.metadata(state).get("userinfo_endpoint")
    if email is None and isinstance(userinfo_endpoint, str):
        info = providerhttp.fetch_json(
            userinfo_endpoint,
            "userinfo",
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        if info.get("sub") != claims["sub"]:
            raise ProviderRefused("userinfo names another subject than the ID token")
        email, verified = _email(info)
    if len(claims["sub"]) > MAX_SUBJECT:
        raise ProviderRefused("the ID token's sub is longer than OpenID Connect allows")
    return ProviderIdentity(claims["sub"], email, verified)
