"""Scenarios: what a simulated service does, phase by phase.

A :class:`Phase` fixes, for a number of windows, where the CPU goes (leaf functions and
their shares), how many spans of which categories the service emits, its load and
threads. Scenarios chain phases: stack distributions that shift, span rates and
categories that change, load spikes, new hot paths.

Usage::

    >>> s = SCENARIOS["hot-path"]
    >>> s.total_windows, s.phase_at(0).name
    (130, 'steady')
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from otel_adaprof.sim.calibration import Calibration, calibration

#: Seconds per simulated window (an agent's reporting period), unless a scenario sets
#: its own (``Scenario.window_s``).
WINDOW_SECONDS = 5.0
#: The window of the ``demo`` scenarios: ``adaprof bench``'s (``BenchSettings.window_s``),
#: so that their detection delays come in the benchmark's steps.
DEMO_WINDOW_S = 3.0


@dataclass(frozen=True)
class Phase:
    """A stretch of windows during which the service behaves the same way."""

    name: str
    windows: int
    functions: Mapping[str, float]  # leaf function -> weight (share of CPU samples)
    spans_per_s: float = 100.0
    categories: Mapping[str, float] = field(
        default_factory=lambda: {"http": 0.5, "db": 0.3, "internal": 0.2}
    )
    cpu_load: float = 0.5  # process CPU, fraction of one core
    threads: float = 4.0  # threads py-spy scans
    frames: int = 20  # depth of the service's real stacks
    error_share: float = 0.02
    slow_share: float = 0.1  # share of spans over 100 ms


@dataclass(frozen=True)
class Scenario:
    """A named sequence of phases."""

    name: str
    phases: tuple[Phase, ...]
    description: str = ""
    window_s: float = WINDOW_SECONDS  # the agent's reporting period in this scenario
    #: how many times longer than the benchmark's its phases are (the ``demo``
    #: scenarios; the verdict's CPU bound is 0.2x from 4x on, as ``adaprof bench``'s)
    phase_scale: float = 1.0

    @property
    def total_windows(self) -> int:
        """Windows in the whole scenario."""
        return sum(p.windows for p in self.phases)

    def phase_index(self, window: int) -> int:
        """Index of the phase that window ``window`` falls in (last phase after the end)."""
        for i, phase in enumerate(self.phases):
            if window < phase.windows:
                return i
            window -= phase.windows
        return len(self.phases) - 1

    def phase_at(self, window: int) -> Phase:
        """The phase of window ``window``."""
        return self.phases[self.phase_index(window)]


def zipf_functions(names: list[str], exponent: float = 1.1) -> dict[str, float]:
    """Weights ``1 / rank**exponent`` (a typical profile: few hot, many cold functions).

    >>> zipf_functions(["a", "b"], 1.0)
    {'a': 1.0, 'b': 0.5}
    """
    return {n: 1.0 / (i + 1) ** exponent for i, n in enumerate(names)}


def with_hot_path(functions: Mapping[str, float], name: str, share: float) -> dict[str, float]:
    """``functions`` plus ``name`` taking ``share`` of all samples.

    >>> with_hot_path({"a": 1.0}, "hot", 0.5)
    {'a': 1.0, 'hot': 1.0}
    """
    total = sum(functions.values())
    out = dict(functions)
    out[name] = total * share / (1.0 - share)
    return out


BASE_FUNCTIONS = zipf_functions(
    [
        "render_page",
        "query_orders",
        "json_dumps",
        "validate_form",
        "hash_password",
        "load_session",
        "template_lookup",
        "compute_tax",
        "serialize_cart",
        "gzip_body",
        "parse_headers",
        "route_match",
        "read_config",
        "log_access",
        "check_acl",
        "fetch_prices",
        "merge_dicts",
        "encode_url",
        "sort_items",
        "format_date",
    ]
)


def _base(name: str, windows: int, **kw: object) -> Phase:
    return replace(Phase(name=name, windows=windows, functions=BASE_FUNCTIONS), **kw)  # type: ignore[arg-type]


#: The demo service's function shares (``otel_adaprof.demo.phases``), for the scenario
#: that mirrors ``adaprof bench``.
DEMO_FUNCTIONS = {
    "parse_catalog": 0.30,
    "price_items": 0.40,
    "compute_tax": 0.10,
    "render_invoice": 0.20,
}


def demo_scenario(
    phase_scale: float = 1.0, name: str = "demo", calib: Calibration | None = None
) -> Scenario:
    """``adaprof bench``'s story at its default length (240 s at 10 req/s: phases of
    72/60/60/48 s in the benchmark's 3 s windows), every phase ``phase_scale`` times
    longer. The service's CPU per phase is the demo's, measured with profiling off
    (``demo_cpu_cores`` in ``calibration.json``, ``bench/sim_calibration.py``; about
    0.08 of a core, 0.12 with the hot path, 0.23 at doubled load); without that figure
    5 ms per request (0.05 of a core), 40 % more with the hot path. Spans per request
    are the demo's too (``demo_spans_per_request``; without it 2). Both from ``calib``
    (default: py-spy's world's calibration).

    >>> [p.windows for p in demo_scenario().phases], demo_scenario(4).total_windows
    ([24, 20, 20, 16], 320)
    """
    hot = with_hot_path(DEMO_FUNCTIONS, "compress_report", 0.4)
    plan = (  # (phase, seconds, functions, cores, requests/s)
        ("steady", 72.0, DEMO_FUNCTIONS, 0.05, 10.0),
        ("hot_path", 60.0, hot, 0.083, 10.0),
        ("load_change", 60.0, hot, 0.167, 20.0),
        ("hot_path_gone", 48.0, DEMO_FUNCTIONS, 0.05, 10.0),
    )
    cats = {"http": 0.6, "db": 0.2, "internal": 0.2}
    calib = calib or calibration()
    measured = dict(calib.demo_cpu_cores)
    per_request = calib.demo_spans_per_request or 2.0
    return Scenario(
        name,
        tuple(
            Phase(
                ph,
                max(1, round(seconds * phase_scale / DEMO_WINDOW_S)),
                fns,
                spans_per_s=rps * per_request,
                cpu_load=measured.get(ph, load),
                threads=16.0,
                frames=14,
                categories=cats,
            )
            for ph, seconds, fns, load, rps in plan
        ),
        "the demo service's phases, as adaprof bench runs them",
        window_s=DEMO_WINDOW_S,
        phase_scale=phase_scale,
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "hot-path",
            (
                _base("steady", 40),
                _base(
                    "hot-path",
                    30,
                    cpu_load=0.5 / 0.7,
                    functions=with_hot_path(BASE_FUNCTIONS, "parse_invoice", 0.3),
                ),
                _base("steady-again", 30),
                _base(
                    "hot-path-2",
                    30,
                    cpu_load=0.5 / 0.75,
                    functions=with_hot_path(BASE_FUNCTIONS, "compress_blob", 0.25),
                ),
            ),
            "a function never called before takes a third of the CPU, goes away, another comes",
        ),
        Scenario(
            "load-spike",
            (
                _base("steady", 40),
                _base(
                    "spike",
                    30,
                    spans_per_s=600.0,
                    cpu_load=0.95,
                    threads=16.0,
                    functions=with_hot_path(BASE_FUNCTIONS, "serialize_batch", 0.2),
                ),
                _base("recovery", 40),
            ),
            "six times the traffic, four times the threads, a batch serialiser gets hot",
        ),
        Scenario(
            "category-shift",
            (
                _base("http-heavy", 40, categories={"http": 0.8, "internal": 0.2}),
                _base(
                    "db-heavy",
                    35,
                    categories={"db": 0.7, "http": 0.2, "internal": 0.1},
                    cpu_load=0.5 / 0.7,
                    functions=with_hot_path(
                        with_hot_path(BASE_FUNCTIONS, "fetch_rows", 0.2), "decode_row", 0.1
                    ),
                ),
                _base(
                    "messaging",
                    35,
                    categories={"messaging": 0.6, "http": 0.3, "internal": 0.1},
                    cpu_load=0.5 / 0.75,
                    functions=with_hot_path(BASE_FUNCTIONS, "consume_message", 0.25),
                ),
            ),
            "traffic moves from HTTP to the database, then to a message queue",
        ),
        Scenario(
            "quiet-busy",
            (
                _base("quiet", 40, spans_per_s=3.0, cpu_load=0.05, threads=2.0),
                _base(
                    "busy",
                    40,
                    spans_per_s=300.0,
                    cpu_load=0.9,
                    threads=8.0,
                    functions=with_hot_path(BASE_FUNCTIONS, "resize_image", 0.3),
                ),
                _base("quiet-again", 30, spans_per_s=3.0, cpu_load=0.05, threads=2.0),
            ),
            "a mostly idle service gets busy with a new workload, then idles again",
        ),
        demo_scenario(),
        demo_scenario(4.0, "demo-4x"),
    )
}


def scenarios_for(calib: Calibration) -> dict[str, Scenario]:
    """:data:`SCENARIOS` in ``calib``'s world: the ``demo`` scenarios carry the demo
    service's CPU per phase as that world measured it.

    >>> native = scenarios_for(calibration("native"))
    >>> list(native) == list(SCENARIOS), native["hot-path"] is SCENARIOS["hot-path"]
    (True, True)
    """
    demo = (demo_scenario(calib=calib), demo_scenario(4.0, "demo-4x", calib=calib))
    return {**SCENARIOS, **{s.name: s for s in demo}}


_NEW_FUNCTIONS = [
    "parse_csv",
    "render_pdf",
    "crypto_sign",
    "resize_thumb",
    "diff_text",
    "bloom_check",
    "regex_scan",
    "tokenize",
    "aggregate_stats",
    "checksum_file",
    "walk_tree",
    "pack_msg",
]


def random_scenario(seed: int, phases: int = 6) -> Scenario:
    """A random scenario for pretraining (never one of :data:`SCENARIOS`' exact phases).

    >>> random_scenario(3).total_windows > 0
    True
    """
    rng = random.Random(seed)
    out: list[Phase] = []
    for i in range(phases):
        funcs: dict[str, float] = dict(BASE_FUNCTIONS)
        load = 10 ** rng.uniform(-1.6, 0.0)  # 0.025 to 1 core, as many light as busy
        if rng.random() < 0.6:
            share = rng.uniform(0.05, 0.4)
            funcs = with_hot_path(funcs, rng.choice(_NEW_FUNCTIONS), share)
            load = min(1.0, load / (1.0 - share))  # the new work costs CPU
        cats = {c: rng.random() for c in ("http", "db", "rpc", "messaging", "internal")}
        out.append(
            Phase(
                name=f"p{i}",
                windows=rng.randint(8, 60),
                functions=funcs,
                spans_per_s=10 ** rng.uniform(0.3, 2.9),
                categories=cats,
                cpu_load=load,
                threads=rng.choice([1.0, 2.0, 4.0, 8.0, 16.0]),
                frames=rng.randint(8, 40),
                error_share=rng.uniform(0.0, 0.1),
                slow_share=rng.uniform(0.02, 0.3),
            )
        )
    return Scenario(f"random-{seed}", tuple(out), "random phases for pretraining")
