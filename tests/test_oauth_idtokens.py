"""ID tokens a certified provider would never send, from tests/standins.py's HostileProvider.

Each one must send the browser back to the app with error=provider_error,
and make no account: `none` and HMAC signatures, a wrong iss, aud or nonce,
an expired token, a key the JWKS does not hold, a mixed-up RFC 9207 `iss`
parameter. A few well-formed variations (several audiences with azp, a
rotated key, an email only in userinfo) must still sign in.
"""

import time

import pytest
import sqlalchemy as sa
from joserfc.jwk import RSAKey
from oauthhelp import fixtures, round_trip, sign_in
from standins import CLIENT_ID

from authsvc.extensions import db
from authsvc.models import User

hostile, github, app = fixtures()
NEW_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-2", "use": "sig"})


def users(app):
    """Return the emails of every account."""
    with app.app_context():
        return db.session.scalars(sa.select(User.email)).all()


HOSTILE_TOKENS = {
    "alg none": {"alg": "none"},
    "HS256 keyed by the client secret": {"alg": "HS256"},
    "an alg the discovery does not list": {"alg": "PS256"},
    "a wrong iss": {"claims": {"iss": "https://accounts.example.com"}},
    "a wrong aud": {"claims": {"aud": "another-client"}},
    "several audiences, no azp": {"claims": {"aud": [CLIENT_ID, "another-client"]}},
    "several audiences, another azp": {
        "claims": {"aud": [CLIENT_ID, "another-client"], "azp": "another-client"}
    },
    "a wrong nonce": {"claims": {"nonce": "not-the-flows-nonce"}},
    "no nonce": {"claims": {"nonce": ""}},
    "expired": {"claims": {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}},
    "issued in the future": {"claims": {"iat": int(time.time()) + 3600}},
    "issued long ago": {"claims": {"iat": int(time.time()) - 3600}},
    "no sub": {"claims": {"sub": ""}},
    "no exp": {"claims": {"exp": ""}},
    "a key the JWKS does not hold": {"key": NEW_KEY},
    "a kid of another key": {"key": NEW_KEY, "header": {"kid": "rsa-1"}},
}


@pytest.mark.parametrize("attack", sorted(HOSTILE_TOKENS))
def test_a_hostile_id_token_is_a_provider_error(app, client, hostile, attack):
    """Every hostile ID token ends in error=provider_error, and nobody is made."""
    for attribute, value in HOSTILE_TOKENS[attack].items():
        if attribute == "claims":
            value = {k: v or None for k, v in value.items()}
        setattr(hostile, attribute, value)
    assert round_trip(client)[0] == {"error": "provider_error"}
    assert users(app) == []


def test_a_signature_over_other_claims_is_refused(app, client, hostile):
    """A token whose claims were changed after signing does not verify."""
    original = hostile.id_token

    def tampered():
        header, _, signature = original().split(".")
        other = hostile_with(hostile, sub="someone-else").split(".")[1]
        return f"{header}.{other}.{signature}"

    hostile.id_token = tampered
    assert round_trip(client)[0] == {"error": "provider_error"}
    assert users(app) == []


def hostile_with(hostile, **claims):
    """Return a validly signed ID token with other claims."""
    saved, hostile.claims = hostile.claims, claims
    try:
        return type(hostile).id_token(hostile)
    finally:
        hostile.claims = saved


@pytest.mark.parametrize("iss", ["https://accounts.example.com", None])
def test_a_mixed_up_iss_parameter_is_refused(client, hostile, iss):
    """RFC 9207: another issuer's iss, or none from a provider that promises it, is refused."""
    hostile.iss_parameter = iss
    assert round_trip(client)[0] == {"error": "provider_error"}
    assert not any(request[1] == "/token" for request in hostile.requests)


def test_no_iss_parameter_is_fine_from_a_provider_that_never_promised_one(database_url, hostile):
    """Without authorization_response_iss_parameter_supported, a callback without iss works."""
    from conftest import empty_database
    from oauthhelp import provider_settings

    from authsvc import create_app

    document = hostile.discovery({}, {}, {})[1]
    hostile.documents["discovery"] = {
        **document,
        "authorization_response_iss_parameter_supported": False,
    }
    hostile.iss_parameter = None
    quiet = create_app(provider_settings(database_url, hostile.url))
    assert sign_in(quiet.test_client()).status_code == 200
    empty_database(quiet)


def test_several_audiences_with_azp_sign_in(client, hostile):
    """aud [client, other] with azp = the client id is a valid ID token."""
    hostile.claims = {"aud": [CLIENT_ID, "another-client"], "azp": CLIENT_ID}
    assert sign_in(client).status_code == 200


def test_an_ec_signed_id_token_signs_in(client, hostile):
    """ES256 is as good as RS256 when the provider lists it."""
    from standins import EC_KEY

    hostile.alg, hostile.key = "ES256", EC_KEY
    assert sign_in(client).status_code == 200


def test_a_rotated_key_is_fetched_once_then_kept(client, hostile):
    """A kid the cached JWKS lacks makes authsvc fetch it again, once; then it is cached."""
    assert sign_in(client).status_code == 200
    hostile.key = NEW_KEY
    hostile.documents["jwks"] = {"keys": [NEW_KEY.as_dict(private=False)]}
    fetches = sum(request[1] == "/jwks" for request in hostile.requests)
    assert sign_in(client).status_code == 200
    assert sign_in(client).status_code == 200
    assert sum(request[1] == "/jwks" for request in hostile.requests) == fetches + 1


def test_an_unknown_kid_refetches_only_once(client, hostile):
    """A kid nobody holds costs one refetch of the JWKS per ID token, no more."""
    sign_in(client)
    hostile.key = NEW_KEY
    fetches = sum(request[1] == "/jwks" for request in hostile.requests)
    assert round_trip(client)[0] == {"error": "provider_error"}
    assert sum(request[1] == "/jwks" for request in hostile.requests) == fetches + 1


def test_an_email_only_in_userinfo_is_used(client, hostile):
    """An ID token without email sends authsvc to userinfo, whose sub must match."""
    hostile.email = None
    hostile.userinfo = {"sub": "subject-1", "email": "grace@example.com", "email_verified": True}
    response = sign_in(client)
    assert response.status_code == 200 and response.json["email"] == "grace@example.com"


def test_userinfo_of_another_subject_is_refused(app, client, hostile):
    """userinfo naming another sub than the ID token's is the provider's error."""
    hostile.email = None
    hostile.userinfo = {"sub": "subject-2", "email": "grace@example.com", "email_verified": True}
    assert round_trip(client)[0] == {"error": "provider_error"}
    assert users(app) == []


@pytest.mark.parametrize(
    "token",
    [{"token_type": "Bearer"}, {"access_token": "x", "token_type": "Bearer"}, {"error": "nope"}],
)
def test_a_token_answer_without_what_it_must_hold_is_refused(client, hostile, token):
    """No access token, no ID token, or an error: provider_error."""
    hostile.documents["token"] = token
    assert round_trip(client)[0] == {"error": "provider_error"}
