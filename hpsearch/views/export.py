"""Export a study's best configs as a bundle (`config/bundle.py` reads it back).

    hpsearch export quickstart --top 3 -o best.json
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import optuna

from ..config.bundle import FORMAT, VERSION, dumps, format_of
from ..db.storage import open_storage
from ..db.urls import mask_url, resolve_url
from ..errors import StorageError
from ..search.study import ATTR, load_plain_study
from ..training.device import versions


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
