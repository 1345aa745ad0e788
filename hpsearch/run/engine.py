"""What trains a worker's trials: the device, the data on it, the model, the engine, the cohort size.

* `--engine train` trains one trial at a time; `--engine cohort` trains cohorts, except for
  a model the cohort engine cannot stack (dropout, batch norm, data-dependent control flow),
  which trains one trial at a time with a one-line notice that says why in words.
* `--engine auto` uses cohorts on a GPU; on the CPU it times a training step both ways and
  keeps the faster (cohorts win for small models, not for convolutions on the CPU).
* A study with its own loop (`train.function`) trains one trial at a time ("function").
* Cohort size: `--cohort K`; else 32 on the CPU; else, on a GPU, as many members as fit in
  80% of its free memory divided by the workers that share the card (`--per-gpu M`),
  measured for the costliest member the space allows.
* Whatever the engine, a trial whose optimizer steps with a closure (L-BFGS, Newton,
  conjugate gradient) or is a class named by import path trains one at a time.

Before any of it, the model is built and takes one training step (`training/contract.py`),
so a model that cannot train stops the worker before it asks for a trial.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..config.batches import largest_batch, typical_batch
from ..config.catalog import in_cohorts, probe_config
from ..config.space import custom_optimizers
from ..config.spec import StudySpec
from ..config.factories import raised_in_user_code, user_traceback
from ..errors import HpsearchError, ModelError, SpecError
from ..optim.optimizers import check_arguments
from ..training.contract import check_model
from ..training.data import Dataset, load_study_data
from ..training.device import device_name, resolve_device, workers_sharing_the_gpu
from ..training.models import model_factory
from ..training.own_loop import Loop, load_loop, refuse_cohorts
from ..training.precision import set_precision
from ..training.probes import check_vectorizable, member_footprint, seconds_per_member_step, seconds_per_step

log = logging.getLogger("hpsearch.worker")
CPU_COHORT = 32  # members per cohort on the CPU: ~11x per member-step, few sampler rounds lost
MAX_COHORT = 4096
MEMORY_HEADROOM = 0.8  # share of the GPU's free memory a cohort may plan to use
CPU_MEASURED_MEMBERS = 8  # a CPU cohort's speed per member hardly changes beyond this


@dataclass
class Trainer:
    """Everything a worker trains with; `cohort_size` shrinks when a cohort runs out of memory."""

    device: torch.device
    device_name: str
    data: Dataset | None  # None with train.function: the loop loads its own
    make_model: Callable[[], nn.Module] | None
    engine: str  # "train", "cohort" or "function"
    cohort_size: int
    precision: str
    function: Loop | None = None  # train.function
    options: dict[str, Any] = field(default_factory=dict)  # train.options


@dataclass(frozen=True)
class EngineChoice:
    """The engine a study trains with and why, in words; the step times when measured."""

    name: str
    why: str
    together: float | None = None  # seconds per trial-step in a cohort
    alone: float | None = None  # seconds per step one trial at a time


def engine_for(trainer: Trainer, config: dict) -> str:
    """The engine a trial trains with: the worker's, unless its optimizer trains alone."""
    if trainer.engine != "cohort" or in_cohorts(config["optimizer"]["name"]):
        return trainer.engine
    return "train"


def check_optimizers(spec: StudySpec, where: str) -> None:
    """Fail before any trial, with the key, if an optimizer class by import path is unusable."""
    for name, arguments in custom_optimizers(spec).items():
        try:
            check_arguments(name, arguments, f"space.optimizer {name!r}")
        except HpsearchError as e:
            raise SpecError(f"{where}: {e}") from None


def prepare_trainer(
    spec: StudySpec, device: str | None, engine: str, cohort: int | None, precision: str, data_dir: str | None
) -> Trainer:
    """Load the study's data onto the device, build its model factory, choose the engine."""
    check_optimizers(spec, f"study {spec.study.name}")
    chosen = resolve_device(device)
    set_precision(precision, chosen)
    if workers_sharing_the_gpu() > 1:
        log.info("GPU shared by %d workers: --cohort auto plans with 1/%d of its memory", workers_sharing_the_gpu(), workers_sharing_the_gpu())
    if spec.train.function is not None:
        refuse_cohorts(spec, engine)
        return Trainer(chosen, device_name(chosen), None, None, "function", 1, precision, load_loop(spec.train), dict(spec.train.options))
    assert spec.model is not None
    data = load_study_data(spec, data_dir).to(chosen)
    make_model = model_factory(spec.model, data)
    check_model(make_model, data, spec.model.name)
    choice = decide_engine(spec, make_model, data, chosen, engine, cohort)
    if choice.name == "train" and engine != "train":
        log.warning("model %s cannot train in cohorts (%s); training one trial at a time instead", spec.model.name, choice.why)
    elif choice.alone is not None:
        log.info("engine %s: a step takes %.2f ms per trial in a cohort, %.2f ms alone", choice.name, 1e3 * choice.together, 1e3 * choice.alone)
    size = choose_cohort_size(spec, make_model, data, chosen, cohort) if choice.name == "cohort" else 1
    return Trainer(chosen, device_name(chosen), data, make_model, choice.name, size, precision)


def decide_engine(
    spec: StudySpec, make_model: Callable[[], nn.Module], data: Dataset, device: torch.device, asked: str, cohort: int | None
) -> EngineChoice:
    """"train" or "cohort", for `--engine asked` (auto, train or cohort), and why."""
    if asked == "train":
        return EngineChoice("train", "--engine train: one trial at a time")
    reason = check_vectorizable(make_model, data)
    if reason is not None:
        return EngineChoice("train", reason)
    if asked == "cohort":
        return EngineChoice("cohort", "--engine cohort")
    if device.type == "cuda":
        return EngineChoice("cohort", "auto: cohorts on a GPU")
    batch = typical_batch(spec, data.n_train)
    try:
        together = seconds_per_member_step(make_model, data, min(cohort or CPU_COHORT, CPU_MEASURED_MEMBERS), batch)
        alone = seconds_per_step(make_model, data, batch)
    except ModelError:
        raise
    except (Exception, SystemExit) as e:  # the user's model, on a batch as large as the search's
        assert spec.model is not None
        what = f"model.name: {spec.model.name}: a training step on a batch of {batch} (timed for --engine auto)"
        raise ModelError(raised_in_user_code(e, what), trace=user_traceback(e)) from None
    name = "cohort" if together < 0.8 * alone else "train"
    why = f"auto on the CPU: a step takes {1e3 * together:.2f} ms per trial in a cohort, {1e3 * alone:.2f} ms alone"
    return EngineChoice(name, why, together, alone)


def choose_cohort_size(
    spec: StudySpec, make_model: Callable[[], nn.Module], data: Dataset, device: torch.device, asked: int | None
) -> int:
    """Members per cohort: as asked, else 32 on the CPU, else what fits in the GPU's memory."""
    if asked is not None:
        return asked
    if device.type != "cuda":
        return CPU_COHORT
    per_member = member_footprint(make_model, data, probe_config(largest_batch(spec, data.n_train)))
    free, _ = torch.cuda.mem_get_info(device)
    sharing = workers_sharing_the_gpu()
    size = cohort_for_memory(free, per_member, sharing)
    log.info("cohorts of %d: %.1f MiB per member, %.1f GiB free, shared by %d workers", size, per_member / 2**20, free / 2**30, sharing)
    return size


def cohort_for_memory(free: int, per_member: float, sharing: int) -> int:
    """Members that fit in this worker's part of 80% of the GPU's free memory."""
    # Workers sharing a card start together and each sees all of its free memory.
    return max(1, min(MAX_COHORT, int(free * MEMORY_HEADROOM / sharing // per_member)))
