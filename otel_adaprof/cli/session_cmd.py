"""``adaprof session``: open, stop, inspect and export profiling sessions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from otel_adaprof.cli.console import fail, out
from otel_adaprof.controller.client import ControllerClient, ControllerClientError


@click.group()
@click.option(
    "--controller",
    "url",
    default="http://127.0.0.1:8080",
    envvar="ADAPROF_CONTROLLER_URL",
    show_default=True,
    help="Controller base URL.",
)
@click.option(
    "--token", default=None, envvar="ADAPROF_TOKEN", help="Bearer token of the controller."
)
@click.pass_context
def session(ctx: click.Context, url: str, token: str | None) -> None:
    """Profiling sessions on a controller."""
    ctx.obj = ControllerClient(url, token=token)


def _call(client: ControllerClient, method: str, path: str, body: Any = None) -> Any:
    try:
        return client.request(method, path, body)
    except ControllerClientError as exc:
        fail(str(exc))


@session.command("start")
@click.option("--service", required=True, help="Service name (OTEL_SERVICE_NAME of its agents).")
@click.option("--duration", type=float, default=300.0, show_default=True, help="Seconds.")
@click.option(
    "--mode", type=click.Choice(["adaptive", "static"]), default="adaptive", show_default=True
)
@click.option(
    "--cpu-budget", type=float, default=None, help="Profiler CPU budget, fraction of one core."
)
@click.option(
    "--params",
    "params_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Initial params (YAML/JSON).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the session as JSON.")
@click.pass_obj
def start(
    client: ControllerClient,
    service: str,
    duration: float,
    mode: str,
    cpu_budget: float | None,
    params_file: Path | None,
    as_json: bool,
) -> None:
    """Open a session for a service."""
    import yaml

    body: dict[str, Any] = {"service": service, "duration_s": duration, "mode": mode}
    if cpu_budget is not None:
        body["budget"] = {"cpu_fraction": cpu_budget}
    if params_file is not None:
        body["initial_params"] = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    result = _call(client, "POST", "/v1/sessions", body)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        out.print(f"session [bold]{result['id']}[/] open for {service} ({mode}, {duration:g} s)")


@session.command("stop")
@click.argument("session_id")
@click.pass_obj
def stop(client: ControllerClient, session_id: str) -> None:
    """Complete a session now."""
    result = _call(client, "POST", f"/v1/sessions/{session_id}/stop")
    out.print(f"session [bold]{result['id']}[/] {result['state']}")


@session.command("status")
@click.argument("session_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(client: ControllerClient, session_id: str | None, as_json: bool) -> None:
    """Show one session (or all) with params now and counts."""
    if session_id:
        sessions = [_call(client, "GET", f"/v1/sessions/{session_id}")]
    else:
        sessions = _call(client, "GET", "/v1/sessions")["sessions"]
    if as_json:
        click.echo(json.dumps(sessions if not session_id else sessions[0], indent=2))
        return
    table = Table(title="sessions")
    for col in (
        "id",
        "service",
        "mode",
        "state",
        "rate Hz",
        "depth",
        "ratio",
        "agents",
        "reports",
        "decisions",
    ):
        table.add_column(col)
    for s in sessions:
        p = s["params"]
        rate = 0 if p["sampling_interval_ms"] == 0 else round(1000 / p["sampling_interval_ms"])
        c = s["counts"]
        table.add_row(
            s["id"],
            s["service"],
            s["spec"]["mode"],
            s["state"],
            str(rate),
            str(p["stack_depth"]),
            f"{p['trace_ratio']:g}",
            str(c["agents"]),
            str(c["reports"]),
            str(c["decisions"]),
        )
    out.print(table)


@session.command("export")
@click.argument("session_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["speedscope", "collapsed", "pprof", "otlp", "timeline"]),
    default="speedscope",
    show_default=True,
)
@click.option(
    "-o",
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write [default: SESSION.<ext>].",
)
@click.option(
    "--otlp-endpoint",
    default=None,
    metavar="URL",
    help="Push the profile as OTLP profiles (protobuf over HTTP) to this receiver instead "
    "of writing a file; a URL without a path gets /v1development/profiles appended. "
    "Headers, timeout and compression come from OTEL_EXPORTER_OTLP_PROFILES_* / "
    "OTEL_EXPORTER_OTLP_* as for the agent.",
)
@click.pass_obj
def export(
    client: ControllerClient,
    session_id: str,
    fmt: str,
    out_path: Path | None,
    otlp_endpoint: str | None,
) -> None:
    """Write a session's merged profile (or its timeline) to a file, or push it over OTLP."""
    if otlp_endpoint is not None:
        _push(client, session_id, otlp_endpoint)
        return
    ext = {
        "speedscope": "speedscope.json",
        "collapsed": "collapsed.txt",
        "pprof": "pb.gz",
        "otlp": "otlp.pb",
        "timeline": "timeline.json",
    }[fmt]
    path = out_path or Path(f"{session_id}.{ext}")
    try:
        if fmt == "timeline":
            data = json.dumps(
                client.request("GET", f"/v1/sessions/{session_id}/timeline"), indent=2
            ).encode()
        else:
            data = client.raw("GET", f"/v1/sessions/{session_id}/profile?format={fmt}")
    except ControllerClientError as exc:
        fail(str(exc))
    path.write_bytes(data)
    out.print(f"wrote {path} ({len(data)} bytes)")


def _push(client: ControllerClient, session_id: str, url: str) -> None:
    import os
    import urllib.error
    from urllib.parse import urlparse

    from otel_adaprof.exporters.otlp_http import endpoint_from_env, profiles_url

    if urlparse(url).path in ("", "/"):
        url = profiles_url(url)
    try:
        target = endpoint_from_env({**os.environ, "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT": url})
    except ValueError as exc:
        fail(f"--otlp-endpoint: {exc}")
    try:
        data = client.raw("GET", f"/v1/sessions/{session_id}/profile?format=otlp")
    except ControllerClientError as exc:
        fail(str(exc))
    try:
        status = target.send(data)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:200]
        fail(f"{target.url}: HTTP {exc.code}: {detail}")
    except OSError as exc:
        fail(f"cannot reach {target.url}: {getattr(exc, 'reason', exc)}")
    out.print(f"pushed session {session_id} to {target.url} ({len(data)} bytes, HTTP {status})")
