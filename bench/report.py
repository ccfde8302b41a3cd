"""The benchmark's verdict: ratios and targets, the printed table, the JSON document."""

import os
import platform
import subprocess
import sys

from bench.servers import ROOT

MIB = 1024


def progress(message):
    """Say what the benchmark is doing, on stderr."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def commit():
    """Return the commit of the code measured ("-dirty" if changed), or None outside git."""
    try:
        found = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except OSError:
        return None
    return found.stdout.strip() or None


def target(name, value, unit, goal, met, scenarios):
    """Return one target; it is met only if its scenarios were answered, without errors."""
    clean = all(scenario["requests"] and not scenario["errors"] for scenario in scenarios)
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "goal": goal,
        "met": bool(met and clean),
        "note": "" if clean else "its scenarios had errors or no answers",
    }


def targets(scenarios, memory_mib, bound):
    """Return the four targets of the benchmark, each measured in this run."""
    bare = [scenarios["bare"], scenarios["bare_again"]]
    bare_rps = sum(run["rps"] for run in bare) / len(bare)
    me_ratio = scenarios["me"]["rps"] / bare_rps if bare_rps else 0.0
    signin_ratio = scenarios["signin"]["rps"] / bound
    users_p99 = scenarios["users"]["p99_ms"]
    return [
        target(
            "/users/me req/s / bare Flask req/s",
            me_ratio,
            "",
            ">= 0.50",
            me_ratio >= 0.50,
            [scenarios["me"], *bare],
        ),
        target(
            "signin req/s / bcrypt bound",
            signin_ratio,
            "",
            ">= 0.90",
            signin_ratio >= 0.90,
            [scenarios["signin"]],
        ),
        target(
            "p99 of GET /users pages",
            users_p99,
            "ms",
            "< 20 ms",
            users_p99 < 20,
            [scenarios["users"]],
        ),
        target("max worker peak memory", memory_mib, "MiB", "< 80 MiB", memory_mib < 80, []),
        introspection_target(scenarios),
    ]


def introspection(scenarios):
    """Return introspection's cost per request over /users/me's: worker CPU, and time (req/s)."""
    me, introspect = scenarios["me"], scenarios["introspect"]
    cpu = introspect["cpu_ms_per_request"], me["cpu_ms_per_request"]
    return {
        "cpu_ratio": round(cpu[0] / cpu[1], 3) if all(cpu) else None,
        "time_ratio": round(me["rps"] / introspect["rps"], 3) if introspect["rps"] else None,
    }


def introspection_target(scenarios):
    """Return the target: an introspection costs the workers at most 1.2 times a /users/me."""
    ratio = introspection(scenarios)["cpu_ratio"] or 0.0
    return target(
        "introspect / /users/me, CPU per request",
        ratio,
        "",
        "<= 1.20",
        0 < ratio <= 1.2,
        [scenarios["introspect"], scenarios["me"]],
    )


def cpu_ratio(scenarios):
    """Return the workers' CPU per /users/me request over that per bare request."""
    bare = [scenarios[key]["cpu_ms_per_request"] for key in ("bare", "bare_again")]
    me = scenarios["me"]["cpu_ms_per_request"]
    return round(me / (sum(bare) / len(bare)), 2) if me and all(bare) else None


def refusals(scenarios, events):
    """Return what the refusals cost next to a bare request, and what they wrote."""
    bare = [scenarios["bare"], scenarios["bare_again"]]
    bare_rps = sum(run["rps"] for run in bare) / len(bare)
    bare_cpu = [run["cpu_ms_per_request"] for run in bare]
    refused = scenarios["refused"]
    return {
        "rps_ratio": round(refused["rps"] / bare_rps, 3) if bare_rps else None,
        "cpu_ratio": (
            round(refused["cpu_ms_per_request"] / (sum(bare_cpu) / len(bare_cpu)), 2)
            if refused["cpu_ms_per_request"] and all(bare_cpu)
            else None
        ),
        "rate_limited_rows": events.get("rate_limited", 0),
        "signin_failed_rows": events.get("signin_failed", 0),
    }


def document(*, options, workers, checkpw_seconds, scenarios, memory, events, **rest):
    """Return everything the run measured, as the JSON file keeps it."""
    cores = min(os.cpu_count() or 1, workers)
    bound = cores / checkpw_seconds
    memory_mib = max(memory["authsvc_max_kib"], *memory["authsvc_workers_kib"].values()) / MIB
    return {
        **rest,
        "commit": commit(),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
        "options": options,
        "workers": workers,
        "bcrypt": {
            "rounds": options["rounds"],
            "checkpw_ms": round(checkpw_seconds * 1000, 2),
            "cores": cores,
            "bound_rps": round(bound, 2),
        },
        "scenarios": scenarios,
        "cpu_ratio": cpu_ratio(scenarios),
        "refusals": refusals(scenarios, events),
        "introspection": introspection(scenarios),
        "memory": memory,
        "targets": targets(scenarios, memory_mib, bound),
    }


def print_table(scenarios):
    """Print one row per scenario: rate, latency, worker CPU and errors."""
    print(
        f"{'scenario':<27}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU ms/req':>12}{'cores':>7}  errors"
    )
    for row in scenarios.values():
        detail = ", ".join(f"{kind}: {count}" for kind, count in row["error_detail"].items())
        print(
            f"{row['label']:<27}{row['requests']:>9,}{row['rps']:>9.1f}{row['p50_ms']:>9.2f}"
            f"{row['p99_ms']:>9.2f}{row['cpu_ms_per_request'] or 0:>12.3f}"
            f"{row['cores_used'] or 0:>7.2f}  {row['errors']}" + (f" ({detail})" if detail else "")
        )


def print_profile(profiled):
    """Print where the workers' samples went during the profiled /users/me load."""
    if "error" in profiled:
        print(f"\nprofile: {profiled['error']}")
        return
    print(
        f"\nprofile of GET /users/me ({profiled['request_samples']} samples in requests): "
        f"gunicorn and its socket calls {profiled['gunicorn_percent']}%, the app the rest; "
        f"of the app's {profiled['app_samples']} samples:"
    )
    for label, percent in profiled["app_percent_by_phase"].items():
        print(f"  {percent:>5.1f}%  {label}")


def print_report(results, path):
    """Print the table, the CPU, memory and bcrypt lines, and the targets."""
    options, bcrypt, scenarios = results["options"], results["bcrypt"], results["scenarios"]
    print(
        f"\nauthsvc benchmark: {results['dialect']}, {results['workers']} sync workers, "
        f"{results['machine']['cpu_count']} cores, bcrypt cost {bcrypt['rounds']}, "
        f"{options['users']:,} users, commit {results['commit']}"
    )
    print(
        f"load: {results['generator']}, {options['connections']} connections, "
        f"{options['duration']} s per scenario (at most {options['max_requests']:,} requests)\n"
    )
    print_table(scenarios)
    bare, again, ratio = scenarios["bare"], scenarios["bare_again"], results["cpu_ratio"]
    print(
        f"\nbare Flask before and after /users/me: {bare['rps']:.0f} and {again['rps']:.0f} req/s "
        "(the machine's noise); CPU per request: "
        + (f"/users/me {ratio:.2f}x bare" if ratio else "n/a")
    )
    refused = results["refusals"]
    print(
        f"refused signins (429): {refused['rps_ratio']} of bare Flask's req/s, "
        f"{refused['cpu_ratio']}x its CPU per request; the database gained "
        f"{refused['rate_limited_rows']} rate_limited and "
        f"{refused['signin_failed_rows']} signin_failed rows for "
        f"{scenarios['refused']['requests']:,} refusals"
    )
    compared = results["introspection"]
    print(
        f"introspection: {compared['cpu_ratio']}x the CPU of a /users/me per request, "
        f"{compared['time_ratio']}x its time per request (its req/s over introspection's)"
    )
    repeated = scenarios["refresh"]["repeated_tokens"]
    print(f"refresh: {repeated} answers repeated an earlier refresh token (0: all real rotations)")
    workers = results["memory"]["authsvc_workers_kib"].values()
    bare_workers = results["memory"]["bare_workers_kib"].values()
    print(
        "peak memory (VmHWM) per authsvc worker: "
        + ", ".join(f"{kib / MIB:.1f}" for kib in workers)
        + f" MiB; bare Flask workers up to {max(bare_workers, default=0) / MIB:.1f} MiB"
    )
    pss = results["memory"].get("authsvc_max_pss_kib")
    if pss:
        print(
            f"proportional memory (Pss) of the largest authsvc worker: {pss / MIB:.1f} MiB "
            "(pages shared with the master and the other workers counted once among them)"
        )
    signin_cpu_ms = scenarios["signin"]["cpu_ms_per_request"] or 0
    print(
        f"one bcrypt check at cost {bcrypt['rounds']}: {bcrypt['checkpw_ms']:.1f} ms, so at most "
        f"{bcrypt['bound_rps']:.2f} signins/s on {bcrypt['cores']} cores; "
        f"a signin cost the workers {signin_cpu_ms:.1f} ms of CPU\n"
    )
    print(f"{'target':<38}{'value':>12}  {'goal':<10}")
    for goal in results["targets"]:
        verdict = "met" if goal["met"] else "NOT MET"
        note = f" ({goal['note']})" if goal["note"] else ""
        # Three decimals for the ratios, so that 0.895 does not print as a met 0.90.
        value = f"{goal['value']:.2f} {goal['unit']}" if goal["unit"] else f"{goal['value']:.3f}"
        print(f"{goal['name']:<38}{value:>12}  {goal['goal']:<10}{verdict}{note}")
    if results.get("profile"):
        print_profile(results["profile"])
    print(f"\nresults: {path}")
