"""``adaprof controller``: run the controller service."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import click

from otel_adaprof.cli.console import fail
from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.errors import ContractError

log = logging.getLogger("otel_adaprof.controller")


@click.command()
@click.option("--host", default=None, help="Address to listen on [default: 127.0.0.1].")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port [default: 8080; 0 = any free port].",
)
@click.option(
    "--db",
    "db_path",
    default=None,
    help="SQLite file or database URL (sqlite:///path) [default: ./adaprof.db].",
)
@click.option(
    "--token",
    default=None,
    envvar="ADAPROF_TOKEN",
    help="Bearer token required on mutating endpoints.",
)
@click.option(
    "--agent-token",
    default=None,
    envvar="ADAPROF_AGENT_TOKEN",
    help="Token agents send with polls.",
)
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Pretrained model (adaprof train) that seeds new services.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Controller configuration (YAML).",
)
def controller(
    host: str | None,
    port: int | None,
    db_path: str | None,
    token: str | None,
    agent_token: str | None,
    model: str | None,
    config_path: Path | None,
) -> None:
    """Run the controller: agents poll it, clients open profiling sessions on it.

    Command-line options override the configuration file. Stops cleanly on SIGTERM or
    Ctrl-C: requests in flight finish, models are snapshotted, the database is closed.
    """
    from otel_adaprof.controller.store_factory import check_database_url

    try:
        if db_path is not None:
            check_database_url(db_path, "--db")
        config = ControllerConfig.load(config_path)
        data = config.model_dump(mode="json")
        if host is not None:
            data["listen"]["host"] = host
        if port is not None:
            data["listen"]["port"] = port
        if db_path is not None:
            data["database"]["path"] = db_path
        if token is not None:
            data["token"] = token
        if agent_token is not None:
            data["agent_token"] = agent_token
        if model is not None:
            data["policy"]["model"] = model
        config = ControllerConfig.parse(data)
    except ContractError as exc:
        fail(exc)
    if logging.getLogger().level > logging.INFO:
        logging.getLogger("otel_adaprof").setLevel(logging.INFO)
    asyncio.run(serve(config))


async def serve(config: ControllerConfig) -> None:
    """Serve until SIGTERM or SIGINT, then shut down in order."""
    from aiohttp import web

    from otel_adaprof.controller.app import create_app
    from otel_adaprof.controller.store_factory import describe_database

    runner = web.AppRunner(create_app(config), handle_signals=False, shutdown_timeout=10.0)
    await runner.setup()
    site = web.TCPSite(runner, config.listen.host, config.listen.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        print(
            f"error: cannot listen on {config.listen.host}:{config.listen.port}: {exc.strerror}",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    port = runner.addresses[0][1]
    log.info(
        "adaprof controller listening on http://%s:%d (database: %s)",
        config.listen.host,
        port,
        describe_database(config.database.path),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("adaprof controller stopping")
    await runner.cleanup()
