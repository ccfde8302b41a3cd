"""Real faults for tests: a private PostgreSQL cluster to crash and freeze, a tmpfs to fill.

Both need root (runuser, mount); the cluster needs PostgreSQL's server
binaries. Without them the tests skip, except under CI=true, where they fail.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from live import free_port
from skips import CI

SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
max_connections = 40
shared_buffers = 16MB
fsync = off
full_page_writes = off
"""


def require(condition, reason):
    """Skip a test whose means are missing; under CI=true, fail it instead."""
    if not condition:
        if CI:
            pytest.fail(f"required under CI=true: {reason}")
        pytest.skip(reason)


def require_root():
    """Skip (fail under CI) unless the tests run as root."""
    require(os.geteuid() == 0, "needs root (runuser, mount)")


def postgres_bindir():
    """Return the folder of PostgreSQL's server binaries, or skip (fail under CI)."""
    require_root()
    pg_config = shutil.which("pg_config")
    require(pg_config is not None, "needs PostgreSQL's server binaries (pg_config)")
    bindir = Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip())
    require((bindir / "initdb").exists(), f"needs initdb and pg_ctl in {bindir}")
    return bindir


class Cluster:
    """A PostgreSQL cluster of our own, run as the postgres user on a free port."""

    def __init__(self, bindir, folder):
        self.bindir, self.folder, self.port = bindir, Path(folder), free_port()
        self.data = self.folder / "data"

    def run(self, *command):
        """Run a PostgreSQL binary as the postgres user."""
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bindir / command[0]), *command[1:]],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def create(self):
        """Make the cluster's data folder."""
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(SETTINGS.format(port=self.port))

    def start(self):
        """Start the server and wait until it accepts connections."""
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "start")

    def crash(self):
        """Stop the server as a crash would: no checkpoint, every connection cut."""
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def processes(self):
        """Return the pids of the server and of every process it started."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = [
            int(stat.parent.name)
            for stat in Path("/proc").glob("[0-9]*/stat")
            if _parent(stat) == postmaster
        ]
        return [postmaster, *children]

    @contextlib.contextmanager
    def frozen(self):
        """Stop every process of the server (SIGSTOP) while the block runs."""
        pids = self.processes()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    def url(self, database="postgres"):
        """Return the SQLAlchemy URL of a database of the cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"


def _parent(stat_path):
    """Return the parent pid from a /proc/<pid>/stat file, or None if it is gone."""
    try:
        return int(Path(stat_path).read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@contextlib.contextmanager
def private_postgres():
    """Create and start a private cluster; yield it; stop it and remove its files."""
    bindir = postgres_bindir()
    # Not under pytest's tmp_path, which the postgres user cannot enter.
    folder = tempfile.mkdtemp(prefix="authsvc-pg-")
    shutil.chown(folder, "postgres", "postgres")
    cluster = Cluster(bindir, folder)
    try:
        cluster.create()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.crash()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def small_disk(folder, size):
    """Mount a tmpfs of `size` (such as "2m") on a folder; always unmount it."""
    require_root()
    os.makedirs(folder, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    require(mounted.returncode == 0, f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield Path(folder)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def resize(folder, size):
    """Grow or shrink a mounted tmpfs."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def fill(folder):
    """Fill a disk to the last byte with a file; return its path."""
    path = Path(folder) / "filler"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        block = b"\0" * 4096
        with contextlib.suppress(OSError):
            while True:
                os.write(descriptor, block)
        with contextlib.suppress(OSError):
            while True:
                os.write(descriptor, b"\0")
    finally:
        os.close(descriptor)
    return path
