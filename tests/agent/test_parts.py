"""The agent's parts on their own, with hand-made inputs (no subprocesses)."""

from __future__ import annotations

import threading
import time

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_adaprof.errors import ContractError
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.control.poller import Poller
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.join.span_join import SpanJoin
from otel_adaprof.instrumentation.observe.observer import Counts, WindowObserver
from otel_adaprof.instrumentation.profiler.chrometrace import parse_chrometrace
from otel_adaprof.instrumentation.settings import AgentSettings
from otel_adaprof.instrumentation.spans.markers import MarkerBook, MarkerProcessor
from otel_adaprof.instrumentation.spans.sampler import AdaprofSampler, keeps
from otel_adaprof.params import Params
from otel_adaprof.protocol import AgentIdentity


def _pipeline(params: Params, **join_kw):
    live, book, store = LiveParams(params), MarkerBook(), SampleStore()
    memory = InMemorySpanExporter()
    join = SpanJoin(SimpleSpanProcessor(memory), book, store, live, **join_kw)
    provider = TracerProvider()
    provider.add_span_processor(MarkerProcessor(live, book))
    provider.add_span_processor(join)
    return provider, memory, join, store, live


def test_chrometrace_errors_name_the_event():
    with pytest.raises(ContractError, match=r"py-spy output\[1\]"):
        parse_chrometrace([{"ph": "M"}, {"ph": "B", "ts": 3}], started_at_ns=0, rate_hz=10)


def test_chrometrace_maps_remapped_thread_ids_back():
    events = [
        {"ph": "M", "name": "thread_name", "tid": 0, "args": {"name": "1407: MainThread"}},
        {"ph": "B", "tid": 0, "ts": 0, "name": "f", "args": {"filename": "/x.py", "line": 3}},
        {"ph": "E", "tid": 0, "ts": 100_000, "name": "f", "args": {}},
    ]
    out = parse_chrometrace(events, started_at_ns=0, rate_hz=100, roots=())
    assert list(out) == [1407] and len(out[1407]) == 10


def test_sampler_is_consistent_per_trace_and_follows_live_params():
    live = LiveParams(Params(trace_ratio=0.5))
    sampler = AdaprofSampler(live)
    ids = range(1, 2000)
    kept = {
        t for t in ids if sampler.should_sample(None, t * 7919 << 40, "op").decision.is_sampled()
    }
    assert kept == {t for t in ids if keeps(t * 7919 << 40, 0.5)}
    assert 700 < len(kept) < 1300
    live.apply(Params(trace_ratio=0.0, operation_ratios={"op": 1.0}), 2, None)
    assert sampler.should_sample(None, 12345, "op").decision.is_sampled()
    assert not sampler.should_sample(None, 12345, "other").decision.is_sampled()


def test_markers_follow_filters_errors_and_the_latency_percentile():
    params = Params.parse({"span_filters": {"categories": ["db"], "errors_only": True}})
    provider, memory, _join, _store, live = _pipeline(params, hold_s=0.0)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("q", kind=SpanKind.CLIENT, attributes={"db.system": "x"}):
        pass
    with tracer.start_as_current_span(
        "q", kind=SpanKind.CLIENT, attributes={"db.system": "x"}
    ) as s:
        s.set_status(Status(StatusCode.ERROR))
    with tracer.start_as_current_span("internal") as s:
        s.set_status(Status(StatusCode.ERROR))
    live.apply(Params.parse({"marker_trigger": {"latency_percentile": 90}}), 3, None)
    t0 = time.time_ns()
    request = tracer.start_span("request", start_time=t0)  # "op" spans are not requests
    inside = trace.set_span_in_context(request)
    for i in range(60):  # 1, 2, ... 10 ms, six times over: p90 is 9 ms
        span = tracer.start_span("op", context=inside, start_time=t0)
        span.end(end_time=t0 + (i % 10 + 1) * 1_000_000)
    slow = tracer.start_span("op", context=inside, start_time=t0)
    slow.end(end_time=t0 + 50_000_000)
    request.end(end_time=t0)
    provider.shutdown()
    spans = memory.get_finished_spans()
    marked = [(s.name, s.attributes.get("adaprof.trigger"), (s.end_time - s.start_time) // 10**6)
              for s in spans if s.attributes.get("adaprof.marker")]  # fmt: skip
    # the failed db query, then (no percentile before 20 observations) the 10 ms ones
    # (slower than p90) and the slow one; in any order: markers leave when the span join
    # releases them, and one pass may release a later marker before an earlier one
    assert [m[:2] for m in marked if m[0] == "q"] == [("q", "any")]
    assert sorted(m for m in marked if m[0] != "q") == [("op", "p90", 10)] * 4 + [("op", "p90", 50)]


def test_requests_slower_than_the_services_percentile_are_markers():
    """A request (local root) is also judged against the percentile of all requests:
    an endpoint slow as a whole gets all its requests marked, not a tenth of them.
    (Fails when requests are judged against their own endpoint alone: 3 markers.)"""
    params = Params.parse({"marker_trigger": {"latency_percentile": 90}})
    provider, memory, _join, _store, _live = _pipeline(params, hold_s=0.0)
    tracer = provider.get_tracer("t")
    t0 = time.time_ns()
    for i in range(300):  # 9 fast requests of 1-9 ms for each slow one of 100-129 ms
        slow = i % 10 == 9
        ms = 100 + i // 10 % 30 if slow else 1 + i % 10
        span = tracer.start_span("GET /slow" if slow else "GET /fast", start_time=t0)
        child = tracer.start_span("work", context=trace.set_span_in_context(span), start_time=t0)
        child.end(end_time=t0 + ms * 1_000_000)
        span.end(end_time=t0 + ms * 1_000_000)
    provider.shutdown()
    spans = memory.get_finished_spans()
    slow = [s for s in spans if s.name == "GET /slow"]
    fast = [s for s in spans if s.name == "GET /fast"]
    assert len(slow) == 30 and len(fast) == 270
    # Once 20 requests are known, the service's p90 lies below the slow endpoint's
    # requests: all of them are markers (judged by its own p90, 1 in 10 would be).
    assert all(s.attributes.get("adaprof.marker") for s in slow[-20:])
    # A fast request (1-9 ms) is marked by its own operation's p90 (the 9 ms ones), as before.
    marked_fast = [s for s in fast if s.attributes.get("adaprof.marker")]
    assert 0 < len(marked_fast) <= 27
    assert {(s.end_time - s.start_time) // 10**6 for s in marked_fast} == {9}


def test_a_full_join_queue_sends_spans_on_without_samples_never_drops():
    provider, memory, join, store, _live = _pipeline(Params(), hold_s=60.0, max_held=2)
    tracer = provider.get_tracer("t")
    for _ in range(5):
        with tracer.start_as_current_span("work"):
            pass
    assert join.counters.overflow == 3 and len(memory.get_finished_spans()) == 3
    store.set_watermark(time.time_ns())
    join.release_ready()
    assert len(memory.get_finished_spans()) == 5


def test_coverage_counts_slow_spans_with_any_sample_py_spys_included():
    """The join counts the slow marker spans it sends on and those that carry a sample,
    whoever took it: py-spy at 100 Hz samples slow spans without slow-span capture.
    (Fails when coverage counts capture samples only: 0 of 3 slow spans.)"""
    params = Params.parse({"marker_trigger": {"min_duration_ms": 20}})
    provider, memory, join, store, live = _pipeline(params, hold_s=60.0)
    tracer = provider.get_tracer("t")
    tid, t0 = threading.get_ident(), time.time_ns()
    for i, ms in enumerate([30, 40, 50, 5, 5]):  # three slow spans, two fast ones
        start = t0 + i * 100_000_000
        tracer.start_span("op", start_time=start).end(end_time=start + ms * 1_000_000)
    # py-spy-like samples (in the CPU histogram, as py-spy's are) inside the first two
    store.add_many(tid, [(t0 + 10_000_000, ("main", "work"), 0),
                         (t0 + 110_000_000, ("main", "work"), 0)])  # fmt: skip
    store.set_watermark(t0 + 10**9)
    join.release_ready()
    assert (join.counters.slow, join.counters.slow_sampled) == (3, 2)
    slow = [s for s in memory.get_finished_spans() if s.attributes.get("adaprof.marker")]
    assert len(slow) == 3
    # markers with no duration condition are not slow spans: not counted
    live.apply(Params(), 2, None)
    with tracer.start_as_current_span("any"):
        pass
    join.release_all()
    assert (join.counters.slow, join.counters.slow_sampled) == (3, 2)
    provider.shutdown()


def test_slow_spans_count_while_nothing_samples():
    """With profiling off the slow markers pass straight on: counted slow, not sampled."""
    params = Params.parse({"marker_trigger": {"min_duration_ms": 20}})
    provider, _memory, join, _store, _live = _pipeline(params, profiling=lambda: False)
    t0 = time.time_ns()
    provider.get_tracer("t").start_span("op", start_time=t0).end(end_time=t0 + 30_000_000)
    provider.shutdown()
    assert (join.counters.slow, join.counters.slow_sampled) == (1, 0)


def test_samples_of_a_dead_thread_do_not_land_on_the_next_one_with_its_id():
    store = SampleStore()
    old, new = ("boot", "handle_old"), ("boot", "handle_new")
    # py-spy saw the old stack since t=0 and the new thread's stack first at t=50
    store.add_many(9, [(t, old, 0) for t in range(0, 50, 10)] + [(50, new, 50), (60, new, 50)])
    got = [stack for _t, stack, _w in store.samples_between(9, 30, 70, born_ns=25)]
    assert got == [new, new]
    # a long-lived thread (born before) keeps them all
    assert len(store.samples_between(9, 30, 70, born_ns=0)) == 4


def test_idle_samples_added_in_bulk_stay_on_spans_and_out_of_the_cpu_histogram():
    """The native profiler's off-CPU reads: the same stack as a CPU sample, kept apart."""
    store = SampleStore()
    stack = ("main", "price_items")
    store.add_many(4, [(10, stack, 10), (30, stack, 30)], version=2)
    store.add_many(4, [(20, stack, 20)], version=2, idle=True)
    assert [w for _t, _s, w in store.samples_between(4, 0, 100)] == [False, True, False]
    hist = store.take_histogram(depth=8, version=2)
    assert hist.total_samples == 2 and hist.as_dict() == {"main;price_items": 2}
    assert store.samples_added == 3 and store.cpu_samples_added == 2


def test_bad_settings_are_reported_and_defaults_used():
    s = AgentSettings.from_env({"ADAPROF_PROFILER": "perf", "ADAPROF_WINDOW_S": "-1",
                                "ADAPROF_CONTROLLER_URL": "ftp://x"})  # fmt: skip
    assert (s.profiler, s.window_s, s.controller_url) == ("auto", 5.0, None)
    assert len(s.problems) == 3 and "ADAPROF_PROFILER='perf'" in s.problems[1]
    bad = AgentSettings(params_json='{"stack_depth": 0}')
    assert bad.local_params()[1] == "built-in defaults"


def test_poller_keeps_params_and_backs_off_when_the_controller_is_unreachable():
    live = LiveParams(Params(stack_depth=9))
    live.apply(Params(stack_depth=9), 4, "s-1")
    observer = WindowObserver(counts=Counts)
    poller = Poller(
        live, observer, lambda: AgentIdentity(service="x", instance_id="x-1"),
        SampleStore().take_histogram, controller_url="http://127.0.0.1:9", window_s=1.0,
        timeout_s=0.5,
    )  # fmt: skip
    waits = [poller.poll_once() for _ in range(4)]
    assert live.current.version == 4 and live.params.stack_depth == 9
    assert poller.failures == 4 and waits[-1] > waits[0] and max(waits) <= 60.0


def test_samples_in_the_overlap_of_concurrent_markers_are_counted_as_shared():
    from opentelemetry.sdk.trace import ReadableSpan

    from otel_adaprof.instrumentation.spans.markers import MarkerInfo

    live, book, store = LiveParams(Params()), MarkerBook(), SampleStore()
    memory = InMemorySpanExporter()
    join = SpanJoin(SimpleSpanProcessor(memory), book, store, live, hold_s=0.0)
    # two requests of different traces on one event-loop thread (tid 1), overlapping 50-100
    a = MarkerInfo(1, 0, 0, 100, trace_id=10, category="http", trigger="any", config_version=0)
    b = MarkerInfo(1, 0, 50, 150, trace_id=20, category="http", trigger="any", config_version=0)
    book.add(1, a)
    book.add(2, b)
    store.add_many(1, [(t, ("loop", f"handler_{t // 50}"), t) for t in range(0, 150, 10)])
    span = join._with_samples(ReadableSpan(name="GET /a", start_time=0, end_time=100), a, True)
    # samples at 0, 10, ..., 100 are a's; those at 50..100 are b's too
    assert span.attributes["adaprof.sample_count"] == 11
    assert span.attributes["adaprof.samples_shared"] == 6


def test_category_in_agrees_with_category_of_for_every_filter():
    import itertools

    from otel_adaprof.instrumentation.spans.categories import _HTTP_KEYS, category_in, category_of
    from otel_adaprof.params import Category

    keysets = [
        {},
        {"db.system": "x"},
        {"messaging.system": "x"},
        {"rpc.system": "x"},
        {"http.method": "GET"},
        {"db.system.name": "x", "http.method": "GET"},
        {"rpc.system": "x", "url.path": "/"},
        *({key: "x"} for key in sorted(_HTTP_KEYS)),
        {"http.route": "/", "messaging.system": "x"},
    ]
    cats = list(Category)
    for kind in [*SpanKind, None]:
        for attrs in keysets:
            truth = category_of(kind, attrs)
            for r in range(1, len(cats) + 1):
                for wanted in map(frozenset, itertools.combinations(cats, r)):
                    expected = truth if truth in wanted else None
                    assert category_in(kind, attrs, wanted) == expected, (kind, attrs, wanted)


def test_trigger_then_observe_is_trigger_ms_then_observe():
    """The marker processor's one call per span answers as the two calls it replaces."""
    import random

    from otel_adaprof.instrumentation.spans.latency import LatencyTracker

    rng = random.Random(7)
    one, two = LatencyTracker(), LatencyTracker()
    answers = []
    for _ in range(3000):
        name = rng.choice(["GET /a", "GET /b", "query", "render"])
        ms = rng.expovariate(1 / (40.0 if name == "GET /b" else 5.0))
        request = name.startswith("GET") or rng.random() < 0.05
        pct = rng.choice([50.0, 90.0, 99.0])
        expected = one.trigger_ms(name, pct)
        one.observe(name, ms, request)
        answers.append(two.trigger_then_observe(name, ms, request, pct))
        assert answers[-1] == expected, (name, pct)
    assert sum(a is not None for a in answers) > 2500  # percentiles were known, not all None
    assert one.request_ops == two.request_ops == {"GET /a", "GET /b", "query", "render"}


def test_the_agent_folds_the_marker_processor_into_the_first_span_join():
    """Attached to a provider with two exporters, the agent has one processor per
    exporter: the first decides markers (``on_start`` its thread, then the export
    processor's own ``on_start``), and both exporters get every span (profiling off:
    markers go on as they are)."""
    from otel_adaprof.instrumentation.agent import Agent
    from otel_adaprof.instrumentation.sdk_compat import processors

    starts: list[str] = []

    class Starting(SimpleSpanProcessor):
        def on_start(self, span, parent_context=None):  # type: ignore[no-untyped-def]
            starts.append(span.name)

    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(Starting(first))
    provider.add_span_processor(SimpleSpanProcessor(second))
    agent = Agent(AgentSettings(profiler="off"))
    agent.apply_local(Params.parse({"span_filters": {"categories": ["db"]}}))
    assert agent.attach(provider)
    installed = processors(provider) or ()
    assert [type(p).__name__ for p in installed] == ["SpanJoin", "SpanJoin"]
    assert agent.marker_processor not in installed
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT) as db:
        db.set_attribute("db.system", "sqlite")
    with tracer.start_as_current_span("render") as render:
        pass
    assert starts == ["SELECT", "render"]  # the export processor's on_start still runs
    marker = agent.book.get(db.get_span_context().span_id)
    assert marker is not None and marker.category == "db"
    assert marker.tid == threading.get_ident()
    assert agent.book.get(render.get_span_context().span_id) is None
    assert agent.counters.spans == 2 and agent.counters.markers == 1
    for memory in (first, second):
        assert [s.name for s in memory.get_finished_spans()] == ["SELECT", "render"]
    agent.detach()
    assert processors(provider) == tuple(j.downstream for j in installed)


def test_the_span_join_hands_start_and_ending_to_the_export_processor():
    calls: list[str] = []

    class Recording(SimpleSpanProcessor):
        def on_start(self, span, parent_context=None):  # type: ignore[no-untyped-def]
            calls.append(f"start {span.name}")

        def _on_ending(self, span):  # type: ignore[no-untyped-def]
            calls.append(f"ending {span.name}")

    memory = InMemorySpanExporter()
    live = LiveParams(Params())
    join = SpanJoin(Recording(memory), MarkerBook(), SampleStore(), live, hold_s=0.0)
    provider = TracerProvider()
    provider.add_span_processor(join)
    with provider.get_tracer("t").start_as_current_span("s"):
        pass
    # the export processor saw the span start, end and leave, through the join
    assert calls == ["start s", "ending s"]
    assert [s.name for s in memory.get_finished_spans()] == ["s"]
    join.stop()
