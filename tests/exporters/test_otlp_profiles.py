"""OTLP profiles built from samples, decoded back with opentelemetry-proto."""

from __future__ import annotations

from collections import Counter

import pytest
from opentelemetry.proto.profiles.v1development import profiles_pb2

from otel_adaprof.exporters.otlp_profiles import (
    HTTP_PATH,
    ProfileSample,
    histogram_request,
    samples_request,
)
from tests.support.profiles import decode, observations, resource_attributes

T0 = 1_764_000_000_000_000_000
TRACE_A, SPAN_A = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
TRACE_B, SPAN_B = 0x11112222333344445555666677778888, 0x00F067AA0BA902B7
BURN = ("main (app.py:1)", "handle (app.py:9)", "burn_cpu (work.py:3)")
QUERY = ("main (app.py:1)", "query (db.py:4)")


def _samples() -> list[ProfileSample]:
    return [
        ProfileSample(BURN, T0 + 30, TRACE_A, SPAN_A),
        ProfileSample(BURN, T0 + 10, TRACE_A, SPAN_A),
        ProfileSample(QUERY, T0 + 20, TRACE_A, SPAN_A),
        ProfileSample(BURN, T0 + 40, TRACE_B, SPAN_B),
        ProfileSample(QUERY, T0 + 50),  # no span: the empty link
    ]


def _roundtrip(samples: list[ProfileSample], **kwargs):
    req = samples_request(
        samples, resource={"service.name": "shop", "host.name": "h1"}, period_ns=10**7, **kwargs
    )
    return decode(req.SerializeToString())


def test_every_sample_comes_back_with_its_stack_time_and_span():
    decoded = observations(_roundtrip(_samples()))
    got = Counter((s.stack, s.time_unix_nano, s.trace_id, s.span_id, s.value) for s in decoded)
    want = Counter(
        (
            tuple(s.stack),
            s.time_unix_nano,
            f"{s.trace_id:032x}" if s.span_id else "",
            f"{s.span_id:016x}" if s.span_id else "",
            1,
        )
        for s in _samples()
    )
    assert got == want


def test_dictionary_tables_start_with_their_zero_entry():
    d = _roundtrip(_samples()).dictionary
    assert d.string_table[0] == ""
    for table in ("mapping_table", "location_table", "function_table", "link_table"):
        assert getattr(d, table)[0].ByteSize() == 0, table
    assert d.stack_table[0].ByteSize() == 0
    assert d.attribute_table[0].ByteSize() == 0
    # the link table holds each span once (plus the empty link)
    assert len(d.link_table) == 3
    assert {link.span_id.hex() for link in d.link_table[1:]} == {
        f"{SPAN_A:016x}",
        f"{SPAN_B:016x}",
    }
    assert all(len(link.trace_id) == 16 and len(link.span_id) == 8 for link in d.link_table[1:])


def test_samples_of_one_stack_and_span_share_a_sample_with_sorted_timestamps():
    data = _roundtrip(_samples())
    profile = data.resource_profiles[0].scope_profiles[0].profiles[0]
    assert len(profile.samples) == 4  # BURN/A, QUERY/A, BURN/B, QUERY/none
    d = data.dictionary
    burn_a = [
        s
        for s in profile.samples
        if d.link_table[s.link_index].span_id.hex() == f"{SPAN_A:016x}"
        and len(d.stack_table[s.stack_index].location_indices) == 3
    ]
    assert [list(s.timestamps_unix_nano) for s in burn_a] == [[T0 + 10, T0 + 30]]
    assert all(not s.values for s in profile.samples)  # each timestamp counts 1
    unlinked = [s for s in profile.samples if s.link_index == 0]
    assert len(unlinked) == 1


def test_stacks_are_leaf_first_with_function_file_and_line():
    d = _roundtrip([ProfileSample(BURN, T0, TRACE_A, SPAN_A)]).dictionary
    stack = d.stack_table[1].location_indices
    names = []
    for loc in stack:
        line = d.location_table[loc].lines[0]
        fn = d.function_table[line.function_index]
        names.append((d.string_table[fn.name_strindex], d.string_table[fn.filename_strindex]))
        assert line.line > 0
    assert names == [("burn_cpu", "work.py"), ("handle", "app.py"), ("main", "app.py")]


def test_cpu_sample_type_period_resource_and_time_range():
    data = _roundtrip(_samples())
    d = data.dictionary
    profile = data.resource_profiles[0].scope_profiles[0].profiles[0]

    def pair(vt):
        return d.string_table[vt.type_strindex], d.string_table[vt.unit_strindex]

    # Pyroscope maps samples/count with a cpu/nanoseconds period to process_cpu
    assert pair(profile.sample_type) == ("samples", "count")
    assert pair(profile.period_type) == ("cpu", "nanoseconds")
    assert profile.period == 10**7
    assert len(profile.profile_id) == 16 and any(profile.profile_id)
    assert profile.time_unix_nano == T0 + 10
    for s in profile.samples:  # every timestamp inside [time, time + duration)
        for t in s.timestamps_unix_nano:
            assert profile.time_unix_nano <= t < profile.time_unix_nano + profile.duration_nano
    assert resource_attributes(data) == {"service.name": "shop", "host.name": "h1"}
    assert data.resource_profiles[0].scope_profiles[0].scope.name == "otel-adaprof"


def test_explicit_window_bounds_are_kept():
    data = _roundtrip(_samples(), start_ns=T0, end_ns=T0 + 5_000_000_000)
    profile = data.resource_profiles[0].scope_profiles[0].profiles[0]
    assert (profile.time_unix_nano, profile.duration_nano) == (T0, 5_000_000_000)


def test_histogram_request_carries_counts_without_times_or_links():
    req = histogram_request(
        {";".join(BURN): 120, ";".join(QUERY): 20, "": 3, "x (y.py:1)": 0},
        resource={"service.name": "shop"},
        period_ns=50_000_000,
        time_unix_nano=T0,
        duration_nano=60 * 10**9,
    )
    decoded = observations(decode(req.SerializeToString()))
    assert sorted((s.stack, s.value, s.span_id) for s in decoded) == [
        (BURN, 120, ""),
        (QUERY, 20, ""),
    ]


def test_bad_period_is_refused_by_name():
    with pytest.raises(ValueError, match="period_ns"):
        samples_request(_samples(), resource={}, period_ns=0)


def test_the_installed_proto_has_the_sample_layout_of_1_43_and_later():
    # opentelemetry-proto < 1.43 numbered Sample's fields differently: a release that
    # moves them again must fail here, not silently on a receiver.
    fields = {f.name: f.number for f in profiles_pb2.Sample.DESCRIPTOR.fields}
    assert fields == {
        "stack_index": 1,
        "attribute_indices": 2,
        "link_index": 3,
        "values": 4,
        "timestamps_unix_nano": 5,
    }
    assert HTTP_PATH == "/v1development/profiles"


def _check_what_receivers_require(data) -> None:
    """The rules a receiver applies (Pyroscope's converter, the Collector's pdata): every
    index inside its table, a sample type and a non-zero period with its type, and each
    sample with one value per sample type or timestamps alone."""
    d = data.dictionary
    for rp in data.resource_profiles:
        for sp in rp.scope_profiles:
            for profile in sp.profiles:
                assert profile.HasField("sample_type") and profile.HasField("period_type")
                assert profile.period > 0
                for vt in (profile.sample_type, profile.period_type):
                    assert 0 < vt.type_strindex < len(d.string_table)
                    assert 0 < vt.unit_strindex < len(d.string_table)
                for sample in profile.samples:
                    assert len(sample.values) == 1 or (
                        not sample.values and sample.timestamps_unix_nano
                    )
                    assert 0 < sample.stack_index < len(d.stack_table)
                    assert 0 <= sample.link_index < len(d.link_table)
    for stack in d.stack_table[1:]:
        assert stack.location_indices
        assert all(0 < i < len(d.location_table) for i in stack.location_indices)
    for loc in d.location_table[1:]:
        assert loc.mapping_index == 0 and len(loc.lines) == 1
        assert 0 < loc.lines[0].function_index < len(d.function_table)
    for fn in d.function_table[1:]:
        for index in (fn.name_strindex, fn.system_name_strindex, fn.filename_strindex):
            assert 0 <= index < len(d.string_table)
    assert len(set(d.string_table)) == len(d.string_table)  # each string once


def test_requests_follow_the_rules_receivers_apply():
    _check_what_receivers_require(_roundtrip(_samples()))
    req = histogram_request(
        {";".join(BURN): 5, "bare_frame": 2},
        resource={"service.name": "shop"},
        period_ns=10**7,
        time_unix_nano=T0,
        duration_nano=10**9,
    )
    _check_what_receivers_require(decode(req.SerializeToString()))
