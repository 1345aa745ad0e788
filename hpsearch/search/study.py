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
from ..db.storage import rdb
from ..db.urls import mask_url
from ..errors import SpecError, StorageError, StudyNotFound

ATTR = "hpsearch"  # the study user attribute holding the study-file hash and overrides


@dataclass(frozen=True)
class OpenStudy:
    """An Optuna study together with the study file (overrides applied) it runs."""

    study: optuna.Study
    file: StudyFile
    overrides: dict[str, Any]
    created: bool = False  # this launch made the study (so a launch that fails may remove it)
    replaced: dict[str, Any] | None = None  # the binding before this launch (restored if it fails)

    @property
    def spec(self) -> StudySpec:
        return self.file.spec


def _comparable(spec: StudySpec) -> dict[str, Any]:
    """What must not change between launches of one study: all but [search] and data.dir."""
    data = spec.model_dump(mode="json")
    data.pop("search")
    data["data"].pop("dir")
    return data


MAX_NAME = 200  # a log folder per study (file names stop at 255 bytes); Optuna's column holds 512
MAX_NAME_BYTES = 255  # the log folder's name, in UTF-8: "é" takes two


def create_study(
    storage: optuna.storages.BaseStorage, file: StudyFile, overrides: dict[str, Any], precision: str = "fp32"
) -> OpenStudy:
    """Create the study, or resume it when one of that name exists with the same setup."""
    spec = file.spec
    if len(spec.study.name) > MAX_NAME:
        raise SpecError(
            f"{file.path}: study.name: at most {MAX_NAME} characters, got {len(spec.study.name)}; "
            "use a shorter name"
        )
    if len(spec.study.name.encode()) > MAX_NAME_BYTES:
        raise SpecError(
            f"{file.path}: study.name: at most {MAX_NAME_BYTES} bytes in UTF-8 (its log folder is named "
            f"after it), got {len(spec.study.name.encode())}; use a shorter name"
        )
    engine = storage.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        launches.record_study_file(conn, file.sha256, file.name, file.path, file.text)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    name = spec.study.name
    created = False
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage)
        previous = study.user_attrs.get(ATTR)
        if previous is None:  # mixing its trials into ours would report configs we never ran
            raise SpecError(
                f"{file.path}: study.name: study {name!r} in {mask_url(storage.url)} was not created "
                f"by hpsearch (a plain Optuna study); use another study name, or remove it with "
                f"`hpsearch delete {name}`"
            )
        before_precision = previous.get("precision", "fp32")
        if before_precision != precision:  # bf16 and fp32 scores are not one search's
            raise SpecError(
                f"--precision {precision}: study {name!r} in {mask_url(storage.url)} ran with "
                f"--precision {before_precision}; relaunch with --precision {before_precision}, or use "
                "another study name"
            )
        direction = study.direction.name.lower()
        if direction != spec.direction:
            raise SpecError(
                f"{file.path}: study.name: study {name!r} in {mask_url(storage.url)} is "
                f"{direction}d, but this file's metric is {spec.direction}d; use another study name"
            )
        before = _stored_file(engine, name, previous)
        if _comparable(before.spec) != _comparable(spec):
            raise SpecError(
                f"{file.path}: study.name: study {name!r} in {mask_url(storage.url)} was "
                f"created from a different study file ({before.path}: its model, data, "
                f"training or space differ); use another study name to start afresh, or remove "
                f"it with `hpsearch delete {name}`"
            )
    else:
        previous = None
        try:
            study = optuna.create_study(storage=storage, study_name=name, direction=spec.direction)
            created = True
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
            "precision": precision,
        },
    )
    return OpenStudy(study=study, file=file, overrides=overrides, created=created, replaced=previous)


def undo_launch(opened: OpenStudy) -> bool:
    """After a launch failed before any trial ran: remove the study it created, or give an
    existing study back its previous binding, so the name stays usable. True if removed."""
    study = opened.study
    ran = [t for t in study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.WAITING]
    if opened.created and not ran:
        delete_study(study._storage, study.study_name)
        return True
    if opened.replaced is not None:
        study.set_user_attr(ATTR, opened.replaced)
    return False


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
    return f"no study {name!r} in {mask_url(getattr(storage, 'shown_url', storage.url))}{known}"  # type: ignore[attr-defined]


def _stored_file(engine: Any, name: str, attrs: dict[str, Any]) -> StudyFile:
    found = launches.study_file_text(engine, attrs["study_file_sha256"])
    if found is None:
        raise StorageError(f"study {name!r}: its study file {attrs['study_file_sha256'][:12]} is not stored")
    path, text = found
    # A file without study.name was named after itself when launched: the study's name.
    return parse_study_file(text, f"{path} (stored with study {name!r})", default_name=name)


def delete_study(storage: optuna.storages.BaseStorage, name: str) -> int:
    """Remove a study (hpsearch's or a plain Optuna one) and hpsearch's rows about it; its trials."""
    study = load_plain_study(storage, name)
    n_trials = len(study.get_trials(deepcopy=False))
    launches.forget_study(rdb(study).engine, study._study_id)
    optuna.delete_study(study_name=name, storage=storage)
    return n_trials
