"""authsvc: an email-and-password authentication service."""

import os
import sqlite3

import sqlalchemy as sa
from flask import Flask

import config
from authsvc import mail_settings, relying_party, startup
from authsvc.commands import register_commands
from authsvc.errors import ProblemApi, register_errorhandlers
from authsvc.extensions import db, jwt
from authsvc.hooks import register_hooks
from authsvc.limits import register_rate_limits
from authsvc.outages import engine_options, register_outages
from authsvc.providers import ProviderName, configure_providers
from authsvc.telemetry import register_telemetry


def create_app(overrides=None, with_cli=True):
    """Create an authsvc app from the environment, then `overrides`.

    The app gunicorn serves (wsgi.py) is made without its CLI: the `flask`
    commands, and Alembic behind `flask db`, stay out of the workers' memory.
    Made from the environment alone, as gunicorn and the `flask` CLI make it,
    it also warns of misspelt settings and stops if its database does not exist.
    """
    starting = overrides is None
    if starting:
        startup.warn_of_near_misses(os.environ)
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    app.config.update(config.FIXED)
    app.config.update(config.from_environment())
    app.config.update(overrides or {})
    app.json.sort_keys = False
    configure_secrets(app)
    configure_mail(app)
    configure_passkeys(app)
    configure_providers(app)
    configure_database(app)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_telemetry(app)
    register_hooks(app)
    if with_cli:
        register_commands(app)
    if starting:
        startup.check_database(app)
    return app


def configure_secrets(app):
    """Refuse weak production secrets; give development a stable random one."""
    config.check_secret(app.config)
    if not app.config["JWT_SECRET_KEY"]:
        app.config["JWT_SECRET_KEY"] = config.development_secret(app.instance_path)
    app.config.setdefault("SECRET_KEY", app.config["JWT_SECRET_KEY"])


def configure_mail(app):
    """Parse MAIL_URL and the link templates; production refuses console:// and no MAIL_URL."""
    from authsvc import relay  # noqa: F401 (its commit hook registers on import)
    from authsvc.mail import configure_mail_log

    app.config["MAIL_SERVER"] = mail_settings.check_mail(app.config)
    configure_mail_log()


def configure_passkeys(app):
    """Settle the passkeys' relying party and origins; refuse an id that fits no origin."""
    relying_party.check_webauthn(app.config)


def configure_database(app):
    """Default to a SQLite file in the instance folder; bound its waits by DATABASE_TIMEOUT."""
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        os.makedirs(app.instance_path, exist_ok=True)
        path = os.path.join(app.instance_path, "authsvc.db")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
    options = engine_options(app.config["SQLALCHEMY_DATABASE_URI"], app.config["DATABASE_TIMEOUT"])
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        **options,
        **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
    }


@sa.event.listens_for(sa.engine.Engine, "connect")
def _tune_sqlite(dbapi_connection, connection_record):
    """Let SQLite enforce foreign keys and serve concurrent workers (WAL).

    Its busy timeout is sqlite3's `timeout`, from DATABASE_TIMEOUT.
    """
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def register_extensions(app):
    """Bind the extensions to the app, with authsvc's flask-jwt-extended callbacks."""
    from authsvc import bearer, keys, revocation  # noqa: F401 (their loaders register on import)

    db.init_app(app)
    register_outages(app)
    jwt.init_app(app)
    register_rate_limits(app)


def register_blueprints(app):
    """Register the API's blueprints, documented in one spec, /docs and the two HTML pages."""
    from authsvc import (
        auth,
        docs,
        introspection,
        linking,
        mfa,
        oauth,
        pages,
        passkeys_api,
        recovery,
        service,
        users,
    )

    # flask-smorest keeps one app's spec on its Api object, so each app gets
    # its own rather than sharing a module-level instance.
    api = ProblemApi(app)
    app.url_map.converters["provider"] = ProviderName
    api.register_converter(ProviderName, lambda converter: ProviderName.openapi)
    modules = (auth, mfa, users, recovery, oauth, linking, passkeys_api, introspection, service)
    for module in modules:
        api.register_blueprint(module.bp)
    # Plain Flask: /docs and the pages are not API, so they stay out of the OpenAPI document.
    app.register_blueprint(docs.bp)
    app.register_blueprint(pages.bp)
