"""pprof's ``profile.proto``, gzip-compressed, as ``go tool pprof`` reads it.

Encoded directly in the protobuf wire format (varints and length-delimited fields):
the message is small and fixed, and this avoids shipping generated code. Field numbers
follow github.com/google/pprof/proto/profile.proto.

>>> import gzip
>>> blob = to_pprof({"main (a.py:1);work (a.py:5)": 3})
>>> gzip.decompress(blob)[:2] == bytes([0x0A, 0x04])  # sample_type, 4 bytes
True
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping

from otel_adaprof.exporters.frames import Frame, parse_stack


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int64 as two's complement, per protobuf
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value) if value else b""


def _bytes(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _packed(field: int, values: Iterable[int]) -> bytes:
    payload = b"".join(_varint(v) for v in values)
    return _bytes(field, payload) if payload else b""


class _Strings:
    def __init__(self) -> None:
        self.table: list[str] = [""]
        self._index: dict[str, int] = {"": 0}

    def __call__(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.table)
            self.table.append(text)
        return self._index[text]


def to_pprof(
    histogram: Mapping[str, int], *, period_ns: int = 10_000_000, time_nanos: int = 0
) -> bytes:
    """A gzip'd pprof profile: sample type ``samples/count`` (and ``cpu/nanoseconds``
    estimated as count × ``period_ns``), leaf first in each sample as pprof expects."""
    strings = _Strings()
    functions: dict[tuple[str, str], int] = {}
    locations: dict[Frame, int] = {}
    body = bytearray()
    samples_t, count_t = strings("samples"), strings("count")
    cpu_t, ns_t = strings("cpu"), strings("nanoseconds")
    body += _bytes(1, _int(1, samples_t) + _int(2, count_t))
    body += _bytes(1, _int(1, cpu_t) + _int(2, ns_t))
    loc_msgs = bytearray()
    fn_msgs = bytearray()
    for stack, count in sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0])):
        if count <= 0:
            continue
        loc_ids: list[int] = []
        for frame in reversed(parse_stack(stack)):  # leaf first
            if frame not in locations:
                fkey = (frame.name, frame.file)
                if fkey not in functions:
                    functions[fkey] = len(functions) + 1
                    name = strings(frame.name)
                    fn_msgs += _bytes(
                        5,
                        _int(1, functions[fkey])
                        + _int(2, name)
                        + _int(3, name)
                        + _int(4, strings(frame.file)),
                    )
                locations[frame] = len(locations) + 1
                line = _int(1, functions[fkey]) + _int(2, frame.line)
                loc_msgs += _bytes(4, _int(1, locations[frame]) + _bytes(4, line))
            loc_ids.append(locations[frame])
        body += _bytes(2, _packed(1, loc_ids) + _packed(2, [count, count * period_ns]))
    body += loc_msgs + fn_msgs
    for text in strings.table:
        body += _bytes(6, text.encode())
    body += _int(9, time_nanos)
    body += _bytes(11, _int(1, cpu_t) + _int(2, ns_t))
    body += _int(12, period_ns)
    return gzip.compress(bytes(body))
