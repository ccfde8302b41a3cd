"""Checks when the service or a CLI command starts: the database exists, no setting is misspelt.

A setting that does not parse stops start-up in config.py. Two mistakes
only show once the environment is seen as a whole, or the database is
asked: a DATABASE_URL naming a database that does not exist stops start-up
(and every CLI command) with one line, never a traceback; an environment
variable one edit away from a setting's name (DATABSE_URL) is named, with
the setting it resembles, in one warning line, since the service would
otherwise quietly run on a default.
"""

import sys

import sqlalchemy as sa

import config
from authsvc.extensions import db

SQLITE_CANTOPEN = 14


def settings_named(environ):
    """Return every setting name for this environment: config.SETTINGS and its providers' own."""
    providers = {name.strip().upper() for name in environ.get("OAUTH_PROVIDERS", "").split(",")}
    providers = (providers | {preset.upper() for preset in config.PROVIDER_PRESETS}) - {""}
    per_provider = {
        f"OAUTH_{provider}_{suffix}"
        for provider in providers
        for suffix in config.PROVIDER_SETTINGS
    }
    return config.SETTINGS | per_provider


def one_edit_apart(first, second):
    """Tell whether two different names are one edit apart.

    An edit is a letter added, dropped or changed, or two adjacent letters swapped.
    """
    if first == second or abs(len(first) - len(second)) > 1:
        return False
    if len(first) == len(second):
        differ = [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
        if len(differ) == 1:
            return True
        i = differ[0]
        return differ == [i, i + 1] and first[i] == second[i + 1] and first[i + 1] == second[i]
    shorter, longer = sorted((first, second), key=len)
    i = next((i for i, (a, b) in enumerate(zip(shorter, longer[:-1], strict=True)) if a != b), -1)
    return i == -1 or shorter[i:] == longer[i + 1 :]


def near_misses(environ):
    """Return (variable, setting) for each variable that is no setting but one edit from one."""
    names = settings_named(environ)
    found = []
    for variable in sorted(environ):
        if variable in names:
            continue
        resembled = sorted(name for name in names if one_edit_apart(variable, name))
        if resembled:
            found.append((variable, resembled[0]))
    return found


def warn_of_near_misses(environ):
    """Write one warning line to stderr for each variable that looks like a misspelt setting."""
    for variable, setting in near_misses(environ):
        print(
            f"authsvc: warning: {variable} is set but is no setting; did you mean {setting}?",
            file=sys.stderr,
        )


def _missing(url, error):
    """Tell whether a connection error says that the database itself does not exist."""
    if url.get_backend_name() == "sqlite":
        return getattr(error.orig, "sqlite_errorcode", None) == SQLITE_CANTOPEN
    return f'database "{url.database}" does not exist' in str(error.orig)


def check_database(app):
    """Stop with one line naming DATABASE_URL if the database it names does not exist.

    A server that does not answer is no reason to stop: the service starts,
    answers 503 and recovers by itself once the server is back.
    """
    url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    with app.app_context():
        try:
            with db.engine.connect():
                pass
        except sa.exc.OperationalError as error:
            if not _missing(url, error):
                return
            if url.get_backend_name() == "sqlite":
                raise config.ConfigError(
                    f"DATABASE_URL names the SQLite file {url.database}, which cannot be "
                    "opened: does its folder exist?"
                ) from None
            where = f"{url.host}:{url.port or 5432}"
            raise config.ConfigError(
                f'DATABASE_URL names the database "{url.database}" on {where}, which does not '
                f"exist: create it (createdb {url.database}) or fix DATABASE_URL"
            ) from None
        finally:
            db.engine.dispose()
