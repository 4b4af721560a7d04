"""otel-adaprof: adaptive profiling for OpenTelemetry Python services.

The agent (``otel_adaprof.instrumentation``) turns spans into execution markers and
attaches py-spy stack samples to them; the controller (``otel_adaprof.controller``)
tunes how each service is profiled with a contextual-bandit policy. The shared
contract lives in :mod:`otel_adaprof.params` and :mod:`otel_adaprof.protocol`.

For services that set up OpenTelemetry in code, :func:`configure` starts the agent
(imported lazily, so the controller never loads the SDK)::

    import otel_adaprof
    otel_adaprof.configure(service_name="shop", controller_url="http://127.0.0.1:8080")
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("otel-adaprof")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "configure"]


def __getattr__(name: str) -> Any:
    if name == "configure":
        from otel_adaprof.instrumentation.configure import configure

        return configure
    raise AttributeError(f"module 'otel_adaprof' has no attribute {name!r}")
