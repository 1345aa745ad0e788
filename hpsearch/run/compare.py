"""A fair comparison of optimizers: equal tuning budgets, then the winners re-trained on fresh seeds.

    hpsearch compare studies/quickstart.toml --budget 30 --seeds 5

1. Every optimizer in the study's space gets its own study, `<name>-<optimizer>`: the same
   model, data, schedules and budget (`--budget` finished trials), and only the keys that
   optimizer takes: the flat keys that reach it and its own table.
2. Each optimizer's best config is re-trained with the same `--seeds` fresh initialisation
   seeds, in one more study, `<name>-seeds` (no pruning).
3. The optimizers are ranked by their mean over the seeds; each is compared with the first
   by a paired t-test over the seeds (pairs share a seed), and called significantly worse
   when p < 0.05.

Everything it runs is an ordinary study in the database, so the dashboard shows all of it;
the ranking is kept on the seeds study (user attribute `comparison`) and in
`hpsearch_comparisons`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Any

import optuna
import tomli_w

from ..config.bundle import without_none
from ..config.catalog import CATALOG, optimizer_keys
from ..config.space import params_of, trial_seed
from ..config.spec import StudyFile, load_study_file, parse_study_file
from ..db.comparisons import record_comparison
from ..db.storage import open_storage
from ..db.urls import resolve_url
from ..errors import SpecError
from ..search.study import OpenStudy
from .launcher import LaunchOptions, launch

SIGNIFICANCE = 0.05
# Flat keys only some optimizers take (betas, momentum, weight decay, ...).
_OPTIMIZER_SPECIFIC = {k.name for o in CATALOG.values() for k in o.keys} - {"lr"}


def study_of(base: str, optimizer: str) -> str:
    """The name of one optimizer's study (a class by import path: its dots, no colon)."""
    return f"{base}-{optimizer.replace(':', '.')}"


def own_space(space: dict[str, Any], name: str) -> dict[str, Any]:
    """The part of a study file's [space] (as written) that one optimizer's trials use."""
    takes = {k.name for k in optimizer_keys(name) if k.flat}
    own = {k: v for k, v in space.items() if k not in _OPTIMIZER_SPECIFIC or k in takes}
    own["optimizer"] = name
    own.pop("optimizers", None)
    if name in space.get("optimizers", {}):
        own["optimizers"] = {name: space["optimizers"][name]}
    return own


@dataclass
class CompareOptions:
    study_file: str
    budget: int
    seeds: int
    storage: str | None = None
    device: str | None = None
    data_dir: str | None = None
    engine: str = "auto"
    cohort: int | None = None
    log_dir: str = "hpsearch-logs"


def variant(file: StudyFile, name: str, space: dict[str, Any], search: dict[str, Any]) -> StudyFile:
    """The study file `file` with another name, space and [search] keys (a new TOML text)."""
    data = file.spec.model_dump(mode="json", exclude_unset=True)
    data["study"] = {**data.get("study", {}), "name": name}
    data["space"] = space
    data["search"] = {**data.get("search", {}), **search}
    text = f"# Derived by `hpsearch compare` from {file.path}.\n" + tomli_w.dumps(without_none(data))
    return parse_study_file(text, f"{file.path} [{name}]")


def compare(options: CompareOptions, progress: bool = True) -> dict[str, Any]:
    file = load_study_file(options.study_file)
    spec = file.spec
    optimizers = spec.space.optimizer if isinstance(spec.space.optimizer, list) else [spec.space.optimizer]
    if len(optimizers) < 2:
        raise SpecError(f"{file.path}: space.optimizer: compare needs at least two optimizers, got {optimizers}")
    base = spec.study.name
    space = spec.model_dump(mode="json", exclude_unset=True)["space"]
    run = LaunchOptions(
        study_file="", storage=options.storage, device=options.device, data_dir=options.data_dir,
        engine=options.engine, cohort=options.cohort, log_dir=options.log_dir,
    )

    # 1. An equal budget for each optimizer, over its own conditional space.
    best: dict[str, dict[str, Any]] = {}
    for name in optimizers:
        tuned = variant(file, study_of(base, name), own_space(space, name), {"n_trials": options.budget})
        summary = launch(replace(run, study_file=tuned), progress=progress)
        if summary.best_config is None:
            raise SpecError(f"compare: no {name} trial completed in study {study_of(base, name)}; raise --budget or check the space")
        best[name] = summary.best_config

    # 2. Each winner re-trained with the same fresh seeds (pairs share a seed).
    seeds = [trial_seed(spec.train.seed + 1, i) for i in range(options.seeds)]
    retrain = variant(file, f"{base}-seeds", space, {"n_trials": len(optimizers) * options.seeds, "pruner": "none"})
    url = resolve_url(options.storage)
    queued = {(name, seed) for name in optimizers for seed in seeds}

    def queue_the_winners(opened: OpenStudy) -> None:
        done = {(t.user_attrs.get("compare_optimizer"), t.user_attrs.get("seed")) for t in opened.study.trials}
        for name in optimizers:
            params = params_of(best[name], retrain.spec, where=f"best {name} config")
            for seed in seeds:
                if (name, seed) not in done:  # a resumed comparison does not queue twice
                    opened.study.enqueue_trial(params, user_attrs={"compare_optimizer": name, "seed": seed})

    launch(replace(run, study_file=retrain, prepared=queue_the_winners), progress=progress)

    # 3. Rank, and test each against the first.
    study = optuna.load_study(study_name=f"{base}-seeds", storage=open_storage(url))
    values: dict[str, dict[int, float]] = {name: {} for name in optimizers}
    for t in study.trials:
        key = (t.user_attrs.get("compare_optimizer"), t.user_attrs.get("seed"))
        if key in queued and t.state == optuna.trial.TrialState.COMPLETE and t.value is not None:
            values[key[0]][key[1]] = t.value
    result = rank(values, spec.direction, seeds)
    result.update(budget=options.budget, seeds=options.seeds, study=base, metric=spec.metric, studies=[study_of(base, n) for n in optimizers] + [f"{base}-seeds"])
    study.set_user_attr("comparison", result)
    record_comparison(open_storage(url).engine, base, file.sha256, options.budget, options.seeds, result)
    return result


def rank(values: dict[str, dict[int, float]], direction: str, seeds: list[int]) -> dict[str, Any]:
    """Mean ± std per optimizer over the seeds, ranked; paired t-tests against the first."""
    from scipy import stats

    sign = -1 if direction == "maximize" else 1
    order = sorted(values, key=lambda n: sign * statistics.fmean(values[n].values()) if values[n] else math.inf)
    leader = order[0]
    ranking = []
    for position, name in enumerate(order, start=1):
        runs = values[name]
        mean = statistics.fmean(runs.values()) if runs else None
        std = statistics.stdev(runs.values()) if len(runs) > 1 else 0.0
        p_value, verdict = None, "best"
        if name != leader:
            shared = [s for s in seeds if s in runs and s in values[leader]]
            if len(shared) >= 2:
                a = [values[leader][s] for s in shared]
                b = [runs[s] for s in shared]
                p_value = 1.0 if a == b else float(stats.ttest_rel(a, b).pvalue)
                if math.isnan(p_value):
                    p_value = 1.0
                verdict = "significantly worse" if p_value < SIGNIFICANCE else "not significantly different"
            else:
                verdict = "too few seeds to test"
        ranking.append({"rank": position, "optimizer": name, "mean": mean, "std": std, "runs": len(runs), "p_value": p_value, "verdict": verdict})
    return {"direction": direction, "alpha": SIGNIFICANCE, "ranking": ranking, "values": {n: {str(s): v for s, v in r.items()} for n, r in values.items()}}
