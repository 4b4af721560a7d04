"""``adaprof sim``: the adaptive policy against every static action and the heuristic.

Usage::

    adaprof sim                         # all scenarios, 3 seeds, rich tables
    adaprof sim --seeds 5 --json        # machine-readable, exit 1 unless adaptive wins
    adaprof sim --scenario hot-path --windows 60 --model model.vw
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
def sim(
    n_seeds: int,
    as_json: bool,
    windows: int | None,
    names: tuple[str, ...],
    catalog: str | None,
    model: str | None,
    pretrain_n: int | None,
    top: int | None,
) -> None:
    """Simulate services with phases; compare cumulative reward, information, overhead,
    budget violations and per-phase regret of every policy."""
    from rich.progress import Progress

    from otel_adaprof.controller.policy.catalog import load_catalog
    from otel_adaprof.sim.compare import compare
    from otel_adaprof.sim.scenario import SCENARIOS
    from otel_adaprof.sim.training import DEFAULT_TRAIN_SCENARIOS

    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        fail(f"unknown scenario {unknown[0]!r}, known: {', '.join(SCENARIOS)}")
    try:
        cat = load_catalog(catalog)
    except ContractError as exc:
        fail(exc)
    scenarios = [SCENARIOS[n] for n in names] if names else list(SCENARIOS.values())
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
            for col in (
                "policy",
                "reward",
                "± sd",
                "information",
                "cpu %",
                "violations",
                "regret/phase",
                "regret",
            ):
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
                    else ("yellow" if p.kind == "heuristic" else "")
                )
                table.add_row(
                    p.name,
                    f"{p.reward:.1f}",
                    f"{p.reward_sd:.1f}",
                    f"{p.information:.1f}",
                    f"{100 * p.cpu:.2f}",
                    f"{p.violations:.1f}",
                    " ".join(f"{r:.1f}" for r in p.regret),
                    f"{sum(p.regret):.1f}",
                    style=style,
                )
            view.print(table)
            verdict = (
                "ahead of every static action and the heuristic"
                if scen.adaptive_wins
                else "NOT ahead of all"
            )
            view.print(
                f"adaptive is {verdict}; best static: {scen.best_static.name} "
                f"({scen.best_static.reward:.1f}); violations vs heuristic: "
                f"{scen.get('adaptive').violations:.1f} vs {scen.get('heuristic').violations:.1f}\n"
            )
    raise click.exceptions.Exit(0 if report.ok else 1)
