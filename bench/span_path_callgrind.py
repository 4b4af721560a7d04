"""Instructions per span of the agent's span path, exactly repeatable (valgrind callgrind).

``agent_overhead.py --only spans`` times spans in CPU µs: on this machine its figure for
one configuration moves by ±2 µs between runs, as much as a change to the span path is
worth. This counts instead: each configuration of ``agent_overhead.SPAN_CONFIGS`` (plain
SDK; the agent with every span a marker; with markers filtered out; held for samples)
in a fresh process under callgrind, a ``SimpleSpanProcessor`` to a discarding exporter
(the export runs inline, so nothing depends on a worker thread's timing), counting only
the measured spans. Instructions are what the agent adds; the µs column converts them
at the plain SDK's CPU µs per span given with ``--sdk-us`` (from ``agent_overhead.py``
on the same machine), assuming the same instructions per µs.

    python bench/span_path_callgrind.py                    # 2,000 spans each, ≈ 40 s a tree
    python bench/span_path_callgrind.py --baseline /tmp/before --json
    python bench/span_path_callgrind.py --sdk-us 47                 # the SDK of issue #10's figures

``--baseline DIR`` also counts another source tree (``git archive <commit> | tar -x -C
DIR``). Run with ``PYTHONHASHSEED=0`` (the default here) for the exact figure of a tree.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from callgrind_count import counted, instructions  # noqa: E402

#: Span pairs emitted before counting (markers, caches and the latency tracker warm).
WARMUP_PAIRS = 2000


def _measure(key: str, spans: int) -> None:
    """The child: one configuration, warmed up, then ``spans`` spans counted."""
    from agent_overhead import SPAN_CONFIGS, DiscardExporter, _emit, _processor, reset_agent
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    import otel_adaprof
    from otel_adaprof.instrumentation.settings import AgentSettings

    cfg = {c.key: c for c in SPAN_CONFIGS}[key]
    reset_agent()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False
    )
    provider.add_span_processor(_processor("simple", DiscardExporter(), spans))
    if cfg.agent:
        otel_adaprof.configure(
            tracer_provider=provider,
            settings=AgentSettings(profiler=cfg.profiler),
            params=cfg.params,
            start=False,
        )
    tracer = provider.get_tracer("bench")
    _emit(tracer, WARMUP_PAIRS)
    provider.force_flush()
    gc.collect()
    with counted():
        _emit(tracer, spans // 2)
        provider.force_flush()  # spans held for samples are sent on: their work counts too


def count(source: Path | None, key: str, spans: int) -> float:
    """Instructions per span of configuration ``key`` in the tree at ``source``."""
    env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    script = Path(__file__).resolve()
    child = [sys.executable, str(script), "--child", key, "--spans", str(spans)]
    return instructions(child, cwd=source or script.parent.parent, env=env) / spans


def measure(source: Path | None, spans: int, sdk_us: float) -> dict[str, Any]:
    """Every configuration of one tree: instructions per span, over the SDK, and in µs."""
    from agent_overhead import SPAN_CONFIGS

    ir = {cfg.key: count(source, cfg.key, spans) for cfg in SPAN_CONFIGS}
    sdk = ir["sdk"]
    return {
        cfg.key: {
            "label": cfg.label,
            "instructions_per_span": round(ir[cfg.key]),
            "delta_instructions": round(ir[cfg.key] - sdk),
            "ratio": round(ir[cfg.key] / sdk, 3),
            "delta_us_at_sdk_us": round((ir[cfg.key] - sdk) / sdk * sdk_us, 2),
        }
        for cfg in SPAN_CONFIGS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=2000, help="spans counted per config")
    parser.add_argument(
        "--sdk-us", type=float, default=27.0,
        help="the plain SDK's CPU µs per span on this machine (agent_overhead.py)",
    )  # fmt: skip
    parser.add_argument("--baseline", type=Path, help="another source tree, counted too")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 100 <= args.spans <= 200_000 or args.spans % 2:
        parser.error("--spans must be an even number in [100, 200000]")
    if args.sdk_us <= 0:
        parser.error("--sdk-us must be positive")
    if args.child:
        _measure(args.child, args.spans)
        return 0
    trees: list[tuple[str, Path | None]] = [("this tree", None)]
    if args.baseline:
        if not (args.baseline / "otel_adaprof").is_dir():
            parser.error(f"--baseline {args.baseline}: no otel_adaprof package there")
        trees.insert(0, (f"baseline ({args.baseline})", args.baseline))
    out = {label: measure(source, args.spans, args.sdk_us) for label, source in trees}
    if args.json:
        print(json.dumps({"spans": args.spans, "sdk_us": args.sdk_us, "trees": out}, indent=1))
        return 0
    at = f"µs at {args.sdk_us:g} µs/span SDK"
    print(f"| tree | configuration | instructions per span | over the SDK | {at} |")
    print("|---|---|---:|---:|---:|")
    for label, rows in out.items():
        for row in rows.values():
            print(
                f"| {label} | {row['label']} | {row['instructions_per_span']:,} "
                f"| {row['delta_instructions']:+,} ({row['ratio']:.3f}×) "
                f"| {row['delta_us_at_sdk_us']:+.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
