"""The speed benchmark: one process, the same trial configs and data, three ways of running them.

    hpsearch bench --model mlp --model cnn --device cuda --cohorts 64,256,1024

(a) the plain way people write it today: Optuna's `study.optimize`, a DataLoader over CPU
    tensors, one trial at a time (Optuna's in-memory storage);
(b) hpsearch's reference engine (`--engine train`), the data resident on the device;
(c) hpsearch's cohort engine (`--engine cohort`) for each cohort size K.
(b) and (c) run through the real worker against a temporary SQLite storage, bookkeeping and
all; "cohort engine alone" times `train_cohort` without Optuna, the ceiling the bookkeeping
leaves. Every mode trains the same configs (a seeded random sample of the full optimizer x
schedule space) on the same synthetic MNIST- or CIFAR-shaped data. Reported: seconds per
trial-epoch, the ratio to (a), and the largest difference between (b) and (c) in the final
metric of the same trial (zero on the CPU, where the engines agree bit for bit).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
import torch

from ..config.space import suggest_config, trial_seed
from ..config.spec import StudyFile, parse_study_file
from ..db.storage import open_storage
from ..optim import build_optimizer
from ..training.cohort import train_cohort
from ..training.data import Dataset, load_dataset
from ..training.device import resolve_device
from ..training.models import model_factory
from .launcher import LaunchOptions, launch

STUDY = """
[study]
name = "bench-{model}"
[model]
name = "{model}"
[data]
name = "{data}"
limit = {size}
validation_fraction = 0.1
[train]
epochs = {epochs}
batch_size = {batch_size}
[search]
n_trials = {n_trials}
sampler = "random"
seed = 0
[space]
optimizer = ["sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw"]
lr = {{ low = 1e-4, high = 0.1, log = true }}
momentum = {{ low = 0.5, high = 0.99 }}
beta1 = {{ low = 0.8, high = 0.99 }}
beta2 = {{ low = 0.9, high = 0.9999 }}
alpha = {{ low = 0.9, high = 0.999 }}
schedule = ["constant", "step", "exponential", "cosine"]
"""
DATA = {"mlp": "synthetic-mnist", "cnn": "synthetic-cifar10"}
# Training examples by device: the real data sets' sizes on a GPU, a slice on the CPU.
SIZES = {"cuda": {"mlp": 60_000, "cnn": 50_000}, "cpu": {"mlp": 6_000, "cnn": 1_500}}


@dataclass
class Row:
    model: str
    mode: str
    trials: int
    seconds_per_trial_epoch: float
    speedup: float | None = None  # against (a)
    best: float | None = None


def study_file(model: str, size: int, epochs: int, batch_size: int, n_trials: int) -> StudyFile:
    text = STUDY.format(model=model, data=DATA[model], size=size, epochs=epochs, batch_size=batch_size, n_trials=n_trials)
    return parse_study_file(text, f"bench-{model}.toml")


def sample_configs(file: StudyFile, n: int) -> list[dict[str, Any]]:
    """The configs a launch with this study's seeded random sampler will run, in order."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=file.spec.search.seed))
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(suggest_config(trial, file.spec, trial_seed(file.spec.train.seed, trial.number)))
        study.tell(trial, 0.0)
    return configs


def plain_optuna(data: Dataset, make: Callable[[], torch.nn.Module], configs: list[dict[str, Any]], device: torch.device) -> tuple[float, float]:
    """(a): study.optimize, a DataLoader, one trial at a time. Returns (seconds, best)."""
    x, y = data.x_train.cpu(), data.y_train.cpu()
    x_val, y_val = data.x_val.to(device), data.y_val.to(device)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=configs[0]["batch_size"], shuffle=True)

    def objective(trial: optuna.Trial) -> float:
        config = configs[trial.number % len(configs)]
        torch.manual_seed(config["seed"])
        model = make().to(device)
        optimizer, scheduler = build_optimizer(model.parameters(), config)
        accuracy = 0.0
        for epoch in range(config["epochs"]):
            model.train()
            for xb, yb in loader:
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(xb), yb).backward()
                optimizer.step()
            scheduler.step()
            model.eval()
            with torch.no_grad():
                correct = sum(int((model(x_val[i : i + 2048]).argmax(1) == y_val[i : i + 2048]).sum()) for i in range(0, len(x_val), 2048))
            accuracy = correct / len(x_val)
            trial.report(accuracy, epoch)
        return accuracy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    _synchronize(device)
    start = time.perf_counter()
    study.optimize(objective, n_trials=len(configs))
    _synchronize(device)
    return time.perf_counter() - start, study.best_value


def through_hpsearch(file: StudyFile, folder: Path, name: str, device: torch.device, **options: Any) -> tuple[float, list[float | None]]:
    """(b) or (c): a real launch on a temporary SQLite file. Returns (seconds, values by trial)."""
    path = folder / f"{name}.toml"
    path.write_text(file.text)
    url = f"sqlite:///{folder / name}.db"
    launch(LaunchOptions(study_file=str(path), storage=url, device=str(device), log_dir=str(folder / "logs"), **options), progress=False)
    trials = optuna.load_study(study_name=file.name, storage=open_storage(url)).trials
    # From the first trial's start to the last one's end: the search, without process start-up
    # and data loading (which the plain loop does before study.optimize, too).
    seconds = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return seconds, [t.value for t in trials]


def cohort_alone(data: Dataset, make: Callable[[], torch.nn.Module], configs: list[dict[str, Any]], precision: str) -> float:
    device = data.x_train.device
    _synchronize(device)
    start = time.perf_counter()
    train_cohort(make, data, configs, "accuracy", precision=precision)
    _synchronize(device)
    return time.perf_counter() - start


def run(
    models: list[str],
    device: str | None,
    trials: int,
    epochs: int,
    cohorts: list[int],
    size: int | None,
    batch_size: int = 128,
    precision: str = "fp32",
    report: Callable[[str], None] = print,
) -> list[Row]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    chosen = resolve_device(device)
    rows: list[Row] = []
    for model in models:
        n = size or SIZES["cuda" if chosen.type == "cuda" else "cpu"][model]
        largest = max(cohorts + [trials])
        file = study_file(model, n, epochs, batch_size, largest)
        configs = sample_configs(file, largest)
        data = load_dataset(file.spec.data, "accuracy").to(chosen)
        make = model_factory(file.spec.model, data)
        # Warm-up outside the clock: CUDA context, kernels, cuDNN's algorithm choice.
        train_cohort(make, data, [dict(configs[0], epochs=1)], "accuracy", precision=precision)
        report(f"{model}: {data.n_train} training examples on {chosen}, {epochs} epochs, batch {batch_size}")

        seconds, best = plain_optuna(data, make, configs[:trials], chosen)
        base = Row(model, "(a) plain Optuna + DataLoader", trials, seconds / (trials * epochs), 1.0, best)
        rows.append(base)
        report(_line(base))
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            sub = _with_trials(file, trials)
            seconds, reference = through_hpsearch(sub, folder, "train", chosen, engine="train", precision=precision)
            row = Row(model, "(b) hpsearch --engine train", trials, seconds / (trials * epochs), best=max(v for v in reference if v is not None))
            rows.append(_against(row, base))
            report(_line(row))
            worst = 0.0
            for k in cohorts:
                seconds, values = through_hpsearch(_with_trials(file, k), folder, f"cohort{k}", chosen, engine="cohort", cohort=k, precision=precision)
                row = Row(model, f"(c) hpsearch --engine cohort, K={k}", k, seconds / (k * epochs), best=max(v for v in values if v is not None))
                rows.append(_against(row, base))
                report(_line(row))
                worst = max([worst] + [abs(a - b) for a, b in zip(reference, values) if a is not None and b is not None])
            k = max(cohorts)
            seconds = cohort_alone(data, make, configs[:k], precision)
            row = _against(Row(model, f"    cohort engine alone, K={k}", k, seconds / (k * epochs)), base)
            rows.append(row)
            report(_line(row))
        report(f"    same trials through (b) and (c): largest difference in the final metric {worst:.3g}")
    return rows


def _with_trials(file: StudyFile, n: int) -> StudyFile:
    text = file.text.replace(f"n_trials = {file.spec.search.n_trials}", f"n_trials = {n}")
    return parse_study_file(text, file.path)


def _against(row: Row, base: Row) -> Row:
    row.speedup = base.seconds_per_trial_epoch / row.seconds_per_trial_epoch
    return row


def _line(row: Row) -> str:
    best = f"  best accuracy {row.best:.4f}" if row.best is not None else ""
    return f"  {row.mode:40} {row.trials:5d} trials  {row.seconds_per_trial_epoch:9.5f} s/trial-epoch  {row.speedup:8.1f}x{best}"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
