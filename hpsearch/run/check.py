"""`hpsearch check`: everything short of a search, so a study that passes it can run.

    report = check_study("studies/quickstart.toml")
    report.engine.name, report.estimate["seconds_per_trial"]

It validates the study file, builds the sampler and the pruner with their options, imports
the factories (or the study's own loop), loads the data, builds the model and runs one
forward and backward step on the first examples (`training/contract.py`: outputs against the
task and the loss), says which engine will train and why not cohorts, and times a training
step to estimate the training seconds per trial and for the whole study (pruning shortens
it; the database's bookkeeping, not counted, adds to it).
A study with its own loop is imported and its signature checked; hpsearch does not run it
before a search, so it cannot time it.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna

from ..config.batches import typical_batch
from ..config.catalog import is_import_path
from ..config.factories import load_factory
from ..config.space import describe
from ..config.spec import StudyFile, load_study_file
from ..errors import DataError, HpsearchError, ModelError, SpecError
from ..search.samplers import make_pruner, make_sampler
from ..training.contract import ModelCheck, check_model
from ..training.data import load_study_data
from ..training.device import device_name, resolve_device
from ..training.models import model_factory
from ..training.own_loop import load_loop, refuse_cohorts
from ..training.precision import set_precision
from ..training.probes import seconds_per_member_step, seconds_per_step
from ..training.train import evaluate
from .engine import CPU_MEASURED_MEMBERS, EngineChoice, decide_engine


@dataclass
class CheckReport:
    """What `hpsearch check` found; `trained` is False for `--quick` (the file alone)."""

    file: StudyFile
    sampler: str
    pruner: str
    trained: bool = False
    device: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    engine: EngineChoice | None = None
    estimate: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        spec = self.file.spec
        return {
            "spec": spec.model_dump(mode="json"),
            "metric": spec.metric,
            "direction": spec.direction,
            "space": [dict(zip(("key", "values", "applies_to"), row)) for row in describe(spec)],
            "sampler": self.sampler,
            "pruner": self.pruner,
            "device": self.device,
            "data": self.data,
            "model": self.model,
            "engine": None if self.engine is None else {"name": self.engine.name, "why": self.engine.why},
            "estimate": self.estimate,
        }


def check_study(
    study_file: str | StudyFile,
    device: str | None = None,
    data_dir: str | None = None,
    engine: str = "auto",
    cohort: int | None = None,
    precision: str = "fp32",
    quick: bool = False,
) -> CheckReport:
    """Check a study as a launch would use it; raises the HpsearchError a launch would,
    its message led by the study file's path."""
    file = study_file if isinstance(study_file, StudyFile) else load_study_file(study_file)
    try:
        return _check(file, device, data_dir, engine, cohort, precision, quick)
    except HpsearchError as e:
        if str(e).startswith(f"{file.path}:"):
            raise
        raise type(e)(f"{file.path}: {e}", trace=e.trace) from None


def _check(file: StudyFile, device: str | None, data_dir: str | None, engine: str, cohort: int | None, precision: str, quick: bool) -> CheckReport:
    spec = file.spec
    with warnings.catch_warnings():  # TPE's group option is "experimental"; a check need not say so
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = make_sampler(spec)
    pruner = make_pruner(spec.search, spec.train.epochs)
    report = CheckReport(file, _described(sampler, spec.search.sampler_options), _described(pruner, spec.search.pruner_options))
    if quick:
        _import_factories(spec)
        return report
    chosen = resolve_device(device)
    set_precision(precision, chosen)
    report.trained, report.device = True, device_name(chosen)
    if spec.train.function is not None:
        refuse_cohorts(spec, engine)
        loop = load_loop(spec.train)
        report.model = {"function": spec.train.function, "module": getattr(loop, "__module__", None)}
        report.engine = EngineChoice("function", "train.function: the study's own loop, one trial at a time per worker")
        return report
    assert spec.model is not None
    started = time.perf_counter()
    data = load_study_data(spec, data_dir).to(chosen)
    report.data = {
        "name": data.name,
        "task": data.task,
        "sizes": data.sizes,
        "held_out_test": spec.data.test_fraction is not None,
        "input_shape": list(data.input_shape),
        "classes" if data.task == "classification" else "targets": data.output_size,
        "standardized": data.standardization is not None,
        "seconds": time.perf_counter() - started,
    }
    make_model = model_factory(spec.model, data)
    checked = check_model(make_model, data, spec.model.name)
    report.model = {
        "name": spec.model.name,
        "parameters": checked.parameters,
        "output_shape": list(checked.output_shape),
        "loss": data.loss.name,
        "first_loss": checked.loss,
    }
    report.engine = decide_engine(spec, make_model, data, chosen, engine, cohort)
    report.estimate = _estimate(spec, make_model, data, report.engine, checked, cohort)
    return report


def _import_factories(spec: Any) -> None:
    """Import every `package.module:name` the study names, so that even a quick check finds
    a misspelt module or function (a launch would fail on it)."""
    named = [("model.name", spec.model.name if spec.model else None, ModelError), ("data.name", spec.data.name, DataError),
             ("train.function", spec.train.function, SpecError), ("train.loss", spec.train.loss, DataError)]
    for where, name, error in named:
        if name is not None and is_import_path(name):
            load_factory(name, where, error)


def _estimate(spec: Any, make_model: Any, data: Any, choice: EngineChoice, checked: ModelCheck, cohort: int | None) -> dict[str, Any]:
    """Seconds per trial and for the study, from one measured step and one evaluation."""
    batch = typical_batch(spec, data.n_train)
    if choice.name == "cohort":
        members = min(cohort or CPU_MEASURED_MEMBERS, CPU_MEASURED_MEMBERS)
        step = choice.together if choice.together is not None else seconds_per_member_step(make_model, data, members, batch)
        basis = f"one trial's share of a step in a cohort of {members}"
    else:
        step = choice.alone if choice.alone is not None else seconds_per_step(make_model, data, batch)
        basis = "one step of one trial"
    model = make_model().to(data.x_train.device)
    started = time.perf_counter()
    evaluate(model, data, spec.metric)
    evaluation = time.perf_counter() - started
    steps = math.ceil(data.n_train / batch)
    per_trial = spec.train.epochs * (steps * step + evaluation)
    return {
        "batch_size": batch,
        "seconds_per_step": step,
        "measured": basis,
        "steps_per_epoch": steps,
        "seconds_per_evaluation": evaluation,
        "seconds_per_trial": per_trial,
        "n_trials": spec.search.n_trials,
        "seconds_for_study": per_trial * spec.search.n_trials,
    }


def _described(thing: Any, options: dict[str, Any]) -> str:
    given = ", ".join(f"{k}={v!r}" for k, v in options.items())
    return f"{type(thing).__name__}({given})"
