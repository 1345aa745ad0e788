"""Export a study's best configs as a bundle (`config/bundle.py` reads it back).

    hpsearch export quickstart --top 3 -o best.json
    hpsearch export quickstart --top 3 --confirm 5 -o best.json    # re-trained on 5 fresh seeds first

Each config comes with its trial's value and per-epoch curve, the engine, precision and
device that trained it; the bundle's `training` section says how to re-create a trial
elsewhere (`config/bundle.recipe`). With a confirmation (`run/confirm.py`) the configs are
ranked by their mean over the fresh seeds instead, each with its per-seed values, mean and
std, and its test scores when the study holds a test set out.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from ..config.bundle import FORMAT, VERSION, dumps, format_of, recipe
from ..db.runs import trained_with
from ..db.storage import open_storage
from ..db.urls import mask_url, resolve_url
from ..errors import ConfigError, StorageError
from ..search.budget import top_trials
from ..search.study import ATTR, load_plain_study, open_study
from ..training.device import versions

TRIAL_ATTRS = ("engine", "precision", "device")  # recorded by the worker on every trial


def export_bundle(storage: str | None, study_name: str, top: int = 1, confirmation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `top` best complete trials of a study as a config bundle (a plain dict); with a
    `confirmation` (from `run.confirm.confirm`), ranked by their confirmed means."""
    url = resolve_url(storage)
    backend = open_storage(url, read_only=True)
    study = load_plain_study(backend, study_name)
    ranked = top_trials(study, top)
    if not ranked:
        raise StorageError(f"study {study_name!r} in {mask_url(url)} has no complete trial to export yet")
    if confirmation is not None:
        order = {r["trial"]: i for i, r in enumerate(confirmation["results"])}
        ranked = sorted((t for t in ranked if t.number in order), key=lambda t: order[t.number])
        confirmed = {r["trial"]: r for r in confirmation["results"]}
    attrs = study.user_attrs.get(ATTR, {})
    trained = trained_with(backend.engine, [t._trial_id for t in ranked])
    info = versions()
    entries = []
    for rank, t in enumerate(ranked):
        entry: dict[str, Any] = {"rank": rank, "trial": t.number, "value": t.value}
        entry["epochs"] = [t.intermediate_values[step] for step in sorted(t.intermediate_values)]
        entry.update({key: t.user_attrs.get(key) for key in TRIAL_ATTRS})
        if confirmation is not None:
            result = confirmed[t.number]
            entry["confirmed"] = {"validation": result["validation"], "test": result["test"]}
        entry["config"] = t.user_attrs["config"]
        entries.append(entry)
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "study": study_name,
        "metric": attrs.get("metric", "value"),
        "direction": study.direction.name.lower(),
        "configs": entries,
    }
    if attrs:  # a study hpsearch created: how its trials were trained
        bundle["training"] = recipe(open_study(backend, study_name).spec)
    if confirmation is not None:
        bundle["confirmation"] = {k: v for k, v in confirmation.items() if k != "results"}
    bundle["provenance"] = {
        "storage": mask_url(url),
        "study_file_sha256": attrs.get("study_file_sha256"),
        "study_file": attrs.get("study_file"),
        "trials": [t.number for t in ranked],
        "hpsearch": info["hpsearch"],
        "torch": info["torch"],
        "optuna": info["optuna"],
        "python": info["python"],
        "cuda": info["cuda"],
        "trained_with": {str(t.number): trained[t._trial_id] for t in ranked if t._trial_id in trained},
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return bundle


def confirmation_rows(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per confirmed config: its search value beside its validation (and test) mean ± std."""
    rows = []
    for entry in bundle["configs"]:
        confirmed = entry.get("confirmed") or {}
        validation, test = confirmed.get("validation"), confirmed.get("test")
        rows.append({
            "rank": entry["rank"],
            "trial": entry["trial"],
            "search value": entry["value"],
            "validation mean ± std": _spread(validation),
            "test mean ± std": _spread(test) if test else "(no test set)",
            "diverged seeds": validation["diverged"] if validation else None,
        })
    return rows


def _spread(summary: dict[str, Any] | None) -> str:
    if not summary or summary["mean"] is None:
        return ""
    return f"{summary['mean']:.4g} ± {summary['std']:.2g}"


def writable_output(output: str | None) -> None:
    """Refuse an `-o` file that cannot be written, before the work that would fill it."""
    if output is None:
        return
    folder = Path(output).parent
    if not folder.is_dir():
        raise ConfigError(f"-o {output}: folder {folder} does not exist; create it first or write elsewhere")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"-o {output}: folder {folder} is not writable; choose a folder you may write")


def write_text(output: str, text: str) -> None:
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"-o {output}: cannot write the file: {e.strerror or e}; choose another path") from None


def write_bundle(bundle: dict[str, Any], output: str | None, fmt: str | None) -> str:
    """Write to `output` (format from its extension unless given) and return the text."""
    text = dumps(bundle, format_of(output or "bundle.json", fmt))
    if output:
        writable_output(output)
        write_text(output, text)
    return text

