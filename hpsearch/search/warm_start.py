"""Warm starts: a bundle's configs queued to run before anything the sampler proposes.

    hpsearch launch studies/bigger.toml --enqueue best.json

A bundle's configs must lie in the study's search space; one that does not is refused, with
the key and the reason, before anything is written to the database.
"""

from __future__ import annotations

from typing import Any

from ..config.bundle import read_bundle
from ..config.space import params_of
from ..config.spec import StudySpec
from .study import OpenStudy


def bundle_params(path: str, spec: StudySpec) -> list[dict[str, Any]]:
    """Each config of a bundle as the params to enqueue; refuses any outside the space."""
    configs = read_bundle(path)["configs"]
    return [params_of(entry["config"], spec, where=f"{path}: configs[{i}]") for i, entry in enumerate(configs)]


def enqueue(opened: OpenStudy, path: str, params: list[dict[str, Any]]) -> int:
    """Queue the configs to run before anything the sampler proposes; returns how many."""
    for rank, values in enumerate(params):
        opened.study.enqueue_trial(values, user_attrs={"warm_start": f"{path}#{rank}"}, skip_if_exists=True)
    return len(params)
