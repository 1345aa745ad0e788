"""The bookkeeping benchmark: what a cohort costs around its training, per trial.

    hpsearch bench --bookkeeping --cohorts 32,256,1024,4096 --sampler random --sampler tpe
    hpsearch bench --bookkeeping --storage postgresql://...   # also on a server

A model that costs nothing to train (linear regression on 200 examples, 3 full-batch epochs)
runs as ONE cohort of K trials through the real worker. For each database, sampler and K:

* hpsearch: the whole launch (study set up, the worker's run, everything it writes) in
  milliseconds per trial, and the worker's own time per phase: claiming and sampling the K
  trials, the per-epoch reports, telling their ends, and one heartbeat for all K;
* plain Optuna, in the same process on the same kind of database, doing what a cohort of K
  would have to do through its API: K `ask`s with the same `suggest_*` calls, K `report`s per
  epoch, K `tell`s, and one `record_heartbeat` per trial. It grows as O(K²) (each ask reads
  every running trial), so it runs only up to `plain_up_to` trials.

On a server the runs use studies of their own (`bench-...`), deleted afterwards; on SQLite a
temporary file each.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import optuna
import sqlalchemy as sa

from ..config.space import suggest_config, trial_seed
from ..config.spec import StudyFile, parse_study_file
from ..db import bulk
from ..db.storage import initialize, open_storage
from ..outcomes import TrialOutcome
from ..search.samplers import make_pruner, make_sampler
from ..search.study import delete_study
from .heartbeat import beating
from .launcher import LaunchOptions, prepare
from .worker import Worker, WorkerOptions

EPOCHS = 3
STUDY = """
[study]
name = "{name}"
metric = "mse"
[model]
name = "linreg"
[data]
name = "linear"
limit = 200
[train]
epochs = {epochs}
batch_size = "full"
[search]
n_trials = {k}
sampler = "{sampler}"
seed = 0
pruner = "none"
[space]
optimizer = ["sgd", "momentum", "adam", "rmsprop"]
lr = {{ low = 1e-4, high = 0.1, log = true }}
momentum = {{ low = 0.5, high = 0.99 }}
beta1 = {{ low = 0.8, high = 0.99 }}
alpha = {{ low = 0.9, high = 0.999 }}
schedule = ["constant", "cosine"]
"""
PHASES = ("asking", "reporting", "telling", "heartbeats")


@dataclass
class BookkeepingRow:
    database: str
    sampler: str
    k: int
    who: str  # hpsearch or plain Optuna
    ms_per_trial: float  # the whole launch (hpsearch) or all phases (plain Optuna)
    phases: dict[str, float] = field(default_factory=dict)  # ms per trial
    statements: int | None = None  # SQL statements the worker ran


def run(
    cohorts: list[int],
    samplers: list[str],
    storages: list[str | None],
    plain_up_to: int = 256,
    report: Callable[[str], None] = print,
) -> list[BookkeepingRow]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("hpsearch").setLevel(logging.WARNING)
    rows: list[BookkeepingRow] = []
    report(f"bookkeeping per trial, one cohort of K trials of a {EPOCHS}-epoch model that costs nothing to train (ms)")
    report(f"  {'database':10} {'sampler':7} {'K':>5}  {'who':13} {'whole':>8}  " + "  ".join(f"{p:>10}" for p in PHASES))
    with tempfile.TemporaryDirectory() as tmp:
        # Once outside the clock: imports, the data, torch's first kernels.
        _hpsearch(f"sqlite:///{Path(tmp) / 'warm-up.db'}", Path(tmp), "random", 8)
        for storage in storages:
            database = "sqlite" if storage is None else sa_backend(storage)
            for sampler in samplers:
                for k in cohorts:
                    for who, measure in (("hpsearch", _hpsearch), ("plain Optuna", _plain)):
                        if who == "plain Optuna" and k > plain_up_to:
                            continue
                        url = storage or f"sqlite:///{Path(tmp) / f'{uuid.uuid4().hex}.db'}"
                        row = measure(url, Path(tmp), sampler, k)
                        row.database = database
                        rows.append(row)
                        report(_line(row))
    return rows


def sa_backend(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0]


def study_file(folder: Path, sampler: str, k: int) -> StudyFile:
    name = f"bench-{sampler}-{k}-{uuid.uuid4().hex[:8]}"
    text = STUDY.format(name=name, epochs=EPOCHS, k=k, sampler=sampler)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return parse_study_file(text, str(path))


def _hpsearch(url: str, folder: Path, sampler: str, k: int) -> BookkeepingRow:
    file = study_file(folder, sampler, k)
    start = time.perf_counter()
    url, opened, launch_id = prepare(LaunchOptions(study_file=file, storage=url, device="cpu", engine="cohort", cohort=k, command="bench"))
    worker = Worker(WorkerOptions(storage=url, study=file.name, device="cpu", engine="cohort", cohort=k, launch_id=launch_id))
    with counting_statements() as statements, beating(open_storage(url).engine, launch_id, file.spec.search.heartbeat_interval):
        result = worker.run()
    whole = time.perf_counter() - start
    finished = sum(n for outcome, n in result.outcomes.items() if outcome in (TrialOutcome.COMPLETE, TrialOutcome.PRUNED, TrialOutcome.DIVERGED))
    if finished != k:
        raise RuntimeError(f"bench: the cohort finished {finished} of {k} trials ({dict(result.outcomes)})")
    storage = open_storage(url)
    ids = [t._trial_id for t in opened.study.get_trials(deepcopy=False)]
    beat = _timed(lambda: bulk.beat(storage.engine, ids))
    phases = {p: 1000 * result.bookkeeping.get(p, 0.0) / k for p in PHASES[:3]} | {"heartbeats": 1000 * beat / k}
    _clean_up(storage, file.name, url)
    return BookkeepingRow("", sampler, k, "hpsearch", 1000 * whole / k, phases, statements[0])


def _plain(url: str, folder: Path, sampler: str, k: int) -> BookkeepingRow:
    file = study_file(folder, sampler, k)
    spec = file.spec
    initialize(url)
    storage = open_storage(url)
    study = optuna.create_study(
        study_name=file.name, storage=storage, sampler=make_sampler(spec), pruner=make_pruner(spec.search, EPOCHS), direction="minimize"
    )
    phases: dict[str, float] = {}
    start = time.perf_counter()
    trials = []
    for _ in range(k):
        trial = study.ask()
        suggest_config(trial, spec, trial_seed(spec.train.seed, trial.number))
        trials.append(trial)
    phases["asking"] = time.perf_counter() - start
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        for trial in trials:
            trial.report(1.0 / (epoch + 1), epoch)
            trial.should_prune()
    phases["reporting"] = time.perf_counter() - start
    phases["heartbeats"] = _timed(lambda: [storage.record_heartbeat(t._trial_id) for t in trials])
    start = time.perf_counter()
    for trial in trials:
        study.tell(trial, 0.5)
    phases["telling"] = time.perf_counter() - start
    _clean_up(storage, file.name, url)
    ms = {p: 1000 * phases[p] / k for p in PHASES}
    return BookkeepingRow("", sampler, k, "plain Optuna", sum(ms.values()), ms)


def _clean_up(storage: optuna.storages.BaseStorage, name: str, url: str) -> None:
    if not url.startswith("sqlite"):
        delete_study(storage, name)


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


@contextlib.contextmanager
def counting_statements() -> Iterator[list[int]]:
    """The SQL statements this process runs meanwhile (an executemany counts once)."""
    count = [0]

    def one(*_args: object) -> None:
        count[0] += 1

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", one)
    try:
        yield count
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", one)


def _line(row: BookkeepingRow) -> str:
    phases = "  ".join(f"{row.phases.get(p, 0.0):10.3f}" for p in PHASES)
    statements = f"  ({row.statements} statements)" if row.statements is not None else ""
    return f"  {row.database:10} {row.sampler:7} {row.k:5d}  {row.who:13} {row.ms_per_trial:8.3f}  {phases}{statements}"
