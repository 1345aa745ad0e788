"""A spec's Optuna study: create it (launch) or join it (worker).

The study file's text is kept in `hpsearch_study_files`, and the study's user attribute
`hpsearch` points at it together with the command-line overrides of the launch, so a worker
on another machine needs only the study name and the storage URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from ..config.spec import StudyFile, StudySpec, parse_study_file
from ..db import launches
from ..db.urls import mask_url
from ..errors import SpecError, StorageError, StudyNotFound

ATTR = "hpsearch"  # the study user attribute holding the study-file hash and overrides


@dataclass(frozen=True)
class OpenStudy:
    """An Optuna study together with the study file (overrides applied) it runs."""

    study: optuna.Study
    file: StudyFile
    overrides: dict[str, Any]

    @property
    def spec(self) -> StudySpec:
        return self.file.spec


def _comparable(spec: StudySpec) -> dict[str, Any]:
    """What must not change between launches of one study: all but [search] and data.dir."""
    data = spec.model_dump(mode="json")
    data.pop("search")
    data["data"].pop("dir")
    return data


def create_study(storage: optuna.storages.BaseStorage, file: StudyFile, overrides: dict[str, Any]) -> OpenStudy:
    """Create the study, or resume it when one of that name exists with the same setup."""
    spec = file.spec
    engine = storage.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        launches.record_study_file(conn, file.sha256, file.name, file.path, file.text)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    name = spec.study.name
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage)
        direction = study.direction.name.lower()
        if direction != spec.direction:
            raise SpecError(
                f"{file.path}: study.name: study {name!r} in {mask_url(storage.url)} is "
                f"{direction}d, but this file's metric is {spec.direction}d; use another study name"
            )
        previous = study.user_attrs.get(ATTR)
        if previous is not None:
            before = _stored_file(engine, name, previous)
            if _comparable(before.spec) != _comparable(spec):
                raise SpecError(
                    f"{file.path}: study.name: study {name!r} in {mask_url(storage.url)} was "
                    f"created from a different study file ({before.path}: its model, data, "
                    "training or space differ); use another study name to start afresh"
                )
    else:
        try:
            study = optuna.create_study(storage=storage, study_name=name, direction=spec.direction)
        except optuna.exceptions.DuplicatedStudyError:  # another launcher won the race
            study = optuna.load_study(study_name=name, storage=storage)
    study.set_user_attr(
        ATTR,
        {
            "study_file_sha256": file.sha256,
            "study_file": file.path,
            "metric": spec.metric,
            "overrides": overrides,
            "n_trials": spec.search.n_trials,
        },
    )
    return OpenStudy(study=study, file=file, overrides=overrides)


def open_study(storage: optuna.storages.BaseStorage, name: str) -> OpenStudy:
    """Join an existing study: its stored study file with the last launch's overrides."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyNotFound(_missing(storage, name)) from None
    attrs = study.user_attrs.get(ATTR)
    if attrs is None:
        raise StorageError(
            f"study {name!r} in {mask_url(storage.url)} was not created by hpsearch; "  # type: ignore[attr-defined]
            "launch it with `hpsearch launch STUDY_FILE`"
        )
    file = _stored_file(storage.engine, name, attrs)  # type: ignore[attr-defined]
    overrides = dict(attrs.get("overrides", {}))
    spec = file.spec.with_overrides(**overrides)
    return OpenStudy(study=study, file=StudyFile(file.path, file.text, spec), overrides=overrides)


def load_plain_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """Any study by name (hpsearch's or not), for read-only commands."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyNotFound(_missing(storage, name)) from None


def _missing(storage: optuna.storages.BaseStorage, name: str) -> str:
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    known = f"; studies there: {', '.join(names)}" if names else "; it holds no studies"
    return f"no study {name!r} in {mask_url(storage.url)}{known}"  # type: ignore[attr-defined]


def _stored_file(engine: Any, name: str, attrs: dict[str, Any]) -> StudyFile:
    found = launches.study_file_text(engine, attrs["study_file_sha256"])
    if found is None:
        raise StorageError(f"study {name!r}: its study file {attrs['study_file_sha256'][:12]} is not stored")
    path, text = found
    return parse_study_file(text, f"{path} (stored with study {name!r})")
