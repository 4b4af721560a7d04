"""The CPU work of the demo service: named functions that burn known CPU time.

Each function spins until its own thread has used the asked CPU time
(``time.thread_time``), so its CPU cost is exact by construction whatever the machine
speed — which is what makes the ground truth in :mod:`otel_adaprof.demo.ground_truth`
true. Each spins in its own loop (no shared helper) so that the function is the leaf
frame of every stack sample taken while it runs.

Usage::

    >>> from otel_adaprof.demo import workload
    >>> import time
    >>> t0 = time.thread_time(); _ = workload.parse_catalog(2.0)
    >>> time.thread_time() - t0 >= 0.002
    True
"""

from __future__ import annotations

import time

#: Arithmetic steps between clock reads: small enough to stop within ~0.1 ms.
_STEPS = 200


def parse_catalog(cpu_ms: float) -> int:
    """Burn ``cpu_ms`` of this thread's CPU (the /catalog endpoint's work)."""
    end = time.thread_time() + cpu_ms / 1000.0
    x = 1
    while time.thread_time() < end:
        for _ in range(_STEPS):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF
    return x


def price_items(cpu_ms: float) -> int:
    """Burn ``cpu_ms`` of this thread's CPU (the /price endpoint's work)."""
    end = time.thread_time() + cpu_ms / 1000.0
    x = 3
    while time.thread_time() < end:
        for _ in range(_STEPS):
            x = (x * 22695477 + 1) & 0xFFFFFFFF
    return x


def compute_tax(cpu_ms: float) -> int:
    """Burn ``cpu_ms`` of this thread's CPU (the peer /peer/tax endpoint's work)."""
    end = time.thread_time() + cpu_ms / 1000.0
    x = 5
    while time.thread_time() < end:
        for _ in range(_STEPS):
            x = (x * 69069 + 1) & 0xFFFFFFFF
    return x


def render_invoice(cpu_ms: float) -> int:
    """Burn ``cpu_ms`` of this thread's CPU (the /checkout endpoint's work)."""
    end = time.thread_time() + cpu_ms / 1000.0
    x = 7
    while time.thread_time() < end:
        for _ in range(_STEPS):
            x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
    return x


def compress_report(cpu_ms: float) -> int:
    """The hot path: never called until the switch turns it on (see ``service``)."""
    end = time.thread_time() + cpu_ms / 1000.0
    x = 11
    while time.thread_time() < end:
        for _ in range(_STEPS):
            x = (x * 214013 + 2531011) & 0xFFFFFFFF
    return x


#: Every named workload function, by name (the ground truth is keyed by these names).
FUNCTIONS = {
    f.__name__: f
    for f in (parse_catalog, price_items, compute_tax, render_invoice, compress_report)
}
#: The function that appears only while the hot path is switched on.
HOT_PATH = compress_report.__name__
