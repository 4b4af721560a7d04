"""What a marker span carries: its stack samples as ``adaprof.*`` attributes.

Attributes show in Jaeger's and Tempo's span view as they are; they are bounded:
at most ``top`` stacks, each truncated to the params' stack depth from the leaf and
to :data:`MAX_STACK_ATTR_CHARS` characters.

============================  ======================================================
``adaprof.marker``            ``true`` on every marker span
``adaprof.category``          ``db``, ``http``, ``rpc``, ``messaging`` or ``internal``
``adaprof.trigger``           why it is a marker: ``any``, ``duration>=50ms``, ``p95``
``adaprof.config_version``    the controller's config version the span ran under
``adaprof.profiler``          ``py-spy``, ``native``, ``in-process`` or ``none``
``adaprof.sample_count``      samples taken on the span's thread while it ran
``adaprof.samples_waiting``   of those, samples waiting in I/O, locks or sleep, or
                              (``native``) holding the GIL while the scheduler had
                              set the thread aside
``adaprof.samples_shared``    of those, samples that concurrent markers of other
                              traces on the same thread (asyncio) also claim
``adaprof.sampling_interval_ms``, ``adaprof.stack_depth``  the params in force
``adaprof.top_frame``         the leaf frame seen most often, ``function (file:line)``
``adaprof.stacks``            the most sampled stacks, ``"<count> root;...;leaf"``
============================  ======================================================

    >>> attrs = marker_attributes(
    ...     category="internal", trigger="any", config_version=3, profiler="py-spy",
    ...     samples=[(("main (a.py:1)", "burn (b.py:2)"), False)] * 3,
    ...     shared=0, interval_ms=10, depth=8, top=5)
    >>> attrs["adaprof.sample_count"], attrs["adaprof.stacks"]
    (3, ('3 main (a.py:1);burn (b.py:2)',))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from opentelemetry.util.types import AttributeValue

from otel_adaprof.instrumentation.join.stacks import Stack, collapse

#: Longest collapsed stack written on a span (characters, the root end is cut).
MAX_STACK_ATTR_CHARS = 2048


def marker_attributes(
    *,
    category: str,
    trigger: str,
    config_version: int,
    profiler: str,
    samples: Sequence[tuple[Stack, bool]],
    shared: int,
    interval_ms: int,
    depth: int,
    top: int,
) -> dict[str, AttributeValue]:
    """The ``adaprof.*`` attributes of one marker span (samples as ``(stack, waiting)``)."""
    attrs: dict[str, AttributeValue] = {
        "adaprof.marker": True,
        "adaprof.category": category,
        "adaprof.trigger": trigger,
        "adaprof.config_version": config_version,
        "adaprof.profiler": profiler,
        "adaprof.sample_count": len(samples),
        "adaprof.sampling_interval_ms": interval_ms,
        "adaprof.stack_depth": depth,
    }
    if not samples:
        return attrs
    counts: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    waiting = 0
    for stack, is_waiting in samples:
        waiting += is_waiting
        counts[collapse(stack, depth, MAX_STACK_ATTR_CHARS)] += 1
        if stack:
            leaves[stack[-1]] += 1
    attrs["adaprof.samples_waiting"] = waiting
    attrs["adaprof.samples_shared"] = shared
    if leaves:
        attrs["adaprof.top_frame"] = leaves.most_common(1)[0][0]
    if top > 0:
        attrs["adaprof.stacks"] = tuple(f"{n} {s}" for s, n in counts.most_common(top))
    return attrs
