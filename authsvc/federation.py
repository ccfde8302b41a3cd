"""A provider's callback, past its state: check the answer, learn who it is, give the app a code.

The state was used up already (oauthflows.take_state) and committed; from
here every failure sends the browser back to the app with an error, after
an audit event and a count in /metrics:

- an RFC 9207 `iss` parameter other than the issuer, or none from a provider
  whose metadata says it sends one: provider_error (a mix-up);
- `error=access_denied` from the provider: access_denied; any other error
  it sends, a code its token endpoint refuses, an ID token that fails any
  check, or an answer that is not what it must be: provider_error;
- a provider that cannot be reached (or answers 5xx): provider_unavailable;
- the rules of identities.py: account_exists, account_disabled, email_missing.

A failure creates no user and links nothing. A sign-in flow that succeeds
ends with its user decided (identities.admit) and a code bound to that
user; a link flow, with a code that carries the provider's identity to
POST /users/me/identities, where the caller's bearer decides.
"""

import logging

from sqlalchemy.exc import IntegrityError

from authsvc import github, identities, oidc, providerhttp
from authsvc.extensions import db
from authsvc.identities import Refused
from authsvc.oauthflows import issue_code, pkce_verifier, refuse
from authsvc.providerhttp import ProviderRefused, ProviderUnavailable

log = logging.getLogger(__name__)


def _check_issuer(state, iss):
    """Refuse an RFC 9207 `iss` that is not the provider's issuer, or one missing when promised."""
    provider = state.provider
    if provider.kind != "oidc":
        return
    promised = providerhttp.metadata(state).get("authorization_response_iss_parameter_supported")
    if (iss is None and promised is True) or (iss is not None and iss != provider.issuer):
        raise ProviderRefused("the iss parameter is not the provider's issuer")


def _identity(state, flow, params):
    """Return who the provider's answer says the user is, or raise why not."""
    _check_issuer(state, params.get("iss"))
    if params.get("error") == "access_denied":
        raise Refused("access_denied")
    if params.get("error") or not params.get("code"):
        raise ProviderRefused(f"the provider answered error={params.get('error')!r}")
    token = providerhttp.exchange_code(state, params["code"], pkce_verifier(params["state"]))
    if state.provider.kind == "github":
        return github.identity(state, token)
    return oidc.identity(state, token, flow.nonce_digest)


def _decide(flow, provider, found):
    """Apply the rules to a provider's user and issue the app's code; commit; return the code."""
    if flow.purpose == "link":
        email = identities.usable_email(found.email)
        code = issue_code(flow, flow.user_id, subject=found.subject, email=email)
        db.session.commit()
        return code
    for attempt in range(2):
        try:
            user, new_user = identities.admit(provider, found)
            code = issue_code(flow, user.id, new_user=new_user)
            db.session.commit()
            return code
        except IntegrityError:
            # Another first sign-in of this user committed meanwhile: now rule 1 applies.
            db.session.rollback()
            if attempt:
                raise
    raise AssertionError("unreachable")


def complete(state, flow, params):
    """Finish a callback whose state was good; return the app's answer: {code} or {error}."""
    provider = state.provider
    try:
        try:
            found = _identity(state, flow, params)
        except ProviderUnavailable as error:
            log.warning("provider %s is unavailable: %s", provider.name, error)
            raise Refused("provider_unavailable") from None
        except ProviderRefused as error:
            log.warning("provider %s: %s", provider.name, error)
            raise Refused("provider_error") from None
        return {"code": _decide(flow, provider, found)}
    except Refused as refusal:
        db.session.rollback()
        refuse(provider.name, refusal.code, refusal.user_id or flow.user_id)
        db.session.commit()
        return {"error": refusal.code}
