"""`make bench`: load the real authsvc under gunicorn, next to a bare Flask app."""

import json
import os
import secrets
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import sqlalchemy as sa

from authsvc.passwords import hash_password
from bench import database, load, profile, report, scenarios, servers
from bench.database import PASSWORD

RESULTS = servers.BENCH / "results"


class Options(NamedTuple):
    """The knobs of one run, read from the environment."""

    duration: int
    warmup: int
    connections: int
    max_requests: int
    users: int
    rounds: int
    profile: int


def integer(name, default, minimum):
    """Read an integer setting of at least `minimum` from the environment."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"bench: {name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"bench: {name} must be at least {minimum}, not {value}")
    return value


def read_options(workers):
    """Return the run's options; every one has a default that `make bench` uses."""
    return Options(
        duration=integer("BENCH_DURATION", 10, 1),
        warmup=integer("BENCH_WARMUP", 2, 0),
        connections=integer("BENCH_CONNECTIONS", workers, 1),
        max_requests=integer("BENCH_MAX_REQUESTS", 200_000, 1),
        users=integer("BENCH_USERS", 100_000, 2 * scenarios.PAGE),
        rounds=integer("BCRYPT_ROUNDS", 12, 4),
        profile=integer("BENCH_PROFILE", 0, 0),
    )


@dataclass
class Run:
    """One benchmark run: its options, load generator, servers and what they measured."""

    options: Options
    generator: str
    workdir: str
    password_hash: str
    service: servers.Server = None
    bare: servers.Server = None
    checkpw_seconds: float = None
    client: tuple = None
    peaks: dict = field(default_factory=dict)
    shares: dict = field(default_factory=dict)

    def drive(self, server, scenario, seconds):
        """Load one server with a scenario for `seconds` and return the summary."""
        options = self.options
        return load.run(
            self.generator,
            server.url,
            scenario,
            seconds,
            options.connections,
            options.max_requests,
            self.workdir,
        )

    def wait_idle(self):
        """Wait until neither server is still working on an earlier scenario's requests."""
        for server in (self.service, self.bare):
            servers.wait_idle(server.pid)

    def measure(self, server, scenario):
        """Drive a scenario for the whole duration; add what it cost the workers in CPU."""
        self.wait_idle()
        before = servers.workers_cpu_seconds(server.pid)
        result = self.drive(server, scenario, self.options.duration)
        after = servers.workers_cpu_seconds(server.pid)
        used = after - before
        requests, seconds = result["requests"], result["seconds"]
        return {
            **result,
            "cpu_ms_per_request": round(1000 * used / requests, 3) if requests else None,
            "cores_used": round(used / seconds, 2) if seconds else None,
        }

    def note_memory(self):
        """Remember the highest VmHWM and Pss seen so far of every authsvc worker."""
        for pid, kib in servers.workers_peak_memory(self.service.pid).items():
            self.peaks[pid] = max(kib, self.peaks.get(pid, 0))
        for pid, kib in servers.workers_proportional_memory(self.service.pid).items():
            self.shares[pid] = max(kib, self.shares.get(pid, 0))


def run_scenario(run, scenario):
    """Build a scenario, warm it up if it asks for it, then measure it."""
    server = getattr(run, scenario.server)
    run.wait_idle()
    spec = scenario.build(run)
    if scenario.warm_up and run.options.warmup:
        run.drive(server, spec, run.options.warmup)
    report.progress(f"{scenario.label}: {run.options.duration} s")
    result = run.measure(server, spec)
    run.note_memory()
    return {"label": scenario.label, **result}


def service_environment(options, database_url):
    """Return the environment of a production authsvc on the benchmark's database."""
    return {
        **os.environ,
        "AUTHSVC_ENV": "production",
        "JWT_SECRET_KEY": secrets.token_urlsafe(36),  # 48 characters
        "BCRYPT_ROUNDS": str(options.rounds),
        "DATABASE_URL": database_url,
        "MAIL_URL": "none",
        # The limiter runs as in production, but one load generator on one
        # address must not be told to slow down: these limits never trip.
        "RATELIMIT_SIGNUP_PER_ADDRESS": "1000000 per minute",
        "RATELIMIT_REFRESH_PER_SESSION": "1000000 per minute",
        "RATELIMIT_INTROSPECT_PER_CLIENT": "1000000 per minute",
        # The refusal scenario's target: one failure (one bcrypt check) per
        # worker, then nothing but 429s. Successful signins never count.
        "RATELIMIT_SIGNIN_PER_EMAIL": "1 per hour",
    }


def start_servers(stack, run, env, gunicorn_settings, logs):
    """Start authsvc as deployed and the bare app with the same serving settings."""
    run.service = stack.enter_context(
        servers.gunicorn(
            "wsgi:app",
            [],
            env,
            servers.ROOT,
            "/readyz",
            f"{logs}-authsvc.log",
            Path(run.workdir, "authsvc.ctl"),
        )
    )
    run.bare = stack.enter_context(
        servers.gunicorn(
            "bare:app",
            servers.bare_flags(gunicorn_settings),
            env,
            servers.BENCH,
            "/",
            f"{logs}-bare.log",
            Path(run.workdir, "bare.ctl"),
        )
    )


def main():
    """Seed, serve, load every scenario, then print and save the results."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    gunicorn_settings = servers.service_settings()
    workers = gunicorn_settings.get("workers", 1)  # gunicorn's own default
    options = read_options(workers)
    generator = load.choose_generator(os.environ.get("BENCH_LOAD", "").strip())
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="authsvc-bench-") as workdir, ExitStack() as stack:
        database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{workdir}/authsvc.db"
        dialect = sa.engine.make_url(database_url).get_backend_name()
        env = service_environment(options, database_url)
        report.progress(f"migrating the {dialect} database")
        database.migrate(env)
        run = Run(options, generator, workdir, hash_password(PASSWORD, options.rounds))
        seed_seconds = database.seed(database_url, options.users, run.password_hash)
        report.progress(f"seeded {options.users:,} users and an admin in {seed_seconds:.1f} s")
        run.client = database.register_client(env)
        start_servers(stack, run, env, gunicorn_settings, RESULTS / stamp)
        results = {scenario.key: run_scenario(run, scenario) for scenario in scenarios.SCENARIOS}
        events = database.count_events(database_url)
        run.note_memory()
        memory = {
            "authsvc_workers_kib": servers.workers_peak_memory(run.service.pid),
            "authsvc_max_kib": max(run.peaks.values(), default=0),
            "authsvc_max_pss_kib": max(run.shares.values(), default=0),
            "bare_workers_kib": servers.workers_peak_memory(run.bare.pid),
        }
        profiled = None
        if options.profile:
            report.progress(f"profiling GET /users/me with py-spy for {options.profile} s")
            spec = scenarios.me(run)
            run.wait_idle()
            profiled = profile.record(
                run.service.pid,
                lambda seconds: run.drive(run.service, spec, seconds),
                options.profile,
                RESULTS / f"{stamp}-profile.txt",
            )
    document = report.document(
        stamp=stamp,
        dialect=dialect,
        generator=load.describe_generator(generator),
        options=options._asdict(),
        workers=workers,
        seed_seconds=round(seed_seconds, 2),
        checkpw_seconds=run.checkpw_seconds,
        scenarios=results,
        memory=memory,
        events=events,
        profile=profiled,
    )
    path = RESULTS / f"{stamp}-{dialect}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    report.print_report(document, path.relative_to(servers.ROOT))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        report.progress("interrupted; every server it started is stopped")
        sys.exit(130)
