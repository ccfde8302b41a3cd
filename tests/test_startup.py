"""Start-up as a newcomer meets it: DATABASE_URL as hosts write it, one line, near-miss names.

The CLI and gunicorn run as subprocesses: what a newcomer sees is their
stderr, whose lines are counted.
"""

import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa
from conftest import POSTGRES_URL, postgres_database
from live import ROOT, flask_cli, free_port, migrated, service_environment

import config


def stderr_lines(result):
    """Return the non-empty lines a finished process wrote to stderr."""
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_postgres_urls_as_hosts_write_them_mean_psycopg(scheme):
    """postgres:// and postgresql:// mean postgresql+psycopg://, query and password kept."""
    url = f"{scheme}://u:p%40ss@db.example:5433/authsvc?sslmode=require"
    parsed = sa.make_url(config.from_environment({"DATABASE_URL": url})["SQLALCHEMY_DATABASE_URI"])
    assert parsed.drivername == "postgresql+psycopg"
    assert (parsed.password, parsed.port, parsed.query) == ("p@ss", 5433, {"sslmode": "require"})


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_db_upgrade_takes_a_postgres_url(tmp_path, scheme):
    """`flask db upgrade` with DATABASE_URL=postgres://... migrates the database."""
    databases = postgres_database()
    url = sa.make_url(next(databases)).set(drivername=scheme)
    env = service_environment(tmp_path, DATABASE_URL=url.render_as_string(hide_password=False))
    try:
        assert flask_cli(env, "db", "upgrade").returncode == 0
        assert flask_cli(env, "users", "list").returncode == 0
    finally:
        next(databases, None)


@pytest.mark.parametrize(
    "url", ["mysql://u@db.example/authsvc", "authsvc.db", "sqlite+nosuch:///x"]
)
def test_an_unknown_database_url_is_one_line_naming_it(tmp_path, url):
    """A DATABASE_URL of another scheme stops the CLI with one line naming DATABASE_URL."""
    result = flask_cli(service_environment(tmp_path, DATABASE_URL=url), "db", "upgrade")
    assert result.returncode != 0
    (line,) = stderr_lines(result)
    assert "DATABASE_URL" in line and "Traceback" not in result.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("command", [("db", "upgrade"), ("users", "list"), ("keys", "list")])
def test_a_database_that_does_not_exist_is_one_line(tmp_path, command):
    """Every CLI command, `db upgrade` first, says in one line which database is missing."""
    name = f"authsvc_missing_{uuid.uuid4().hex[:8]}"
    url = sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    result = flask_cli(service_environment(tmp_path, DATABASE_URL=url), *command)
    assert result.returncode != 0
    (line,) = stderr_lines(result)
    assert "DATABASE_URL" in line and f'"{name}"' in line and "does not exist" in line


def test_a_sqlite_file_in_a_missing_folder_is_one_line(tmp_path):
    """A SQLite path whose folder does not exist is one line too."""
    url = f"sqlite:///{tmp_path / 'no-such-folder' / 'authsvc.db'}"
    result = flask_cli(service_environment(tmp_path, DATABASE_URL=url), "db", "upgrade")
    assert result.returncode != 0
    (line,) = stderr_lines(result)
    assert "DATABASE_URL" in line and "no-such-folder" in line


@pytest.mark.postgres
def test_gunicorn_stops_on_a_missing_database_with_one_line(tmp_path):
    """gunicorn does not start on a database that does not exist, and says so once."""
    url = sa.make_url(POSTGRES_URL).set(database=f"authsvc_missing_{uuid.uuid4().hex[:8]}")
    env = service_environment(tmp_path, DATABASE_URL=url.render_as_string(hide_password=False))
    process = subprocess.run(
        [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode != 0 and "Traceback" not in process.stderr
    assert len([line for line in stderr_lines(process) if "DATABASE_URL" in line]) == 1


def test_a_misspelt_setting_is_named_in_one_warning_line(tmp_path):
    """DATABSE_URL set: a CLI command warns once, naming it and DATABASE_URL, and runs."""
    env = service_environment(tmp_path)
    migrated(env)
    result = flask_cli({**env, "DATABSE_URL": "postgres://elsewhere/authsvc"}, "users", "list")
    assert result.returncode == 0
    (line,) = stderr_lines(result)
    assert "warning" in line and "DATABSE_URL" in line and "DATABASE_URL" in line
