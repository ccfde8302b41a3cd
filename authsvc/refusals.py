"""The answer to a request a limit refused: 429 with Retry-After, counted, audited once.

A refusal costs the database nothing: it is counted in /metrics
(`authsvc_rate_limited_total` by the limit's name), and only the first
refusal of a key in each window of a limit writes an audit row, the one
`rate_limited` event of that breach. A marker in the limits' own storage
(memory, or Redis shared by every instance), kept for the window's length,
tells the first refusal from the others.
"""

from flask import current_app, g
from sqlalchemy.exc import SQLAlchemyError

from authsvc import audit
from authsvc.errors import problem
from authsvc.extensions import db
from authsvc.outages import describe, in_trouble, log_unavailable, roll_back
from authsvc.telemetry import count_refusal


class LimitReached(Exception):
    """A request found no free slot in a limit: it is answered 429 and never checked."""

    def __init__(self, name, item, identifiers):
        """Remember the limit (its name and rate item) and the key it was full for."""
        super().__init__(name)
        self.name, self.item, self.identifiers = name, item, identifiers


def _first_refusal_in_window(refusal):
    """Tell whether this refusal is the first of its key in this window of the full limit item.

    The marker lives in the limit's storage as long as the window; of two
    refusals racing to set it, one sees 1. Reading it first spares the
    others a write (and memory storage the timer thread each write wakes).
    """
    marker = f"breach/{refusal.item.key_for(*refusal.identifiers)}"
    return current_app.extensions["authsvc-slots"].first_mark(marker, refusal.item.get_expiry())


def _audit_breach():
    """Write the breach's one audit row; a database in trouble loses the row, never the 429."""
    caller = g.get("session_row")
    roll_back()
    try:
        if caller is None:
            audit.record("rate_limited")
        else:
            audit.record("rate_limited", caller.id, caller.session_id)
        db.session.commit()
    except SQLAlchemyError as error:
        if not in_trouble(error):
            raise
        roll_back()
        log_unavailable(describe(error))


def rate_limited(refusal):
    """Answer a full limit with 429 and Retry-After; count it, and audit the breach once."""
    g.limit_refused = True
    count_refusal(refusal.name)
    if _first_refusal_in_window(refusal):
        _audit_breach()
    retry_after = current_app.extensions["authsvc-slots"].seconds_until_free(
        refusal.item, *refusal.identifiers
    )
    return problem(
        429,
        "rate_limited",
        "Too many requests; try again after the time in Retry-After.",
        {"Retry-After": str(retry_after)},
    )
