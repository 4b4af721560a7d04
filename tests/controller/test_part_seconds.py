"""The poll parts' histogram (counted in plain lists) exposes what prometheus_client's
``Histogram`` exposes for the same values: every bucket, count and sum per part."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from otel_adaprof.controller.metrics import FINE_BUCKETS, PartSeconds


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in registry.collect():
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_part_seconds_counts_as_prometheus_histogram():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = PartSeconds("p_seconds", "p", FINE_BUCKETS, ours)
    ref = Histogram("p_seconds", "p", ["part"], buckets=FINE_BUCKETS, registry=theirs)
    rng = random.Random(3)
    for _ in range(2000):
        parts = {
            name: rng.choice([rng.uniform(0, 0.03), rng.choice(FINE_BUCKETS), 0.0, 2.0])
            for name in rng.sample(["parse", "read", "credit", "commit"], rng.randint(1, 4))
        }
        mine.observe_all(parts)
        for name, seconds in parts.items():
            ref.labels(name).observe(seconds)
    got, want = _samples(ours), _samples(theirs)
    assert got.keys() == want.keys()
    for key, value in want.items():
        if key[0].endswith("_sum"):  # the same values added in the same order
            assert abs(got[key] - value) <= 1e-9 * max(1.0, value), key
        else:
            assert got[key] == value, key
    assert b'p_seconds_count{part="parse"}' in generate_latest(ours)
