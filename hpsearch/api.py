"""The Python API: every `hpsearch` command as a function that returns data, not text.

    import hpsearch

    report = hpsearch.check("studies/quickstart.toml")          # CheckReport: data, model, engine, estimate
    summary = hpsearch.launch("studies/quickstart.toml", storage="sqlite:///hpsearch.db", n_trials=50)
    summary.best_value, summary.best_config
    hpsearch.trials("quickstart")                                # list of dicts, one per trial
    hpsearch.best("quickstart")                                  # dict: number, value, config, params
    bundle = hpsearch.export("quickstart", top=3, confirm=5)     # dict; output="best.json" writes it too

`storage` defaults to `$HPSEARCH_STORAGE`, else `sqlite:///hpsearch.db` in the working
directory, as on the command line. Errors a user can cause raise `hpsearch.HpsearchError`
with the same one-line message the command prints. In a Jupyter notebook `launch` shows a
notebook progress bar (tqdm's widget); in a terminal, the command's live display.
Heavy libraries load inside each function, so `import hpsearch` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .db.schema import SchemaVersions
    from .run.check import CheckReport
    from .run.launcher import LaunchSummary
    from .run.worker import WorkerReport
    from .views.summary import StudyReport


def launch(
    study_file: str, storage: str | None = None, n_trials: int | None = None, *, progress: bool | str = True, **options: Any
) -> "LaunchSummary":
    """Run a study to its total (`hpsearch launch`); `options` are the command's flags
    (timeout, sampler, seed, device, data_dir, engine, cohort, precision, workers, gpus,
    per_gpu, dask, enqueue, log_dir). `progress`: True (a notebook bar in Jupyter, else the
    terminal's), "notebook", "terminal" or False."""
    from .run.launcher import LaunchOptions
    from .run.launcher import launch as run
    from .run.progress import NotebookProgress, in_notebook

    display: Any = bool(progress)
    if progress == "notebook" or (progress is True and in_notebook()):
        display = NotebookProgress
    return run(LaunchOptions(study_file=study_file, storage=storage, n_trials=n_trials, **options), progress=display)


def worker(study: str, storage: str | None = None, **options: Any) -> "WorkerReport":
    """Join a launched study and run its trials until its budget is met (`hpsearch worker`)."""
    from .db.urls import resolve_url
    from .run.worker import Worker, WorkerOptions

    return Worker(WorkerOptions(storage=resolve_url(storage), study=study, **options)).run()


def check(study_file: str, **options: Any) -> "CheckReport":
    """Everything short of a search (`hpsearch check`); options: device, data_dir, engine,
    cohort, precision, quick."""
    from .run.check import check_study

    return check_study(study_file, **options)


def studies(storage: str | None = None) -> list[dict[str, Any]]:
    """The studies in the storage, with counts and best values (`hpsearch studies --json`)."""
    from .views.listings import study_rows

    return study_rows(storage)


def trials(study: str, storage: str | None = None) -> list[dict[str, Any]]:
    """A study's trials: number, state, value, params, config, device, seconds, epochs, note."""
    from .views.listings import trial_rows

    return trial_rows(storage, study)


def launches(study: str | None = None, storage: str | None = None) -> list[dict[str, Any]]:
    """Launches (of `study`, or all), newest first, with state, host and workers (`hpsearch launches --json`)."""
    from .views.manage import launch_rows

    return launch_rows(storage, study)


def stop(study: str, storage: str | None = None) -> list[int]:
    """Ask the study's running launches and their workers to stop (`hpsearch stop`); the launch ids asked."""
    from .views.manage import stop as stop_study

    return stop_study(storage, study)


def delete(study: str, storage: str | None = None, force: bool = False) -> int:
    """Delete a study, its trials and hpsearch's rows about it (`hpsearch delete --yes`); trials removed."""
    from .views.manage import delete as delete_study

    return delete_study(storage, study, force=force)


def best(study: str, storage: str | None = None) -> dict[str, Any]:
    """The best complete trial: number, value, metric, config, params (`hpsearch best --json`)."""
    from .views.listings import best as best_of

    return best_of(storage, study)


def export(
    study: str,
    storage: str | None = None,
    top: int = 1,
    confirm: int | None = None,
    *,
    device: str | None = None,
    data_dir: str | None = None,
    output: str | None = None,
    fmt: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The best configs as a bundle (`hpsearch export`). `confirm=S` re-trains the `top`
    configs on S fresh seeds first and ranks them by their mean; `output` also writes the
    bundle (format from its extension, or `fmt`); `progress` receives a line per re-training."""
    from .views.export import export_bundle, write_bundle

    confirmation = None
    if confirm is not None:
        from .run.confirm import confirm as retrain

        confirmation = retrain(storage, study, top, confirm, device=device, data_dir=data_dir, report=progress)
    bundle = export_bundle(storage, study, top, confirmation)
    if output is not None:
        write_bundle(bundle, output, fmt)
    return bundle


def report(study: str, storage: str | None = None, output: str | None = None) -> "StudyReport":
    """A study's summary: a row per optimizer, importances (`hpsearch report`); `output`
    also writes the self-contained HTML page."""
    from .views.summary import load

    found, summary = load(storage, study)
    if output is not None:
        from pathlib import Path

        from .views.page import html_page

        Path(output).write_text(html_page(found, summary), encoding="utf-8")
    return summary


def compare(study_file: str, budget: int, seeds: int = 5, *, progress: bool = True, **options: Any) -> dict[str, Any]:
    """A fair comparison of the optimizers in a study file (`hpsearch compare`)."""
    from .run.compare import CompareOptions
    from .run.compare import compare as run

    return run(CompareOptions(study_file=study_file, budget=budget, seeds=seeds, **options), progress=progress)


def dashboard(storage: str | None = None, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard over the storage until interrupted (`hpsearch dashboard`)."""
    from .db.urls import resolve_url
    from .views.dashboard import serve

    serve(resolve_url(storage), host, port)


def db_check(storage: str | None = None) -> "SchemaVersions":
    """Both schema versions of the storage (`hpsearch db check`)."""
    from .db.storage import schema_versions
    from .db.urls import resolve_url

    return schema_versions(resolve_url(storage))


def db_upgrade(storage: str | None = None) -> "SchemaVersions":
    """Bring both schemas to head, creating the database if missing (`hpsearch db upgrade`)."""
    from .db.storage import upgrade
    from .db.urls import resolve_url

    return upgrade(resolve_url(storage))


def env(storage: str | None = None) -> dict[str, Any]:
    """Versions, devices and the storage in use, password masked (`hpsearch env --json`)."""
    from .views.listings import environment

    return environment(storage)


def bench(
    models: tuple[str, ...] = ("mlp", "cnn"),
    device: str | None = None,
    trials: int = 4,
    epochs: int = 2,
    cohorts: tuple[int, ...] = (8, 32),
    size: int | None = None,
    precision: str = "fp32",
) -> list[Any]:
    """The speed benchmark's rows (`hpsearch bench`): seconds per trial-epoch and speed-ups."""
    from .run.bench import run

    return run(list(models), device, trials, epochs, list(cohorts), size, precision=precision, report=lambda _: None)

