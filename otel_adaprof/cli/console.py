"""Terminal output shared by the commands: one rich console, one way to fail."""

from __future__ import annotations

from typing import NoReturn

import click
from rich.console import Console

from otel_adaprof.errors import ContractError

#: Standard output (tables, results).
out = Console(highlight=False)
#: Standard error (progress, errors).
err = Console(stderr=True, highlight=False)


def fail(error: ContractError | str, code: int = 2) -> NoReturn:
    """Print ``error`` (each problem on its own line) to stderr and exit with ``code``."""
    if isinstance(error, ContractError) and len(error.problems) > 1:
        err.print("[bold red]error:[/] invalid input")
        for field, reason in error.problems:
            err.print(f"  [red]{field or '(document)'}[/]: {reason}")
    else:
        err.print(f"[bold red]error:[/] {error}")
    raise click.exceptions.Exit(code)
