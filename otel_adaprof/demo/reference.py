"""The ground-truth check: a long high-rate py-spy reference run on the demo workload.

The demo service runs plain (no agent), the load generator goes through the phases,
and a py-spy of our own (``--nonblocking``, 100 Hz by default) records each phase
separately, from :data:`PHASE_LEAD_S` after the phase starts to :data:`PHASE_MARGIN_S`
before it ends. Each phase's captured function shares are compared with the shares
known by construction (:mod:`otel_adaprof.demo.ground_truth`).

Usage::

    >>> from otel_adaprof.demo.reference import reference_run
    >>> result = reference_run(duration_s=120.0)          # doctest: +SKIP
    >>> result["phases"]["hot_path"]["l1_error"] < 0.1    # doctest: +SKIP
    True

or ``adaprof bench --reference``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from otel_adaprof.demo.ground_truth import GROUND_TRUTH, function_of, function_shares, l1_error
from otel_adaprof.demo.loadgen import LoadGenerator
from otel_adaprof.demo.phases import SHAPE, SHAPE_ENV, Phase, schedule
from otel_adaprof.demo.processes import Children, wait_for_line
from otel_adaprof.demo.workload import HOT_PATH
from otel_adaprof.exporters.collapsed import parse_collapsed

#: Seconds cut from the end of each phase so that no sample straddles two phases.
PHASE_MARGIN_S = 0.5
#: Seconds each phase's py-spy waits after the phase starts: requests of the phase
#: before still in flight (a hot-path request is 22 ms of CPU, longer on a busy
#: machine) are not the phase's own.
PHASE_LEAD_S = 0.25


def py_spy_command() -> str:
    """py-spy from this interpreter's environment (or PATH)."""
    sibling = Path(sys.executable).with_name("py-spy")
    return str(sibling) if sibling.exists() else "py-spy"


def _median_depth(stacks: Iterable[str]) -> int:
    """The median number of frames of ``stacks`` (distinct collapsed stacks; 0: none).

    >>> _median_depth(["a;b", "a;b;c", "a;b;c;d"])
    3
    """
    depths = sorted(s.count(";") + 1 for s in stacks)
    return depths[len(depths) // 2] if depths else 0


def reference_run(
    duration_s: float = 120.0,
    rate_rps: float = 20.0,
    rate_hz: int = 100,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Run the phases under a high-rate py-spy; shares and L1 error per phase."""
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="adaprof-ref-")
    folder = Path(workdir) if workdir else Path(tmp.name)  # type: ignore[union-attr]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with Children() as kids:
            return _run(kids, folder, duration_s, rate_rps, rate_hz)
    finally:
        if tmp is not None:
            tmp.cleanup()


def start_plain_service(kids: Children, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The demo service of this process's shape, with no agent and no OpenTelemetry
    settings inherited, its SQLite file and log in ``folder``: ``(process, port)``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ADAPROF_"))}
    env[SHAPE_ENV] = SHAPE.name  # the service takes this process's shape
    argv = [sys.executable, "-m", "otel_adaprof.demo.service", "--port", "0"]
    argv += ["--db", str(folder / "shop.db")]
    log = folder / "service.log"
    proc = kids.start("service", argv, env=env, log=log, stdout_pipe=True)
    port = int(wait_for_line(proc, "listening on", 30.0, log=log).rsplit(":", 1)[1])
    return proc, port


def start_py_spy(
    kids: Children, name: str, pid: int, rate_hz: int, seconds: int, out: Path
) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` at ``rate_hz`` for ``seconds`` into ``out`` (raw
    collapsed stacks, ``--nonblocking``), its log beside ``out``."""
    return kids.start(
        name,
        [py_spy_command(), "record", "--nonblocking", "-r", str(rate_hz), "-f", "raw",
         "-o", str(out), "-p", str(pid), "-d", str(seconds)],
        log=out.parent / "py-spy.log",
    )  # fmt: skip


def _run(
    kids: Children, folder: Path, duration_s: float, rate_rps: float, rate_hz: int
) -> dict[str, Any]:
    proc, port = start_plain_service(kids, folder)
    spies: dict[str, subprocess.Popen[bytes]] = {}
    timers: list[threading.Timer] = []

    def start_spy(phase: Phase) -> None:
        seconds = max(1, int(phase.duration_s - PHASE_MARGIN_S - PHASE_LEAD_S))
        out = folder / f"raw-{phase.name}.txt"
        spies[phase.name] = start_py_spy(
            kids, f"py-spy-{phase.name}", proc.pid, rate_hz, seconds, out
        )

    def on_phase(phase: Phase) -> None:
        timer = threading.Timer(PHASE_LEAD_S, start_spy, args=(phase,))
        timer.daemon = True
        timers.append(timer)
        timer.start()

    try:
        load = LoadGenerator(port, schedule(duration_s, rate_rps), on_phase=on_phase).run()
    finally:
        for timer in timers:
            timer.join(PHASE_LEAD_S + 5.0)
    phases: dict[str, Any] = {}
    for name, spy in spies.items():
        spy.wait(60)
        raw = folder / f"raw-{name}.txt"
        stacks = parse_collapsed(raw.read_text()) if raw.exists() else {}
        shares = function_shares(stacks)
        truth = GROUND_TRUTH[name]
        phases[name] = {
            "samples": sum(stacks.values()),
            "workload_samples": sum(n for s, n in stacks.items() if any(f in s for f in truth)),
            "shares": {k: round(v, 4) for k, v in shares.items()},
            "truth": truth,
            "l1_error": round(l1_error(truth, shares), 4),
            "hot_path_share": round(shares[HOT_PATH], 4),
            "workload_stack_frames": _median_depth(s for s in stacks if function_of(s)),
            "p50_ms": round(load.per_phase[name].p50_ms, 2),
            "p99_ms": round(load.per_phase[name].p99_ms, 2),
        }
    return {
        "shape": SHAPE.name,
        "duration_s": duration_s,
        "rate_rps": rate_rps,
        "py_spy_hz": rate_hz,
        "phases": phases,
    }


def reference_table(result: dict[str, Any]) -> str:
    """The reference run as markdown: captured vs true share per function and phase."""
    phases = result["phases"]
    names = list(next(iter(phases.values()))["truth"]) if phases else []
    head = "| phase | workload samples | " + " | ".join(names) + " | L1 error |"
    lines = [head, "|---|---|" + "---|" * (len(names) + 1)]
    for phase, fig in phases.items():
        cells = [f"{100 * fig['shares'][n]:.1f} % ({100 * fig['truth'][n]:.0f} %)" for n in names]
        lines.append(
            f"| {phase} | {fig['workload_samples']:g} | " + " | ".join(cells)
            + f" | {fig['l1_error']:.3f} |"
        )  # fmt: skip
    return "\n".join(lines) + "\n"
