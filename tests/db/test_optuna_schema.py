"""The part of Optuna's schema hpsearch writes directly (`db/bulk.py`, `db/claims.py`).

hpsearch writes Optuna's rows in bulk, as Optuna's storage would write them one at a time;
pyproject pins the Optuna versions this was written against. These tests hold the installed
Optuna to what that code relies on: the schema revision, every column hpsearch declares,
the enum names it stores, naive-UTC datetimes, and a database Optuna itself created.
"""

from __future__ import annotations

import datetime as dt

import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models

from hpsearch.db import tables
from hpsearch.db.storage import initialize, open_storage

OPTUNA_SCHEMA = "v3.2.0.a"  # the Optuna schema revision the direct writes are written against
OURS = [t for t in tables.metadata.tables.values() if not t.name.startswith("hpsearch_")]


def test_optuna_is_at_the_schema_revision_hpsearch_writes(sqlite_url) -> None:
    storage = optuna.storages.RDBStorage(sqlite_url)
    assert storage.get_head_version() == OPTUNA_SCHEMA
    assert storage.get_current_version() == OPTUNA_SCHEMA


def test_every_column_hpsearch_writes_is_in_optunas_models() -> None:
    theirs = models.BaseModel.metadata.tables
    for table in OURS:
        assert table.name in theirs, table.name
        for column in table.columns:
            assert column.name in theirs[table.name].columns, f"{table.name}.{column.name}"
            their_type = theirs[table.name].columns[column.name].type
            assert type(column.type)._type_affinity is type(their_type)._type_affinity, f"{table.name}.{column.name}"


def test_the_enums_hpsearch_stores_by_name_are_optunas() -> None:
    assert [e.name for e in tables.ValueType] == [e.name for e in models.TrialValueModel.TrialValueType]
    assert [e.name for e in tables.IntermediateValueType] == [
        e.name for e in models.TrialIntermediateValueModel.TrialIntermediateValueType
    ]
    assert [s.name for s in optuna.trial.TrialState] == ["RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING"]


def test_optuna_stores_trial_times_as_naive_utc(sqlite_url) -> None:
    study = optuna.create_study(storage=sqlite_url)
    study.tell(study.ask(), 1.0)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        start, complete = conn.execute(sa.select(tables.optuna_trials.c.datetime_start, tables.optuna_trials.c.datetime_complete)).one()
    utc_now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert abs((utc_now - start).total_seconds()) < 60 and abs((utc_now - complete).total_seconds()) < 60


def test_a_database_optuna_created_has_every_column_hpsearch_writes(storage_url) -> None:
    initialize(storage_url)
    storage = open_storage(storage_url)
    found = sa.inspect(storage.engine)
    for table in OURS:
        columns = {c["name"] for c in found.get_columns(table.name)}
        assert {c.name for c in table.columns} <= columns, table.name
