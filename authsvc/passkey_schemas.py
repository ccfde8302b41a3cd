"""The passkeys' request and response schemas.

What the browser produces (`credential`) is checked by the ceremony, not
here: these schemas only hold a body to its shape, so that a `credential`
that is an object of any content reaches the ceremony, whose refusal is the
endpoint's own (401 at sign-in, 400 at registration).
"""

import marshmallow as ma
from marshmallow import fields, validate

from authsvc.passkeys import DEFAULT_NAME
from authsvc.schemas import BaseSchema, Timestamp

CREDENTIAL = {
    "description": "The browser's PublicKeyCredential as JSON: what its toJSON() returns.",
}
CHALLENGE_ID = {"description": "From the options this credential answers."}


class PasskeyName(fields.String):
    """A passkey's name: 1 to 64 printable characters, surrounding spaces dropped."""

    def __init__(self, **kwargs):
        super().__init__(
            validate=validate.Length(1, 64), metadata={"example": "Work laptop"}, **kwargs
        )

    def _deserialize(self, value, attr, data, **kwargs):
        """Trim a name and refuse control characters (it goes into mails)."""
        value = super()._deserialize(value, attr, data, **kwargs).strip()
        if not value.isprintable():
            raise ma.ValidationError("Must contain only printable characters.")
        return value


class NoBodySchema(BaseSchema):
    """No body at all, or an empty JSON object."""


class OptionsSchema(BaseSchema):
    """A ceremony's challenge and its options for navigator.credentials."""

    challenge_id = fields.String(data_key="challengeId", required=True, metadata=CHALLENGE_ID)
    public_key = fields.Dict(
        data_key="publicKey",
        required=True,
        metadata={
            "description": "PublicKeyCredentialCreationOptions or ...RequestOptions as JSON, "
            "binary fields in base64url (for PublicKeyCredential.parse...OptionsFromJSON)."
        },
    )


class PasskeyRegistrationSchema(BaseSchema):
    """The browser's new credential, the challenge it answers, and a name for it."""

    challenge_id = fields.String(data_key="challengeId", required=True, metadata=CHALLENGE_ID)
    credential = fields.Dict(required=True, metadata=CREDENTIAL)
    name = PasskeyName(load_default=DEFAULT_NAME)


class PasskeyRenameSchema(BaseSchema):
    """A passkey's new name."""

    name = PasskeyName(required=True)


class PasskeySigninSchema(BaseSchema):
    """The browser's assertion, and the sign-in challenge it answers."""

    challenge_id = fields.String(data_key="challengeId", required=True, metadata=CHALLENGE_ID)
    credential = fields.Dict(required=True, metadata=CREDENTIAL)


class PasskeySchema(BaseSchema):
    """One of a user's passkeys."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    created_at = Timestamp(data_key="createdAt", required=True)
    last_used_at = Timestamp(
        data_key="lastUsedAt",
        required=True,
        allow_none=True,
        metadata={"description": "The last sign-in with it; null until then."},
    )
    backed_up = fields.Boolean(
        data_key="backedUp",
        required=True,
        metadata={"description": "Whether its authenticator syncs it (a backed-up passkey)."},
    )
