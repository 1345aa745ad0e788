"""`hpsearch launch` and `hpsearch worker`: running a study."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .group import EXIT_INTERRUPTED, EXIT_NOT_FINISHED, STORAGE_HELP, cli, echo_json


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--storage", help=STORAGE_HELP)
@click.option("--n-trials", type=click.IntRange(min=1), help="Total finished trials for the study (overrides search.n_trials).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds after which no new trial starts.")
@click.option("--sampler", type=click.Choice(["tpe", "random", "cmaes", "gp", "qmc", "grid"]), help="Overrides search.sampler.")
@click.option("--seed", type=int, help="Sampler seed (overrides search.seed).")
@click.option("--device", help="cpu, cuda or cuda:N. Default: cuda when available, else cpu.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where MNIST / CIFAR-10 files are (else data.dir, $HPSEARCH_DATA, ./data).")
@click.option("--engine", type=click.Choice(["auto", "train", "cohort"]), default="auto", show_default=True, help="train: one trial at a time; cohort: many trials at once on one device.")
@click.option("--cohort", "cohort", default="auto", show_default=True, help="Trials per cohort, or auto (from the device's free memory).")
@click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]), default="fp32", show_default=True, help="On CUDA: fp32 (the reference), tf32 matmuls, or bf16 autocast.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes on this machine.")
@click.option("--gpus", help="GPUs to use, e.g. 0,1,3 or all: one worker per GPU (times --per-gpu).")
@click.option("--per-gpu", type=click.IntRange(min=1), default=1, show_default=True, help="Workers per GPU.")
@click.option("--dask", help="Run workers on a Dask cluster: tcp://scheduler:8786, or local:N for a local one.")
@click.option("--enqueue", type=click.Path(dir_okay=False), help="Config bundle (hpsearch export) whose configs run first.")
@click.option("--log-dir", default="hpsearch-logs", show_default=True, help="Where worker logs go.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def launch(spec: str, as_json: bool, cohort: str, **options: Any) -> None:
    """Run the study in SPEC (a TOML study file) until it has its number of trials."""
    from ..run.launcher import LaunchOptions
    from ..run.launcher import launch as run

    summary = run(LaunchOptions(study_file=spec, cohort=_cohort(cohort), **options), progress=not as_json)
    if as_json:
        echo_json(summary.__dict__)
    else:
        _print_summary(summary)
    if summary.outcome == "interrupted":
        sys.exit(EXIT_INTERRUPTED)
    if not summary.ok:
        sys.exit(EXIT_NOT_FINISHED)


def _cohort(value: str | None) -> int | None:
    if value is None or value == "auto":
        return None
    try:
        size = int(value)
    except ValueError:
        raise click.BadParameter(f"expected a number of trials or 'auto', got {value!r}", param_hint="--cohort") from None
    if size < 1:
        raise click.BadParameter(f"must be >= 1, got {size}", param_hint="--cohort")
    return size


def _print_summary(summary: Any) -> None:
    c = summary.counts
    done = c.get("COMPLETE", 0) + c.get("PRUNED", 0)
    click.echo(
        f"Study {summary.study}: {done}/{summary.n_trials} trials finished "
        f"({c.get('COMPLETE', 0)} complete, {c.get('PRUNED', 0)} pruned, {c.get('FAIL', 0)} failed) "
        f"in {summary.seconds:.1f}s; {summary.outcome}."
    )
    for error in summary.errors:
        click.echo(f"  {error}")
    if summary.best_config is None:
        click.echo("No trial completed yet.")
    else:
        click.echo(f"Best {summary.metric} = {summary.best_value:.6g} (trial {summary.best_number}); its config:")
        click.echo(json.dumps(summary.best_config, indent=2))
    click.echo(f"Storage: {summary.storage}   Logs: {summary.log_dir}")


@cli.command()
@click.argument("study")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--device", help="cpu, cuda or cuda:N. Default: cuda when available, else cpu.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where MNIST / CIFAR-10 files are on this machine.")
@click.option("--engine", type=click.Choice(["auto", "train", "cohort"]), default="auto", show_default=True)
@click.option("--cohort", "cohort", default="auto", show_default=True, help="Trials per cohort, or auto.")
@click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]), default="fp32", show_default=True, help="On CUDA: fp32, tf32 or bf16 autocast.")
@click.option("--launch-id", type=int, hidden=True)
@click.option("--index", type=int, default=None, hidden=True)  # None: started by hand (seeds by host and pid)
@click.option("--deadline", type=float, hidden=True)
def worker(study: str, storage: str | None, cohort: str, launch_id: int | None, **options: Any) -> None:
    """Join STUDY (already launched) and run its trials until its budget is met.

    For more machines: run this on each of them against the same PostgreSQL / MySQL storage.
    """
    import contextlib
    import logging
    import shlex

    from ..db import launches
    from ..db.storage import open_storage, rdb
    from ..db.urls import resolve_url
    from ..outcomes import LAUNCH_OUTCOME, WorkerStop
    from ..run.heartbeat import beating
    from ..run.launcher import record_launch
    from ..run.logs import FORMAT, survive_a_full_log
    from ..run.processes import EXIT_FAILING
    from ..run.signals import handle_signals
    from ..run.worker import Worker, WorkerOptions
    from ..search.study import open_study

    survive_a_full_log()  # its output is its log file: a full disk must not end it
    logging.basicConfig(level=logging.INFO, format=FORMAT)
    url = resolve_url(storage)
    own_launch = launch_id is None
    beats = contextlib.nullcontext()
    if own_launch:
        opened = open_study(open_storage(url), study)
        launch_id = record_launch(opened, url, shlex.join(sys.argv))
        beats = beating(rdb(opened.study).engine, launch_id, opened.spec.search.heartbeat_interval)
    worker_ = Worker(WorkerOptions(storage=url, study=study, cohort=_cohort(cohort), launch_id=launch_id, **options))
    handle_signals(worker_)
    with beats:  # a launch of its own: this worker beats it
        report = worker_.run()
    outcomes = {str(outcome): n for outcome, n in report.outcomes.items()}
    click.echo(f"worker stopped ({report.stopped_because}): {outcomes}", err=True)
    if own_launch:
        launches.end_launch(open_storage(url).engine, launch_id, LAUNCH_OUTCOME[report.stopped_because])
    if report.stopped_because == WorkerStop.FAILING:
        click.echo(f"Error: trials kept failing; the last error: {report.last_error}", err=True)
        sys.exit(EXIT_FAILING)
