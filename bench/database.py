"""The benchmark's database: migrated by the service's CLI, seeded in bulk with Core."""

import statistics
import subprocess
import sys
import time

import sqlalchemy as sa

from authsvc.models import User, utcnow
from authsvc.passwords import verify_password
from bench.servers import ROOT

PASSWORD = "violet-kettle-orbit-42"
ADMIN_EMAIL = "admin@example.com"
# The address the refusal scenario floods with wrong passwords: no seeded
# user's, whose own signins it would block; limits count failures per
# address whether or not an account has it.
REFUSED_EMAIL = "flooded@example.com"
BATCH = 10_000
CHECKPW_SAMPLES = 5


def user_email(number):
    """Return the email of seeded user `number` (1 to the number seeded)."""
    return f"user{number}@example.com"


def migrate(env):
    """Create the schema with `flask --app authsvc db upgrade`, as a deploy does."""
    upgrade = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "authsvc", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if upgrade.returncode != 0:
        raise SystemExit(f"bench: flask db upgrade failed:\n{upgrade.stderr}")


def register_client(env):
    """Register the introspection scenario's service with the CLI; return its id and secret."""
    created = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "authsvc", "clients", "create", "bench"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if created.returncode != 0:
        raise SystemExit(f"bench: flask clients create failed:\n{created.stderr}")
    printed = dict(line.split(": ", 1) for line in created.stdout.splitlines())
    return printed["client_id"], printed["client_secret"]


def seed(url, count, password_hash):
    """Insert one admin, then `count` users, all with the same hash; return the seconds.

    The admin gets id 1 and user N gets id N + 1. One hash for everyone keeps
    seeding to seconds; every signin still pays a full bcrypt check.
    """
    users = User.__table__
    now = utcnow()
    started = time.perf_counter()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            if connection.scalar(sa.select(sa.func.count()).select_from(users)):
                raise SystemExit("bench: the database already has users; give it an empty one")
            row = {"password_hash": password_hash, "disabled": False, "created_at": now}
            connection.execute(users.insert(), [{**row, "email": ADMIN_EMAIL, "role": "admin"}])
            for first in range(1, count + 1, BATCH):
                numbers = range(first, min(first + BATCH, count + 1))
                batch = [{**row, "email": user_email(n), "role": "user"} for n in numbers]
                connection.execute(users.insert(), batch)
        # Fresh statistics, as after any bulk load.
        with engine.begin() as connection:
            connection.execute(sa.text("ANALYZE"))
    finally:
        engine.dispose()
    return time.perf_counter() - started


def count_events(url):
    """Return how many auth_events rows of each kind the database holds."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT event, count(*) FROM auth_events GROUP BY event")
            )
            return dict(rows.all())
    finally:
        engine.dispose()


def time_checkpw(password_hash):
    """Return the median seconds of one password check at the hash's cost.

    verify_password is what signin runs: bcrypt.checkpw over a SHA-256 prehash
    that takes microseconds.
    """
    samples = []
    for _ in range(CHECKPW_SAMPLES):
        started = time.perf_counter()
        verify_password(PASSWORD, password_hash)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)
