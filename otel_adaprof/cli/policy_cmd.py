"""``adaprof policy``: inspect and evaluate the learning policy.

Usage::

    adaprof policy eval --db adaprof.db                 # model snapshot from the database
    adaprof policy eval --db adaprof.db --model model.vw --service shop --json
    adaprof policy catalog                              # the action catalog in use
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from otel_adaprof.cli.console import fail, out
from otel_adaprof.errors import ContractError

_MODEL_TABLES = ("model_snapshots", "models", "policy_models", "snapshots")
_MODEL_COLUMNS = ("model", "blob", "data", "snapshot")


def _model_from_db(conn: sqlite3.Connection, service: str | None) -> bytes | None:
    """The newest model blob in a snapshot table, if the database has one."""
    for table in _MODEL_TABLES:
        cols = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        blob_col = next((c for c in _MODEL_COLUMNS if c in cols), None)
        if blob_col is None:
            continue
        query = f"SELECT {blob_col} FROM {table}"
        args: list[str] = []
        if service is not None and "service" in cols:
            query += " WHERE service = ?"
            args.append(service)
        row = conn.execute(query + " ORDER BY rowid DESC LIMIT 1", args).fetchone()
        if row is not None and row[0]:
            return bytes(row[0])
    return None


def _static_target(name: str) -> Callable[[Any], dict[str, float]]:
    """Target policy "always ``name``" (where the guard offered it)."""

    def target(row: Any) -> dict[str, float]:
        return {name: 1.0} if name in row.offered else {}

    return target


@click.group()
def policy() -> None:
    """The learning policy: catalog and offline evaluation."""


@policy.command("catalog")
@click.option("--catalog", type=click.Path(dir_okay=False), default=None)
def catalog_cmd(catalog: str | None) -> None:
    """Show the action catalog (validated)."""
    from rich.console import Console

    from otel_adaprof.controller.policy.catalog import load_catalog
    from otel_adaprof.params import ALL_CATEGORIES

    try:
        cat = load_catalog(catalog)
    except ContractError as exc:
        fail(exc)
    table = Table(title=f"action catalog ({len(cat)} actions)")
    for col in ("action", "rate Hz", "depth", "ratio", "filters", "trigger", "capture",
                "reflex", "tags"):  # fmt: skip
        table.add_column(col, no_wrap=col == "action")
    for a in cat:
        p = a.params
        cats = ",".join(sorted(c.value for c in p.span_filters.categories))
        filt = ("errors " if p.span_filters.errors_only else "") + cats
        trig = p.marker_trigger
        trigger = (f"p{trig.latency_percentile:g}" if trig.latency_percentile else "") + (
            f" ≥{trig.min_duration_ms:g}ms" if trig.min_duration_ms else ""
        )
        reflex = (
            f"{p.burst_sensitivity:g} std, {p.burst_seconds:g} s @ {p.burst_interval_ms} ms"
            if p.burst_sensitivity > 0
            else ""
        )
        table.add_row(
            a.name,
            str(p.rate_hz),
            str(p.stack_depth),
            f"{p.trace_ratio:g}",
            "all" if len(p.span_filters.categories) == len(ALL_CATEGORIES) else filt,
            trigger.strip(),
            f"{p.slow_span_interval_ms} ms" if p.slow_span_interval_ms else "",
            reflex,
            ",".join(a.tags),
        )
    view = out if out.is_terminal else Console(highlight=False, width=160)
    view.print(table)


@policy.command("eval")
@click.option(
    "--db",
    "db_path",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="The controller's SQLite database.",
)
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Model to evaluate (default: newest snapshot in the database).",
)
@click.option("--service", default=None, help="Only this service's decisions.")
@click.option("--catalog", type=click.Path(dir_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_cmd(
    db_path: str, model: str | None, service: str | None, catalog: str | None, as_json: bool
) -> None:
    """Counterfactual value of the current model and of each static action (IPS, DR),
    estimated from the logged decisions and rewards. The model is evaluated as the
    policy runs it: the windows a rule decided (forced, settled, learning, saving) go
    as the rule chose, the rest by the model's probabilities."""
    from otel_adaprof.controller.policy.catalog import load_catalog
    from otel_adaprof.controller.policy.decision_log import read_decisions
    from otel_adaprof.controller.policy.offline import (
        LoggedDecision,
        TargetPolicy,
        evaluate,
        on_policy,
    )
    from otel_adaprof.controller.policy.vw import VWPolicy

    try:
        cat = load_catalog(catalog)
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = read_decisions(conn, service)
            blob = Path(model).read_bytes() if model else _model_from_db(conn, service)
        finally:
            conn.close()
    except ContractError as exc:
        fail(exc)
    except sqlite3.Error as exc:
        fail(f"cannot read {db_path}: {exc}")
    if not rows:
        fail("no credited decisions with logged features in the database", code=1)
    targets: dict[str, TargetPolicy] = {}
    if blob is not None:
        learner = VWPolicy(cat, model=blob)
        known = set(cat.names)

        def current(row: LoggedDecision) -> dict[str, float]:
            if row.rule:  # the policy's rules decide that window the same way again
                return {row.action: 1.0}
            offered = [cat[cat.index(n)] for n in row.offered if n in known]
            if not offered:
                return {}
            pmf = learner.scores(row.state, offered, row.context)
            return {a.name: p for a, p in zip(offered, pmf, strict=True)}

        targets["model"] = current
    for action in cat:
        targets[f"static:{action.name}"] = _static_target(action.name)
    estimates = {"logged": on_policy(rows), **evaluate(rows, targets)}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "decisions": len(rows),
                    "estimates": {k: vars(v) for k, v in estimates.items()},
                },
                indent=2,
            )
        )
        return
    table = Table(
        title=f"offline evaluation: {len(rows)} credited decisions (mean reward per window)"
    )
    for col in ("policy", "IPS", "± se", "DR", "± se", "support"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    order = [
        "logged",
        "model",
        *sorted((k for k in estimates if k.startswith("static:")), key=lambda k: -estimates[k].dr),
    ]
    for name in order:
        if name not in estimates:
            continue
        e = estimates[name]
        table.add_row(
            name,
            f"{e.ips:.3f}",
            f"{e.ips_se:.3f}",
            f"{e.dr:.3f}",
            f"{e.dr_se:.3f}",
            f"{100 * e.match:.0f} %",
        )
    out.print(table)
    out.print(
        "support: share of logged decisions where the policy could have taken the "
        "logged action (low support = wide error)"
    )
