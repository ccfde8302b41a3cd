"""The `users` CLI group."""

import pytest
import sqlalchemy as sa
from conftest import PASSWORD, bearer, settings

from authsvc import create_app
from authsvc.extensions import db
from authsvc.models import AuthEvent, User
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
    assert result.exit_code == 0 and ": 2 session(s)," in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Session)) == 2
    assert ": 1 session(s)," in runner.invoke(args=["sessions", "purge", "--retention", "0"]).output


def test_sessions_purge_also_removes_ended_tokens_and_sent_mail(runner, app):
    """Used or expired mfaTokens and mailed tokens, and sent mail, go; live ones stay."""
    from datetime import timedelta

    from authsvc import challenges, mailtokens
    from authsvc.models import MailOutbox, MailToken, MfaChallenge, User, utcnow

    long_ago = utcnow() - timedelta(days=40)
    with app.app_context():
        user = User(email="p@example.com", password_hash="x" * 60)
        db.session.add(user)
        db.session.flush()
        challenges.open_challenge(user.id)
        challenges.open_challenge(user.id)
        mailtokens.issue(user.id, "verify_email", user.email)
        mailtokens.issue(user.id, "password_reset", user.email)
        db.session.add_all(
            [
                MailOutbox(kind="test", state="sent", sent_at=long_ago),
                MailOutbox(kind="test", state="given_up", created_at=long_ago),
                MailOutbox(kind="test", state="pending", created_at=long_ago, message="sealed"),
            ]
        )
        db.session.flush()
        old_challenge = db.session.scalars(sa.select(MfaChallenge)).first()
        old_challenge.expires_at = long_ago
        db.session.scalars(sa.select(MailToken)).first().used_at = long_ago
        db.session.commit()
    result = runner.invoke(args=["sessions", "purge"])
    assert "1 mfaToken(s), 1 mailed token(s), 2 sent mail(s)" in result.output, result.output
    with app.app_context():
        assert len(db.session.scalars(sa.select(MfaChallenge)).all()) == 1
        assert len(db.session.scalars(sa.select(MailToken)).all()) == 1
        assert db.session.scalars(sa.select(MailOutbox.state)).all() == ["pending"]


def trail(app):
    """Return the audit trail as (source, event, user_id, key_id) tuples, oldest first."""
    with app.app_context():
        rows = db.session.scalars(sa.select(AuthEvent).order_by(AuthEvent.id)).all()
        return [(row.source, row.event, row.user_id, row.key_id) for row in rows]


def test_user_commands_leave_an_audit_trail_marked_cli(runner, auth, app):
    """create, set-role, disable, enable and delete each record one event from the CLI."""
    auth.create_user("boss@example.com", role="admin")
    stdin = PASSWORD + "\n"
    runner.invoke(args=["users", "create", "ops@example.com", "--password-stdin"], input=stdin)
    user_id = stored_user(app, "ops@example.com").id
    for args in (["set-role", "ops@example.com", "admin"], ["disable", "ops@example.com"]):
        assert runner.invoke(args=["users", *args]).exit_code == 0
    assert runner.invoke(args=["users", "enable", "ops@example.com"]).exit_code == 0
    assert runner.invoke(args=["users", "delete", "ops@example.com", "--yes"]).exit_code == 0
    assert trail(app) == [
        ("cli", "user_created", user_id, None),
        ("cli", "user_updated", user_id, None),
        ("cli", "user_updated", user_id, None),
        ("cli", "user_updated", user_id, None),
        ("cli", "user_deleted", user_id, None),
    ]


def test_refused_cli_changes_leave_no_event(runner, auth, app):
    """A last-admin refusal or a duplicate email records nothing."""
    auth.create_user("boss@example.com", role="admin")
    assert runner.invoke(args=["users", "set-role", "boss@example.com", "user"]).exit_code == 1
    assert runner.invoke(args=["users", "delete", "boss@example.com", "--yes"]).exit_code == 1
    duplicate = ["users", "create", "boss@example.com", "--password-stdin"]
    assert runner.invoke(args=duplicate, input=PASSWORD + "\n").exit_code == 1
    assert trail(app) == []


def test_api_changes_are_marked_api(auth, client, app):
    """The same change through the API is recorded with source api."""
    admin = auth.admin()
    user_id = auth.create_user("u@example.com")
    response = client.patch(
        f"/users/{user_id}", json={"role": "admin"}, headers=bearer(admin["accessToken"])
    )
    assert response.status_code == 200
    assert ("api", "user_updated", user_id, None) in trail(app)


def test_key_commands_are_audited_with_their_kid(database_url, app):
    """keys rotate and keys retire record the kid they acted on."""
    keyed = create_app(settings(database_url, JWT_ALGORITHM="EdDSA"))
    runner = keyed.test_cli_runner()
    kid = runner.invoke(args=["keys", "rotate"]).output.split()[1]
    assert runner.invoke(args=["keys", "retire", kid]).exit_code == 0
    assert trail(app) == [("cli", "key_rotated", None, kid), ("cli", "key_retired", None, kid)]


def test_sessions_purge_is_audited(runner, app):
    """Each purge records one event, whatever it removed."""
    assert runner.invoke(args=["sessions", "purge"]).exit_code == 0
    assert trail(app) == [("cli", "sessions_purged", None, None)]


@pytest.mark.parametrize(
    ("role", "message"),
    [("admin", "a@example.com is now an admin."), ("user", "a@example.com is now a plain user.")],
)
def test_set_role_says_what_the_user_is_now(runner, auth, role, message):
    """`users set-role` answers in a sentence."""
    auth.create_user("a@example.com", role="admin" if role == "user" else "user")
    auth.create_user("boss@example.com", role="admin")
    result = runner.invoke(args=["users", "set-role", "a@example.com", role])
    assert result.exit_code == 0 and result.output.strip() == message


def test_keys_list_under_hs256_says_there_is_no_key_list(runner):
    """Under HS256 `keys list` says that JWT_SECRET_KEY signs, instead of printing nothing."""
    result = runner.invoke(args=["keys", "list"])
    assert result.exit_code == 0
    assert "HS256" in result.output and "JWT_SECRET_KEY" in result.output


@pytest.mark.parametrize("count", ["0", "-1"])
def test_audit_tail_refuses_non_positive_counts(runner, count):
    """-n takes a positive count only."""
    result = runner.invoke(args=["audit", "tail", "-n", count])
    assert result.exit_code == 2 and "x>=1" in result.output


def test_audit_tail_shows_the_source(runner, auth):
    """Each line says whether the event came from the API or the CLI."""
    auth.signup()
    runner.invoke(args=["users", "disable", "user@example.com"])
    lines = runner.invoke(args=["audit", "tail"]).output.splitlines()
    assert [line.split()[1:3] for line in lines] == [["api", "signup"], ["cli", "user_updated"]]


def test_audit_tail_finds_a_deleted_users_events_by_id(runner, auth):
    """--user takes an id too, which still finds the events of a deleted user."""
    user_id = auth.signup("gone@example.com")["id"]
    runner.invoke(args=["users", "delete", "gone@example.com", "--yes"])
    by_email = runner.invoke(args=["audit", "tail", "--user", "gone@example.com"])
    assert by_email.exit_code == 1 and "--user ID" in by_email.output
    by_id = runner.invoke(args=["audit", "tail", "--user", str(user_id)])
    assert [line.split()[2] for line in by_id.output.splitlines()] == ["signup", "user_deleted"]
