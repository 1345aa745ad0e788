"""A cohort's bookkeeping takes the same number of transactions and statements whatever its
size K: counted on a real worker, for cohorts of 4 and of 64, with pruning on."""

from __future__ import annotations

from collections import Counter

import optuna
import pytest
import sqlalchemy as sa

from hpsearch.run.launcher import LaunchOptions, prepare
from hpsearch.run.worker import Worker, WorkerOptions

STUDY = """
[study]
name = "scale"
metric = "mse"
[model]
name = "linreg"
[data]
name = "linear"
limit = 100
[train]
epochs = 3
batch_size = "full"
[search]
n_trials = {k}
sampler = "{sampler}"
seed = 0
pruner = "{pruner}"
heartbeat_interval = 600
[space]
optimizer = ["sgd", "momentum", "adam"]
lr = {{ low = 1e-4, high = 0.1, log = true }}
"""


def _one_cohort(tmp_path, k: int, sampler: str, pruner: str) -> tuple[Counter, Counter]:
    path = tmp_path / f"scale-{k}.toml"
    path.write_text(STUDY.format(k=k, sampler=sampler, pruner=pruner))
    url = f"sqlite:///{tmp_path / f'scale-{k}.db'}"
    url, opened, launch_id = prepare(LaunchOptions(study_file=str(path), storage=url, device="cpu", engine="cohort", cohort=k, command="test"))
    worker = Worker(WorkerOptions(storage=url, study="scale", device="cpu", engine="cohort", cohort=k, launch_id=launch_id))
    transactions, statements = Counter(), Counter()

    def begun(conn: sa.engine.Connection) -> None:
        transactions["all"] += 1

    def executed(conn, cursor, statement: str, *args) -> None:  # type: ignore[no-untyped-def]
        statements[statement.split()[0].upper()] += 1

    sa.event.listen(sa.engine.Engine, "begin", begun)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", executed)
    try:
        report = worker.run()
    finally:
        sa.event.remove(sa.engine.Engine, "begin", begun)
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", executed)
    study = optuna.load_study(study_name="scale", storage=url)
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) == k, report
    for t in study.trials:  # as Optuna's tell stores them
        if t.state.name == "PRUNED":
            assert t.value == t.intermediate_values[t.last_step]
        assert t.datetime_complete is not None and t.params and t.user_attrs["config"]
    if pruner == "successive-halving":
        assert any(t.state.name == "PRUNED" for t in study.trials)
    return transactions, statements


@pytest.mark.parametrize("sampler,pruner", [("tpe", "median"), ("random", "successive-halving")])
def test_a_cohort_costs_the_same_transactions_and_statements_at_any_size(tmp_path, sampler, pruner) -> None:
    small = _one_cohort(tmp_path, 4, sampler, pruner)
    large = _one_cohort(tmp_path, 64, sampler, pruner)
    assert large == small


def test_one_statement_beats_for_every_trial(tmp_path) -> None:
    from hpsearch.db import bulk, tables
    from hpsearch.db.claims import claim
    from hpsearch.db.storage import initialize, open_storage

    url = f"sqlite:///{tmp_path / 'beats.db'}"
    initialize(url)
    storage = open_storage(url)
    study = optuna.create_study(storage=storage)
    ids = [c.trial_id for c in claim(storage.engine, study._study_id, n_trials=300, size=300)]
    long_ago = sa.text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'")
    with storage.engine.begin() as conn:
        conn.execute(long_ago)
    statements = []
    sa.event.listen(storage.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    bulk.beat(storage.engine, ids)
    assert [s.split()[0] for s in statements if s != "BEGIN IMMEDIATE"] == ["UPDATE"]
    with storage.engine.connect() as conn:
        beats = conn.execute(sa.select(tables.optuna_heartbeats.c.heartbeat)).scalars().all()
    assert len(beats) == 300 and min(beats).year > 2000
