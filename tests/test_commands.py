"""The `users` CLI group."""

import sqlalchemy as sa
from conftest import PASSWORD

from authsvc.extensions import db
from authsvc.models import User
from authsvc.passwords import verify_password


def stored_user(app, email):
    """Return the user with an email, or None."""
    with app.app_context():
        return db.session.scalar(sa.select(User).where(User.email == email))


def test_create_user_reads_password_from_stdin(runner, app):
    """--password-stdin reads one line and creates a plain user."""
    result = runner.invoke(
        args=["users", "create", "Cli@Example.com", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    user = stored_user(app, "cli@example.com")
    assert user.role == "user" and verify_password(PASSWORD, user.password_hash)
    assert PASSWORD not in result.output


def test_create_admin(runner, app):
    """--admin gives the admin role."""
    result = runner.invoke(
        args=["users", "create", "boss@example.com", "--admin", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert stored_user(app, "boss@example.com").role == "admin"


def test_create_user_prompts_twice(runner, app):
    """Without --password-stdin the password is asked for twice."""
    result = runner.invoke(
        args=["users", "create", "asked@example.com"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert "Password:" in result.output and "Repeat for confirmation:" in result.output
    assert stored_user(app, "asked@example.com") is not None


def test_create_user_refuses_mismatched_prompts(runner, app):
    """Two different answers are asked again, and nothing is created on EOF."""
    result = runner.invoke(
        args=["users", "create", "asked@example.com"], input=f"{PASSWORD}\nsomething-else-1\n"
    )
    assert result.exit_code != 0
    assert stored_user(app, "asked@example.com") is None


def test_create_user_validates_like_the_api(runner, app):
    """A bad email or short password fails with a message and exit code 1."""
    result = runner.invoke(
        args=["users", "create", "not-an-email", "--password-stdin"], input="short\n"
    )
    assert result.exit_code == 1
    assert "email" in result.output and "password" in result.output


def test_create_user_refuses_duplicate(runner, auth):
    """An email already registered is refused."""
    auth.create_user("taken@example.com")
    result = runner.invoke(
        args=["users", "create", "TAKEN@example.com", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 1 and "already exists" in result.output
