"""Schemas of sign-in with providers: the round trip's parameters, codes and identities."""

import marshmallow as ma
from marshmallow import fields, validate

from authsvc.schemas import BaseSchema, SignedInSchema, Timestamp

# RFC 7636: an S256 challenge is 43 base64url characters; a verifier 43 to 128 unreserved ones.
CODE_CHALLENGE = r"^[A-Za-z0-9_-]{43}$"
CODE_VERIFIER = r"^[A-Za-z0-9._~-]{43,128}$"
MAX_URL = 2048


class ProviderSchema(BaseSchema):
    """A provider users may sign in with."""

    name = fields.String(required=True, metadata={"example": "google"})
    display_name = fields.String(data_key="displayName", required=True)


class UrlSchema(BaseSchema):
    """The provider's authorization URL, for a client that sends the browser there itself."""

    url = fields.String(required=True)


def _flow_fields():
    """Return the fields an app sends to start a round trip: where to return, and its PKCE."""
    return {
        "redirect_to": fields.String(
            data_key="redirectTo",
            required=True,
            validate=validate.Length(1, MAX_URL),
            metadata={"description": "One of OAUTH_REDIRECT_URLS (its query string may differ)."},
        ),
        "code_challenge": fields.String(
            data_key="codeChallenge",
            required=True,
            validate=validate.Regexp(CODE_CHALLENGE),
            metadata={"description": "BASE64URL(SHA-256(codeVerifier)), RFC 7636."},
        ),
        "code_challenge_method": fields.String(
            data_key="codeChallengeMethod", required=True, validate=validate.OneOf(["S256"])
        ),
    }


class AuthorizeQuerySchema(ma.Schema.from_dict(_flow_fields())):
    """Where a sign-in comes back to and the app's PKCE challenge; other parameters are ignored."""

    class Meta:
        unknown = ma.EXCLUDE


class LinkStartSchema(BaseSchema.from_dict(_flow_fields())):
    """Where a link comes back to, and the app's PKCE challenge."""


class CallbackQuerySchema(ma.Schema):
    """What a provider sends back (RFC 6749, RFC 9207); anything else is ignored."""

    class Meta:
        unknown = ma.EXCLUDE

    state = fields.String()
    code = fields.String()
    error = fields.String()
    error_description = fields.String()
    iss = fields.String()


class CodeExchangeSchema(BaseSchema):
    """The one-time code from the app's redirect, and the verifier of its codeChallenge."""

    code = fields.String(required=True, validate=validate.Length(1, 256))
    code_verifier = fields.String(
        data_key="codeVerifier", required=True, validate=validate.Regexp(CODE_VERIFIER)
    )


class OAuthSignedInSchema(SignedInSchema):
    """A user signed in through a provider, and whether the account was made just now."""

    is_new_user = fields.Boolean(data_key="isNewUser", required=True)


class IdentitySchema(BaseSchema):
    """An account at a provider linked to a user."""

    id = fields.Integer(required=True)
    provider = fields.String(required=True)
    email = fields.String(required=True, allow_none=True)
    created_at = Timestamp(data_key="createdAt", required=True)
    last_used_at = Timestamp(data_key="lastUsedAt", required=True, allow_none=True)
