"""Who may act on which account: the checks views of several blueprints share.

An admin is one now, not when the token was issued (the role comes from the
row the revocation check read). A user id that names nobody, or that no
caller may see, is 404. Adding a way in or a second factor (TOTP, a passkey,
a provider's identity) needs an address its owner proved: an account whose
address was never verified may be someone's pre-registration of another
person's address, and must hold nothing a password reset would not end.
"""

from flask_jwt_extended import get_current_user

from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.models import User
from authsvc.schemas import MAX_USER_ID

NO_SUCH_USER = Problem(404, "not_found", "There is no such user.")
EMAIL_NOT_VERIFIED = Problem(
    403,
    "email_not_verified",
    "Verify your email address first: follow the link mailed to it, or ask for a new one.",
)


def caller_is_admin():
    """Tell whether the caller is an admin now (not when the token was issued)."""
    return get_current_user().role == "admin"


def require_admin():
    """Refuse the request unless the caller is an admin."""
    if not caller_is_admin():
        raise Problem(403, "forbidden", "Only admins may do this.")


def user_or_404(user_id):
    """Return the user with an id, or answer 404."""
    user = db.session.get(User, user_id) if user_id <= MAX_USER_ID else None
    if user is None:
        raise NO_SUCH_USER
    return user


def require_verified_address(user=None):
    """Refuse (403 email_not_verified) to add a way in to an account whose address is unproven."""
    if not (user or get_current_user()).email_verified:
        raise EMAIL_NOT_VERIFIED
