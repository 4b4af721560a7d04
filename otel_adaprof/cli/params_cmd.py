"""``adaprof params``: show the knobs with their bounds, check a params file."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml
from rich.table import Table

from otel_adaprof.cli.console import fail, out
from otel_adaprof.errors import ContractError
from otel_adaprof.params import (
    BOUNDS,
    DEFAULT_PARAMS,
    MAX_OPERATION_RULES,
    PROFILE_MODES,
    SAMPLE_SCOPES,
    Category,
    Params,
)


@click.group()
def params() -> None:
    """Profiling parameters: the knobs, their bounds and defaults."""


@params.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print the defaults as JSON.")
def show(as_json: bool) -> None:
    """Show every knob with its bounds and default."""
    if as_json:
        click.echo(json.dumps(DEFAULT_PARAMS.to_json(), indent=2))
        return
    defaults = DEFAULT_PARAMS.to_json()
    table = Table(title="profiling parameters")
    for col in ("knob", "default", "bounds", "meaning"):
        table.add_column(col)
    for path, bound in BOUNDS.items():
        value: object = defaults
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        unit = f" {bound.unit}" if bound.unit else ""
        if path == "operation_ratios":
            unit += f", at most {MAX_OPERATION_RULES} rules"
        table.add_row(path, json.dumps(value), f"[{bound.lo}, {bound.hi}]{unit}", bound.doc)
    cats = ", ".join(c.value for c in Category)
    table.add_row("span_filters.categories", "all", cats, "categories that may become markers")
    table.add_row("span_filters.errors_only", "false", "true | false", "only spans with errors")
    modes = "; ".join(f"{name}: {doc}" for name, doc in PROFILE_MODES.items())
    table.add_row(
        "profile_mode", json.dumps(defaults["profile_mode"]), " | ".join(PROFILE_MODES), modes
    )
    scopes = "; ".join(f"{name}: {doc}" for name, doc in SAMPLE_SCOPES.items())
    table.add_row(
        "sample_scope", json.dumps(defaults["sample_scope"]), " | ".join(SAMPLE_SCOPES), scopes
    )
    out.print(table)


@params.command("check")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def check(path: Path) -> None:
    """Validate a params file (YAML or JSON) and print it normalised.

    Exits 2 with every offending field named when the file is invalid.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"{path}: cannot read: {exc.strerror}")
    except yaml.YAMLError as exc:
        fail(f"{path}: not valid YAML or JSON: {exc}")
    try:
        parsed = Params.parse(data if data is not None else {})
    except ContractError as exc:
        fail(exc)
    click.echo(json.dumps(parsed.to_json(), indent=2))
