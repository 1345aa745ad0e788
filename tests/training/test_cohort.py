"""The cohort engine equals the reference engine, member by member (fp32, CPU)."""

from __future__ import annotations

import itertools
import json

import optuna
import pytest
import torch
from click.testing import CliRunner

from hpsearch.cli import cli
from hpsearch.config.spec import DataSection, ModelSection
from hpsearch.training.cohort import Cohort, train_cohort
from hpsearch.training.data import load_dataset
from hpsearch.training.models import model_factory
from hpsearch.training.probes import check_vectorizable
from hpsearch.training.results import Diverged
from hpsearch.training.train import train
from tests.conftest import TINY_STUDY

OPTIMIZERS = [
    {"name": "sgd", "lr": 0.1, "weight_decay": 1e-4},
    {"name": "momentum", "lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
    {"name": "momentum", "lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-3},
    {"name": "adagrad", "lr": 0.05, "eps": 1e-10, "weight_decay": 0.0},
    {"name": "rmsprop", "lr": 0.003, "alpha": 0.99, "eps": 1e-8, "weight_decay": 1e-4},
    {"name": "adam", "lr": 0.003, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 1e-4},
    {"name": "adamw", "lr": 0.003, "betas": [0.85, 0.99], "eps": 1e-8, "weight_decay": 0.01},
]
SCHEDULES = [
    {"name": "constant", "warmup_epochs": 0},
    {"name": "step", "step_size": 1, "gamma": 0.5, "warmup_epochs": 1},
    {"name": "exponential", "gamma": 0.8, "warmup_epochs": 0},
    {"name": "cosine", "T_max": 2, "eta_min": 1e-4, "warmup_epochs": 1},
]


def configs(epochs: int = 3, batch_size: int = 32, optimizers=OPTIMIZERS, schedules=SCHEDULES) -> list[dict]:
    return [
        {"optimizer": o, "schedule": s, "batch_size": batch_size, "epochs": epochs, "seed": 100 + i, "data_seed": 0}
        for i, (o, s) in enumerate(itertools.product(optimizers, schedules))
    ]


def setup(model: str, data: str, metric: str, **data_options):
    dataset = load_dataset(DataSection(name=data, **data_options), metric)
    return dataset, model_factory(ModelSection(name=model), dataset)


def assert_same(reference, member, rel: float = 1e-6) -> None:
    assert [e.epoch for e in member.epochs] == [e.epoch for e in reference.epochs]
    for a, b in zip(reference.epochs, member.epochs):
        assert b.metric == pytest.approx(a.metric, rel=rel, abs=1e-12)
        assert b.train_loss == pytest.approx(a.train_loss, rel=rel)
        assert b.lr == a.lr


@pytest.mark.parametrize("metric", ["loss", "accuracy"])
def test_every_optimizer_and_schedule_in_one_mixed_cohort_matches_the_reference(metric) -> None:
    data, make = setup("mlp", "digits", metric)
    batch = configs()
    members = train_cohort(make, data, batch, metric)
    for config, member in zip(batch, members):
        assert_same(train(make, data, config, metric), member)


@pytest.mark.parametrize(
    "model, data, metric, options",
    [("cnn", "digits", "loss", {"limit": 400}), ("softmax", "digits", "loss", {}), ("linreg", "linear", "mse", {})],
)
def test_every_reference_model_matches(model, data, metric, options) -> None:
    dataset, make = setup(model, data, metric, **options)
    batch = configs(epochs=2, schedules=SCHEDULES[:2])
    for config, member in zip(batch, train_cohort(make, dataset, batch, metric)):
        assert_same(train(make, dataset, config, metric), member)


@pytest.mark.parametrize("model, options", [("mlp", {}), ("cnn", {"limit": 300})])
def test_the_batched_kernels_a_gpu_runs_agree_closely(model, options) -> None:
    """On a GPU every layer runs batched (not bit for bit); here the same path runs on the CPU."""
    data, make = setup(model, "digits", "loss", **options)
    batch = configs(epochs=2, schedules=SCHEDULES[:2])
    for config, member in zip(batch, train_cohort(make, data, batch, "loss", exact=False)):
        assert_same(train(make, data, config, "loss"), member, rel=1e-3)


def test_a_member_does_not_depend_on_its_cohort_mates() -> None:
    data, make = setup("mlp", "digits", "loss")
    batch = configs(epochs=2)
    alone = train_cohort(make, data, [batch[5]], "loss")[0]
    with_others = train_cohort(make, data, batch[3:9], "loss")[2]
    assert [e.metric for e in alone.epochs] == [e.metric for e in with_others.epochs]


def test_a_diverging_member_is_dropped_and_the_others_are_untouched() -> None:
    data, make = setup("linreg", "linear", "mse")
    batch = configs(epochs=6, schedules=SCHEDULES[:1])
    batch[2] = dict(batch[2], optimizer={"name": "sgd", "lr": 50.0, "weight_decay": 0.0})
    members = train_cohort(make, data, batch, "mse")
    diverged = members[2]
    assert isinstance(diverged, Diverged) and diverged.reason.startswith("training loss became")
    assert len(diverged.epochs) < 6
    for i, (config, member) in enumerate(zip(batch, members)):
        if i != 2:
            assert_same(train(make, data, config, "mse"), member)


def test_pruned_members_leave_and_the_rest_go_on() -> None:
    data, make = setup("mlp", "digits", "accuracy")
    batch = configs(epochs=3, optimizers=OPTIMIZERS[:3], schedules=SCHEDULES[:2])
    stop_after_first = {1, 4}
    seen: list[set[int]] = []

    def on_epoch(records):
        seen.append(set(records))
        return stop_after_first if records and min(r.epoch for r in records.values()) == 0 else set()

    members = train_cohort(make, data, batch, "accuracy", on_epoch=on_epoch)
    assert seen[0] == set(range(6)) and seen[1] == set(range(6)) - stop_after_first
    for i, (config, member) in enumerate(zip(batch, members)):
        if i in stop_after_first:
            assert member.pruned and len(member.epochs) == 1
        else:
            assert not member.pruned
            assert_same(train(make, data, config, "accuracy"), member)


def test_members_must_share_batch_size_and_epochs() -> None:
    data, make = setup("mlp", "digits", "accuracy")
    a, b = configs(epochs=1)[:2]
    with pytest.raises(ValueError, match="share batch size, epochs and data seed"):
        Cohort(make, data, [a, dict(b, batch_size=64)])


def test_launch_engines_agree_trial_by_trial(write_study, tmp_path) -> None:
    """Seeded random sampler: --engine train and --engine cohort give the same params and values."""
    text = TINY_STUDY.replace('optimizer = ["sgd", "adam"]', 'optimizer = ["sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw"]').replace("batch_size = 64", "").replace("n_trials = 4", "n_trials = 12")
    text += 'batch_size = [32, 64, "full"]\nschedule = ["constant", "step", "exponential", "cosine"]\nwarmup_epochs = [0, 1]\n'
    spec = write_study(text)
    values = {}
    for engine in ("train", "cohort"):
        url = f"sqlite:///{tmp_path / engine}.db"
        result = CliRunner().invoke(cli, ["launch", str(spec), "--storage", url, "--engine", engine, "--sampler", "random", "--seed", "7", "--json"])
        assert result.exit_code == 0, result.output
        trials = optuna.load_study(study_name="tiny", storage=url).trials
        values[engine] = [(t.params, t.value, t.intermediate_values) for t in trials]
        assert {t.user_attrs["engine"] for t in trials} == {engine}
    assert values["train"] == values["cohort"]
    sizes = {t.user_attrs["cohort_size"] for t in optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'cohort'}.db").trials}
    assert max(sizes) > 1


def test_a_model_that_cannot_be_stacked_falls_back_with_a_notice(write_study, sqlite_url, tmp_path) -> None:
    (tmp_path / "dropout.py").write_text(
        "import torch\n"
        "def make(shape, out):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.Dropout(0.2), torch.nn.ReLU(), torch.nn.Linear(16, out))\n"
    )
    data, make = setup("mlp", "digits", "accuracy")
    from hpsearch.training.models import model_factory as factory

    assert "random" in check_vectorizable(factory(ModelSection(name="dropout:make"), data), data).lower()
    spec = write_study(TINY_STUDY.replace('name = "mlp"\nhidden = 16', 'name = "dropout:make"'))
    result = CliRunner().invoke(cli, ["launch", str(spec), "--storage", sqlite_url, "--engine", "cohort"])
    assert result.exit_code == 0, result.output
    notices = [line for line in result.stderr.splitlines() if "cannot train in cohorts" in line]
    assert len(notices) == 1 and notices[0].startswith("hpsearch: model dropout:make cannot train in cohorts")
    assert {t.user_attrs["engine"] for t in optuna.load_study(study_name="tiny", storage=sqlite_url).trials} == {"train"}


def test_a_custom_module_trains_in_cohorts_through_vmap(tmp_path, monkeypatch) -> None:
    (tmp_path / "custom.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.a = torch.nn.Linear(64, 24); self.b = torch.nn.Linear(24, 10)\n"
        "    def forward(self, x):\n"
        "        return self.b(torch.tanh(self.a(x.flatten(1))))\n"
        "def make(shape, out):\n"
        "    return Net()\n"
    )
    data, _ = setup("mlp", "digits", "loss")
    make = model_factory(ModelSection(name="custom:make"), data)
    assert check_vectorizable(make, data) is None
    batch = configs(epochs=2, optimizers=OPTIMIZERS[::2], schedules=SCHEDULES[:1])
    for config, member in zip(batch, train_cohort(make, data, batch, "loss")):
        assert_same(train(make, data, config, "loss"), member, rel=1e-4)  # batched kernels: close, not bitwise


def test_out_of_memory_backs_off_to_smaller_cohorts(write_study, sqlite_url, monkeypatch) -> None:
    """A GPU running out of memory is simulated: cohorts larger than 2 raise CUDA's error."""
    real_step = Cohort.train_step

    def step(self, x, y):
        if self.theta.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self, x, y)

    monkeypatch.setattr(Cohort, "train_step", step)
    spec = write_study(TINY_STUDY.replace("n_trials = 4", "n_trials = 8"))
    result = CliRunner().invoke(cli, ["launch", str(spec), "--storage", sqlite_url, "--engine", "cohort", "--cohort", "8", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"] == {"COMPLETE": 8}
    assert "out of memory with a cohort of 8; retrying as cohorts of 4" in result.stderr
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).trials
    assert {t.user_attrs["cohort_size"] for t in trials} == {2}


def test_bench_runs_every_mode_and_the_engines_agree() -> None:
    result = CliRunner().invoke(cli, ["bench", "--model", "mlp", "--trials", "2", "--epochs", "1", "--cohorts", "4", "--size", "400", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["mode"].split(",")[0].strip() for r in rows] == [
        "(a) plain Optuna + DataLoader", "(b) hpsearch --engine train", "(c) hpsearch --engine cohort", "cohort engine alone"
    ]
    assert all(r["seconds_per_trial_epoch"] > 0 and r["speedup"] > 0 for r in rows)
    text = CliRunner().invoke(cli, ["bench", "--model", "mlp", "--trials", "2", "--epochs", "1", "--cohorts", "4", "--size", "400"])
    assert "largest difference in the final metric 0" in text.stdout


def test_auto_measures_both_engines_on_the_cpu_and_keeps_the_faster(write_study, sqlite_url) -> None:
    import re
    from pathlib import Path

    result = CliRunner().invoke(cli, ["launch", str(write_study()), "--storage", sqlite_url])
    assert result.exit_code == 0, result.output
    (log,) = Path("hpsearch-logs/tiny").glob("launch-*.log")
    found = re.search(r"engine (cohort|train): a step takes ([\d.]+) ms per trial in a cohort, ([\d.]+) ms alone", log.read_text())
    assert found, log.read_text()
    chosen, together, alone = found.group(1), float(found.group(2)), float(found.group(3))
    assert chosen == ("cohort" if together < 0.8 * alone else "train")
    assert {t.user_attrs["engine"] for t in optuna.load_study(study_name="tiny", storage=sqlite_url).trials} == {chosen}
