"""``adaprof bench``: insight per overhead, every configuration side by side.

Runs the benchmark of ``BENCHMARK.md`` on the demo workload (off, static-100,
static-10, static-1, heuristic, adaptive at the same time, same phases), prints the
markdown table and writes ``bench.json``, ``bench.md`` and the adaptive run's report
(plots of params and reward over time) into ``--out``.

Usage::

    adaprof bench                    # ~4 minutes of load
    adaprof bench --quick --json     # ~25 s of load: every figure, little weight
    adaprof bench --phase-scale 4    # every phase 4x longer, same loads (~16 minutes)
    adaprof bench --order-seed 2     # start the configurations in another order
    adaprof bench --arrivals poisson # requests at random gaps of the same mean rate
    adaprof bench --shape ledger     # a service of another shape, one the policy was not tuned on
    adaprof bench --reference --duration 120   # check the ground truth with py-spy 100 Hz
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from otel_adaprof.cli.demo_extra import require_demo_extra
from otel_adaprof.cli.demo_shape import profiler_option, shape_option, use_shape

if TYPE_CHECKING:
    from otel_adaprof.demo.bench import BenchSettings

#: Request spacings (``otel_adaprof.demo.loadgen.ARRIVALS``; not imported here: the demo's
#: modules read their shape when first imported, after ``--shape`` is known).
ARRIVALS = ("uniform", "poisson")


@click.command()
@click.option("--quick", is_flag=True, help="Short setting (tests, CI).")
@click.option(
    "--duration",
    type=click.FloatRange(10, 3600),
    default=None,
    help="Seconds of load (default 240, --quick 24).",
)
@click.option(
    "--rate",
    type=click.FloatRange(1, 100),
    default=None,
    help="Base requests per second per service (default 10, --quick 8).",
)
@click.option(
    "--phase-scale",
    type=click.FloatRange(0.1, 20),
    default=1.0,
    show_default=True,
    help="Stretch every phase this many times (same loads, same shares of the run).",
)
@click.option(
    "--order-seed",
    type=int,
    default=0,
    show_default=True,
    help="Shuffle the order the configurations are started in (0: table order).",
)
@click.option(
    "--arrivals",
    type=click.Choice(list(ARRIVALS)),
    default="uniform",
    show_default=True,
    help="Request spacing: uniform (1/rate apart) or poisson (random gaps, same mean; "
    "the same times for every configuration).",
)
@profiler_option
@shape_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("adaprof-bench"),
    show_default=True,
    help="Output folder.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the controller DB, logs and spans here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result instead of the table.")
@click.option(
    "--reference",
    is_flag=True,
    help="Only the ground-truth check: a 100 Hz py-spy run on the plain demo service.",
)
def bench(
    quick: bool,
    duration: float | None,
    rate: float | None,
    phase_scale: float,
    order_seed: int,
    arrivals: str,
    profiler: str,
    shape: str | None,
    out: Path,
    workdir: Path | None,
    as_json: bool,
    reference: bool,
) -> None:
    """Benchmark insight per overhead: off, static-100/10/1, heuristic, adaptive."""
    require_demo_extra("bench")
    use_shape(shape)
    try:
        from otel_adaprof.demo.bench import (
            BenchSettings,
            code_location,
            markdown_table,
            run_bench,
        )
        from otel_adaprof.demo.phases import SHAPE
    except ValueError as exc:  # $ADAPROF_DEMO_SHAPE names no shape (phases.shape_named)
        raise click.UsageError(str(exc)) from None

    base = BenchSettings.quick() if quick else BenchSettings()
    settings = BenchSettings(
        duration_s=duration if duration is not None else base.duration_s,
        rate_rps=rate if rate is not None else base.rate_rps,
        window_s=base.window_s,
        phase_scale=phase_scale,
        order_seed=order_seed,
        arrivals=arrivals,
        profiler=profiler,
    )
    console = Console(stderr=True)
    if reference:
        _reference(settings, out, workdir, as_json)
        return
    console.print(
        f"adaprof bench: {settings.load_s:.0f} s of load at {settings.rate_rps:g} req/s "
        f"per configuration ({settings.arrivals} arrivals), windows of {settings.window_s:g} s, "
        f"profiler {settings.profiler}, "
        f"the {SHAPE.name} service; otel_adaprof from {code_location()['package']}"
    )

    shown = [-1]

    def progress(elapsed: float, what: str) -> None:
        if int(elapsed // 10) > shown[0]:  # a line every 10 s is enough
            shown[0] = int(elapsed // 10)
            console.print(f"  {elapsed:5.0f} / {settings.load_s:.0f} s {what}", highlight=False)

    result = run_bench(settings, out, workdir, on_progress=progress)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(markdown_table(result))
        click.echo(f"JSON: {out / 'bench.json'}  adaptive run plots: {out / 'adaptive-report'}")


def _reference(settings: BenchSettings, out: Path, workdir: Path | None, as_json: bool) -> None:
    from otel_adaprof.demo.reference import reference_run, reference_table

    result = reference_run(settings.duration_s, settings.rate_rps * 2, workdir=workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reference.json").write_text(json.dumps(result, indent=1))
    click.echo(json.dumps(result) if as_json else reference_table(result))
