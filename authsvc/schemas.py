"""Request and response schemas: one declaration validates, serialises and documents."""

import base64
import binascii
import re

import marshmallow as ma
from email_validator import EmailNotValidError, validate_email
from flask_jwt_extended import get_current_user
from marshmallow import fields, validate

from authsvc.errors import PROBLEM_MIMETYPE, ProblemSchema

MAX_EMAIL_LENGTH = 254
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
CURSOR_PATTERN = re.compile(rb"u([0-9]{1,10})")
MAX_USER_ID = 2**31 - 1
USERS_PAGE_DEFAULT = 50
USERS_PAGE_MAX = 200


class BaseSchema(ma.Schema):
    """Refuse fields nobody asked for: a client cannot set role or id."""

    class Meta:
        unknown = ma.RAISE


class Email(fields.String):
    """An email address: trimmed, lower-cased, syntax checked without DNS."""

    def _deserialize(self, value, attr, data, **kwargs):
        """Normalise and check an address."""
        value = super()._deserialize(value, attr, data, **kwargs).strip().lower()
        if len(value) > MAX_EMAIL_LENGTH:
            raise ma.ValidationError(f"Must be at most {MAX_EMAIL_LENGTH} characters.")
        if not value.isascii():
            # Refusing non-ASCII addresses rules out look-alike accounts
            # (a Cyrillic "\u0430" in "admin@...").
            raise ma.ValidationError("Must contain only ASCII characters.")
        try:
            validate_email(value, check_deliverability=False)
        except EmailNotValidError as error:
            raise ma.ValidationError(str(error)) from None
        return value


class Password(fields.String):
    """A password of 8 to 128 code points, every one of them kept."""

    def __init__(self, **kwargs):
        super().__init__(load_only=True, validate=validate.Length(8, 128), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        """Refuse text that has no UTF-8 form (a lone surrogate from JSON)."""
        value = super()._deserialize(value, attr, data, **kwargs)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ma.ValidationError("Must be valid Unicode text.") from None
        return value


def format_timestamp(moment):
    """Write a stored UTC time as the API shows it: 2026-11-26T12:00:00Z."""
    return moment.strftime(TIMESTAMP_FORMAT)


class Timestamp(fields.DateTime):
    """A UTC time in whole seconds with a Z, documented as an OpenAPI date-time.

    A DateTime with a custom format string would serialise the same but be
    documented with `format: null`, which is not valid OpenAPI.
    """

    def _serialize(self, value, attr, obj, **kwargs):
        """Write a stored UTC time as 2026-11-26T12:00:00Z."""
        return None if value is None else format_timestamp(value)


def encode_cursor(user_id):
    """Return the cursor of the page that follows a user id."""
    return base64.urlsafe_b64encode(b"u%d" % user_id).decode().rstrip("=")


class Cursor(fields.String):
    """An opaque paging cursor: the last id of the previous page."""

    def _deserialize(self, value, attr, data, **kwargs):
        """Decode a cursor into the user id it names."""
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise ma.ValidationError("Not a valid cursor.") from None
        match = CURSOR_PATTERN.fullmatch(raw)
        if match is None or int(match[1]) > MAX_USER_ID:
            raise ma.ValidationError("Not a valid cursor.")
        return int(match[1])


class CredentialsSchema(BaseSchema):
    """An email and a password, as signup and signin take them."""

    email = Email(
        required=True,
        metadata={"example": "user@example.com", "format": "email", "maxLength": MAX_EMAIL_LENGTH},
    )
    password = Password(required=True, metadata={"example": "violet-kettle-orbit-42"})


class TokenPairSchema(BaseSchema):
    """An access token and the refresh token of the same session."""

    access_token = fields.String(data_key="accessToken", required=True)
    refresh_token = fields.String(data_key="refreshToken", required=True)


class SignedInSchema(TokenPairSchema):
    """A user and the tokens of the session just opened."""

    id = fields.Integer(required=True)
    email = fields.String(required=True)


class SignedUpSchema(BaseSchema):
    """A new user, and the tokens of its first session unless REQUIRE_VERIFIED_EMAIL=1."""

    id = fields.Integer(required=True)
    email = fields.String(required=True)
    access_token = fields.String(data_key="accessToken")
    refresh_token = fields.String(data_key="refreshToken")
    email_verified = fields.Boolean(
        data_key="emailVerified",
        metadata={"description": "Only with REQUIRE_VERIFIED_EMAIL=1, instead of tokens."},
    )


class UserSchema(BaseSchema):
    """A user as clients see it; admins also see whether it is disabled."""

    sub = fields.Integer(required=True)
    id = fields.Integer(required=True)
    email = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(("user", "admin")))
    created_at = Timestamp(data_key="createdAt", required=True)
    email_verified = fields.Boolean(data_key="emailVerified", required=True)
    mfa_enabled = fields.Boolean(
        data_key="mfaEnabled",
        required=True,
        metadata={"description": "Whether signin asks for a second factor (TOTP)."},
    )
    has_password = fields.Boolean(
        data_key="hasPassword",
        required=True,
        metadata={
            "description": "False for an account made through a provider, until it sets one."
        },
    )
    disabled = fields.Boolean(metadata={"description": "Shown to admins only."})


class MeSchema(UserSchema):
    """The caller, with the iat and exp of the access token presented."""

    iat = fields.Integer(required=True)
    exp = fields.Integer(required=True)


class PageSize(fields.Integer):
    """A positive integer in plain ASCII digits (not "+5", "1_000" or other scripts)."""

    def _deserialize(self, value, attr, data, **kwargs):
        """Refuse anything but digits, then read them as an integer."""
        if not (isinstance(value, str) and value.isascii() and value.isdigit()):
            raise ma.ValidationError("Must be a positive integer.")
        return super()._deserialize(value, attr, data, **kwargs)


class UserListQuerySchema(ma.Schema):
    """Keyset paging through users; unknown parameters are ignored."""

    class Meta:
        unknown = ma.EXCLUDE

    limit = PageSize(
        load_default=USERS_PAGE_DEFAULT,
        validate=validate.Range(min=1),
        metadata={
            "description": f"Page size; values above {USERS_PAGE_MAX} count as {USERS_PAGE_MAX}."
        },
    )
    cursor = Cursor(metadata={"description": "Opaque; from the Link rel=next header."})


class StatusSchema(BaseSchema):
    """The answer of a health or readiness probe."""

    status = fields.String(required=True)


class StrictBoolean(fields.Boolean):
    """A JSON true or false, and nothing that merely looks like one."""

    def _deserialize(self, value, attr, data, **kwargs):
        """Refuse anything but a real boolean."""
        if not isinstance(value, bool):
            raise ma.ValidationError("Not a valid boolean.")
        return value


class UserUpdateSchema(BaseSchema):
    """What an admin may change about a user."""

    role = fields.String(validate=validate.OneOf(("user", "admin")))
    disabled = StrictBoolean()
    email_verified = StrictBoolean(data_key="emailVerified")

    @ma.validates_schema
    def _not_empty(self, data, **kwargs):
        """Refuse a body that changes nothing."""
        if not data:
            raise ma.ValidationError(
                "Give role, disabled, emailVerified or some of them.", "_schema"
            )


class PasswordChangeSchema(BaseSchema):
    """The current password, and the one to replace it; an account with none sets its first."""

    current_password = Password(
        data_key="currentPassword",
        metadata={"description": "Required once the account has a password."},
    )
    new_password = Password(data_key="newPassword", required=True)

    @ma.validates_schema(skip_on_field_errors=False)
    def _current_password_if_any(self, data, **kwargs):
        """Require currentPassword of a caller who has a password (read with their token)."""
        if "current_password" not in data and get_current_user().has_password:
            raise ma.ValidationError("Missing data for required field.", "currentPassword")


class MailedToken(fields.String):
    """A token from a mail: opaque text of 1 to 256 characters."""

    def __init__(self, **kwargs):
        super().__init__(
            required=True,
            validate=validate.Length(1, 256),
            metadata={"description": "The token from the link in the mail."},
            **kwargs,
        )


class EmailSchema(BaseSchema):
    """The address a password reset is asked for."""

    email = Email(
        required=True,
        metadata={"example": "user@example.com", "format": "email", "maxLength": MAX_EMAIL_LENGTH},
    )


class ResetConfirmSchema(BaseSchema):
    """A reset token and the new password."""

    token = MailedToken()
    new_password = Password(data_key="newPassword", required=True)


class TokenSchema(BaseSchema):
    """A verification or email-change token."""

    token = MailedToken()


class EmailChangeSchema(BaseSchema):
    """The address to move to, and the current password."""

    new_email = Email(
        data_key="newEmail",
        required=True,
        metadata={"example": "new@example.com", "format": "email", "maxLength": MAX_EMAIL_LENGTH},
    )
    current_password = Password(data_key="currentPassword", required=True)


class SessionSchema(BaseSchema):
    """One open session of the caller: a signed-in device."""

    id = fields.String(required=True)
    created_at = Timestamp(data_key="createdAt", required=True)
    last_used_at = Timestamp(data_key="lastUsedAt", required=True)
    expires_at = Timestamp(data_key="expiresAt", required=True)
    ip = fields.String(required=True, allow_none=True)
    user_agent = fields.String(data_key="userAgent", required=True, allow_none=True)
    current = fields.Boolean(required=True)


class JWKSSchema(BaseSchema):
    """An RFC 7517 key set: the public keys that verify tokens."""

    keys = fields.List(fields.Dict(), required=True)


class CurrentPasswordSchema(BaseSchema):
    """The caller's current password, to confirm a sensitive change."""

    current_password = Password(data_key="currentPassword", required=True)


class SecondFactorCode(fields.String):
    """A second-factor code as typed; whether it is right is the view's to say."""

    def __init__(self, **kwargs):
        super().__init__(
            required=True,
            validate=validate.Length(1, 64),
            metadata={
                "example": "123456",
                "description": "A 6-digit TOTP code, or a recovery code (xxxx-xxxx-xxxx-xxxx) "
                "where the endpoint takes one; spaces, dashes and case do not matter.",
            },
            **kwargs,
        )


class CodeSchema(BaseSchema):
    """A second-factor code."""

    code = SecondFactorCode()


class MfaDisableSchema(CurrentPasswordSchema):
    """The current password and a TOTP or recovery code, to turn MFA off."""

    code = SecondFactorCode()


class MfaSigninSchema(BaseSchema):
    """The mfaToken of a signin that asked for a second factor, and the code."""

    mfa_token = fields.String(
        data_key="mfaToken",
        required=True,
        metadata={"description": "From the 403 mfa_required answer of POST /auth/signin."},
    )
    code = SecondFactorCode()


class EnrollmentSchema(BaseSchema):
    """A pending TOTP secret, shown this once: for an authenticator app, typed or scanned."""

    secret = fields.String(required=True, metadata={"description": "Base32, RFC 6238."})
    otpauth_uri = fields.String(
        data_key="otpauthUri",
        required=True,
        metadata={"description": "otpauth://totp/... for a QR code."},
    )


class RecoveryCodesSchema(BaseSchema):
    """Ten single-use recovery codes, shown this once."""

    recovery_codes = fields.List(
        fields.String(metadata={"example": "abcd-efgh-ijkl-mnop"}),
        data_key="recoveryCodes",
        required=True,
    )


class MfaRequiredSchema(ProblemSchema):
    """A problem; `mfa_required` carries the mfaToken for POST /auth/signin/mfa."""

    mfa_token = fields.String(
        data_key="mfaToken",
        metadata={"description": "With code mfa_required only: send it with the code."},
    )


# The 403 of a sign-in path that ends in the gate: @bp.alt_response(403, **GATE_REFUSALS).
GATE_REFUSALS = {
    "schema": MfaRequiredSchema,
    "content_type": PROBLEM_MIMETYPE,
    "description": "account_disabled, email_not_verified; or mfa_required, with the mfaToken "
    "for /auth/signin/mfa",
}
