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


def test_users_list_prints_every_user(runner, auth):
    """`users list` prints one line per user with role and state."""
    auth.create_user("a@example.com")
    auth.create_user("b@example.com", role="admin", disabled=True)
    lines = runner.invoke(args=["users", "list"]).output.splitlines()
    assert len(lines) == 2
    assert "a@example.com\tuser\tactive" in lines[0]
    assert "b@example.com\tadmin\tdisabled" in lines[1]


def test_set_role_promotes_and_demotes(runner, auth, app):
    """`users set-role` changes the role; the last admin cannot be demoted."""
    auth.create_user("a@example.com")
    assert runner.invoke(args=["users", "set-role", "a@example.com", "admin"]).exit_code == 0
    assert stored_user(app, "a@example.com").role == "admin"
    refused = runner.invoke(args=["users", "set-role", "a@example.com", "user"])
    assert refused.exit_code == 1 and "last admin" in refused.output
    assert runner.invoke(args=["users", "set-role", "a@example.com", "root"]).exit_code == 2


def test_disable_and_enable(runner, auth, client, app):
    """`users disable` locks a user out and closes their sessions; `enable` lets them back."""
    tokens = auth.signup("d@example.com")
    assert runner.invoke(args=["users", "disable", "d@example.com"]).exit_code == 0
    assert stored_user(app, "d@example.com").disabled
    assert (
        client.get(
            "/users/me", headers={"Authorization": f"Bearer {tokens['accessToken']}"}
        ).status_code
        == 401
    )
    assert runner.invoke(args=["users", "enable", "D@example.com"]).exit_code == 0
    assert auth.signin("d@example.com")["accessToken"]


def test_delete_asks_and_removes(runner, auth, app):
    """`users delete` confirms, then removes the user; unknown emails fail."""
    auth.create_user("gone@example.com")
    assert runner.invoke(args=["users", "delete", "gone@example.com"], input="n\n").exit_code == 1
    assert stored_user(app, "gone@example.com") is not None
    assert runner.invoke(args=["users", "delete", "gone@example.com", "--yes"]).exit_code == 0
    assert stored_user(app, "gone@example.com") is None
    assert runner.invoke(args=["users", "delete", "gone@example.com", "--yes"]).exit_code == 1


def test_sessions_purge_removes_only_long_ended_sessions(runner, auth, app, client):
    """`sessions purge` deletes sessions ended before the retention and says how many."""
    from datetime import timedelta

    from authsvc.models import Session, utcnow

    auth.signup()  # stays open
    auth.signin()  # closed 40 days ago, below
    auth.signin()  # expired 40 days ago, below
    closed_recently = auth.signin()
    client.post(
        "/auth/signout", headers={"Authorization": f"Bearer {closed_recently['accessToken']}"}
    )
    long_ago = utcnow() - timedelta(days=40)
    with app.app_context():
        ids = [s.id for s in db.session.scalars(sa.select(Session).order_by(Session.created_at))]
        db.session.execute(
            sa.update(Session).where(Session.id == ids[1]).values(revoked_at=long_ago)
        )
        db.session.execute(
            sa.update(Session).where(Session.id == ids[2]).values(expires_at=long_ago)
        )
        db.session.commit()
    result = runner.invoke(args=["sessions", "purge"])
    assert result.exit_code == 0 and "Removed 2 session(s)" in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Session)) == 2
    assert runner.invoke(args=["sessions", "purge", "--retention", "0"]).output.startswith(
        "Removed 1 "
    )
