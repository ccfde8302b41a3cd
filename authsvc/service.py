"""Blueprint "service": the probes an orchestrator polls."""

import sqlalchemy as sa
from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST

from authsvc import keys
from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.outages import RETRY_AFTER_SECONDS, log_unavailable
from authsvc.parsing import Blueprint
from authsvc.schemas import JWKSSchema, StatusSchema
from authsvc.telemetry import metrics_exposition

bp = Blueprint("service", __name__, description="Probes, public keys and metrics.")


@bp.get("/healthz")
@bp.response(200, StatusSchema)
def healthz():
    """Answer while the process serves."""
    return {"status": "ok"}


@bp.get("/readyz")
@bp.response(200, StatusSchema)
@bp.alt_response(503, response="SERVICE_UNAVAILABLE")
def readyz():
    """Answer 200 when the database answers and, as far as it says, takes writes; else 503.

    PostgreSQL says whether it is read-only (default_transaction_read_only,
    a standby); SQLite cannot tell a full disk or a read-only file without
    writing, so there only the answer counts. A database that does not
    answer is the 503 of outages.database_unavailable.
    """
    if db.session.get_bind().dialect.name != "postgresql":
        db.session.execute(sa.text("SELECT 1"))
    elif db.session.scalar(sa.text("SELECT current_setting('transaction_read_only')")) == "on":
        log_unavailable("the database is read-only")
        raise Problem(
            503,
            "database_unavailable",
            "The database is read-only.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return {"status": "ok"}


@bp.get("/.well-known/jwks.json")
@bp.response(200, JWKSSchema)
def jwks():
    """Return the public keys that verify authsvc's tokens (empty under HS256)."""
    return keys.jwks()


@bp.get("/metrics")
@bp.doc(
    responses={
        "200": {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
)
def metrics():
    """Return request counts, latencies and auth events in the Prometheus text format."""
    # content_type, not mimetype: Werkzeug would add a second charset.
    return Response(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
