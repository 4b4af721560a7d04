"""What ``adaprof demo`` and ``adaprof bench`` need beyond a plain install.

They run a demo service under ``opentelemetry-instrument`` with the WSGI, sqlite3 and
urllib instrumentations, which ``pip install otel-adaprof`` does not bring (they are
the ``demo`` extra). :func:`require_demo_extra` stops the command at once, before any
process starts, naming what is missing and the command that installs it.

    >>> missing_demo_modules(importable=lambda module: True)
    []
    >>> missing_demo_modules(importable=lambda module: not module.endswith("wsgi"))
    ['opentelemetry-instrumentation-wsgi']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import click

#: Module the demo service imports -> the distribution (in the ``demo`` extra) that has it.
DEMO_MODULES: dict[str, str] = {
    "opentelemetry.instrumentation.wsgi": "opentelemetry-instrumentation-wsgi",
    "opentelemetry.instrumentation.sqlite3": "opentelemetry-instrumentation-sqlite3",
    "opentelemetry.instrumentation.urllib": "opentelemetry-instrumentation-urllib",
}
#: What to run to get them.
INSTALL_HINT = "pip install 'otel-adaprof[demo]'"


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def missing_demo_modules(importable: Callable[[str], bool] = _importable) -> list[str]:
    """Distributions of the ``demo`` extra whose module cannot be imported."""
    return [dist for module, dist in DEMO_MODULES.items() if not importable(module)]


def require_demo_extra(command: str) -> None:
    """Raise :class:`click.ClickException` (exit 1, one clear message) unless the demo
    extra is installed."""
    missing = missing_demo_modules()
    if missing:
        raise click.ClickException(
            f"adaprof {command} runs a demo service that needs the 'demo' extra; "
            f"missing: {', '.join(missing)}.\nInstall it with: {INSTALL_HINT}"
        )
