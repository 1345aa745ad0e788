"""A study's sampler and pruner, built from its [search] section.

Samplers are seeded per worker and per resumed launch, so parallel or resumed searches do
not repeat each other; pruners get their resources (epochs) explicitly, never estimated.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import socket
from typing import TYPE_CHECKING, Any

import optuna

from ..config.space import searched
from ..config.spec import StudySpec
from ..config.values import IntRange
from ..errors import SpecError

if TYPE_CHECKING:
    from ..config.spec import SearchSection


def check_options(options: dict[str, Any], cls: type, given: set[str], where: str, what: str) -> None:
    """Refuse an option the Optuna class does not take (or that hpsearch passes itself),
    naming the valid ones, before the class would say it in its own words."""
    taken = [n for n, p in inspect.signature(cls).parameters.items() if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD]
    valid = [n for n in taken if n not in given]
    for key in options:
        if key not in valid:
            known = f"valid options are {', '.join(valid)}" if valid else "it takes no options"
            raise SpecError(f"{where}: the {what} takes no option {key!r}; remove it ({known})")


def make_sampler(spec: StudySpec, worker: int | None = 0, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded. Each worker, and each resumed launch, gets its own seed
    (derived from the study's), so parallel or resumed searches do not repeat each other.

    `worker`: the index a launch gave it (the same seeds on a rerun), or None for a worker
    started by hand: no launch numbers those, so its host and process id tell it apart
    from the others started at the same moment on other nodes."""
    search = spec.search
    seed = search.seed
    if worker is None:
        worker_id: int | str = f"{socket.gethostname()}:{os.getpid()}"
    else:
        worker_id = worker
    if seed is not None and (worker_id or offset):
        seed = int.from_bytes(hashlib.sha256(f"{seed}/{worker_id}/{offset}".encode()).digest()[:4], "little")
    name, options = search.sampler, dict(search.sampler_options)
    samplers = optuna.samplers
    classes = {"tpe": samplers.TPESampler, "random": samplers.RandomSampler, "cmaes": samplers.CmaEsSampler,
               "gp": samplers.GPSampler, "qmc": samplers.QMCSampler, "grid": samplers.GridSampler}
    check_options(options, classes[name], {"seed", "search_space"}, "search.sampler_options", f"{name} sampler")
    try:
        if name == "tpe":
            defaults = {"multivariate": True, "group": True, "constant_liar": True}
            return samplers.TPESampler(seed=seed, **{**defaults, **options})
        if name == "random":
            return samplers.RandomSampler(seed=seed, **options)
        if name == "cmaes":
            return samplers.CmaEsSampler(seed=seed, **{"warn_independent_sampling": False, **options})
        if name == "gp":
            return samplers.GPSampler(seed=seed, **{"warn_independent_sampling": False, **options})
        if name == "qmc":
            return samplers.QMCSampler(seed=seed, **{"warn_independent_sampling": False, **options})
        return samplers.GridSampler(grid_space(spec), seed=seed, **options)
    except TypeError as e:
        raise SpecError(f"search.sampler_options: {name} sampler rejects {options}: {e}") from None


def make_pruner(search: "SearchSection", epochs: int) -> optuna.pruners.BasePruner:
    """The study's pruner; resources are epochs, given explicitly (no 'auto' estimate)."""
    name, options = search.pruner, dict(search.pruner_options)
    pruners = optuna.pruners
    classes = {"none": pruners.NopPruner, "median": pruners.MedianPruner,
               "successive-halving": pruners.SuccessiveHalvingPruner, "hyperband": pruners.HyperbandPruner}
    check_options(options, classes[name], set(), "search.pruner_options", f"{name} pruner")
    try:
        if name == "none":
            return pruners.NopPruner(**options)
        if name == "median":
            return pruners.MedianPruner(**{"n_startup_trials": 5, "n_warmup_steps": 1, **options})
        if name == "successive-halving":
            return pruners.SuccessiveHalvingPruner(**{"min_resource": 1, "reduction_factor": 3, **options})
        return pruners.HyperbandPruner(
            **{"min_resource": 1, "max_resource": epochs, "reduction_factor": 3, **options}
        )
    except (TypeError, ValueError) as e:
        raise SpecError(f"search.pruner_options: {name} pruner rejects {options}: {e}") from None


def grid_space(spec: StudySpec) -> dict[str, list[Any]]:
    """Every searched parameter with its values, for the grid sampler."""
    grid: dict[str, list[Any]] = {}
    for param, value in searched(spec).items():
        if isinstance(value, list):
            grid[param] = value
        elif isinstance(value, IntRange):
            grid[param] = list(range(value.low, value.high + 1, value.step or 1))
        else:  # a float range: refused by the spec; kept for completeness
            raise SpecError(f"search.sampler: grid cannot search the range of {param}")
    return grid
