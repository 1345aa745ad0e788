"""The `hpsearch` command: a few lines over the library per command.

Errors a user can cause print one line (`Error: ...`) on stderr and exit non-zero; there is
no traceback for them. Heavy libraries load inside the commands that need them, so
`hpsearch --help` and `hpsearch db ...` stay quick.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .errors import HpsearchError

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


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# -- running --------------------------------------------------------------------------------


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
    from .launch import LaunchOptions, launch as run

    summary = run(LaunchOptions(study_file=spec, cohort=_cohort(cohort), **options), progress=not as_json)
    if as_json:
        _echo_json(summary.__dict__)
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
@click.option("--index", type=int, default=0, hidden=True)
@click.option("--deadline", type=float, hidden=True)
def worker(study: str, storage: str | None, cohort: str, launch_id: int | None, **options: Any) -> None:
    """Join STUDY (already launched) and run its trials until its budget is met.

    For more machines: run this on each of them against the same PostgreSQL / MySQL storage.
    """
    import logging
    import shlex

    from . import tables
    from .launch import EXIT_FAILING, record_launch
    from .storage import open_storage, resolve_url
    from .study import open_study
    from .worker import Worker, WorkerOptions, handle_signals

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    url = resolve_url(storage)
    own_launch = launch_id is None
    if own_launch:
        launch_id = record_launch(open_study(open_storage(url), study), url, shlex.join(sys.argv))
    worker_ = Worker(WorkerOptions(storage=url, study=study, cohort=_cohort(cohort), launch_id=launch_id, **options))
    handle_signals(worker_)
    report = worker_.run()
    click.echo(f"worker stopped ({report.stopped_because}): {dict(report.outcomes)}", err=True)
    if own_launch:
        outcome = {"budget": "finished", "timeout": "timeout", "stopped": "interrupted", "failing": "failed"}
        tables.end_launch(open_storage(url).engine, launch_id, outcome[report.stopped_because])
    if report.stopped_because == "failing":
        click.echo(f"Error: trials kept failing; the last error: {report.last_error}", err=True)
        sys.exit(EXIT_FAILING)


# -- looking ---------------------------------------------------------------------------------


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the resolved spec as JSON.")
def check(spec: str, as_json: bool) -> None:
    """Validate a study file and print its resolved search space."""
    from .space import describe
    from .spec import load_study_file

    file = load_study_file(spec)
    s = file.spec
    if as_json:
        _echo_json({"spec": s.model_dump(mode="json"), "metric": s.metric, "direction": s.direction, "space": [dict(zip(("key", "values", "applies_to"), r)) for r in describe(s)]})
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
    from .results import study_rows

    rows = study_rows(storage)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("No studies yet.")
        return
    _table(rows, ["study", "direction", "complete", "pruned", "failed", "running", "best_value", "best_trial"])


@cli.command()
@click.argument("study")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True)
def trials(study: str, storage: str | None, as_json: bool) -> None:
    """List a study's trials with their configs."""
    from .results import trial_rows

    rows = trial_rows(storage, study)
    if as_json:
        _echo_json(rows)
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
    _table(flat, list(flat[0]) if flat else [])


@cli.command()
@click.argument("study")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True)
def best(study: str, storage: str | None, as_json: bool) -> None:
    """Print the best trial of a study and its config."""
    from .results import best as best_of

    found = best_of(storage, study)
    if as_json:
        _echo_json(found)
        return
    click.echo(f"Best {found['metric']} = {found['value']:.6g} (trial {found['number']} of study {study}); its config:")
    click.echo(json.dumps(found["config"], indent=2))


@cli.command()
@click.option("--storage", help=STORAGE_HELP)
@click.option("--json", "as_json", is_flag=True)
def env(storage: str | None, as_json: bool) -> None:
    """Print versions, devices and the storage in use (password masked), for bug reports."""
    from .results import environment

    info = environment(storage)
    if as_json:
        _echo_json(info)
        return
    for key, value in info["versions"].items():
        click.echo(f"{key + ':':20} {value}")
    click.echo(f"{'devices:':20} {', '.join(info['devices'])}")
    click.echo(f"{'storage:':20} {info['storage']}")
    click.echo(f"{'storage schema:':20} {info['schema']}")


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    Console(width=160).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# -- reusing results --------------------------------------------------------------------------


@cli.command()
@click.option("--storage", help=STORAGE_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; anything but localhost is reachable by others.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
def dashboard(storage: str | None, host: str, port: int) -> None:
    """Serve optuna-dashboard over the storage: studies, trials, notes, learning curves."""
    from .dashboard import exposed_warning, serve
    from .storage import mask_url, resolve_url

    url = resolve_url(storage)
    warning = exposed_warning(host)
    if warning:
        click.echo(warning, err=True)
    click.echo(f"Dashboard for {mask_url(url)} on http://{host}:{port}/dashboard (Ctrl-C to stop)", err=True)
    serve(url, host, port)


@cli.command()
@click.argument("study")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--top", type=click.IntRange(min=1), default=1, show_default=True, help="How many of the best configs.")
@click.option("--format", "fmt", type=click.Choice(["json", "yaml", "toml"]), help="Default: from -o's extension, else json.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default: standard output).")
def export(study: str, storage: str | None, top: int, fmt: str | None, output: str | None) -> None:
    """Write a study's best configs as a bundle: load_config() and build_optimizer() read it."""
    from .export import export_bundle, write_bundle

    bundle = export_bundle(storage, study, top)
    text = write_bundle(bundle, output, fmt)
    if output:
        click.echo(f"Wrote the best {len(bundle['configs'])} config(s) of {study} to {output}", err=True)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("study")
@click.option("--storage", help=STORAGE_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write a self-contained HTML page here.")
def report(study: str, storage: str | None, output: str | None) -> None:
    """Summarise a study: a table per optimizer, parameter importances, an HTML page."""
    from .report import html_page, load

    found, summary = load(storage, study)
    click.echo(f"Study {summary.study}: validation {summary.metric}, {summary.direction}d")
    _table(
        [dict(r.__dict__, best_config=json.dumps(r.best_config, separators=(",", ":")) if r.best_config else "") for r in summary.rows],
        ["optimizer", "trials", "complete", "best", "median", "best_trial", "best_config"],
    )
    if summary.importances:
        _table([{"parameter": k, "importance": v} for k, v in summary.importances.items()], ["parameter", "importance"])
    else:
        click.echo(f"Parameter importances: {summary.importance_note}")
    if summary.comparison:
        _print_comparison(summary.comparison)
    if output:
        from pathlib import Path

        Path(output).write_text(html_page(found, summary), encoding="utf-8")
        click.echo(f"Wrote {output}")


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--budget", type=click.IntRange(min=1), required=True, help="Finished tuning trials per optimizer.")
@click.option("--seeds", type=click.IntRange(min=2), default=5, show_default=True, help="Fresh seeds each winner is re-trained with.")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--device", help="cpu, cuda or cuda:N. Default: cuda when available, else cpu.")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--engine", type=click.Choice(["auto", "train", "cohort"]), default="auto", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write the report (HTML) of the comparison.")
def compare(spec: str, output: str | None, **options: Any) -> None:
    """Compare the optimizers in SPEC fairly: equal budgets, then re-runs on fresh seeds.

    Each optimizer is tuned in its own study with --budget trials; each one's best config is
    re-trained with --seeds seeds; the ranking reports mean ± std and whether each gap to the
    best is significant (paired t-test over the seeds, p < 0.05).
    """
    from .compare import CompareOptions, compare as run

    result = run(CompareOptions(study_file=spec, **options))
    _print_comparison(result)
    if output:
        from pathlib import Path

        from .report import html_page, load

        found, summary = load(options.get("storage"), f"{result['study']}-seeds")
        Path(output).write_text(html_page(found, summary), encoding="utf-8")
        click.echo(f"Wrote {output}")


def _print_comparison(result: dict[str, Any]) -> None:
    click.echo(
        f"Fair comparison of optimizers: {result['budget']} tuning trials each, the best re-trained "
        f"with {result['seeds']} seeds ({result['metric']}, {result['direction']}d)"
    )
    _table(
        [
            {
                "rank": r["rank"], "optimizer": r["optimizer"],
                "mean ± std": "" if r["mean"] is None else f"{r['mean']:.4g} ± {r['std']:.2g}",
                "seeds": r["runs"], "p (paired t)": r["p_value"], "vs. the best": r["verdict"],
            }
            for r in result["ranking"]
        ],
        ["rank", "optimizer", "mean ± std", "seeds", "p (paired t)", "vs. the best"],
    )


@cli.command()
@click.option("--model", "models", type=click.Choice(["mlp", "cnn"]), multiple=True, help="Models to time (repeatable). Default: both.")
@click.option("--device", help="cpu, cuda or cuda:N. Default: cuda when available, else cpu.")
@click.option("--trials", type=click.IntRange(min=1), default=4, show_default=True, help="Trials for (a) and (b).")
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--cohorts", default="8,32", show_default=True, help="Cohort sizes K for (c), comma-separated.")
@click.option("--size", type=click.IntRange(min=100), help="Training examples (default: 60k/50k on a GPU, 6k/1.5k on the CPU).")
@click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]), default="fp32", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per row instead.")
def bench(models: tuple[str, ...], cohorts: str, as_json: bool, **options: Any) -> None:
    """Time (a) plain Optuna + DataLoader, (b) --engine train and (c) --engine cohort.

    One process, the same trial configs and synthetic MNIST/CIFAR-shaped data for every
    mode; prints seconds per trial-epoch and the speed-up over (a).
    """
    from .bench import as_json as to_json, run

    try:
        sizes = [int(k) for k in cohorts.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected numbers like 8,32,128, got {cohorts!r}", param_hint="--cohorts") from None
    rows = run(list(models) or ["mlp", "cnn"], cohorts=sizes, report=(lambda _: None) if as_json else click.echo, **options)
    if as_json:
        click.echo(to_json(rows))


# -- the database --------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Check or upgrade the storage's schema (Optuna's and hpsearch's)."""


@db.command()
@click.option("--storage", help=STORAGE_HELP)
def upgrade(storage: str | None) -> None:
    """Bring both schemas to this version's head (creates the database if missing)."""
    from .storage import mask_url, resolve_url, upgrade as run

    url = resolve_url(storage)
    versions = run(url)
    click.echo(f"{mask_url(url)}: Optuna schema {versions.optuna_current}, hpsearch schema {versions.ours_current}: up to date.")


@db.command(name="check")
@click.option("--storage", help=STORAGE_HELP)
def db_check(storage: str | None) -> None:
    """Print both schema versions; exit 1 when either is behind this version."""
    from .storage import mask_url, resolve_url, schema_versions

    url = resolve_url(storage)
    v = schema_versions(url)
    for name, current, head in (("Optuna", v.optuna_current, v.optuna_head), ("hpsearch", v.ours_current, v.ours_head)):
        state = "up to date" if current == head else "BEHIND"
        click.echo(f"{name} schema: {current or 'none'} (head {head}): {state}")
    if not v.up_to_date:
        click.echo(f"Error: run `hpsearch db upgrade --storage '{mask_url(url)}'`", err=True)
        sys.exit(1)
