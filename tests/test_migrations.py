"""The committed migrations build exactly the schema the models describe."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import postgres_database, settings
from flask_migrate import upgrade

from authsvc import audit, create_app
from authsvc.extensions import db
from authsvc.models import AuthEvent


def test_migrations_match_the_models(app):
    """After `db upgrade`, autogenerate finds nothing left to migrate."""
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request, tmp_path):
    """Yield the URL of an empty database of each kind, with no schema at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'authsvc.db'}"
    else:
        yield from postgres_database()


def test_audit_source_migration_keeps_earlier_events(empty_database_url):
    """Events stored before the audit source existed come out as API events, and new ones add."""
    app = create_app(settings(empty_database_url))
    with app.app_context():
        upgrade(revision="a483ecb9716d")
        db.session.execute(
            sa.text(
                "INSERT INTO auth_events (created_at, event, user_id, request_id)"
                " VALUES (CURRENT_TIMESTAMP, 'signup', 7, 'req-1')"
            )
        )
        db.session.commit()
        upgrade()
        audit.record("user_created", 8)
        db.session.commit()
        rows = db.session.scalars(sa.select(AuthEvent).order_by(AuthEvent.id)).all()
        assert [(row.event, row.user_id, row.source) for row in rows] == [
            ("signup", 7, "api"),
            ("user_created", 8, "cli"),
        ]
        db.session.remove()
        db.engine.dispose()
