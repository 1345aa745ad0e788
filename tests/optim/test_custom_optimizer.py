"""Any optimizer class by import path: searched, trained one trial at a time, exported, rebuilt."""

from __future__ import annotations

import json

import optuna
import torch
from click.testing import CliRunner

from hpsearch import build_optimizer, load_config
from hpsearch.cli import cli
from tests.conftest import TINY_STUDY

LION = '''
import torch


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al., 2023): the sign of an interpolated momentum."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avg = state["exp_avg"]
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(exp_avg.mul(beta1).add(p.grad, alpha=1 - beta1).sign(), alpha=-group["lr"])
                exp_avg.mul_(beta2).add_(p.grad, alpha=1 - beta2)
'''

STUDY = TINY_STUDY.replace('optimizer = ["sgd", "adam"]', 'optimizer = ["adam", "mypkg.optim:Lion"]').replace("n_trials = 4", "n_trials = 8").replace("seed = 1", "seed = 3") + (
    '\n[space.optimizers."mypkg.optim:Lion"]\nlr = { low = 1e-4, high = 1e-2, log = true }\n'
    "beta1 = { low = 0.85, high = 0.95 }\nbeta2 = 0.99\nweight_decay = [0.0, 0.01]\n"
)


def write_package(tmp_path) -> None:
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "optim.py").write_text(LION)


def test_a_class_by_import_path_is_searched_exported_and_rebuilt(write_study, sqlite_url, tmp_path) -> None:
    write_package(tmp_path)
    spec = write_study(STUDY)
    result = CliRunner().invoke(cli, ["launch", str(spec), "--storage", sqlite_url, "--engine", "cohort", "--json"])
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).trials
    lions = [t for t in trials if t.params["optimizer"] == "mypkg.optim:Lion"]
    assert lions and len(lions) < len(trials)
    for t in lions:
        optimizer = t.user_attrs["config"]["optimizer"]
        assert set(optimizer) == {"name", "lr", "betas", "weight_decay"} and optimizer["betas"][1] == 0.99
        assert 1e-4 <= t.params["mypkg.optim:Lion.lr"] <= 1e-2 and "lr" not in t.params
        assert (t.user_attrs["engine"], t.user_attrs["cohort_size"]) == ("train", 1)  # one at a time
    assert {t.user_attrs["engine"] for t in trials if t not in lions} == {"cohort"}

    bundle = tmp_path / "best.json"
    exported = CliRunner().invoke(cli, ["export", "tiny", "--storage", sqlite_url, "--top", "8", "-o", str(bundle)])
    assert exported.exit_code == 0, exported.output
    ranks = [i for i, c in enumerate(json.loads(bundle.read_text())["configs"]) if c["config"]["optimizer"]["name"] == "mypkg.optim:Lion"]
    assert ranks
    config = load_config(bundle, rank=ranks[0])
    model = torch.nn.Linear(3, 2)
    optimizer, scheduler = build_optimizer(model.parameters(), config)
    assert type(optimizer).__name__ == "Lion" and type(optimizer).__module__ == "mypkg.optim"
    assert optimizer.defaults["betas"] == tuple(config["optimizer"]["betas"]) and optimizer.defaults["lr"] == config["optimizer"]["lr"]


def test_a_class_that_does_not_take_a_key_is_refused_before_anything_is_written(write_study, sqlite_url, tmp_path) -> None:
    write_package(tmp_path)
    spec = write_study(STUDY.replace("beta2 = 0.99", "beta2 = 0.99\nmomentum = 0.9"))
    result = CliRunner().invoke(cli, ["launch", str(spec), "--storage", sqlite_url])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {spec}: space.optimizer 'mypkg.optim:Lion': mypkg.optim:Lion takes no argument 'momentum'; "
        "it takes lr, betas, weight_decay"
    )
    assert optuna.get_all_study_summaries(sqlite_url) == []  # the study name is still free

    missing = write_study(STUDY.replace("mypkg.optim:Lion", "nopkg.optim:Lion"), name="missing.toml")
    result = CliRunner().invoke(cli, ["launch", str(missing), "--storage", sqlite_url])
    assert result.exit_code == 1 and "cannot import module 'nopkg.optim'" in result.stderr and "Traceback" not in result.output
