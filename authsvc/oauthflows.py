"""The rows of a round trip through a provider: its state, nonce and PKCE, and the app's code.

Authorize opens one flow row: the digests of a new `state` and `nonce`
(256 random bits each), the provider, the purpose (signin or link; and the
caller, for a link), the app's redirectTo and its S256 codeChallenge. It
lives FLOW_TTL seconds. The PKCE verifier sent to the provider at the code
exchange is derived from the state, HMAC-SHA256 under a key derived from
JWT_SECRET_KEY: it is never stored, so a copy of the database alone holds
neither the state nor the verifier, and the row needs no sealed column.
(A change of JWT_SECRET_KEY in the ten minutes of a flow fails that flow at
the provider; the user starts again.)

The callback uses the state up with one conditional UPDATE, so a replayed
state does nothing. A flow that reaches its end gets a one-time code for the
app: 256 random bits, stored as a digest, alive CODE_TTL seconds, used up by
one conditional UPDATE at the endpoint of its purpose only, and worth
something only with the verifier of the app's codeChallenge. A code refused
for its verifier is used up all the same. Nothing here commits, but
redeem(), which commits the use of a code before it checks the verifier.
Refusals are audited and counted by provider (refuse()).
"""

import base64
import functools
import hashlib
import hmac
import secrets
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app, jsonify, redirect, request

from authsvc import audit, providerhttp, providers
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import OAuthFlow, utcnow
from authsvc.telemetry import count_oauth

FLOW_TTL = 600  # seconds from authorize to the callback
CODE_TTL = 60  # seconds from the callback to the code's exchange
# What authsvc adds to an app's redirectTo; the app's own values of these go.
ANSWER_PARAMETERS = ("code", "error")

flows = OAuthFlow.__table__

NO_SUCH_PROVIDER = Problem(404, "not_found", "There is no such provider here.")
INVALID_REDIRECT = Problem(
    400, "invalid_redirect", "redirectTo is not one of the app URLs this service may return to."
)
INVALID_GRANT = Problem(
    400, "invalid_grant", "The code is unknown, used or expired, or the codeVerifier is wrong."
)


# The audit event of each refusal a callback, or a code, ends in.
REFUSAL_EVENTS = {
    "access_denied": "oauth_access_denied",
    "provider_error": "oauth_provider_error",
    "provider_unavailable": "oauth_provider_unavailable",
    "account_exists": "oauth_account_exists",
    "account_disabled": "signin_disabled",
    "email_missing": "oauth_email_missing",
    "invalid_grant": "oauth_invalid_grant",
    "identity_taken": "oauth_identity_taken",
    "forbidden": "oauth_forbidden",
}


def refuse(provider, code, user_id=None, session_id=None):
    """Audit and count a refused sign-in or link with a provider (the caller commits)."""
    audit.record(REFUSAL_EVENTS[code], user_id, session_id)
    count_oauth(provider, code)


def digest(text):
    """Return the SHA-256 hex digest of a state, nonce or code, as flow rows keep them."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def base64url(data):
    """Encode bytes as unpadded base64url, as PKCE writes them."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def s256(verifier):
    """Return the S256 code challenge of a PKCE verifier (RFC 7636)."""
    return base64url(hashlib.sha256(verifier.encode("ascii")).digest())


@functools.lru_cache(maxsize=4)
def _pkce_key(secret):
    """Derive the key that makes PKCE verifiers from states, from JWT_SECRET_KEY."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"authsvc oauth", info=b"pkce-verifier"
    ).derive(secret.encode())


def pkce_verifier(state):
    """Return the PKCE verifier of a flow towards its provider: 43 characters from its state."""
    key = _pkce_key(current_app.config["JWT_SECRET_KEY"])
    return base64url(hmac.new(key, state.encode("ascii"), hashlib.sha256).digest())


def _without_query(url):
    """Return a URL without its query string, as redirect URLs are compared."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def check_redirect(redirect_to):
    """Refuse a redirectTo that is not one of OAUTH_REDIRECT_URLS (the query aside)."""
    allowed = {_without_query(url) for url in current_app.config["OAUTH_REDIRECT_URLS"]}
    if "#" in redirect_to or _without_query(redirect_to) not in allowed:
        raise INVALID_REDIRECT


def answer_url(redirect_to, **answer):
    """Return the app's redirectTo with authsvc's code or error added to its own query."""
    parts = urlsplit(redirect_to)
    query = [(k, v) for k, v in parse_qsl(parts.query, True) if k not in ANSWER_PARAMETERS]
    query += list(answer.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def known_provider(view):
    """Answer 404 for a provider that is not enabled, before anything else is read.

    The view gets the provider's state (providers.ProviderState) for its name.
    """

    @functools.wraps(view)
    def checked(*args, provider, **kwargs):
        state = providers.state_of(provider)
        if state is None:
            raise NO_SUCH_PROVIDER
        return view(*args, provider=state, **kwargs)

    return checked


def start(state, purpose, redirect_to, code_challenge, user_id=None):
    """Open a flow towards a provider; return the provider's URL (503 if it is unreachable)."""
    check_redirect(redirect_to)
    try:
        providerhttp.metadata(state)
    except providerhttp.ProviderUnavailable:
        count_oauth(state.name, "provider_unavailable")
        raise providerhttp.PROVIDER_UNAVAILABLE from None
    flow_state, nonce = open_flow(state.name, purpose, redirect_to, code_challenge, user_id)
    return providerhttp.authorization_url(state, flow_state, pkce_verifier(flow_state), nonce)


def open_flow(provider, purpose, redirect_to, code_challenge, user_id=None):
    """Add a flow row; return its state and nonce, which only the provider's URL carries."""
    state, nonce, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), utcnow()
    db.session.execute(
        flows.insert().values(
            state_digest=digest(state),
            nonce_digest=digest(nonce),
            provider=provider,
            purpose=purpose,
            user_id=user_id,
            redirect_to=redirect_to,
            code_challenge=code_challenge,
            created_at=now,
            expires_at=now + timedelta(seconds=FLOW_TTL),
        )
    )
    return state, nonce


def send_to_provider(url):
    """Answer an authorize: 302 to the provider, or {url} to a client that asks for JSON."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"], "text/html")
    if best == "application/json":
        return jsonify({"url": url})
    return redirect(url, 302)


def take_state(provider, state):
    """Use up a live flow of this provider by its state; return its row, or None."""
    if not isinstance(state, str) or not state:
        return None
    return use_up(
        flows.c.state_digest,
        flows.c.used_at,
        flows.c.expires_at,
        state,
        flows.c.provider == provider,
    )


def use_up(digest_column, used_column, expires_column, secret, *conditions):
    """Mark the live, unused flow a secret names as used, in one conditional update.

    Return the flow's row as updated, or None when no such flow was live.
    """
    now = utcnow()
    return db.session.execute(
        flows.update()
        .where(
            digest_column == digest(secret),
            used_column.is_(None),
            expires_column > now,
            *conditions,
        )
        .values({used_column: now})
        .returning(*flows.c)
    ).first()


def issue_code(flow, user_id, subject=None, email=None, new_user=False):
    """Give a flow its one-time code for the app, bound to its user; return the code."""
    code, now = secrets.token_urlsafe(32), utcnow()
    db.session.execute(
        flows.update()
        .where(flows.c.state_digest == flow.state_digest)
        .values(
            code_digest=digest(code),
            code_expires_at=now + timedelta(seconds=CODE_TTL),
            user_id=user_id,
            subject=subject,
            email=email,
            new_user=new_user,
        )
    )
    return code


def take_code(code, purpose):
    """Use up a live code of a purpose; return its flow row, or None.

    The caller commits at once, so a code stays used whatever follows.
    """
    return use_up(
        flows.c.code_digest,
        flows.c.code_used_at,
        flows.c.code_expires_at,
        code,
        flows.c.purpose == purpose,
    )


def redeem(code, verifier, purpose, session_id=None):
    """Use up a code and check the app's verifier; return its flow row, or answer invalid_grant.

    The code is used up and committed before the verifier is checked: a code
    presented with a wrong verifier is dead. Every refusal is audited.
    """
    flow = take_code(code, purpose)
    db.session.commit()
    if flow is None or not hmac.compare_digest(s256(verifier), flow.code_challenge):
        provider, user_id = (flow.provider, flow.user_id) if flow else ("unknown", None)
        refuse(provider, "invalid_grant", user_id, session_id)
        db.session.commit()
        raise INVALID_GRANT
    return flow


def purge(cutoff):
    """Delete flows that expired before `cutoff`; return how many."""
    return db.session.execute(flows.delete().where(flows.c.expires_at < cutoff)).rowcount
