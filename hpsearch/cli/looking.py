"""`hpsearch check`, `studies`, `trials`, `best` and `env`: looking at a study file or a storage."""

from __future__ import annotations

import json
from typing import Any

import click

from .group import STORAGE_HELP, cli, echo_json, table


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--device", help="cpu, cuda or cuda:N. Default: cuda when available, else cpu.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where MNIST / CIFAR-10 files are (else data.dir, $HPSEARCH_DATA, ./data).")
@click.option("--engine", type=click.Choice(["auto", "train", "cohort"]), default="auto", show_default=True, help="The engine a launch would be asked for.")
@click.option("--cohort", type=click.IntRange(min=1), help="Trials per cohort a launch would be asked for.")
@click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]), default="fp32", show_default=True)
@click.option("--quick", is_flag=True, help="Only validate the file, the sampler and the pruner; load no data, build no model.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def check(spec: str, as_json: bool, **options: Any) -> None:
    """Check a study short of searching: the file, sampler and pruner, data, model, one step, engine, time.

    Imports the factories, loads the data, builds the model and runs one forward and backward
    step (outputs against the task and the loss), says which engine will train and why not
    cohorts, and times a step to estimate the time per trial and for the study.
    """
    from ..errors import HpsearchError
    from ..run.check import check_study

    try:
        report = check_study(spec, **options)
    except HpsearchError as e:
        if e.trace:  # raised in the user's own code: show where, then the one-line error
            click.echo(e.trace.rstrip(), err=True)
        raise
    if as_json:
        echo_json(report.as_json())
        return
    _print_check(report)


def _print_check(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..config.space import describe

    s = report.file.spec
    click.echo(f"{report.file.path}: valid.")
    click.echo(f"Study {s.study.name}: {s.direction} validation {s.metric}; {s.trains}")
    batch = "searched" if s.space.batch_size is not None else s.batch_sizes
    loss = report.model.get("loss") or s.train.loss or "the study's own"
    click.echo(f"Training: {s.train.epochs} epochs, batch size {batch}, seed {s.train.seed}, loss {loss}")
    click.echo(f"Search: {s.search.n_trials} trials, sampler {report.sampler}, pruner {report.pruner}" + (f", timeout {s.search.timeout:g}s" if s.search.timeout else ""))
    table = Table(title="Search space", title_justify="left")
    for column in ("key", "values", "applies to"):
        table.add_column(column)
    for row in describe(s):
        table.add_row(*row)
    Console(width=120).print(table)
    if not report.trained:
        return
    if report.data:
        d = report.data
        sizes = d["sizes"]
        what = f"{d['classes']} classes" if "classes" in d else f"{d['targets']} target(s)"
        test = f", {sizes['test']} test (held out: used by export --confirm only)" if d["held_out_test"] else ""
        click.echo(
            f"Data {d['name']}: {sizes['train']} training, {sizes['validation']} validation examples{test}; "
            f"inputs {d['input_shape']}, {what}" + ("; images standardised per channel" if d["standardized"] else "") + f" (loaded in {d['seconds']:.2f} s)"
        )
    m = report.model
    if "function" in m:
        click.echo(f"Own loop {m['function']}: imported; it is called as function(config, device=..., report=...)")
    else:
        click.echo(
            f"Model {m['name']}: {m['parameters']:,} parameters; outputs {m['output_shape']} for the first "
            f"{m['output_shape'][0]} examples fit the task; one forward and backward step: {m['loss']} loss {m['first_loss']:.4g}"
        )
    click.echo(f"Engine on {report.device}: {report.engine.name} ({report.engine.why})")
    e = report.estimate
    if e:
        click.echo(
            f"Time: {1e3 * e['seconds_per_step']:.2f} ms per step at batch size {e['batch_size']} ({e['measured']}), "
            f"{e['steps_per_epoch']} steps per epoch: about {_duration(e['seconds_per_trial'])} of training per trial, "
            f"{_duration(e['seconds_for_study'])} for {e['n_trials']} trials on one worker (training only: "
            "less with pruning, more with the database's bookkeeping)"
        )
    else:
        click.echo("Time: not estimated (hpsearch does not run the study's own loop before a search)")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


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
