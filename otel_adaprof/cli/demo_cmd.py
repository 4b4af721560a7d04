"""``adaprof demo``: the whole loop on this machine, in one command.

Starts the controller (SQLite in a temporary or ``--workdir`` folder), the demo service
under ``opentelemetry-instrument`` with the agent, a phased load and an adaptive
session; shows a live table; writes a report folder.

Usage::

    adaprof demo                      # ~3 minutes, report in ./adaprof-report
    adaprof demo --duration 30 --out /tmp/report
    adaprof demo --otlp-endpoint http://127.0.0.1:4318   # spans to your collector
    adaprof demo --shape ledger       # a service of another shape (docs/benchmarks.md)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from otel_adaprof.cli.demo_extra import require_demo_extra
from otel_adaprof.cli.demo_shape import profiler_option, shape_option, use_shape
from otel_adaprof.demo.budget import BUDGET_CPU
from otel_adaprof.demo.timeline import param_change_labels

if TYPE_CHECKING:  # (imported in the command: the demo's modules read --shape)
    from otel_adaprof.demo.run import DemoProgress


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "–" if value is None else format(value, spec)


def progress_view(p: DemoProgress, last: int = 8) -> Group:
    """The live view: a progress bar and the last windows of the session."""
    head = Text(
        f"{p.elapsed_s:5.0f} / {p.duration_s:.0f} s   phase: {p.phase or '…'}   "
        f"windows: {len(p.rows)}",
        style="bold",
    )
    totals = Text(
        f"spans received: {p.spans}   session samples: {p.samples:g} "
        f"(in workload functions: {p.workload_samples:g})"
    )
    # In a grid so that the bar ends its line (a bare ProgressBar does not, and the
    # console crops whatever follows it on the same line).
    bar = Table.grid(expand=True)
    bar.add_row(ProgressBar(total=max(p.duration_s, 1.0), completed=min(p.elapsed_s, p.duration_s)))
    table = Table(box=None, header_style="bold cyan", pad_edge=False)
    for col in ("t (s)", "action", "ver", "rate Hz", "depth", "ratio", "reward",
                "prof CPU", "markers/s", "samples/s"):  # fmt: skip
        table.add_column(col, justify="right")
    t0 = p.rows[0].t if p.rows else 0.0
    for r in p.rows[-last:]:
        table.add_row(
            f"{r.t - t0:.0f}",
            (r.action or r.agent)[-16:],
            str(r.config_version),
            _fmt(r.rate_hz, ".0f"),
            _fmt(r.stack_depth, ".0f"),
            _fmt(r.trace_ratio),
            _fmt(r.reward, ".3f"),
            _fmt(r.profiler_cpu_fraction, ".3f"),
            _fmt(r.figure("markers_per_s"), ".1f"),
            _fmt(r.figure("samples_per_s"), ".1f"),
        )
    return Group(head, bar, totals, table)


@click.command()
@click.option(
    "--duration",
    type=click.FloatRange(10, 3600),
    default=180.0,
    show_default=True,
    help="Seconds of load (the phases scale with it).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("adaprof-report"),
    show_default=True,
    help="Report folder.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the controller DB and logs here (default: a temporary folder).",
)
@click.option(
    "--otlp-endpoint",
    default=None,
    help="Send spans to this OTLP/HTTP endpoint instead of OUT/spans.jsonl.",
)
@click.option(
    "--rate",
    type=click.FloatRange(1, 200),
    default=20.0,
    show_default=True,
    help="Base requests per second.",
)
@click.option(
    "--budget",
    type=click.FloatRange(0.001, 1.0),
    default=BUDGET_CPU,
    show_default=True,
    help="The session's profiler CPU budget, in cores, held on average over its horizon.",
)
@profiler_option
@shape_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON, no live view.")
def demo(
    duration: float,
    out: Path,
    workdir: Path | None,
    otlp_endpoint: str | None,
    rate: float,
    budget: float,
    profiler: str,
    shape: str | None,
    as_json: bool,
) -> None:
    """Run the adaptive profiling loop on a demo service and write a report.

    A small ``--budget`` (e.g. 0.008) shows the budget guard's retreat and its glimpse
    of a change.
    """
    require_demo_extra("demo")
    use_shape(shape)
    from otel_adaprof.demo.phases import SHAPE
    from otel_adaprof.demo.run import DemoProgress, run_demo

    console = Console(stderr=as_json)
    if as_json:
        result = run_demo(
            duration, out, workdir, otlp_endpoint, rate, budget_cpu_fraction=budget,
            profiler=profiler,
        )  # fmt: skip
    else:
        console.print(
            f"[bold]adaprof demo[/] — {duration:.0f} s, the {SHAPE.name} service, report in {out}"
        )
        with Live(progress_view(DemoProgress(duration_s=duration)), console=console,
                  refresh_per_second=2, transient=False) as live:  # fmt: skip

            def show(p: DemoProgress) -> None:
                live.update(progress_view(p))

            result = run_demo(
                duration, out, workdir, otlp_endpoint, rate, on_progress=show,
                budget_cpu_fraction=budget, profiler=profiler,
            )  # fmt: skip
    summary = result.summary()
    if as_json:
        click.echo(json.dumps(summary))
        return
    table = Table(title="summary", show_header=False)
    for key, value in summary.items():
        table.add_row(key, str(value))
    console.print(table)
    start = result.phase_started_at.get("steady", 0.0)
    for name, t in sorted(result.phase_started_at.items(), key=lambda kv: kv[1]):
        console.print(f"  phase {name} from {t - start:+.0f} s", highlight=False)
    for t, before, after, action in param_change_labels(result.rows):
        console.print(
            f"  params change at {t - start:+.0f} s ({action or 'policy'}): {before} → {after}",
            highlight=False,
        )
    console.print(f"open [bold]{out / 'index.html'}[/] in a browser")
