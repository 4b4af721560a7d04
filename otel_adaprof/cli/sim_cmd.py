"""``adaprof sim``: the adaptive policy against every static action and the heuristic.

Usage::

    adaprof sim                         # all scenarios, 3 seeds, rich tables
    adaprof sim --seeds 5 --json        # machine-readable, exit 1 unless adaptive wins
    adaprof sim --scenario hot-path --windows 60 --model model.vw
    adaprof sim --profiler native --scenario demo --model M.vw   # the native world
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from otel_adaprof.cli.console import err, fail, out
from otel_adaprof.errors import ContractError


@click.command("sim")
@click.option(
    "--seeds",
    "n_seeds",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Seeds per scenario (1..N).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option(
    "--windows",
    type=click.IntRange(1, 100_000),
    default=None,
    help="Windows per run (default: each scenario's full length).",
)
@click.option("--scenario", "names", multiple=True, help="Scenario name (repeatable; default all).")
@click.option(
    "--catalog",
    type=click.Path(dir_okay=False),
    default=None,
    help="Action catalog YAML (default: the packaged one).",
)
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Pretrained model (adaprof train --sim); default: pretrain first.",
)
@click.option(
    "--pretrain",
    "pretrain_n",
    type=click.IntRange(0, 10_000),
    default=None,
    help="Random scenarios to pretrain on when no --model is given.",
)
@click.option(
    "--top",
    type=click.IntRange(1, 64),
    default=None,
    help="Show only the best N static actions per scenario.",
)
@click.option(
    "--profiler",
    type=click.Choice(["py-spy", "native"]),
    default="py-spy",
    show_default=True,
    help="The agent's profiler: which measured world (cost, yield, lag) to simulate "
    "(bench/sim_calibration.py).",
)
def sim(
    n_seeds: int,
    as_json: bool,
    windows: int | None,
    names: tuple[str, ...],
    catalog: str | None,
    model: str | None,
    pretrain_n: int | None,
    top: int | None,
    profiler: str,
) -> None:
    """Simulate services with phases through the controller's real poll handling; judge
    adaptive against static-100/10/1 and the heuristic by user measures (per-phase L1,
    detection delay, profiler CPU); reward and regret are diagnostics."""
    from rich.progress import Progress

    from otel_adaprof.controller.policy.catalog import load_catalog
    from otel_adaprof.sim.calibration import calibration
    from otel_adaprof.sim.compare import compare
    from otel_adaprof.sim.scenario import SCENARIOS, scenarios_for
    from otel_adaprof.sim.training import DEFAULT_TRAIN_SCENARIOS

    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        fail(f"unknown scenario {unknown[0]!r}, known: {', '.join(SCENARIOS)}")
    try:
        cat = load_catalog(catalog)
    except ContractError as exc:
        fail(exc)
    calib = calibration(profiler)
    world = scenarios_for(calib)
    scenarios = [world[n] for n in names] if names else list(world.values())
    seeds = list(range(1, n_seeds + 1))
    blob = Path(model).read_bytes() if model else None
    steps = len(scenarios) * len(seeds) + (0 if blob else 1)
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("simulating", total=steps)

        def advance(label: str) -> None:
            progress.update(task, advance=1, description=label)

        report = compare(
            scenarios,
            seeds=seeds,
            windows=windows,
            catalog=cat,
            model=blob,
            pretrain_scenarios=pretrain_n if pretrain_n is not None else DEFAULT_TRAIN_SCENARIOS,
            progress=advance,
            calib=calib,
        )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        # tables are wide: do not squeeze them to 80 columns when piped to a file
        view = out if out.is_terminal else Console(highlight=False, width=140)
        for scen in report.scenarios:
            table = Table(
                title=f"{scen.name}  ({len(seeds)} seeds; phases: {', '.join(scen.phases)})"
            )
            for col in ("policy", "cpu %", "L1 per phase", "detect s", "changes",
                        "reward", "regret"):  # fmt: skip
                table.add_column(col, justify="left" if col == "policy" else "right")
            rows = [p for p in scen.policies if p.kind != "static"]
            statics = sorted(
                (p for p in scen.policies if p.kind == "static"), key=lambda p: -p.reward
            )
            rows += statics[:top] if top else statics
            for p in rows:
                style = (
                    "bold green"
                    if p.kind == "adaptive"
                    else ("yellow" if p.kind in ("heuristic", "bench") else "")
                )
                table.add_row(
                    p.name,
                    f"{100 * p.cpu:.2f}",
                    " ".join("–" if v is None else f"{v:.2f}" for v in p.l1),
                    " ".join("–" if v is None else f"{v:.0f}" for v in p.detect_s),
                    f"{p.changes:.0f}",
                    f"{p.reward:.1f}",
                    f"{sum(p.regret):.1f}",
                    style=style,
                )
            view.print(table)
            checks = scen.checks()
            view.print(
                f"adaptive vs static-100 (L1 ≤ 1.5×, detection ≤ 1.5×, CPU ≤ {scen.cpu_max:g}×): "
                + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in checks.items())
                + "\n"
            )
    raise click.exceptions.Exit(0 if report.ok else 1)
