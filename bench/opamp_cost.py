"""OpAMP against the native poll: what one window's exchange costs with each transport.

A real controller subprocess on 127.0.0.1 (SQLite in a temporary folder, one open
static session) answers agents that use the agent's own transports —
``Poller._send`` (``POST /v1/agents/poll``, JSON) and ``OpampPoller._send``
(``POST /v1/opamp``, protobuf with the report as a custom message) — sending the same
window report (observed state and a 40-stack histogram). The two transports alternate
in rounds, so both see the same machine load; every figure is a ratio measured side
by side in one run:

- wall time of one poll at the agent (request, controller work, answer validated);
- controller CPU per poll (the controller process's user+system CPU over a round);
- bytes sent and received per poll.

    python bench/opamp_cost.py                 # 6 rounds of 200 polls per transport
    python bench/opamp_cost.py --rounds 2 --polls 50 --json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.control.opamp_poller import OpampPoller
from otel_adaprof.instrumentation.control.poller import Poller
from otel_adaprof.opamp_config import config_body
from otel_adaprof.params import Params
from otel_adaprof.protocol import (
    AgentIdentity,
    ObservedState,
    PollRequest,
    StackCount,
    StackHistogram,
    encode,
)

OUT = Path(__file__).resolve().parent / "output" / "opamp_cost.json"
SERVICE = "bench-opamp"


def _report(identity: AgentIdentity, version: int) -> PollRequest:
    stacks = [
        StackCount(stack=f"main (app.py:1);handle (app.py:9);f{i} (work.py:{i})", count=i + 1)
        for i in range(40)
    ]
    return PollRequest(
        agent=identity,
        config_version=version,
        window=ObservedState(
            window_start=time.time(),
            window_seconds=5.0,
            process_cpu=0.3,
            samples_per_s=100.0,
            markers_per_s=5.0,
            spans_per_s=40.0,
            profiler_cpu_seconds=0.05,
            bytes_exported_per_s=2e4,
        ),
        stacks=StackHistogram(stacks=stacks, total_samples=sum(range(41)), depth=32),
    )


def _start_controller(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = (workdir / "controller.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_adaprof.cli", "controller", "--port", "0",
         "--db", str(workdir / "bench.db")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.findall(
            r"listening on (http://127\.0\.0\.1:\d+)", (workdir / "controller.log").read_text()
        )
        if found:
            return proc, found[-1]
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError((workdir / "controller.log").read_text())


def _poller(cls: type[Poller], url: str, name: str) -> Poller:
    identity = AgentIdentity(service=SERVICE, instance_id=name, host="bench", pid=1)
    return cls(
        LiveParams(Params()), None, lambda: identity, lambda depth: StackHistogram(),  # type: ignore[arg-type]
        controller_url=url, timeout_s=10.0,
    )  # fmt: skip


def _round(poller: Poller, controller: psutil.Process, polls: int) -> dict[str, float]:
    identity = poller.identity()
    version, walls = 0, []
    cpu0 = controller.cpu_times()
    for _ in range(polls):
        request = _report(identity, version)
        started = time.perf_counter()
        answer = poller._send(request)
        walls.append(time.perf_counter() - started)
        version = answer.config_version
    cpu1 = controller.cpu_times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {"median_ms": 1e3 * statistics.median(walls), "cpu_ms_per_poll": 1e3 * cpu / polls}


def _sizes(native: Poller, opamp: OpampPoller) -> dict[str, int]:
    request = _report(native.identity(), 1)
    answer = native._send(request)
    opamp_request = _report(opamp.identity(), 1)
    return {
        "native_request_bytes": len(encode(request)),
        "native_answer_bytes": len(encode(answer)),
        "opamp_request_bytes": len(opamp._message(opamp_request).SerializeToString()),
        # the answer: ServerToAgent around adaprof.json (the same PollResponse) + hash
        "opamp_answer_body_bytes": len(config_body(answer)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--polls", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print the JSON result only")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {OUT.name}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="adaprof-opamp-bench-") as tmp:
        proc, url = _start_controller(Path(tmp))
        try:
            body = {"service": SERVICE, "mode": "static", "duration_s": 3600}
            req = urllib.request.Request(url + "/v1/sessions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
            urllib.request.urlopen(req, timeout=10).read()
            controller = psutil.Process(proc.pid)
            native = _poller(Poller, url, "bench-native")
            opamp = _poller(OpampPoller, url, "bench-opamp")
            assert isinstance(opamp, OpampPoller)
            _round(native, controller, 20)  # warm up both paths
            _round(opamp, controller, 20)
            rounds: dict[str, list[dict[str, float]]] = {"native": [], "opamp": []}
            for _ in range(args.rounds):
                rounds["native"].append(_round(native, controller, args.polls))
                rounds["opamp"].append(_round(opamp, controller, args.polls))
            sizes = _sizes(native, opamp)
        finally:
            proc.terminate()
            proc.wait(15)

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[kind])

    result: dict[str, Any] = {
        "machine": "shared 2-vCPU development machine (other engineers' jobs running)",
        "rounds": args.rounds,
        "polls_per_round": args.polls,
        "native": {k: round(med("native", k), 3) for k in ("median_ms", "cpu_ms_per_poll")},
        "opamp": {k: round(med("opamp", k), 3) for k in ("median_ms", "cpu_ms_per_poll")},
        "ratio_opamp_to_native": {
            k: round(med("opamp", k) / med("native", k), 3)
            for k in ("median_ms", "cpu_ms_per_poll")
        },
        "sizes": sizes,
        "per_round": rounds,
    }
    if not args.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'':>8} {'wall ms/poll':>13} {'controller CPU ms/poll':>23}")
    for kind in ("native", "opamp"):
        print(
            f"{kind:>8} {result[kind]['median_ms']:>13.2f} {result[kind]['cpu_ms_per_poll']:>23.2f}"
        )
    ratio = result["ratio_opamp_to_native"]
    print(f"{'ratio':>8} {ratio['median_ms']:>13.2f} {ratio['cpu_ms_per_poll']:>23.2f}")
    print("bytes:", json.dumps(sizes))


if __name__ == "__main__":
    main()
