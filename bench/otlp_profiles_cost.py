"""What OTLP profiles add per sample, side by side with what the same samples cost on spans.

For the samples of ``--spans`` marker spans (``--per-span`` samples each, stacks of
``--depth`` frames drawn from a few code paths as in a web service), measured in this
process, in one run, each repeated ``--rounds`` times (median):

- **span path** (what the agent does anyway): ``marker_attributes`` for each span and
  the encoded size of those ``adaprof.*`` attributes (the metered exporter's estimate);
- **profiles path** (``ADAPROF_PROFILES_EXPORT=otlp`` adds it): ``ProfilesExport.link``
  for each span (the join worker's share), then building and serializing the
  ``ExportProfilesServiceRequest`` (the sender thread's share), request bytes raw and
  gzip'd.

Figures are µs and bytes per sample and the ratio profiles / spans. No network: the
send itself (one POST per 5 s) is not timed.

Usage::

    .venv/bin/python bench/otlp_profiles_cost.py                  # a few seconds
    .venv/bin/python bench/otlp_profiles_cost.py --json > bench/output/otlp_profiles_cost.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import sys
import time
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext

from otel_adaprof.exporters.otlp_http import ProfilesEndpoint
from otel_adaprof.exporters.otlp_profiles import samples_request
from otel_adaprof.instrumentation.export.profiles import ProfilesExport
from otel_adaprof.instrumentation.join.span_samples import marker_attributes
from otel_adaprof.instrumentation.observe.metered_exporter import estimate_span_bytes

PERIOD_NS = 10_000_000


def _stacks(depth: int, paths: int, rng: random.Random) -> list[tuple[str, ...]]:
    base = [f"frame_{i} (site-packages/lib{i % 7}/mod{i}.py:{10 + i})" for i in range(depth)]
    out = []
    for p in range(paths):
        leafs = [f"work_{p}_{k} (app/handlers_{p}.py:{20 + k})" for k in range(3)]
        out.append((*base[: depth - 2], f"handle_{p} (app/views.py:{40 + p})", rng.choice(leafs)))
    return out


def measure(spans: int, per_span: int, depth: int, rounds: int) -> dict[str, Any]:
    rng = random.Random(7)
    stacks = _stacks(depth, paths=12, rng=rng)
    resource = Resource({"service.name": "shop", "telemetry.sdk.language": "python"})
    t0 = 1_764_000_000_000_000_000
    work = []
    for i in range(spans):
        span = ReadableSpan(
            "GET /checkout", SpanContext(0xABC0 + i, 0x100 + i, is_remote=False), resource=resource
        )
        start = t0 + i * per_span * PERIOD_NS
        samples = [(start + k * PERIOD_NS, rng.choice(stacks), False) for k in range(per_span)]
        work.append((span, i % 16, samples))
    n = spans * per_span
    span_us, link_us, encode_us, span_bytes, raw_bytes, gz_bytes = [], [], [], [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        attrs_list = [
            marker_attributes(
                category="http",
                trigger="any",
                config_version=3,
                profiler="py-spy",
                samples=[(s, w) for _t, s, w in samples],
                shared=0,
                interval_ms=10,
                depth=depth,
                top=5,
            )
            for _span, _tid, samples in work
        ]
        span_us.append((time.perf_counter() - t) / n * 1e6)
        bare = estimate_span_bytes(ReadableSpan("x"))
        size = sum(estimate_span_bytes(ReadableSpan("x", attributes=a)) - bare for a in attrs_list)
        span_bytes.append(size / n)

        export = ProfilesExport(
            ProfilesEndpoint("http://127.0.0.1:9/v1development/profiles"),
            max_queued=n + 1, batch_samples=n + 1,
        )  # fmt: skip
        export._ensure_worker = lambda: None  # type: ignore[method-assign]  # no thread here
        t = time.perf_counter()
        for span, tid, samples in work:
            export.link(span, tid, samples, PERIOD_NS, depth)
        link_us.append((time.perf_counter() - t) / n * 1e6)
        queued = [sample for _p, sample in export._queue]
        t = time.perf_counter()
        body = samples_request(
            queued, resource=export.resource, period_ns=PERIOD_NS
        ).SerializeToString()
        encode_us.append((time.perf_counter() - t) / n * 1e6)
        raw_bytes.append(len(body) / n)
        gz_bytes.append(len(gzip.compress(body)) / n)
    med = statistics.median
    spans_cost = med(span_us)
    profiles_cost = med(link_us) + med(encode_us)
    return {
        "spans": spans,
        "samples_per_span": per_span,
        "depth": depth,
        "samples": n,
        "rounds": rounds,
        "span_attributes_us_per_sample": round(spans_cost, 2),
        "profiles_link_us_per_sample": round(med(link_us), 2),
        "profiles_encode_us_per_sample": round(med(encode_us), 2),
        "profiles_over_spans_cpu": round(profiles_cost / spans_cost, 2),
        "span_attribute_bytes_per_sample": round(med(span_bytes), 1),
        "profiles_bytes_per_sample": round(med(raw_bytes), 1),
        "profiles_gzip_bytes_per_sample": round(med(gz_bytes), 1),
        "profiles_over_spans_bytes": round(med(raw_bytes) / med(span_bytes), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=500)
    parser.add_argument("--per-span", type=int, default=6)
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    rows = [measure(args.spans, per, args.depth, args.rounds) for per in (1, args.per_span, 30)]
    if args.json:
        json.dump({"machine": "shared 2-core development machine", "rows": rows}, sys.stdout,
                  indent=2)  # fmt: skip
        print()
        return 0
    header = ("samples/span", "span µs/s", "link µs/s", "encode µs/s", "cpu ratio",
              "span B/s", "otlp B/s", "gzip B/s", "B ratio")  # fmt: skip
    print(" ".join(f"{h:>12}" for h in header))
    keys = ("samples_per_span", "span_attributes_us_per_sample", "profiles_link_us_per_sample",
            "profiles_encode_us_per_sample", "profiles_over_spans_cpu",
            "span_attribute_bytes_per_sample", "profiles_bytes_per_sample",
            "profiles_gzip_bytes_per_sample", "profiles_over_spans_bytes")  # fmt: skip
    for r in rows:
        print(" ".join(f"{r[k]!s:>12}" for k in keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
