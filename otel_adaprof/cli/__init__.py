"""The ``adaprof`` command line.

Each command lives in its own module under ``otel_adaprof.cli`` and is imported only
when it runs, so ``adaprof --help`` stays fast. To add one, write the module and add
its entry to :data:`COMMANDS`.

Usage::

    adaprof --help
    adaprof params show
    adaprof params check my-params.yaml
    adaprof config check configs/controller.yaml
"""

from __future__ import annotations

import importlib
import logging

import click

from otel_adaprof import __version__

#: command name -> "module:attribute" of its click command or group.
COMMANDS: dict[str, str] = {
    "params": "otel_adaprof.cli.params_cmd:params",
    "config": "otel_adaprof.cli.config_cmd:config",
    "controller": "otel_adaprof.cli.controller_cmd:controller",
    "session": "otel_adaprof.cli.session_cmd:session",
    "sim": "otel_adaprof.cli.sim_cmd:sim",
    "train": "otel_adaprof.cli.train_cmd:train",
    "policy": "otel_adaprof.cli.policy_cmd:policy",
    "demo": "otel_adaprof.cli.demo_cmd:demo",
    "bench": "otel_adaprof.cli.bench_cmd:bench",
}


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module_name, attr = COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{COMMANDS[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="adaprof")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """otel-adaprof: adaptive profiling for OpenTelemetry Python services.

    The controller tunes, per service, how the agents inside your services profile:
    py-spy rate, stack depth, trace ratio, span filters and marker trigger.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
