"""Reading OTLP profiles back with opentelemetry-proto's generated classes (for tests)."""

from __future__ import annotations

from typing import NamedTuple

from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)


class DecodedSample(NamedTuple):
    """One observation: frames root first as ``function (file:line)``, time, link (hex)."""

    stack: tuple[str, ...]
    time_unix_nano: int
    trace_id: str
    span_id: str
    value: int


def decode(body: bytes) -> ExportProfilesServiceRequest:
    return ExportProfilesServiceRequest.FromString(body)


def observations(request: ExportProfilesServiceRequest) -> list[DecodedSample]:
    """Every observation of every profile: one per timestamp, or one per sample with a
    value when the sample has no timestamps. Frames are rebuilt from the dictionary."""
    d = request.dictionary
    out = []
    for rp in request.resource_profiles:
        for sp in rp.scope_profiles:
            for profile in sp.profiles:
                for sample in profile.samples:
                    frames = []
                    for loc in d.stack_table[sample.stack_index].location_indices:
                        line = d.location_table[loc].lines[0]
                        fn = d.function_table[line.function_index]
                        name = d.string_table[fn.name_strindex]
                        file = d.string_table[fn.filename_strindex]
                        frames.append(f"{name} ({file}:{line.line})" if file else name)
                    stack = tuple(reversed(frames))  # leaf first on the wire
                    link = d.link_table[sample.link_index]
                    trace, span = link.trace_id.hex(), link.span_id.hex()
                    if sample.timestamps_unix_nano:
                        assert not sample.values or len(sample.values) == len(
                            sample.timestamps_unix_nano
                        )
                        for i, t in enumerate(sample.timestamps_unix_nano):
                            value = sample.values[i] if sample.values else 1
                            out.append(DecodedSample(stack, t, trace, span, value))
                    else:
                        assert len(sample.values) == 1
                        out.append(DecodedSample(stack, 0, trace, span, sample.values[0]))
    return out


def resource_attributes(request: ExportProfilesServiceRequest) -> dict[str, object]:
    """The first resource's attributes as plain values (strings, ints, ...)."""
    attrs: dict[str, object] = {}
    for kv in request.resource_profiles[0].resource.attributes:
        field = kv.value.WhichOneof("value")
        attrs[kv.key] = getattr(kv.value, field) if field else None
    return attrs
