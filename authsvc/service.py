"""Blueprint "service": the probes an orchestrator polls."""

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from authsvc.errors import Problem
from authsvc.extensions import db
from authsvc.parsing import Blueprint
from authsvc.schemas import StatusSchema

bp = Blueprint("service", __name__, description="Health and readiness.")


@bp.get("/healthz")
@bp.response(200, StatusSchema)
def healthz():
    """Answer while the process serves."""
    return {"status": "ok"}


@bp.get("/readyz")
@bp.response(200, StatusSchema)
@bp.alt_response(503, response="SERVICE_UNAVAILABLE")
def readyz():
    """Answer 200 when the database answers, else 503."""
    try:
        db.session.execute(sa.text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        raise Problem(503, "database_unavailable", "The database does not answer.") from None
    return {"status": "ok"}
