"""Where the agent's own threads spend their CPU, in the demo service under load.

One ``python -m otel_adaprof.demo.service`` under ``opentelemetry-instrument`` with
py-spy (``--profiler native``: the native profiler) in the agent (by default at 100 Hz
in ``cpu`` mode with the other knobs of the catalog's ``learn-100hz`` action, as
``bench/agent_overhead.py`` runs it), loaded at ``--rate`` req/s for ``--seconds``.
For each agent thread (named ``adaprof-<part>`` for the OS): its CPU per request
(``/proc/<pid>/task/<tid>/schedstat``), its user and system time, and its wake-ups per
second (voluntary context switches: its sleeps, and its waits
for the GIL). With ``--profile``, a second py-spy (``record --gil --threads``, 500 Hz)
samples the service meanwhile: a thread is sampled only while it holds the GIL, i.e.
while it runs Python code, so each agent thread's samples show where its Python time
goes (the frames most often on its stack, by share of its samples).

Usage::

    python bench/agent_threads_profile.py                       # ≈ 30 s
    python bench/agent_threads_profile.py --profile --json > out.json
    python bench/agent_threads_profile.py --params '{"sampling_interval_ms": 10}'
    python bench/agent_threads_profile.py --params '{"sampling_interval_ms": 0}' --controller 3
    python bench/agent_threads_profile.py --baseline /tmp/base   # another tree's agent

The service starts in a temporary directory (or in ``--baseline``'s tree, with it on
``PYTHONPATH``): started in the repository, ``python -m`` would put the working tree
first on the path whatever ``PYTHONPATH`` says.

With ``--controller S`` the real controller runs too, answering the same params (its
``default_params``, no session) with a poll every ``S`` s: the poller reports as in
production. Without it the service has no controller and its poller sleeps.

The service and both py-spy processes are stopped on exit; the load targets 127.0.0.1.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_overhead import SERVICE_WARMUP_S, _load, catalog_params

from otel_adaprof.demo.bench import machine_description
from otel_adaprof.demo.processes import Children
from otel_adaprof.demo.stack import DemoStack

#: Sampling rate of the profiling py-spy (Hz).
PROFILE_RATE_HZ = 500
#: Frames listed per agent thread.
TOP_FRAMES = 12
MAX_SECONDS = 120.0

#: One reading of a thread: (OS name, CPU ns, user ticks, system ticks, voluntary switches).
Reading = tuple[str, int, int, int, int]


def read_threads(pid: int) -> dict[int, Reading]:
    """Every thread of ``pid``: its name, CPU, user/system ticks and voluntary switches."""
    out: dict[int, Reading] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            ns = int((task / "schedstat").read_text().split()[0])
            raw = (task / "stat").read_bytes()
            fields = raw[raw.rindex(b")") + 2 :].split()
            status = (task / "status").read_text()
        except (OSError, ValueError, IndexError):
            continue
        switches = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
        out[int(task.name)] = (name, ns, int(fields[11]), int(fields[12]), switches)
    return out


def thread_figures(
    before: dict[int, Reading], after: dict[int, Reading], requests: int, seconds: float
) -> dict[str, dict[str, float]]:
    """Per thread name (app threads together as ``app``): CPU ms per request, share of a
    core, user and system seconds, wake-ups per second and CPU µs per wake-up."""
    tick = os.sysconf("SC_CLK_TCK")
    sums: dict[str, list[float]] = {}
    for tid, (name, ns, user, system, switches) in after.items():
        was = before.get(tid)
        if was is not None and was[0] != name:
            was = None
        base = was or (name, 0, 0, 0, 0)
        key = name if name.startswith("adaprof-") else "app"
        row = sums.setdefault(key, [0.0, 0.0, 0.0, 0.0])
        row[0] += (ns - base[1]) / 1e9
        row[1] += (user - base[2]) / tick
        row[2] += (system - base[3]) / tick
        row[3] += switches - base[4]
    out: dict[str, dict[str, float]] = {}
    for key, (cpu, user, system, switches) in sorted(sums.items(), key=lambda kv: -kv[1][0]):
        out[key] = {
            "cpu_ms_per_req": round(1000 * cpu / max(1, requests), 4),
            "pct_core": round(100 * cpu / seconds, 3),
            "user_s": round(user, 2),
            "system_s": round(system, 2),
            "wakes_per_s": round(switches / seconds, 1),
            "cpu_us_per_wake": round(1e6 * cpu / switches, 1) if switches else 0.0,
        }
    return out


def top_frames(raw: str, names: dict[int, str]) -> dict[str, dict[str, Any]]:
    """From py-spy's raw (collapsed) output with ``--threads``: per agent thread, its
    samples and the frames most often on its stack (share of its samples)."""
    counts: dict[str, collections.Counter[str]] = {}
    totals: dict[str, int] = collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack.startswith("thread (") or not n.isdigit():
            continue
        frames = stack.split(";")
        tid = int(frames[0][len("thread (") : frames[0].index(")")])
        name = names.get(tid)
        if name is None or not name.startswith("adaprof-"):
            continue
        totals[name] += int(n)
        seen = counts.setdefault(name, collections.Counter())
        for frame in set(frames[1:]):
            if not frame.startswith(("Thread.", "thread (")):
                seen[frame] += int(n)
    return {
        name: {
            "samples": totals[name],
            "frames": {
                frame: round(c / totals[name], 3)
                for frame, c in counts[name].most_common(TOP_FRAMES)
            },
        }
        for name in sorted(totals, key=lambda k: -totals[k])
    }


def measure(
    params: str,
    seconds: float,
    rate: float,
    profile: bool,
    controller_s: float | None = None,
    baseline: Path | None = None,
    profiler: str = "py-spy",
) -> dict[str, Any]:
    """Start the service (and the controller, if asked), warm it up, load it (profiled if
    asked); the figures. With ``baseline`` the service runs that tree's agent."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.TemporaryDirectory(prefix="adaprof-threads-") as tmp, Children() as kids:
        stack = DemoStack(kids, workdir=tmp, poll_interval_s=controller_s or 2.0)
        if controller_s is not None:
            stack.start_controller({"default_params": json.loads(params)})
        stack.start_sink()
        try:
            env = {"ADAPROF_PROFILER": profiler, "ADAPROF_PARAMS": params}
            if baseline is not None:
                # started in the tree: ``python -m`` puts its directory first on the path
                env["PYTHONPATH"] = str(baseline)
            port = stack.start_service(
                "threads", extra_env=env, key="service", cwd=baseline or Path(tmp)
            )
            pid = kids.procs["service"].pid
            _load(port, SERVICE_WARMUP_S, rate)
            out = Path(tmp) / "profile.txt"
            argv = [py_spy, "record", "--pid", str(pid), "--rate", str(PROFILE_RATE_HZ)]
            argv += ["--gil", "--threads", "--nonblocking", "--format", "raw", "-o", str(out)]
            argv += ["--duration", str(max(1, int(seconds)))]
            before = read_threads(pid)
            t0 = time.monotonic()
            if profile:
                kids.start("profile", argv, log=Path(tmp) / "profile.log")
            stats, _load_s = _load(port, seconds, rate)
            after = read_threads(pid)
            window = time.monotonic() - t0
            if profile:
                kids.procs["profile"].wait(timeout=seconds + 30)
            names = {tid: r[0] for tid, r in after.items()}
            frames = top_frames(out.read_text(), names) if profile and out.exists() else {}
        finally:
            kids.stop("service")
            stack.stop_sink()
    return {
        "tree": str(baseline) if baseline is not None else "this tree",
        "params": json.loads(params),
        "controller_poll_s": controller_s,
        "ok": stats.ok,
        "sent": stats.sent,
        "window_s": round(window, 2),
        "threads": thread_figures(before, after, stats.ok, window),
        "profile": frames,
    }


def markdown(result: dict[str, Any]) -> str:
    """The figures as a table, then each agent thread's frames."""
    lines = [
        f"{result['ok']} / {result['sent']} requests in {result['window_s']} s, "
        f"params {json.dumps(result['params'], sort_keys=True)}"
        + (
            f", controller polled every {result['controller_poll_s']:g} s"
            if result.get("controller_poll_s")
            else ", no controller"
        ),
        "",
        "| thread | CPU ms/req | % core | user s | system s | wakes/s | CPU µs/wake |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in result["threads"].items():
        lines.append(
            f"| {name} | {f['cpu_ms_per_req']:.3f} | {f['pct_core']:.2f} | {f['user_s']:.2f} "
            f"| {f['system_s']:.2f} | {f['wakes_per_s']:.1f} | {f['cpu_us_per_wake']:.1f} |"
        )
    for name, prof in result["profile"].items():
        lines += ["", f"{name}: {prof['samples']} samples holding the GIL"]
        lines += [f"  {share:6.1%}  {frame}" for frame, share in prof["frames"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, measure, print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, help="ADAPROF_PARAMS JSON (default: catalog)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--profile", action="store_true", help="sample with a second py-spy")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    parser.add_argument(
        "--controller", type=float, default=None, metavar="S",
        help="run the controller too, answering --params, with a poll every S s",
    )  # fmt: skip
    parser.add_argument(
        "--profiler", choices=("py-spy", "native"), default="py-spy",
        help="the agent's profiler (ADAPROF_PROFILER)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", type=Path, default=None, metavar="DIR",
        help="run the service on another tree's agent (git archive REV | tar -x -C DIR)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.baseline is not None and not (args.baseline / "otel_adaprof" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: no otel_adaprof package in it")
    if not 0 < args.seconds <= MAX_SECONDS or not 0 < args.rate <= 200:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:g}], --rate in (0, 200]")
    params = args.params or catalog_params(10)
    try:
        json.loads(params)
    except ValueError as exc:
        parser.error(f"--params: not JSON: {exc}")
    result = {
        "machine": machine_description(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if args.controller is not None and not 0.5 <= args.controller <= 300:
        parser.error("--controller must be in [0.5, 300]")
    result |= measure(
        params, args.seconds, args.rate, args.profile, args.controller, args.baseline,
        args.profiler,
    )  # fmt: skip
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
