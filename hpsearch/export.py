"""Export a study's best configs as a bundle, and run a bundle's configs first (warm start).

    hpsearch export quickstart --top 3 -o best.json
    hpsearch launch studies/bigger.toml --enqueue best.json

A bundle's configs must lie in the study's search space; one that does not is refused, with
the key and the reason, before anything is written to the database.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import optuna

from .bundle import FORMAT, VERSION, dumps, format_of, read_bundle
from .environment import versions
from .errors import StorageError
from .space import params_of
from .spec import StudySpec
from .storage import mask_url, open_storage, resolve_url
from .study import ATTR, OpenStudy, load_plain_study


def export_bundle(storage: str | None, study_name: str, top: int = 1) -> dict[str, Any]:
    """The `top` best complete trials of a study as a config bundle (a plain dict)."""
    url = resolve_url(storage)
    study = load_plain_study(open_storage(url), study_name)
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if "config" in t.user_attrs]
    if not complete:
        raise StorageError(f"study {study_name!r} in {mask_url(url)} has no complete trial to export yet")
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(complete, key=lambda t: t.value, reverse=maximize)[:top]  # type: ignore[arg-type, return-value]
    attrs = study.user_attrs.get(ATTR, {})
    info = versions()
    return {
        "format": FORMAT,
        "version": VERSION,
        "study": study_name,
        "metric": attrs.get("metric", "value"),
        "direction": study.direction.name.lower(),
        "configs": [
            {"rank": rank, "trial": t.number, "value": t.value, "config": t.user_attrs["config"]}
            for rank, t in enumerate(ranked)
        ],
        "provenance": {
            "storage": mask_url(url),
            "study_file_sha256": attrs.get("study_file_sha256"),
            "study_file": attrs.get("study_file"),
            "trials": [t.number for t in ranked],
            "hpsearch": info["hpsearch"],
            "torch": info["torch"],
            "optuna": info["optuna"],
            "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }


def write_bundle(bundle: dict[str, Any], output: str | None, fmt: str | None) -> str:
    """Write to `output` (format from its extension unless given) and return the text."""
    text = dumps(bundle, format_of(output or "bundle.json", fmt))
    if output:
        Path(output).write_text(text, encoding="utf-8")
    return text


def bundle_params(path: str, spec: StudySpec) -> list[dict[str, Any]]:
    """Each config of a bundle as the params to enqueue; refuses any outside the space."""
    configs = read_bundle(path)["configs"]
    return [params_of(entry["config"], spec, where=f"{path}: configs[{i}]") for i, entry in enumerate(configs)]


def enqueue(opened: OpenStudy, path: str, params: list[dict[str, Any]]) -> int:
    """Queue the configs to run before anything the sampler proposes; returns how many."""
    for rank, values in enumerate(params):
        opened.study.enqueue_trial(values, user_attrs={"warm_start": f"{path}#{rank}"}, skip_if_exists=True)
    return len(params)
