"""Load generators: wrk with bench/load.lua when it is installed, else Python threads.

A scenario is a dict: `method`, `paths` and `headers`, and optionally `bodies`
(one picked at random per request), `unique_body` (a %-format of the client
number and a counter), `tokens` (refresh tokens, each the head of a chain:
every answer's refreshToken is the next request's bearer) and `expect` (the
one status that is no error; else any 2xx). Both generators
read it the same way, stop at a deadline or at a request cap, whichever comes
first, and return the same summary.
"""

import http.client
import itertools
import json
import os
import random
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

LUA_SCRIPT = Path(__file__).with_name("load.lua")
# One wrk thread drives a few thousand requests a second; on two cores every
# cycle it does not use goes to the gunicorn workers.
WRK_THREADS = 1
# A signin queued behind a few bcrypt checks is slow, not lost.
REQUEST_TIMEOUT = 10


def choose_generator(requested):
    """Return "wrk" or "python": what was asked for, else wrk if it is installed."""
    if requested not in ("", "wrk", "python"):
        raise SystemExit(f"bench: BENCH_LOAD must be wrk or python, not {requested!r}")
    if requested == "wrk" and not shutil.which("wrk"):
        raise SystemExit("bench: BENCH_LOAD=wrk but wrk is not installed")
    return requested or ("wrk" if shutil.which("wrk") else "python")


def describe_generator(generator):
    """Name the generator and its version, as the results record it."""
    if generator == "python":
        return "python (http.client, one thread per connection)"
    banner = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    return " ".join(banner.stdout.split()[:2]) or "wrk"


def run(generator, url, scenario, seconds, connections, max_requests, workdir):
    """Drive one scenario against `url` and return its summary."""
    if generator == "wrk":
        return run_wrk(url, scenario, seconds, connections, max_requests, workdir)
    return run_python(url, scenario, seconds, connections, max_requests)


def summary(requests, seconds, latencies_ms, errors, repeats):
    """Return the numbers every report shows, from either generator."""
    p50, p99 = latencies_ms
    return {
        "requests": requests,
        "seconds": round(seconds, 3),
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "errors": sum(errors.values()),
        "error_detail": dict(errors),
        "repeated_tokens": repeats,
    }


def lua_literal(value):
    """Write a str, int, bool, list or dict as a Lua expression (dicts skip None)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # For printable ASCII, JSON's only escapes (\" and \\) are Lua's too.
        assert value.isascii() and value.isprintable(), value
        return json.dumps(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(item) for item in value) + "}"
    items = (f"[{lua_literal(k)}] = {lua_literal(v)}" for k, v in value.items() if v is not None)
    return "{" + ", ".join(items) + "}"


def run_wrk(url, scenario, seconds, connections, max_requests, workdir):
    """Run wrk with bench/load.lua and read the line its done() prints."""
    spec_path = Path(workdir) / "scenario.lua"
    spec = {**scenario, "threads": WRK_THREADS, "max_requests": max_requests}
    spec_path.write_text(f"return {lua_literal(spec)}\n")
    command = [
        "wrk",
        f"--threads={WRK_THREADS}",
        f"--connections={max(connections, WRK_THREADS)}",
        f"--duration={seconds}s",
        f"--timeout={REQUEST_TIMEOUT}s",
        f"--script={LUA_SCRIPT}",
        url,
    ]
    finished = subprocess.run(
        command,
        env={**os.environ, "BENCH_SPEC": str(spec_path)},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    lines = [line for line in finished.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if finished.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({finished.returncode}): {finished.stderr.strip()}")
    raw = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
    errors = Counter(raw["statuses"])
    errors.update({kind: count for kind, count in raw["transport"].items() if count})
    return summary(
        raw["requests"],
        raw["span_us"] / 1e6,
        (raw["p50_us"] / 1000, raw["p99_us"] / 1000),
        errors,
        raw["repeats"],
    )


@dataclass
class ClientRecord:
    """What one Python client thread saw."""

    latencies: list = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    repeats: int = 0
    first: float = None
    last: float = None


def _client(number, address, scenario, deadline, tickets, max_requests, record, chain):
    """Send requests one at a time, one connection each, until the deadline or the cap."""
    rng = random.Random(number)
    seen = set()
    for counter in itertools.count(1):
        if time.monotonic() >= deadline or next(tickets) >= max_requests:
            return
        headers = dict(scenario["headers"])
        if chain is not None:
            headers["Authorization"] = "Bearer " + (chain.popleft() if chain else "none")
        body = rng.choice(scenario["bodies"]) if scenario.get("bodies") else None
        if scenario.get("unique_body"):
            body = scenario["unique_body"] % (number, counter)
        started = time.perf_counter()
        record.first = record.first or started
        connection = http.client.HTTPConnection(*address, timeout=REQUEST_TIMEOUT)
        try:
            connection.request(scenario["method"], rng.choice(scenario["paths"]), body, headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            record.errors[type(error).__name__] += 1
            continue
        finally:
            connection.close()
        record.last = time.perf_counter()
        record.latencies.append(record.last - started)
        if not answered_as_expected(scenario, response.status):
            record.errors[str(response.status)] += 1
        elif chain is not None:
            token = json.loads(data)["refreshToken"]
            record.repeats += token in seen
            seen.add(token)
            chain.append(token)


def answered_as_expected(scenario, status):
    """Tell whether a status is what the scenario expects: its `expect`, else any 2xx."""
    expected = scenario.get("expect")
    return status == expected if expected else 200 <= status < 300


def percentile(ordered, percent):
    """Return the nearest-rank percentile of sorted values."""
    if not ordered:
        return 0.0
    return ordered[max(0, -(-len(ordered) * percent // 100) - 1)]


def run_python(url, scenario, seconds, connections, max_requests):
    """Drive a scenario from one Python thread per connection."""
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + seconds
    tickets = itertools.count()  # next() on it is atomic under the GIL
    tokens = scenario.get("tokens")
    records = [ClientRecord() for _ in range(connections)]
    clients = [
        threading.Thread(
            target=_client,
            args=(number + 1, (parts.hostname, parts.port), scenario, deadline, tickets),
            kwargs={
                "max_requests": max_requests,
                "record": record,
                "chain": deque(tokens[number::connections]) if tokens else None,
            },
            daemon=True,
        )
        for number, record in enumerate(records)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    latencies = sorted(value * 1000 for record in records for value in record.latencies)
    firsts = [record.first for record in records if record.first]
    lasts = [record.last for record in records if record.last]
    # Like wrk, count answered requests; transport errors show among the errors.
    return summary(
        len(latencies),
        max(lasts) - min(firsts) if lasts else 0.0,
        (percentile(latencies, 50), percentile(latencies, 99)),
        sum((record.errors for record in records), Counter()),
        sum(record.repeats for record in records),
    )
