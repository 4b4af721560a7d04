"""The agent's OTLP profiles export against a real OTLP/HTTP receiver on 127.0.0.1:
one span per sample, bounded queue with counted drops, failures counted, never raises."""

from __future__ import annotations

import socket
import threading

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext

from otel_adaprof.exporters.otlp_http import ProfilesEndpoint, endpoint_from_env
from otel_adaprof.instrumentation.export.profiles import ProfilesExport
from otel_adaprof.instrumentation.settings import AgentSettings
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.profiles import observations, resource_attributes
from tests.support.waiting import wait_until

T0 = 1_764_000_000_000_000_000
HOT = ("main (app.py:1)", "handle (app.py:9)", "burn (work.py:3)")
WAIT = ("main (app.py:1)", "_PollLikeSelector.select (selectors.py:415)")
PERIOD = 10_000_000


def _span(span_id: int, trace_id: int = 0xAB, service: str = "shop") -> ReadableSpan:
    return ReadableSpan(
        "work",
        SpanContext(trace_id, span_id, is_remote=False),
        resource=Resource({"service.name": service}),
    )


def _samples(n: int, start: int = 0, stack=HOT) -> list[tuple[int, tuple[str, ...], bool]]:
    return [(T0 + (start + i) * PERIOD, stack, stack is WAIT) for i in range(n)]


@pytest.fixture
def rx():
    with OtlpReceiver() as receiver:
        yield receiver


def _export(rx: OtlpReceiver, **kwargs) -> ProfilesExport:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_EXPORTER_OTLP_HEADERS": "x-k=v"}
    return ProfilesExport(endpoint_from_env(env), flush_interval_s=60, **kwargs)


def test_a_sample_goes_to_the_first_span_that_claims_it(rx):
    export = _export(rx)
    child, parent = _span(0x1), _span(0x2)
    assert export.link(child, 7, _samples(5), PERIOD) == 5
    # the parent spans the child's samples and 3 more: it gets those 3 only
    assert export.link(parent, 7, _samples(8), PERIOD) == 3
    # the same span again (a second exporter's join): all its own samples, none queued
    assert export.link(child, 7, _samples(5), PERIOD) == 5
    # same times on another thread are other samples
    assert export.link(_span(0x3), 8, _samples(2), PERIOD) == 2
    # waiting samples stay out of the CPU profile
    assert export.link(_span(0x4), 9, _samples(4, stack=WAIT), PERIOD) == 0
    assert export.queued == 10
    assert export.send_queued() == 10
    (request,) = rx.profile_requests()
    got = sorted((s.span_id[-1], s.time_unix_nano) for s in observations(request))
    assert [sid for sid, _t in got].count("1") == 5
    assert [sid for sid, _t in got].count("2") == 3
    assert resource_attributes(request) == {"service.name": "shop"}
    assert rx.profile_headers[0]["x-k"] == "v"
    assert export.counters.sent_samples == 10 and export.counters.requests == 1
    assert export.counters.bytes_sent > 0


def test_stacks_keep_the_params_depth_from_the_leaf(rx):
    export = _export(rx)
    export.link(_span(0x1), 7, _samples(2), PERIOD, depth=2)
    export.send_queued()
    stacks = {s.stack for s in observations(rx.profile_requests()[0])}
    assert stacks == {HOT[-2:]}


def test_a_forked_child_starts_empty(rx):
    export = _export(rx)
    export.link(_span(0x1), 7, _samples(3), PERIOD)
    export.after_fork()
    assert export.queued == 0 and export.native_id is None
    # the parent's claims are gone too: the child's own spans take their samples
    assert export.link(_span(0x2), 7, _samples(3), PERIOD) == 3


def test_one_profile_per_sampling_period(rx):
    export = _export(rx)
    export.link(_span(0x1), 7, _samples(3), PERIOD)
    export.link(_span(0x2), 7, _samples(2, start=10), 2 * PERIOD)
    export.send_queued()
    periods = sorted(
        r.resource_profiles[0].scope_profiles[0].profiles[0].period for r in rx.profile_requests()
    )
    assert periods == [PERIOD, 2 * PERIOD]


def test_a_full_queue_drops_new_samples_and_counts_them(rx):
    export = _export(rx, max_queued=4)
    assert export.link(_span(0x1), 7, _samples(6), PERIOD) == 4
    assert export.counters.dropped == 2 and export.queued == 4
    export.send_queued()
    assert export.link(_span(0x2), 7, _samples(3, start=100), PERIOD) == 3  # room again
    assert export.counters.dropped == 2


def test_a_refused_send_is_counted_and_does_not_raise(rx, caplog):
    rx.fail_profiles = 503
    export = _export(rx)
    export.link(_span(0x1), 7, _samples(5), PERIOD)
    assert export.send_queued() == 0
    assert export.counters.failures == 1 and export.counters.failed_samples == 5
    assert export.queued == 0  # dropped, not retried forever
    assert "OTLP profiles to" in caplog.text and "503" in caplog.text


def test_an_unreachable_receiver_is_counted_and_does_not_raise():
    export = ProfilesExport(
        ProfilesEndpoint("http://127.0.0.1:9/v1development/profiles", timeout_s=1)
    )
    export.link(_span(0x1), 7, _samples(2), PERIOD)
    export.flush()
    assert export.counters.failures == 1


def test_link_never_waits_for_a_receiver_that_hangs():
    # a receiver that takes the connection and never answers
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    try:
        target = ProfilesEndpoint(f"http://127.0.0.1:{port}/v1development/profiles", timeout_s=4)
        export = ProfilesExport(target, batch_samples=1)
        export.link(_span(0x1), 7, _samples(1), PERIOD)  # wakes the worker: it hangs in send
        conn, _ = server.accept()  # the worker is connected and waiting for an answer
        done = threading.Event()

        def more() -> None:
            for i in range(50):
                export.link(_span(0x10 + i), 7, _samples(20, start=100 * (i + 1)), PERIOD)
            done.set()

        threading.Thread(target=more, daemon=True).start()
        assert done.wait(1.0), "link waited for the sender"
        assert export.queued == 1000 and export.counters.sent_samples == 0
        conn.close()
    finally:
        server.close()


def test_the_worker_sends_by_itself_when_a_batch_is_full(rx):
    export = _export(rx, batch_samples=3)
    started = []
    export.on_thread_start = lambda: started.append(threading.get_ident())
    export.link(_span(0x1), 7, _samples(3), PERIOD)
    wait_until(rx.profile_requests, 5, "the worker's send")
    assert export.native_id is not None
    assert started and started[0] != threading.get_ident()  # the agent marks it as its own


def test_gzip_compression_from_the_standard_variable(rx):
    env = {"OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT": rx.endpoint + "/v1development/profiles",
           "OTEL_EXPORTER_OTLP_PROFILES_COMPRESSION": "gzip"}  # fmt: skip
    export = ProfilesExport(endpoint_from_env(env))
    export.link(_span(0x1), 7, _samples(2), PERIOD)
    export.flush()
    assert rx.profile_headers[0]["content-encoding"] == "gzip"
    assert len(observations(rx.profile_requests()[0])) == 2


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT": "collector:4318"}, "PROFILES_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "OTEL_EXPORTER_OTLP_HEADERS"),
        ({"OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT": "soon"}, "OTEL_EXPORTER_OTLP_PROFILES_TIMEOUT"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_COMPRESSION"),
    ],
)
def test_bad_settings_are_refused_by_name(env, field):
    with pytest.raises(ValueError, match=field):
        endpoint_from_env(env)


def test_endpoint_resolution_follows_the_otlp_rules():
    assert endpoint_from_env({}).url == "http://localhost:4318/v1development/profiles"
    specific = "http://pyroscope:4040/custom/path"
    both = {"OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT": specific,
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}  # fmt: skip
    assert endpoint_from_env(both).url == specific
    timeout = endpoint_from_env({"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}).timeout_s
    assert timeout == 2.5


def test_the_switch_is_off_by_default_and_a_bad_endpoint_keeps_it_off(monkeypatch, caplog):
    from otel_adaprof.instrumentation.agent import Agent

    assert AgentSettings.from_env({}).profiles_export == "off"
    assert Agent(AgentSettings(profiler="off")).profiles is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL", "grpc")
    agent = Agent(AgentSettings(profiler="off", profiles_export="otlp"))
    assert agent.profiles is None
    assert "OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL" in caplog.text
    caplog.clear()
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    agent = Agent(AgentSettings(profiler="off", profiles_export="otlp"))
    assert agent.profiles is not None
    assert "gRPC's port" in caplog.text
