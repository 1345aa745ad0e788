"""A best you can trust: the top configs re-trained on fresh seeds before they are ranked.

    confirmation = confirm(None, "quickstart", top=3, seeds=5)
    bundle = export_bundle(None, "quickstart", top=3, confirmation=confirmation)

One trial is one sample of a noisy number: its init seed alone can move a validation score
by more than the gap between configs. `confirm` re-trains each of the study's `top` best
configs with the same `seeds` fresh init seeds (seeds no trial used; the batch order, split
and everything else stay the study's), with the reference engine (or the study's own loop),
and gives each config's per-seed validation values, mean and standard deviation. A held-out
test set (`[data] test_fraction`, or one the data factory returns) is loaded here and only
here: each confirmed model is scored on it after training, beside its validation score. The
search never sees it, so it cannot have selected or pruned on it.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from dataclasses import replace
from typing import Any, Callable

from torch import nn

from ..db.storage import open_storage
from ..db.urls import resolve_url
from ..errors import HpsearchError, StorageError
from ..search.budget import top_trials
from ..search.study import open_study
from ..training.data import load_study_data
from ..training.device import device_name, resolve_device
from ..training.models import model_factory
from ..training.own_loop import load_loop, train_own
from ..training.results import Diverged
from ..training.train import evaluate, train

Report = Callable[[str], None]


def confirm_seeds(study_seed: int, n: int) -> list[int]:
    """n init seeds no trial of a study uses (trial seeds hash "seed/number" instead)."""
    return [int.from_bytes(hashlib.sha256(f"{study_seed}/confirm/{i}".encode()).digest()[:4], "little") & 0x7FFFFFFF for i in range(n)]


def confirm(
    storage: str | None,
    study_name: str,
    top: int,
    seeds: int,
    device: str | None = None,
    data_dir: str | None = None,
    report: Report | None = None,
) -> dict[str, Any]:
    """Re-train the `top` best configs on `seeds` fresh seeds; the per-config results."""
    if seeds < 2:
        raise HpsearchError(f"--confirm: needs at least 2 seeds to give a spread, got {seeds}")
    url = resolve_url(storage)
    opened = open_study(open_storage(url), study_name)
    spec = opened.spec
    candidates = top_trials(opened.study, top)
    if not candidates:
        raise StorageError(f"study {study_name!r} has no complete trial to confirm yet")
    chosen = resolve_device(device)
    fresh = confirm_seeds(spec.train.seed, seeds)
    say = report or (lambda _: None)
    if spec.train.function is not None:
        loop = load_loop(spec.train)

        def run(config: dict[str, Any]) -> tuple[float, float | None]:
            return train_own(loop, config, chosen, options=spec.train.options).metric, None

        data_info: dict[str, Any] = {}
    else:
        assert spec.model is not None
        data = load_study_data(spec, data_dir, with_test=True).to(chosen)
        test = data.test_set() if data.x_test is not None else None
        searched = replace(data, x_test=None, y_test=None)  # training sees what the search saw
        make_model = model_factory(spec.model, data)

        def run(config: dict[str, Any]) -> tuple[float, float | None]:
            built: list[nn.Module] = []
            result = train(lambda: _kept(make_model(), built), searched, config, spec.metric)
            return result.metric, None if test is None else evaluate(built[-1], test, spec.metric)

        data_info = {"sizes": data.sizes, "standardization": _stats(data.standardization)}
    results = []
    for trial in candidates:
        validation: list[float | None] = []
        tested: list[float | None] = []
        for i, seed in enumerate(fresh):
            say(f"confirming trial {trial.number} with seed {i + 1}/{seeds}")
            try:
                value, on_test = run(dict(trial.user_attrs["config"], seed=seed))
            except Diverged:
                value, on_test = None, None
            validation.append(value)
            tested.append(on_test)
        results.append({"trial": trial.number, "validation": _summary(validation, fresh), "test": _summary(tested, fresh) if any(v is not None for v in tested) else None})
    sign = -1 if spec.direction == "maximize" else 1

    def standing(result: dict[str, Any]) -> tuple[bool, float]:
        mean = result["validation"]["mean"]
        return result["validation"]["diverged"] > 0, math.inf if mean is None else sign * mean

    results.sort(key=standing)
    return {
        "seeds": fresh,
        "engine": "function" if spec.train.function is not None else "train",
        "device": device_name(chosen),
        "ranked_by": f"mean validation {spec.metric} over the seeds ({spec.direction}d); configs with a diverged seed last",
        "results": results,
        **data_info,
    }


def _kept(model: nn.Module, built: list[nn.Module]) -> nn.Module:
    built.append(model)  # `train` moves it to the device in place and trains this very object
    return model


def _summary(values: list[float | None], seeds: list[int]) -> dict[str, Any]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return {
        "values": values,
        "seeds": seeds,
        "mean": statistics.fmean(finite) if finite else None,
        "std": statistics.stdev(finite) if len(finite) > 1 else 0.0,
        "diverged": len(values) - len(finite),
    }


def _stats(stats: tuple[list[float], list[float]] | None) -> dict[str, list[float]] | None:
    return None if stats is None else {"mean": stats[0], "std": stats[1]}
