"""`hpsearch dashboard`, `export`, `report`, `compare` and `bench`: using what a search found."""

from __future__ import annotations

import json
from typing import Any

import click

from .group import STORAGE_HELP, cli, table


@cli.command()
@click.option("--storage", help=STORAGE_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; anything but localhost is reachable by others.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
def dashboard(storage: str | None, host: str, port: int) -> None:
    """Serve optuna-dashboard over the storage: studies, trials, notes, learning curves."""
    from ..db.urls import mask_url, resolve_url
    from ..views.dashboard import exposed_warning, serve

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
@click.option("--confirm", "seeds", type=click.IntRange(min=2), help="Re-train the top configs on this many fresh seeds and rank them by their mean.")
@click.option("--device", help="For --confirm: cpu, cuda or cuda:N. Default: cuda when available, else cpu.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="For --confirm: where MNIST / CIFAR-10 files are.")
@click.option("--format", "fmt", type=click.Choice(["json", "yaml", "toml"]), help="Default: from -o's extension, else json.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default: standard output).")
def export(study: str, storage: str | None, top: int, seeds: int | None, device: str | None, data_dir: str | None, fmt: str | None, output: str | None) -> None:
    """Write a study's best configs as a bundle: load_config() and build_optimizer() read it.

    With --confirm S the top configs are first re-trained on S fresh seeds; the bundle ranks
    them by their mean and records each one's per-seed values, and its test scores when the
    study holds a test set out.
    """
    from ..api import export as run
    from ..views.export import writable_output

    writable_output(output)
    bundle = run(study, storage=storage, top=top, confirm=seeds, device=device, data_dir=data_dir, output=output, fmt=fmt, progress=lambda line: click.echo(line, err=True))
    if seeds:
        from ..views.export import confirmation_rows

        rows = confirmation_rows(bundle)
        table(rows, list(rows[0]), err=True)
    if output:
        click.echo(f"Wrote the best {len(bundle['configs'])} config(s) of {study} to {output}", err=True)
    else:
        from ..views.export import write_bundle

        click.echo(write_bundle(bundle, None, fmt), nl=False)


@cli.command()
@click.argument("study")
@click.option("--storage", help=STORAGE_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write a self-contained HTML page here.")
def report(study: str, storage: str | None, output: str | None) -> None:
    """Summarise a study: a table per optimizer, parameter importances, an HTML page."""
    from ..views.export import writable_output, write_text
    from ..views.page import html_page
    from ..views.summary import load

    writable_output(output)
    found, summary = load(storage, study)
    click.echo(f"Study {summary.study}: validation {summary.metric}, {summary.direction}d")
    table(
        [dict(r.__dict__, best_config=json.dumps(r.best_config, separators=(",", ":")) if r.best_config else "") for r in summary.rows],
        ["optimizer", "trials", "complete", "best", "median", "best_trial", "best_config"],
    )
    if summary.importances:
        table([{"parameter": k, "importance": v} for k, v in summary.importances.items()], ["parameter", "importance"])
    else:
        click.echo(f"Parameter importances: {summary.importance_note}")
    if summary.comparison:
        _print_comparison(summary.comparison)
    if output:
        write_text(output, html_page(found, summary))
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
    from ..run.compare import CompareOptions
    from ..run.compare import compare as run
    from ..views.export import writable_output, write_text

    writable_output(output)
    result = run(CompareOptions(study_file=spec, **options))
    _print_comparison(result)
    if output:
        from ..views.page import html_page
        from ..views.summary import load

        found, summary = load(options.get("storage"), f"{result['study']}-seeds")
        write_text(output, html_page(found, summary))
        click.echo(f"Wrote {output}")


def _print_comparison(result: dict[str, Any]) -> None:
    click.echo(
        f"Fair comparison of optimizers: {result['budget']} tuning trials each, the best re-trained "
        f"with {result['seeds']} seeds ({result['metric']}, {result['direction']}d)"
    )
    table(
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
@click.option("--cohorts", help="Cohort sizes K, comma-separated. Default: 8,32 (32,256,1024,4096 with --bookkeeping).")
@click.option("--size", type=click.IntRange(min=100), help="Training examples (default: 60k/50k on a GPU, 6k/1.5k on the CPU).")
@click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]), default="fp32", show_default=True)
@click.option("--bookkeeping", is_flag=True, help="Time what a cohort costs around training instead: asking, reports, telling, heartbeats, against plain Optuna.")
@click.option("--sampler", "samplers", type=click.Choice(["random", "tpe", "qmc", "cmaes", "gp"]), multiple=True, help="With --bookkeeping: samplers (repeatable). Default: random and tpe.")
@click.option("--storage", "storages", multiple=True, help="With --bookkeeping: also on this database server (repeatable); runs in studies of its own, deleted afterwards.")
@click.option("--plain-up-to", type=click.IntRange(min=0), default=256, show_default=True, help="With --bookkeeping: the largest K plain Optuna runs (its cost grows as K squared).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per row instead.")
def bench(models: tuple[str, ...], cohorts: str | None, as_json: bool, bookkeeping: bool, samplers: tuple[str, ...], storages: tuple[str, ...], plain_up_to: int, **options: Any) -> None:
    """Time (a) plain Optuna + DataLoader, (b) --engine train and (c) --engine cohort.

    One process, the same trial configs and synthetic MNIST/CIFAR-shaped data for every
    mode; prints seconds per trial-epoch and the speed-up over (a). With --bookkeeping, the
    milliseconds per trial that hpsearch spends around training one cohort of K trials,
    next to plain Optuna's ask/report/tell of the same trials.
    """
    import dataclasses
    import json

    try:
        sizes = [int(k) for k in (cohorts or ("32,256,1024,4096" if bookkeeping else "8,32")).split(",")]
    except ValueError:
        raise click.BadParameter(f"expected numbers like 8,32,128, got {cohorts!r}", param_hint="--cohorts") from None
    report = (lambda _: None) if as_json else click.echo
    if bookkeeping:
        from ..db.urls import resolve_url
        from ..run import bench_bookkeeping

        servers: list[str | None] = [None, *(resolve_url(s) for s in storages)]
        rows: list[Any] = bench_bookkeeping.run(sizes, list(samplers) or ["random", "tpe"], servers, plain_up_to, report=report)
    else:
        from ..run.bench import run

        rows = run(list(models) or ["mlp", "cnn"], cohorts=sizes, report=report, **options)
    if as_json:
        click.echo("\n".join(json.dumps(dataclasses.asdict(r)) for r in rows))
