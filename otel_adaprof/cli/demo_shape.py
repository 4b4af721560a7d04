"""The ``--shape`` and ``--profiler`` options of ``adaprof demo`` and ``adaprof bench``.

The demo's modules read their shape (``$ADAPROF_DEMO_SHAPE``) when first imported, and
the processes they start inherit it: the commands set it before importing them.

Usage::

    @click.command()
    @shape_option
    def demo(shape: str | None) -> None:
        use_shape(shape)  # before any otel_adaprof.demo module that reads it
"""

from __future__ import annotations

import os
import sys

import click

from otel_adaprof.demo.shapes import SHAPE_ENV, SHAPES

shape_option = click.option(
    "--shape",
    type=click.Choice(list(SHAPES)),
    default=None,
    help="The demo service's shape: shop (the default, the one the policy was tuned on) "
    "or ledger (another request mix, a subtle hot path, deeper stacks; "
    "docs/benchmarks.md). Default: $ADAPROF_DEMO_SHAPE, else shop.",
)


def use_shape(shape: str | None) -> None:
    """Make ``shape`` the demo's for this process and the ones it starts (they inherit
    ``ADAPROF_DEMO_SHAPE``). If the demo's modules were already imported with another
    shape, say so rather than run a mixed demo.

    >>> use_shape(None)  # nothing asked: $ADAPROF_DEMO_SHAPE, else shop
    """
    if shape is None:
        return
    phases = sys.modules.get("otel_adaprof.demo.phases")
    imported = getattr(phases, "SHAPE", None)
    if imported is not None and imported.name != shape:
        raise click.UsageError(
            f"--shape {shape}: this process already runs the {imported.name} demo; "
            f"set {SHAPE_ENV}={shape} before starting it"
        )
    os.environ[SHAPE_ENV] = shape


#: The services' ``ADAPROF_PROFILER`` (the demo's one service, the benchmark's six).
profiler_option = click.option(
    "--profiler",
    type=click.Choice(["auto", "py-spy", "native"]),
    default="auto",
    show_default=True,
    help="The agent's profiler in the service(s) (ADAPROF_PROFILER): native is the C "
    "sampler in the process (CPython 3.11/3.12), auto is py-spy where it may attach.",
)
