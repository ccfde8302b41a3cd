"""Blueprint "oauth": sign in with another provider (OpenID Connect, GitHub).

The app sends the browser to authorize with its redirectTo and an S256
codeChallenge; authsvc sends it on to the provider, takes it back at the
callback, and returns it to redirectTo with a one-time code (or an error).
The app trades the code, with its codeVerifier, for authsvc's tokens at
POST /auth/oauth/token, which ends in the gate like every way in. Tokens
never travel in a URL. The work lives in oauthflows.py (the flow rows),
federation.py (the callback) and identities.py (who signs in).
"""

from flask import make_response, redirect, render_template

from authsvc import federation, gate, oauthflows, providers
from authsvc.extensions import db
from authsvc.limits import limit_oauth
from authsvc.models import User
from authsvc.oauthschemas import (
    AuthorizeQuerySchema,
    CallbackQuerySchema,
    CodeExchangeSchema,
    OAuthSignedInSchema,
    ProviderSchema,
    UrlSchema,
)
from authsvc.parsing import Blueprint
from authsvc.schemas import GATE_REFUSALS
from authsvc.telemetry import count_oauth

bp = Blueprint("oauth", __name__, url_prefix="/auth", description="Sign-in with other providers.")

LOCATION = {"description": "Where the browser goes next.", "schema": {"type": "string"}}


@bp.get("/providers")
@bp.response(200, ProviderSchema(many=True))
def list_providers():
    """Return the providers users may sign in with."""
    return [{"name": p.name, "display_name": p.display_name} for p in providers.enabled()]


@bp.get("/oauth/<provider:provider>/authorize")
@bp.response(302, description="To the provider.", headers={"Location": LOCATION})
@bp.alt_response(200, schema=UrlSchema, description="With Accept: application/json.")
@bp.alt_response(400, response="BAD_REQUEST")
@bp.alt_response(404, response="NOT_FOUND")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@bp.alt_response(503, response="SERVICE_UNAVAILABLE")
@oauthflows.known_provider
@bp.arguments(AuthorizeQuerySchema, location="query", as_kwargs=True)
@limit_oauth
def authorize(provider, redirect_to, code_challenge, code_challenge_method):
    """Send the browser to the provider to sign in; it comes back to redirectTo with a code."""
    url = oauthflows.start(provider, "signin", redirect_to, code_challenge)
    db.session.commit()
    return oauthflows.send_to_provider(url)


@bp.get("/oauth/<provider:provider>/callback")
@bp.response(
    302, description="Back to the app: redirectTo?code= or ?error=.", headers={"Location": LOCATION}
)
@bp.alt_response(
    400,
    schema={"type": "string"},
    content_type="text/html",
    description="An unknown, used or expired state: a page, and no redirect.",
)
@bp.alt_response(404, response="NOT_FOUND")
@oauthflows.known_provider
@bp.arguments(CallbackQuerySchema, location="query", as_kwargs=True)
def callback(provider, **params):
    """Take the browser back from the provider, and send it to the app with a code or an error."""
    flow = oauthflows.take_state(provider.name, params.get("state"))
    db.session.commit()
    if flow is None:
        # No account is concerned and anyone can send one: counted, not audited.
        count_oauth(provider.name, "invalid_state")
        return make_response(render_template("pages/oauth_error.html"), 400)
    answer = federation.complete(provider, flow, params)
    return redirect(oauthflows.answer_url(flow.redirect_to, **answer), 302)


@bp.post("/oauth/token")
@bp.arguments(CodeExchangeSchema)
@bp.response(200, OAuthSignedInSchema)
@bp.alt_response(400, response="BAD_REQUEST")
@bp.alt_response(403, **GATE_REFUSALS)
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
@limit_oauth
def token(body):
    """Trade a sign-in code and its verifier for a session (or the MFA step)."""
    flow = oauthflows.redeem(body["code"], body["code_verifier"], "signin")
    user = db.session.get(User, flow.user_id) if flow.user_id is not None else None
    if user is None:
        raise oauthflows.INVALID_GRANT
    _, signed_in = gate.admit(user, ["oauth"], "signin_oauth")
    count_oauth(flow.provider, "signin")
    db.session.commit()
    return {**signed_in, "is_new_user": flow.new_user}
