"""``adaprof config``: check a controller configuration file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from otel_adaprof.cli.console import fail, out
from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.errors import ContractError


@click.group()
def config() -> None:
    """Controller configuration files."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--show", is_flag=True, help="Print the effective configuration as JSON.")
def check(path: Path, show: bool) -> None:
    """Validate a controller configuration file (YAML).

    Exits 2 with every offending field named when the file is invalid.
    """
    try:
        cfg = ControllerConfig.load(path)
    except ContractError as exc:
        fail(exc)
    if show:
        data = cfg.model_dump(mode="json")
        for key in ("token", "agent_token"):
            if data.get(key):
                data[key] = "***"
        click.echo(json.dumps(data, indent=2))
    else:
        out.print(f"[green]ok[/]: {path} is a valid controller configuration")
