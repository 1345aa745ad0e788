"""`hpsearch launches`, `stop` and `delete`: managing studies and their launches."""

from __future__ import annotations

import click

from .group import STORAGE_HELP, cli, echo_json, table


@cli.command()
@click.argument("study", required=False)
@click.option("--storage", help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the launches as JSON.")
def launches(study: str | None, storage: str | None, as_json: bool) -> None:
    """List launches (of STUDY, or all), newest first, with their state, host and workers."""
    from ..views.manage import launch_rows

    rows = launch_rows(storage, study)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        row["workers"] = ", ".join(f"{w['host']}:{w['pid']} {w['device']} ({w['running']} running)" for w in row["workers"])
    table(rows, ["launch", "study", "state", "host", "started", "ended", "n_workers", "workers"])


@cli.command()
@click.argument("study")
@click.option("--storage", help=STORAGE_HELP)
def stop(study: str, storage: str | None) -> None:
    """Ask STUDY's running launches and their workers to stop, from any shell or machine.

    Workers see the request at their next heartbeat, take no new trial and re-queue the
    trials they are running; a later launch runs them again.
    """
    from ..views.manage import stop as stop_study

    asked = stop_study(storage, study)
    if not asked:
        click.echo(f"study {study!r} has no running launch; nothing to stop")
        return
    click.echo(f"asked launch {', '.join(str(i) for i in asked)} of study {study!r} to stop")


@cli.command()
@click.argument("study")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--yes", is_flag=True, help="Delete without asking.")
@click.option("--force", is_flag=True, help="Delete even if a launch of the study looks running (its launcher was killed).")
def delete(study: str, storage: str | None, yes: bool, force: bool) -> None:
    """Delete STUDY: its trials and hpsearch's rows about it. Asks first unless --yes."""
    from ..views.manage import delete as delete_study

    if not yes:
        click.confirm(f"Delete study {study!r} and all its trials?", abort=True)
    n = delete_study(storage, study, force=force)
    click.echo(f"deleted study {study!r} ({n} trials)")
