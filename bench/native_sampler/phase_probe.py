"""When the native ``thread`` clock reads, against the kernel's tick grid, and what each
part of its samples says: is the spread of its L1 on the demo shapes late reads?

A demo service of the shape (no agent) with the sampler on the ``thread`` clock under
the benchmark's load (its four phases in ``SECONDS`` at 10 requests/s). Each sample's
read time modulo the tick (4 ms: ``CONFIG_HZ=250`` here) in 250 µs bins, then the L1
against the run's truth of all samples, of those read within 0.5 ms of a tick and of
the rest. ``NS_FIFO=1`` runs the sampler thread under ``SCHED_FIFO`` (root only).

Usage::

    python bench/native_sampler/phase_probe.py ledger|shop [SECONDS]    # ~40 s
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
os.environ["ADAPROF_DEMO_SHAPE"] = sys.argv[1] if len(sys.argv) > 1 else "ledger"

from build import build  # noqa: E402

sys.path.insert(0, str(HERE.parent))
from native_sampler_services import PRELUDE  # noqa: E402  (the same service launch)

from otel_adaprof.demo import ground_truth  # noqa: E402
from otel_adaprof.demo.loadgen import LoadGenerator  # noqa: E402
from otel_adaprof.demo.phases import schedule  # noqa: E402
from otel_adaprof.demo.processes import wait_for_line  # noqa: E402

#: The kernel's tick on this machine (s): CONFIG_HZ=250.
TICK_NS = 4_000_000
PROMPT_NS = 500_000


def main() -> None:
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    with tempfile.TemporaryDirectory(prefix="adaprof-phase-") as tmp:
        module_dir = build(Path(tmp)).parent
        out = Path(tmp) / "samples.json"
        env = {**os.environ, "NS_OUT": str(out), "NS_SERVICE": "demo"}
        env |= {"NS_CLOCK": "thread", "NS_INTERVAL_US": "10000"}
        env["PYTHONPATH"] = os.pathsep.join([str(module_dir), str(ROOT)])
        service = subprocess.Popen([sys.executable, "-c", PRELUDE], stdout=subprocess.PIPE, env=env)
        try:
            url = wait_for_line(service, "listening on", 60.0).split("listening on ", 1)[1]
            time.sleep(1.0)
            result = LoadGenerator(
                int(url.strip().rsplit(":", 1)[1]), schedule(seconds, 10.0)
            ).run()
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(30)
        got = json.loads(out.read_text())["samples"]
    truth = ground_truth.run_truth({n: float(s.ok) for n, s in result.per_phase.items()})
    bins = collections.Counter((ts % TICK_NS) // 250_000 for ts, _ in got)
    print(
        f"{os.environ['ADAPROF_DEMO_SHAPE']}, {seconds:g} s, SCHED_FIFO {'NS_FIFO' in os.environ}"
    )
    print("reads by 250 µs after a tick:", [bins[i] for i in range(TICK_NS // 250_000)])
    for label, keep in (
        ("all", lambda phase: True),
        ("within 0.5 ms of a tick", lambda phase: phase < PROMPT_NS),
        ("later", lambda phase: phase >= PROMPT_NS),
    ):
        stacks = collections.Counter(st for ts, st in got if keep(ts % TICK_NS))
        shares = ground_truth.function_shares(stacks)
        n = sum(c for st, c in stacks.items() if ground_truth.function_of(st))
        off = {k: round(shares[k] - truth[k], 3) for k in truth}
        print(
            f"  {label}: {n} workload samples,"
            f" L1 {ground_truth.l1_error(truth, shares):.3f}, off by {off}"
        )


if __name__ == "__main__":
    main()
