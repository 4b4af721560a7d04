"""``adaprof train --sim``: pretrain the adaptive policy in the simulator.

Usage::

    adaprof train --sim --out model.vw               # 200 random scenarios
    # the packaged default model (used by new services unless the config names another):
    adaprof train --sim --out otel_adaprof/controller/policy/default_model.vw
    adaprof train --sim --out model.vw --scenarios 200 --catalog my-actions.yaml
    adaprof train --sim --profiler native --out native.vw   # in the native profiler's world
    adaprof controller --model model.vw              # seeds services without a model
    # or in the controller config: policy: {model: model.vw}
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from otel_adaprof.cli.console import err, fail, out
from otel_adaprof.errors import ContractError


@click.command("train")
@click.option(
    "--sim",
    "use_sim",
    is_flag=True,
    required=True,
    help="Train in the simulator (the only source for now).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="Where to write the model.",
)
@click.option(
    "--scenarios",
    type=click.IntRange(1, 100_000),
    default=None,
    help="Random scenarios to train on.",
)
@click.option(
    "--catalog",
    type=click.Path(dir_okay=False),
    default=None,
    help="Action catalog YAML (the controller must use the same one).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed.")
@click.option(
    "--profiler",
    type=click.Choice(["py-spy", "native"]),
    default="py-spy",
    show_default=True,
    help="The agents' profiler: which measured world to train in (bench/sim_calibration.py).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def train(
    use_sim: bool,
    out_path: str,
    scenarios: int | None,
    catalog: str | None,
    seed: int,
    profiler: str,
    as_json: bool,
) -> None:
    """Pretrain a model on random simulated scenarios and write it to --out."""
    from rich.progress import Progress

    from otel_adaprof.controller.policy.catalog import load_catalog
    from otel_adaprof.sim.calibration import calibration
    from otel_adaprof.sim.training import DEFAULT_TRAIN_SCENARIOS, pretrain

    try:
        cat = load_catalog(catalog)
    except ContractError as exc:
        fail(exc)
    n = scenarios or DEFAULT_TRAIN_SCENARIOS
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("training", total=n)
        policy = pretrain(
            scenarios=n,
            catalog=cat,
            seed=seed,
            progress=lambda done, total: progress.update(task, completed=done),
            calib=calibration(profiler),
        )
    blob = policy.snapshot()
    target = Path(out_path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_bytes(blob)
        tmp.replace(target)  # atomic: a reader never sees half a model
    except OSError as exc:
        fail(f"cannot write {out_path}: {exc.strerror}")
    summary = {
        "out": str(target),
        "bytes": len(blob),
        "updates": policy.updates,
        "scenarios": n,
        "actions": len(cat),
        "profiler": profiler,
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        out.print(
            f"wrote {target} ({len(blob)} bytes, {policy.updates} updates on {n} scenarios "
            f"in {profiler}'s world)"
        )
