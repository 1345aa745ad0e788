"""`hpsearch check`, `studies`, `trials`, `best` and `env`: looking at a study file or a storage."""

from __future__ import annotations

import json

import click

from .group import STORAGE_HELP, cli, echo_json, table


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the resolved spec as JSON.")
def check(spec: str, as_json: bool) -> None:
    """Validate a study file and print its resolved search space."""
    from ..config.space import describe
    from ..config.spec import load_study_file

    file = load_study_file(spec)
    s = file.spec
    if as_json:
        echo_json({"spec": s.model_dump(mode="json"), "metric": s.metric, "direction": s.direction, "space": [dict(zip(("key", "values", "applies_to"), r)) for r in describe(s)]})
        return
    from rich.console import Console
    from rich.table import Table

    click.echo(f"{file.path}: valid.")
    click.echo(f"Study {s.study.name}: {s.direction} validation {s.metric}; model {s.model.name} on data {s.data.name}")
    batch = "searched" if s.space.batch_size is not None else s.batch_sizes
    click.echo(f"Training: {s.train.epochs} epochs, batch size {batch}, seed {s.train.seed}")
    click.echo(f"Search: {s.search.n_trials} trials, sampler {s.search.sampler}, pruner {s.search.pruner}" + (f", timeout {s.search.timeout:g}s" if s.search.timeout else ""))
    table = Table(title="Search space", title_justify="left")
    for column in ("key", "values", "applies to"):
        table.add_column(column)
    for row in describe(s):
        table.add_row(*row)
    Console(width=120).print(table)


@cli.command()
@click.option("--storage", help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True)
def studies(storage: str | None, as_json: bool) -> None:
    """List the studies in the storage."""
    from ..views.listings import study_rows

    rows = study_rows(storage)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No studies yet.")
        return
    table(rows, ["study", "direction", "complete", "pruned", "failed", "running", "best_value", "best_trial"])


@cli.command()
@click.argument("study")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True)
def trials(study: str, storage: str | None, as_json: bool) -> None:
    """List a study's trials with their configs."""
    from ..views.listings import trial_rows

    rows = trial_rows(storage, study)
    if as_json:
        echo_json(rows)
        return
    flat = [
        {
            "trial": r["number"],
            "state": r["state"],
            "value": r["value"],
            "optimizer": (r["config"] or {}).get("optimizer", {}).get("name"),
            "lr": (r["config"] or {}).get("optimizer", {}).get("lr"),
            "batch": (r["config"] or {}).get("batch_size"),
            "schedule": (r["config"] or {}).get("schedule", {}).get("name"),
            "seconds": r["train_seconds"],
            "note": r["note"],
        }
        for r in rows
    ]
    table(flat, list(flat[0]) if flat else [])


@cli.command()
@click.argument("study")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True)
def best(study: str, storage: str | None, as_json: bool) -> None:
    """Print the best trial of a study and its config."""
    from ..views.listings import best as best_of

    found = best_of(storage, study)
    if as_json:
        echo_json(found)
        return
    click.echo(f"Best {found['metric']} = {found['value']:.6g} (trial {found['number']} of study {study}); its config:")
    click.echo(json.dumps(found["config"], indent=2))


@cli.command()
@click.option("--storage", help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True)
def env(storage: str | None, as_json: bool) -> None:
    """Print versions, devices and the storage in use (password masked), for bug reports."""
    from ..views.listings import environment

    info = environment(storage)
    if as_json:
        echo_json(info)
        return
    for key, value in info["versions"].items():
        click.echo(f"{key + ':':20} {value}")
    click.echo(f"{'devices:':20} {', '.join(info['devices'])}")
    click.echo(f"{'storage:':20} {info['storage']}")
    click.echo(f"{'storage schema:':20} {info['schema']}")
