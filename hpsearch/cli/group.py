"""The `hpsearch` command group: a few lines over the library per command.

Errors a user can cause print one line (`Error: ...`) on stderr and exit non-zero; there is
no traceback for them. Heavy libraries load inside the commands that need them, so
`hpsearch --help` and `hpsearch db ...` stay quick.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..errors import HpsearchError

STORAGE_HELP = "Database URL (SQLAlchemy). Default: $HPSEARCH_STORAGE, else sqlite:///hpsearch.db."
EXIT_NOT_FINISHED = 1
EXIT_INTERRUPTED = 130


class _Cli(click.Group):
    """Turns HpsearchError and click's usage errors into one line and an exit code."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except HpsearchError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except click.ClickException as e:
            where = getattr(getattr(e, "ctx", None), "command_path", None)
            hint = f" (see '{where} --help')" if where else ""
            click.echo(f"Error: {e.format_message()}{hint}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hpsearch")
def cli() -> None:
    """hpsearch: find the optimizer, learning rate, batch size and schedule to train a model.

    Start with `hpsearch launch studies/quickstart.toml`.
    """


def main() -> None:
    cli()


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def table(rows: list[dict[str, Any]], columns: list[str], err: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[cell(row.get(c)) for c in columns])
    Console(width=160, stderr=err).print(table)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
