"""OTLP profiles (``profiles/v1development``): stack samples as an ``ExportProfilesServiceRequest``.

What Pyroscope, Grafana and the OpenTelemetry Collector's profiles pipeline read. Built
with the generated classes of opentelemetry-proto (≥ 1.43, where ``Sample`` took its
current field numbers), never encoded by hand:

- one ``Profile`` with sample type ``samples/count`` and period type ``cpu/nanoseconds``
  (period = the sampling interval): Pyroscope turns that into ``process_cpu``;
- the resource's attributes (``service.name`` first of all: Pyroscope's service name);
- every table of the shared ``ProfilesDictionary`` starts with its zero entry
  (``string_table[0] == ""``, ``link_table[0]`` the empty link, ...);
- a stack is a ``Stack`` of ``Location`` indices, **leaf first**; a frame
  ``function (file:line)`` is a ``Function`` (name, file) and a ``Location`` with one
  ``Line``;
- :func:`samples_request` — samples with their time and, optionally, the span they ran
  in: samples sharing a stack and a span become one ``Sample`` with one timestamp each
  in ``timestamps_unix_nano`` and no ``values`` (each timestamp counts 1), linked through
  ``link_index`` to ``Link{trace_id, span_id}`` (Pyroscope's ``span_id`` label);
- :func:`histogram_request` — a merged profile without times (a session's): one
  ``Sample`` per stack with ``values = [count]``.

>>> from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
>>> req = samples_request(
...     [ProfileSample(("main (app.py:3)", "burn (app.py:9)"), 1_700_000_000_000_000_000,
...                    trace_id=0xABC, span_id=0x1F)],
...     resource={"service.name": "shop"}, period_ns=10_000_000)
>>> data = profiles_service_pb2.ExportProfilesServiceRequest.FromString(
...     req.SerializeToString())
>>> d = data.dictionary
>>> sample = data.resource_profiles[0].scope_profiles[0].profiles[0].samples[0]
>>> d.link_table[sample.link_index].span_id.hex()
'000000000000001f'
>>> leaf = d.location_table[d.stack_table[sample.stack_index].location_indices[0]]
>>> d.string_table[d.function_table[leaf.lines[0].function_index].name_strindex]
'burn'
>>> list(sample.timestamps_unix_nano), list(sample.values)
([1700000000000000000], [])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.profiles.v1development.profiles_pb2 import (
    Function,
    Line,
    Link,
    Location,
    Profile,
    ProfilesDictionary,
    ResourceProfiles,
    Sample,
    ScopeProfiles,
    Stack,
    ValueType,
)
from opentelemetry.proto.profiles.v1development.profiles_pb2 import (
    Mapping as ProtoMapping,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from otel_adaprof.exporters.frames import parse_frame

#: OTLP/HTTP path of the profiles signal (relative to an ``OTEL_EXPORTER_OTLP_ENDPOINT``).
HTTP_PATH = "/v1development/profiles"
#: Instrumentation scope of the profiles this package writes.
SCOPE_NAME = "otel-adaprof"

#: ``(type, unit)`` of the sample values and of the period: Pyroscope maps this pair to
#: its ``process_cpu`` profile (value × period = CPU nanoseconds).
SAMPLE_TYPE = ("samples", "count")
PERIOD_TYPE = ("cpu", "nanoseconds")


class ProfileSample(NamedTuple):
    """One stack sample: frames root first, its time, and the span it ran in (0 = none)."""

    stack: Sequence[str]
    time_unix_nano: int
    trace_id: int = 0
    span_id: int = 0


def _any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, Sequence):
        return AnyValue(array_value=ArrayValue(values=[_any_value(v) for v in value]))
    return AnyValue(string_value=str(value))


class _Dictionary:
    """The request's ``ProfilesDictionary``, every table interned, zero entries first."""

    def __init__(self) -> None:
        self.proto = ProfilesDictionary(
            mapping_table=[ProtoMapping()],
            location_table=[Location()],
            function_table=[Function()],
            link_table=[Link()],
            string_table=[""],
            stack_table=[Stack()],
        )
        self.proto.attribute_table.add()
        self._strings: dict[str, int] = {"": 0}
        self._functions: dict[tuple[str, str], int] = {}
        self._locations: dict[str, int] = {}
        self._stacks: dict[tuple[str, ...], int] = {(): 0}
        self._links: dict[tuple[int, int], int] = {(0, 0): 0}

    def string(self, text: str) -> int:
        index = self._strings.get(text)
        if index is None:
            index = self._strings[text] = len(self.proto.string_table)
            self.proto.string_table.append(text)
        return index

    def value_type(self, pair: tuple[str, str]) -> ValueType:
        return ValueType(type_strindex=self.string(pair[0]), unit_strindex=self.string(pair[1]))

    def _location(self, text: str) -> int:
        index = self._locations.get(text)
        if index is None:
            frame = parse_frame(text)
            key = (frame.name, frame.file)
            function = self._functions.get(key)
            if function is None:
                function = self._functions[key] = len(self.proto.function_table)
                name = self.string(frame.name)
                self.proto.function_table.add(
                    name_strindex=name,
                    system_name_strindex=name,
                    filename_strindex=self.string(frame.file),
                )
            index = self._locations[text] = len(self.proto.location_table)
            self.proto.location_table.add(lines=[Line(function_index=function, line=frame.line)])
        return index

    def stack(self, frames: Sequence[str]) -> int:
        """Index of the stack of ``frames`` (root first, as the agent writes them)."""
        key = tuple(frames)
        index = self._stacks.get(key)
        if index is None:
            leaf_first = [self._location(frame) for frame in reversed(key)]
            index = self._stacks[key] = len(self.proto.stack_table)
            self.proto.stack_table.add(location_indices=leaf_first)
        return index

    def link(self, trace_id: int, span_id: int) -> int:
        """Index of ``Link{trace_id, span_id}``; 0 (the empty link) without a span."""
        if not span_id:
            return 0
        key = (trace_id, span_id)
        index = self._links.get(key)
        if index is None:
            index = self._links[key] = len(self.proto.link_table)
            self.proto.link_table.add(
                trace_id=trace_id.to_bytes(16, "big"), span_id=span_id.to_bytes(8, "big")
            )
        return index


def _request(
    dictionary: _Dictionary,
    samples: Iterable[Sample],
    *,
    resource: Mapping[str, Any],
    period_ns: int,
    time_unix_nano: int,
    duration_nano: int,
    scope_version: str,
) -> ExportProfilesServiceRequest:
    if period_ns <= 0:
        raise ValueError(f"period_ns: must be > 0, got {period_ns}")
    profile = Profile(
        sample_type=dictionary.value_type(SAMPLE_TYPE),
        period_type=dictionary.value_type(PERIOD_TYPE),
        period=period_ns,
        time_unix_nano=time_unix_nano,
        duration_nano=max(0, duration_nano),
        profile_id=os.urandom(16),
        samples=samples,
    )
    attributes = [KeyValue(key=k, value=_any_value(v)) for k, v in resource.items()]
    scope = InstrumentationScope(name=SCOPE_NAME, version=scope_version)
    return ExportProfilesServiceRequest(
        resource_profiles=[
            ResourceProfiles(
                resource=Resource(attributes=attributes),
                scope_profiles=[ScopeProfiles(scope=scope, profiles=[profile])],
            )
        ],
        dictionary=dictionary.proto,
    )


def samples_request(
    samples: Iterable[ProfileSample],
    *,
    resource: Mapping[str, Any],
    period_ns: int,
    start_ns: int | None = None,
    end_ns: int | None = None,
    scope_version: str = "",
) -> ExportProfilesServiceRequest:
    """One profile of timestamped samples, each linked to its span when it has one.

    Samples with the same stack and span are one ``Sample`` with a timestamp per
    observation (in time order) and no ``values``. The profile covers
    ``[start_ns, end_ns)``, by default the first to just past the last sample.
    """
    dictionary = _Dictionary()
    grouped: dict[tuple[int, int], list[int]] = {}
    first, last = None, None
    for sample in samples:
        key = (dictionary.stack(sample.stack), dictionary.link(sample.trace_id, sample.span_id))
        grouped.setdefault(key, []).append(sample.time_unix_nano)
        t = sample.time_unix_nano
        first = t if first is None or t < first else first
        last = t if last is None or t > last else last
    start = start_ns if start_ns is not None else (first or 0)
    # by default the last sample must fall inside [time, time + duration): one ns more
    end = end_ns if end_ns is not None else (last + 1 if last is not None else start)
    protos = [
        Sample(stack_index=stack, link_index=link, timestamps_unix_nano=sorted(times))
        for (stack, link), times in grouped.items()
    ]
    return _request(
        dictionary,
        protos,
        resource=resource,
        period_ns=period_ns,
        time_unix_nano=start,
        duration_nano=end - start,
        scope_version=scope_version,
    )


def histogram_request(
    histogram: Mapping[str, int],
    *,
    resource: Mapping[str, Any],
    period_ns: int,
    time_unix_nano: int,
    duration_nano: int,
    scope_version: str = "",
) -> ExportProfilesServiceRequest:
    """One profile of a merged histogram ``{"root;...;leaf": count}`` (no times, no links).

    >>> req = histogram_request({"main (a.py:1);work (a.py:5)": 3},
    ...     resource={"service.name": "shop"}, period_ns=50_000_000,
    ...     time_unix_nano=1, duration_nano=60_000_000_000)
    >>> [list(s.values) for s in req.resource_profiles[0].scope_profiles[0].profiles[0].samples]
    [[3]]
    """
    dictionary = _Dictionary()
    protos = [
        Sample(stack_index=dictionary.stack(stack.split(";")), values=[count])
        for stack, count in sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0]))
        if count > 0 and stack
    ]
    return _request(
        dictionary,
        protos,
        resource=resource,
        period_ns=period_ns,
        time_unix_nano=time_unix_nano,
        duration_nano=duration_nano,
        scope_version=scope_version,
    )
