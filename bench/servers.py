"""Start and stop gunicorn on free loopback ports, and read its workers' CPU and memory."""

import contextlib
import os
import re
import runpy
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

from gunicorn.config import KNOWN_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 60
STOP_TIMEOUT = 40
IDLE_TIMEOUT = 60

# The settings of gunicorn.conf.py that shape how requests are served, as flags.
SERVING_FLAGS = {
    "workers": "--workers",
    "worker_class": "--worker-class",
    "threads": "--threads",
    "timeout": "--timeout",
    "graceful_timeout": "--graceful-timeout",
    "keepalive": "--keep-alive",
    "backlog": "--backlog",
    "max_requests": "--max-requests",
    "max_requests_jitter": "--max-requests-jitter",
}


class Server(NamedTuple):
    """A running gunicorn: its base URL and the pid of its master."""

    url: str
    pid: int


def service_settings():
    """Return what the service's gunicorn.conf.py sets, read as gunicorn reads it."""
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def bare_flags(settings):
    """Return the service's serving settings as command-line flags for the bare app.

    The bare app cannot read gunicorn.conf.py itself: its post_fork hook builds
    authsvc in every worker, which would weigh the bare workers down with the
    whole service, and stops them from starting at all without its settings.
    """
    flags = [f"{flag}={settings[name]}" for name, flag in SERVING_FLAGS.items() if name in settings]
    return [*flags, "--preload"] if settings.get("preload_app") else flags


def control_socket_flags(path):
    """Give a gunicorn that has a control socket (27 and later) its own, not ~/.gunicorn's."""
    if any(setting.name == "control_socket" for setting in KNOWN_SETTINGS):
        return [f"--control-socket={path}"]
    return []


def free_port():
    """Return a loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(process, url, log_path):
    """Wait until `url` answers 200, or fail with the end of the server's log."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    tail = "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-20:])
    raise RuntimeError(f"gunicorn did not get ready at {url}:\n{tail}")


def stop(process):
    """Stop a gunicorn master gracefully (SIGTERM), or kill it if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def gunicorn(app, flags, env, cwd, ready_path, log_path, control_path):
    """Serve `app` with gunicorn on a free loopback port while the block runs."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", app, f"--bind=127.0.0.1:{port}", *flags]
    command += control_socket_flags(control_path)
    with open(log_path, "wb") as log:
        # A session of its own: the bench, not a Ctrl-C, decides when it stops.
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(process, url + ready_path, log_path)
        yield Server(url, process.pid)
    finally:
        stop(process)


def stat_fields(stat_path):
    """Return the fields of a /proc/<pid>/stat file after the command name, or None."""
    try:
        return Path(stat_path).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def worker_pids(master_pid):
    """Return the pids of a gunicorn master's workers: its child processes."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = stat_fields(stat)
        if fields and int(fields[1]) == master_pid:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def workers_cpu_seconds(master_pid):
    """Return the CPU seconds (user plus system) a gunicorn's workers have used so far.

    Workers that max_requests recycled count too: once the master has reaped
    them, their time is in its cutime and cstime.
    """
    master = stat_fields(f"/proc/{master_pid}/stat") or [0] * 15
    ticks = int(master[13]) + int(master[14])
    for pid in worker_pids(master_pid):
        fields = stat_fields(f"/proc/{pid}/stat")
        if fields:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def peak_memory_kib(pid):
    """Return a process's peak resident set size (VmHWM) in KiB, or None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) if match else None


def proportional_memory_kib(pid):
    """Return a process's proportional set size (Pss) in KiB: its own pages in full,
    the pages it shares with the master and the other workers divided among them."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    match = re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE)
    return int(match[1]) if match else None


def workers_proportional_memory(master_pid):
    """Return {worker pid: Pss in KiB} for a gunicorn master's live workers."""
    shares = {pid: proportional_memory_kib(pid) for pid in worker_pids(master_pid)}
    return {pid: share for pid, share in shares.items() if share is not None}


def workers_peak_memory(master_pid):
    """Return {worker pid: VmHWM in KiB} for a gunicorn master's live workers."""
    peaks = {pid: peak_memory_kib(pid) for pid in worker_pids(master_pid)}
    return {pid: peak for pid, peak in peaks.items() if peak is not None}


def wait_idle(master_pid, interval=0.25):
    """Wait until a gunicorn's workers stop using CPU: the requests in flight are done.

    A load generator that stops leaves requests behind in the workers (a
    queued signin takes a second or more); they must not run into the next
    measurement. At most one clock tick per interval counts as idle.
    """
    deadline = time.monotonic() + IDLE_TIMEOUT
    used = workers_cpu_seconds(master_pid)
    while time.monotonic() < deadline:
        time.sleep(interval)
        before, used = used, workers_cpu_seconds(master_pid)
        if used - before <= 1 / CLOCK_TICKS:
            return
