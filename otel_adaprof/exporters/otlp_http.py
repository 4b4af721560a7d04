"""Where OTLP profiles go over OTLP/HTTP, from the standard ``OTEL_EXPORTER_OTLP_*`` variables.

The agent and ``adaprof session export --otlp-endpoint`` both send an
``ExportProfilesServiceRequest`` as ``application/x-protobuf`` with a POST. Settings,
signal-specific variable first, as the OpenTelemetry SDKs read them:

=========================================  =============================================
``OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT``   full URL, used as it is
``OTEL_EXPORTER_OTLP_ENDPOINT``            base URL (default ``http://localhost:4318``);
                                           ``/v1development/profiles`` is appended
``..._PROFILES_PROTOCOL`` / ``..._PROTOCOL``  ``http/protobuf`` (the only one supported)
``..._PROFILES_HEADERS`` / ``..._HEADERS``    ``key=value,key2=value2`` (URL-encoded values)
``..._PROFILES_TIMEOUT`` / ``..._TIMEOUT``    milliseconds (default 10000)
``..._PROFILES_COMPRESSION`` / ``..._COMPRESSION``  ``gzip`` or ``none``
=========================================  =============================================

>>> target = endpoint_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
...                             "OTEL_EXPORTER_OTLP_HEADERS": "x-scope-orgid=team%20a"})
>>> target.url, target.headers
('http://collector:4318/v1development/profiles', {'x-scope-orgid': 'team a'})
>>> try:
...     endpoint_from_env({"OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL": "grpc"})
... except ValueError as exc:
...     print(exc)
OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL: 'grpc' is not supported for profiles, use http/protobuf
"""

from __future__ import annotations

import gzip
import os
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

from otel_adaprof.exporters.otlp_profiles import HTTP_PATH

DEFAULT_ENDPOINT = "http://localhost:4318"
DEFAULT_TIMEOUT_MS = 10_000
PROTOCOL = "http/protobuf"


@dataclass(frozen=True)
class ProfilesEndpoint:
    """An OTLP/HTTP profiles receiver: URL, headers, timeout (s), gzip or not."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_MS / 1000
    gzip: bool = False

    def send(self, body: bytes) -> int:
        """POST one serialized ``ExportProfilesServiceRequest``; the HTTP status.

        Raises :class:`OSError` (``urllib.error.URLError``/``HTTPError`` among them) when
        the receiver cannot be reached or answers an error.
        """
        headers = {**self.headers, "Content-Type": "application/x-protobuf"}
        if self.gzip:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        request = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()
            return int(response.status)


def _setting(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    for var in (f"OTEL_EXPORTER_OTLP_PROFILES_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = env.get(var, "").strip()
        if value:
            return var, value
    return None


def parse_headers(text: str, var: str = "headers") -> dict[str, str]:
    """``key=value,key2=value2`` (values URL-decoded), as the OTLP exporters read it.

    >>> parse_headers("a=1, b=x%3Dy")
    {'a': '1', 'b': 'x=y'}
    """
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{var}: {item.strip()[:40]!r} is not key=value")
        headers[key.strip().lower()] = urllib.parse.unquote(value.strip())
    return headers


def profiles_url(base: str) -> str:
    """A base OTLP/HTTP URL with the profiles path appended.

    >>> profiles_url("http://127.0.0.1:4318")
    'http://127.0.0.1:4318/v1development/profiles'
    """
    return base.rstrip("/") + HTTP_PATH


def endpoint_from_env(env: Mapping[str, str] | None = None) -> ProfilesEndpoint:
    """The receiver the standard variables name; :class:`ValueError` naming a bad one."""
    env = os.environ if env is None else env
    protocol = _setting(env, "PROTOCOL")
    if protocol is not None and protocol[1] != PROTOCOL:
        raise ValueError(
            f"{protocol[0]}: {protocol[1][:40]!r} is not supported for profiles, use {PROTOCOL}"
        )
    specific = env.get("OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT", "").strip()
    url = specific or profiles_url(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    )
    var = "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT" if specific else "OTEL_EXPORTER_OTLP_ENDPOINT"
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{var}: {url[:80]!r} is not an http(s) URL")
    headers: dict[str, str] = {}
    found = _setting(env, "HEADERS")
    if found is not None:
        headers = parse_headers(found[1], found[0])
    timeout_ms = float(DEFAULT_TIMEOUT_MS)
    found = _setting(env, "TIMEOUT")
    if found is not None:
        try:
            timeout_ms = float(found[1])
        except ValueError:
            raise ValueError(f"{found[0]}: {found[1][:40]!r} is not a number of ms") from None
        if timeout_ms <= 0:
            raise ValueError(f"{found[0]}: must be > 0 ms, got {found[1][:40]}")
    compression = _setting(env, "COMPRESSION")
    if compression is not None and compression[1] not in ("gzip", "none"):
        raise ValueError(f"{compression[0]}: {compression[1][:40]!r} is not gzip or none")
    return ProfilesEndpoint(
        url=url,
        headers=headers,
        timeout_s=timeout_ms / 1000,
        gzip=compression is not None and compression[1] == "gzip",
    )
