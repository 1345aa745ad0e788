"""What trains a worker's trials: the device, the data on it, the model, the engine, the cohort size.

* `--engine train` trains one trial at a time; `--engine cohort` trains cohorts, except for
  a model the cohort engine cannot stack (buffers, dropout, data-dependent control flow),
  which trains one trial at a time with a one-line notice.
* `--engine auto` uses cohorts on a GPU; on the CPU it times a training step both ways and
  keeps the faster (cohorts win for small models, not for convolutions on the CPU).
* Cohort size: `--cohort K`; else 32 on the CPU; else, on a GPU, as many members as fit in
  80% of its free memory, measured for the costliest member the space allows.
* Whatever the engine, a trial whose optimizer steps with a closure (L-BFGS, Newton,
  conjugate gradient) or is a class named by import path trains one at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config.batches import largest_batch, typical_batch
from ..config.catalog import in_cohorts, probe_config
from ..config.space import custom_optimizers
from ..config.spec import StudySpec
from ..errors import HpsearchError, SpecError
from ..optim.optimizers import check_arguments
from ..training.data import Dataset, load_dataset
from ..training.device import device_name, resolve_device
from ..training.models import model_factory
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
    data: Dataset
    make_model: Callable[[], nn.Module]
    engine: str  # "train" or "cohort"
    cohort_size: int
    precision: str


def engine_for(trainer: Trainer, config: dict) -> str:
    """The engine a trial trains with: the worker's, unless its optimizer trains alone."""
    return trainer.engine if in_cohorts(config["optimizer"]["name"]) else "train"


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
    data = load_dataset(spec.data, spec.metric, data_dir).to(chosen)
    make_model = model_factory(spec.model, data)
    set_precision(precision, chosen)
    name = choose_engine(spec, make_model, data, chosen, engine, cohort)
    size = choose_cohort_size(spec, make_model, data, chosen, cohort) if name == "cohort" else 1
    return Trainer(chosen, device_name(chosen), data, make_model, name, size, precision)


def choose_engine(
    spec: StudySpec, make_model: Callable[[], nn.Module], data: Dataset, device: torch.device, asked: str, cohort: int | None
) -> str:
    """"train" or "cohort", for `--engine asked` (auto, train or cohort)."""
    if asked == "train":
        return "train"
    reason = check_vectorizable(make_model, data)
    if reason is not None:
        log.warning("model %s cannot train in cohorts (%s); training one trial at a time instead", spec.model.name, reason)
        return "train"
    if asked == "cohort" or device.type == "cuda":
        return "cohort"
    batch = typical_batch(spec, data.n_train)
    together = seconds_per_member_step(make_model, data, min(cohort or CPU_COHORT, CPU_MEASURED_MEMBERS), batch)
    alone = seconds_per_step(make_model, data, batch)
    chosen = "cohort" if together < 0.8 * alone else "train"
    log.info("engine %s: a step takes %.2f ms per trial in a cohort, %.2f ms alone", chosen, 1e3 * together, 1e3 * alone)
    return chosen


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
    size = int(free * MEMORY_HEADROOM // per_member)
    log.info("cohorts of %d: %.1f MiB per member, %.1f GiB free", size, per_member / 2**20, free / 2**30)
    return max(1, min(MAX_COHORT, size))
