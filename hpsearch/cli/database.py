"""`hpsearch db check` and `hpsearch db upgrade`: the storage's two schemas."""

from __future__ import annotations

import sys

import click

from .group import STORAGE_HELP, cli


@cli.group()
def db() -> None:
    """Check or upgrade the storage's schema (Optuna's and hpsearch's)."""


@db.command()
@click.option("--storage", help=STORAGE_HELP)
def upgrade(storage: str | None) -> None:
    """Bring both schemas to this version's head (creates the database if missing)."""
    from ..db.storage import upgrade as run
    from ..db.urls import mask_url, resolve_url

    url = resolve_url(storage)
    versions = run(url)
    click.echo(f"{mask_url(url)}: Optuna schema {versions.optuna_current}, hpsearch schema {versions.ours_current}: up to date.")


@db.command(name="check")
@click.option("--storage", help=STORAGE_HELP)
def db_check(storage: str | None) -> None:
    """Print both schema versions; exit 1 when either is behind this version."""
    from ..db.storage import schema_versions
    from ..db.urls import mask_url, resolve_url

    url = resolve_url(storage)
    v = schema_versions(url)
    for name, current, head in (("Optuna", v.optuna_current, v.optuna_head), ("hpsearch", v.ours_current, v.ours_head)):
        state = "up to date" if current == head else "BEHIND"
        click.echo(f"{name} schema: {current or 'none'} (head {head}): {state}")
    if not v.up_to_date:
        click.echo(f"Error: run `hpsearch db upgrade --storage '{mask_url(url)}'`", err=True)
        sys.exit(1)
