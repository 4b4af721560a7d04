"""otel-adaprof: adaptive profiling for OpenTelemetry Python services.

The agent (``otel_adaprof.instrumentation``) turns spans into execution markers and
attaches py-spy stack samples to them; the controller (``otel_adaprof.controller``)
tunes how each service is profiled with a contextual-bandit policy. The shared
contract lives in :mod:`otel_adaprof.params` and :mod:`otel_adaprof.protocol`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("otel-adaprof")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
