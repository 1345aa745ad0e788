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
from hpsearch.training import evaluation
from hpsearch.training.cohort import Cohort, train_cohort
from hpsearch.training.data import load_dataset
from hpsearch.training.models import model_factory
from hpsearch.training.probes import check_vectorizable
from hpsearch.training.results import Diverged
from hpsearch.training.train import train
from tests.conftest import TINY_STUDY

# Every optimizer a cohort trains, in every variant its update rule has.
OPTIMIZERS = [
    {"name": "sgd", "lr": 0.1, "weight_decay": 1e-4},
    {"name": "momentum", "lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0, "dampening": 0.1},
    {"name": "momentum", "lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-3, "dampening": 0.0},
    {"name": "adagrad", "lr": 0.05, "eps": 1e-10, "weight_decay": 0.0, "lr_decay": 0.01, "initial_accumulator_value": 0.1},
    {"name": "rmsprop", "lr": 0.003, "alpha": 0.99, "eps": 1e-8, "weight_decay": 1e-4, "centered": False, "momentum": 0.0},
    {"name": "rmsprop", "lr": 0.002, "alpha": 0.95, "eps": 1e-8, "weight_decay": 0.0, "centered": True, "momentum": 0.5},
    {"name": "adam", "lr": 0.003, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 1e-4, "amsgrad": False},
    {"name": "adam", "lr": 0.003, "betas": [0.8, 0.99], "eps": 1e-7, "weight_decay": 0.0, "amsgrad": True},
    {"name": "adamw", "lr": 0.003, "betas": [0.85, 0.99], "eps": 1e-8, "weight_decay": 0.37, "amsgrad": False},
    {"name": "adadelta", "lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0},
    {"name": "adamax", "lr": 0.004, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 1e-4},
    {"name": "nadam", "lr": 0.003, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 1e-3, "momentum_decay": 4e-3, "decoupled_weight_decay": True},
    {"name": "radam", "lr": 0.003, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 1e-4, "decoupled_weight_decay": False},
    {"name": "asgd", "lr": 0.05, "lambd": 1e-4, "alpha": 0.75, "t0": 20.0, "weight_decay": 0.0},
    {"name": "rprop", "lr": 0.003, "etas": [0.5, 1.2], "step_sizes": [1e-6, 50.0]},
    {"name": "adafactor", "lr": 0.01, "beta2_decay": -0.8, "d": 1.0, "weight_decay": 0.0},
    {"name": "muon", "lr": 0.01, "weight_decay": 0.1, "momentum": 0.95, "nesterov": True, "ns_steps": 5, "adjust_lr_fn": "match_rms_adamw"},
]
# Every schedule, with and without warmup; durations fit 3 epochs.
SCHEDULES = [
    {"name": "constant", "warmup_epochs": 0},
    {"name": "step", "step_size": 1, "gamma": 0.5, "warmup_epochs": 1},
    {"name": "exponential", "gamma": 0.8, "warmup_epochs": 0},
    {"name": "cosine", "T_max": 2, "eta_min": 1e-4, "warmup_epochs": 1},
    {"name": "linear", "start_factor": 1.0, "end_factor": 0.2, "total_iters": 3, "warmup_epochs": 0},
    {"name": "polynomial", "total_iters": 2, "power": 2.0, "warmup_epochs": 1},
    {"name": "cosine-restarts", "T_0": 1, "T_mult": 2, "eta_min": 1e-4, "warmup_epochs": 0},
    {"name": "one-cycle", "max_lr": None, "total_steps": 3, "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4, "anneal_strategy": "cos", "cycle_momentum": False, "warmup_epochs": 0},
    # patience 0 and a large threshold: it reduces whenever the metric did not improve by half
    {"name": "plateau", "mode": "min", "factor": 0.5, "patience": 0, "threshold": 0.5, "cooldown": 0, "min_lr": 0.0, "warmup_epochs": 0},
]


def configs(epochs: int = 3, batch_size: int = 64, optimizers=OPTIMIZERS, schedules=SCHEDULES, pairs: bool = False) -> list[dict]:
    """Trial configs: every optimizer with every schedule, or (pairs) each optimizer with the
    next schedule in turn, which still covers both lists."""
    combos = (
        [(o, schedules[i % len(schedules)]) for i, o in enumerate(optimizers)]
        if pairs
        else list(itertools.product(optimizers, schedules))
    )
    out = []
    for i, (o, s) in enumerate(combos):
        s = dict(s, max_lr=o["lr"]) if s["name"] == "one-cycle" else s
        out.append({"optimizer": o, "schedule": s, "batch_size": batch_size, "epochs": epochs, "seed": 100 + i, "data_seed": 0})
    return out


def setup(model: str, data: str, metric: str, hidden: int = 64, **data_options):
    dataset = load_dataset(DataSection(name=data, **data_options), metric)
    return dataset, model_factory(ModelSection(name=model, hidden=hidden), dataset)


THREADS = torch.get_num_threads()


@pytest.fixture(params=["default threads", "one thread"])
def threads(request):
    """The equivalence holds at torch's default thread count and at one thread."""
    before = torch.get_num_threads()
    if request.param == "one thread":
        torch.set_num_threads(1)
    yield torch.get_num_threads()
    torch.set_num_threads(before)


def assert_same(reference, member) -> None:
    """Bit for bit: every epoch's metric, training loss and lr, and the final parameters."""
    assert not isinstance(member, Diverged), member.reason
    assert [(e.epoch, e.metric, e.train_loss, e.lr) for e in member.epochs] == [
        (e.epoch, e.metric, e.train_loss, e.lr) for e in reference.epochs
    ]
    assert member.pruned == reference.pruned
    assert torch.equal(member.parameters, reference.parameters)


def check_in_cohorts(make, data, batch, metric, sizes) -> None:
    """Each config trained alone by `train`, then in cohorts of each size: the same numbers."""
    references = [train(make, data, c, metric, keep_parameters=True) for c in batch]
    for size in sizes:
        for start in range(0, len(batch), size):
            members = train_cohort(make, data, batch[start : start + size], metric, keep_parameters=True)
            for reference, member in zip(references[start : start + size], members):
                assert_same(reference, member)


def test_every_optimizer_and_schedule_matches_the_reference_in_cohorts_of_every_size(threads) -> None:
    data, make = setup("mlp", "digits", "loss", hidden=16)
    batch = configs(batch_size=128, pairs=True)  # 17 optimizer variants, 9 schedules
    check_in_cohorts(make, data, batch, "loss", sizes=[len(batch), 4])
    alone = train_cohort(make, data, batch[:2], "loss", keep_parameters=True)  # and in one of 2
    for config, member in zip(batch[:2], alone):
        assert_same(train(make, data, config, "loss", keep_parameters=True), member)


def test_every_schedule_with_every_optimizer_in_one_cohort() -> None:
    torch.set_num_threads(1)  # 153 members of a tiny model; the thread counts are checked above
    data, make = setup("mlp", "digits", "loss", hidden=4, limit=500)
    batch = configs(epochs=3, batch_size=128)  # all 153 pairs in one cohort
    try:
        members = train_cohort(make, data, batch, "loss", keep_parameters=True)
        for config, member in zip(batch, members):
            assert_same(train(make, data, config, "loss", keep_parameters=True), member)
    finally:
        torch.set_num_threads(THREADS)


@pytest.mark.parametrize(
    "model, data, hidden, options",
    [
        ("softmax", "synthetic-mnist", 64, {"limit": 800}),  # 784-wide inputs
        ("softmax", "synthetic-cifar10", 64, {"limit": 500}),  # 3072-wide inputs
        ("mlp", "digits", 1024, {"limit": 800}),  # a 1024-wide hidden layer
    ],
    ids=["784 wide", "3072 wide", "1024 wide"],
)
def test_wide_inputs_match_whatever_the_cohort_size(model, data, hidden, options, threads) -> None:
    """Batched products round differently from F.linear at these widths with two threads."""
    dataset, make = setup(model, data, "accuracy", hidden=hidden, **options)
    batch = configs(epochs=2, batch_size=128, optimizers=OPTIMIZERS[6:9], schedules=SCHEDULES[:1])
    check_in_cohorts(make, dataset, batch, "accuracy", sizes=[1, 3])


@pytest.mark.parametrize("hidden, limit", [(16, 1201), (1, None)], ids=["last batch of one", "hidden=1"])
def test_narrow_layers_and_a_last_batch_of_one(hidden, limit, threads) -> None:
    options = {"limit": limit} if limit else {}
    data, make = setup("mlp", "digits", "loss", hidden=hidden, **options)
    if limit:
        assert data.n_train % 64 == 1  # 961 examples: fifteen batches of 64 and one of 1
    batch = configs(epochs=2, optimizers=[OPTIMIZERS[0], OPTIMIZERS[6], OPTIMIZERS[16]], schedules=SCHEDULES[:1])
    check_in_cohorts(make, data, batch, "loss", sizes=[1, 3])


@pytest.mark.parametrize(
    "model, data, metric, options",
    [("cnn", "digits", "loss", {"limit": 300}), ("softmax", "digits", "accuracy", {}), ("linreg", "linear", "mse", {})],
)
def test_every_reference_model_matches(model, data, metric, options) -> None:
    dataset, make = setup(model, data, metric, **options)
    batch = configs(epochs=2, optimizers=OPTIMIZERS[::3], schedules=SCHEDULES[:2], pairs=True)
    check_in_cohorts(make, dataset, batch, metric, sizes=[len(batch)])


def test_validation_in_chunks_gives_the_reference_values(monkeypatch) -> None:
    """Whatever the chunk a validation set is cut into, a member gets the reference's metric."""
    monkeypatch.setattr(evaluation, "EVAL_EXAMPLES", 50)
    data, make = setup("mlp", "digits", "loss", hidden=16)
    assert evaluation.chunk_size(1) < len(data.x_val)  # the reference engine chunks too
    batch = configs(epochs=1, optimizers=OPTIMIZERS[6:10], schedules=SCHEDULES[:1])
    check_in_cohorts(make, data, batch, "loss", sizes=[4])


def test_reduce_on_plateau_follows_each_members_own_metric() -> None:
    data, make = setup("mlp", "digits", "loss", hidden=16)
    plateau = SCHEDULES[-1]
    learns = {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}
    stalls = dict(learns, lr=1e-6)
    batch = configs(epochs=4, optimizers=[learns, stalls], schedules=[plateau])
    members = train_cohort(make, data, batch, "loss", keep_parameters=True)
    for config, member in zip(batch, members):
        assert_same(train(make, data, config, "loss", keep_parameters=True), member)
    lrs = [[e.lr for e in m.epochs] for m in members]
    assert lrs[1] == [1e-6, 1e-6, 5e-7, 2.5e-7]  # no progress after the first epoch: halved each epoch
    assert lrs[0][2] == 0.01  # its own loss fell by more than half: not halved yet


@pytest.mark.parametrize("model, options", [("mlp", {}), ("cnn", {"limit": 300})])
def test_the_batched_kernels_a_gpu_runs_agree_closely(model, options) -> None:
    """On a GPU every layer runs batched (not bit for bit); here the same path runs on the CPU."""
    data, make = setup(model, "digits", "loss", **options)
    batch = configs(epochs=2, optimizers=OPTIMIZERS[::2], schedules=SCHEDULES[:2], pairs=True)
    for config, member in zip(batch, train_cohort(make, data, batch, "loss", exact=False)):
        reference = train(make, data, config, "loss")
        assert [e.metric for e in member.epochs] == pytest.approx([e.metric for e in reference.epochs], rel=1e-3)


def test_a_member_does_not_depend_on_its_cohort_mates() -> None:
    data, make = setup("mlp", "digits", "loss")
    batch = configs(epochs=2, pairs=True)
    alone = train_cohort(make, data, [batch[5]], "loss", keep_parameters=True)[0]
    with_others = train_cohort(make, data, batch[3:9], "loss", keep_parameters=True)[2]
    assert_same(alone, with_others)


def test_a_diverging_member_is_dropped_and_the_others_are_untouched() -> None:
    data, make = setup("linreg", "linear", "mse")
    batch = configs(epochs=6, optimizers=OPTIMIZERS[:6], schedules=SCHEDULES[:1])
    batch[2] = dict(batch[2], optimizer={"name": "sgd", "lr": 50.0, "weight_decay": 0.0})
    members = train_cohort(make, data, batch, "mse", keep_parameters=True)
    diverged = members[2]
    assert isinstance(diverged, Diverged) and diverged.reason.startswith("training loss became")
    assert len(diverged.epochs) < 6
    for i, (config, member) in enumerate(zip(batch, members)):
        if i != 2:
            assert_same(train(make, data, config, "mse", keep_parameters=True), member)


def test_pruned_members_leave_and_the_rest_go_on() -> None:
    data, make = setup("mlp", "digits", "accuracy", hidden=16)
    batch = configs(epochs=3, optimizers=OPTIMIZERS[:3] + OPTIMIZERS[15:], schedules=SCHEDULES[:2])
    stop_after_first = {1, 4, 7}
    seen: list[set[int]] = []

    def on_epoch(records):
        seen.append(set(records))
        return stop_after_first if records and min(r.epoch for r in records.values()) == 0 else set()

    members = train_cohort(make, data, batch, "accuracy", on_epoch=on_epoch, keep_parameters=True)
    assert seen[0] == set(range(10)) and seen[1] == set(range(10)) - stop_after_first
    for i, (config, member) in enumerate(zip(batch, members)):
        reference = train(make, data, config, "accuracy", on_epoch=(lambda r: r.epoch < 0) if i in stop_after_first else None, keep_parameters=True)
        assert_same(reference, member)
        assert member.pruned == (i in stop_after_first) and len(member.epochs) == (1 if i in stop_after_first else 3)


def test_members_must_share_batch_size_and_epochs() -> None:
    data, make = setup("mlp", "digits", "accuracy")
    a, b = configs(epochs=1)[:2]
    with pytest.raises(ValueError, match="share batch size, epochs and data seed"):
        Cohort(make, data, [a, dict(b, batch_size=64, epochs=2)])


def test_closure_stepped_optimizers_and_classes_do_not_train_in_cohorts() -> None:
    data, make = setup("mlp", "digits", "accuracy")
    (config,) = configs(epochs=1, optimizers=[{"name": "lbfgs", "lr": 1.0, "max_iter": 2, "history_size": 10, "line_search_fn": None}], schedules=SCHEDULES[:1])
    with pytest.raises(ValueError, match="optimizer lbfgs does not train in cohorts"):
        Cohort(make, data, [config])
    with pytest.raises(ValueError, match="optimizer mine:Lion does not train in cohorts"):
        Cohort(make, data, [dict(config, optimizer={"name": "mine:Lion", "lr": 0.1})])


SIGN_OPTIMIZER = (
    "import torch\n"
    "class Sign(torch.optim.Optimizer):\n"
    "    def __init__(self, params, lr=0.01, betas=(0.9, 0.99)):\n"
    "        super().__init__(params, dict(lr=lr, betas=betas))\n"
    "    @torch.no_grad()\n"
    "    def step(self, closure=None):\n"
    "        for group in self.param_groups:\n"
    "            for p in group['params']:\n"
    "                p.add_(p.grad.sign(), alpha=-group['lr'] * group['betas'][0])\n"
)


def test_launch_engines_agree_trial_by_trial(write_study, tmp_path) -> None:
    """Seeded random sampler: --engine train and --engine cohort give the same params and values;
    closure-stepped optimizers and a class by import path train one at a time in both."""
    (tmp_path / "mine.py").write_text(SIGN_OPTIMIZER)
    optimizers = ["sgd", "momentum", "rmsprop", "adam", "adamw", "nadam", "rprop", "muon", "lbfgs", "newton", "cg", "mine:Sign"]
    text = TINY_STUDY.replace('optimizer = ["sgd", "adam"]', f"optimizer = {optimizers}").replace("batch_size = 64", "").replace("n_trials = 4", "n_trials = 16")
    text += 'batch_size = [32, "full"]\nschedule = ["constant", "step", "cosine", "linear", "one-cycle", "plateau", "cosine-restarts"]\nwarmup_epochs = [0, 1]\n'
    text += '\n[space.optimizers.lbfgs]\nmax_iter = 2\n\n[space.optimizers."mine:Sign"]\nbeta1 = { low = 0.5, high = 0.9 }\n'
    spec = write_study(text)
    values = {}
    for engine in ("train", "cohort"):
        url = f"sqlite:///{tmp_path / engine}.db"
        result = CliRunner().invoke(cli, ["launch", str(spec), "--storage", url, "--engine", engine, "--sampler", "random", "--seed", "7", "--json"])
        assert result.exit_code == 0, result.output
        trials = optuna.load_study(study_name="tiny", storage=url).trials
        values[engine] = [(t.params, t.value, t.intermediate_values) for t in trials]
        for t in trials:
            alone = t.user_attrs["config"]["optimizer"]["name"] in ("lbfgs", "newton", "cg", "mine:Sign")
            assert t.user_attrs["engine"] == ("train" if alone else engine), t.user_attrs
            if alone:
                assert t.user_attrs["cohort_size"] == 1
    assert values["train"] == values["cohort"]
    names = {p["optimizer"] for p, _, _ in values["cohort"]}
    assert {"lbfgs", "newton", "cg", "mine:Sign"} & names and names - {"lbfgs", "newton", "cg", "mine:Sign"}
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
    check_in_cohorts(make, data, batch, "loss", sizes=[len(batch)])  # the model's own forward: bit for bit


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
    (log,) = Path("hpsearch-logs/tiny").glob("*-launch-*.log")
    found = re.search(r"engine (cohort|train): a step takes ([\d.]+) ms per trial in a cohort, ([\d.]+) ms alone", log.read_text())
    assert found, log.read_text()
    chosen, together, alone = found.group(1), float(found.group(2)), float(found.group(3))
    assert chosen == ("cohort" if together < 0.8 * alone else "train")
    assert {t.user_attrs["engine"] for t in optuna.load_study(study_name="tiny", storage=sqlite_url).trials} == {chosen}
