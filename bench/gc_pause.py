"""How long a full garbage collection stops the controller, its startup heap frozen or not.

A full collection (generation 2) walks every object the collector tracks while the
event loop waits. The controller (``otel_adaprof/controller/app.py``) freezes what
exists once it is up (``gc.freeze()``); this script measures what that saves: it builds
the controller's core in this process (SQLite file, an adaptive session), runs
``--rounds`` rounds of polls from ``--agents`` agents (the full window reports of
``bench/poll_load.py``, so 1,000 decisions wait for their reward, as under that load),
then times ``gc.collect()`` ``--repeat`` times with the startup heap frozen (as the
controller does), then ``--repeat`` times with nothing frozen (as before).

    python bench/gc_pause.py
    python bench/gc_pause.py --agents 1000 --rounds 3 --repeat 5 --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def measure(agents: int, rounds: int, repeat: int) -> dict[str, Any]:
    """Objects tracked and full-collection times (ms), startup heap frozen or not."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from poll_load import poll_body

    from otel_adaprof.controller.config import ControllerConfig
    from otel_adaprof.controller.polling import ControllerCore
    from otel_adaprof.controller.store import Store
    from otel_adaprof.protocol import decode_poll_request
    from otel_adaprof.session_spec import SessionSpec

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(str(Path(tmp) / "gc.db"))
        core = ControllerCore(ControllerConfig(), store)
        try:
            core.open_session(
                SessionSpec.parse({"service": "bench", "mode": "adaptive", "duration_s": 3600})
            )
            gc.collect()
            gc.freeze()  # what exists once the controller is up, as app.py freezes it
            startup = gc.get_freeze_count()
            versions = [0] * agents
            for _ in range(rounds):
                for i in range(agents):
                    body = json.loads(poll_body("bench", f"agent-{i}", versions[i]))
                    versions[i] = core.poll(decode_poll_request(body)).config_version
            live = len(gc.get_objects())  # tracked and not frozen: made by the polls

            def full_collection() -> float:
                started = time.perf_counter()
                gc.collect()
                return (time.perf_counter() - started) * 1000

            # the startup heap frozen (the controller), then nothing frozen (before)
            frozen = [full_collection() for _ in range(repeat)]
            gc.unfreeze()
            unfrozen = [full_collection() for _ in range(repeat)]
            return {
                "agents": agents,
                "rounds": rounds,
                "startup_objects": startup,
                "poll_objects": live,
                "full_gc_ms_nothing_frozen": statistics.median(unfrozen),
                "full_gc_ms_startup_frozen": statistics.median(frozen),
                "full_gc_ms_nothing_frozen_all": unfrozen,
                "full_gc_ms_startup_frozen_all": frozen,
                "load_average": os.getloadavg()[0],
            }
        finally:
            gc.unfreeze()
            core.close()
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="polls per agent")
    parser.add_argument("--repeat", type=int, default=5, help="collections timed per case")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.agents <= 20_000 or not 1 <= args.rounds <= 10:
        parser.error("--agents in [1, 20000], --rounds in [1, 10]")
    if not 1 <= args.repeat <= 50:
        parser.error("--repeat in [1, 50]")
    r = measure(args.agents, args.rounds, args.repeat)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(
        f"{r['agents']} agents x {r['rounds']} polls (load average {r['load_average']:.2f})\n\n"
        "| heap | objects the collector walks | full collection, median ms |\n"
        "|---|---:|---:|\n"
        f"| nothing frozen | {r['startup_objects'] + r['poll_objects']:,} "
        f"| {r['full_gc_ms_nothing_frozen']:.1f} |\n"
        f"| startup heap frozen (the controller) | {r['poll_objects']:,} "
        f"| {r['full_gc_ms_startup_frozen']:.1f} |"
    )


if __name__ == "__main__":
    main()
