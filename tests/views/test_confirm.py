"""A best you can trust: `export --confirm S` re-trains the top configs on fresh seeds, and a
held-out test set is scored only then, never by the search."""

from __future__ import annotations

import json
import statistics

import optuna
import pytest
from click.testing import CliRunner

import hpsearch
from hpsearch.cli import cli
from hpsearch.config.spec import load_study_file
from hpsearch.run.confirm import confirm_seeds
from hpsearch.training.data import load_study_data
from hpsearch.training.models import model_factory
from hpsearch.training.train import evaluate, train
from tests.conftest import TINY_STUDY

# The same training and validation data twice; the test labels of `scrambled` are nonsense.
SPLITS = """
import torch

def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(260, 6, generator=g)
    return x, (x[:, 0] - x[:, 1] > 0).long()

def sane():
    x, y = _data()
    return x[:160], y[:160], x[160:220], y[160:220], x[220:], y[220:]

def scrambled():
    x, y = _data()
    return x[:160], y[:160], x[160:220], y[160:220], x[220:], 1 - y[220:]
"""

STUDY = TINY_STUDY.replace('name = "digits"\nlimit = 300', 'name = "splits:sane"').replace("n_trials = 4", "n_trials = 5")


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def searched(write_study, sqlite_url, tmp_path):
    (tmp_path / "splits.py").write_text(SPLITS)
    spec = write_study(STUDY)
    assert run("launch", spec, "--storage", sqlite_url, "--engine", "train").exit_code == 0
    return spec, sqlite_url


def test_confirm_retrains_the_top_configs_on_fresh_seeds_and_ranks_them_by_their_mean(searched, tmp_path) -> None:
    spec, url = searched
    result = run("export", "tiny", "--storage", url, "--top", "3", "--confirm", "3", "-o", tmp_path / "best.json")
    assert result.exit_code == 0, result.output
    assert "confirming trial" in result.stderr and "validation mean ± std" in result.stderr and "test mean ± std" in result.stderr
    bundle = json.loads((tmp_path / "best.json").read_text())
    study = optuna.load_study(study_name="tiny", storage=url)
    top3 = sorted(study.trials, key=lambda t: t.value, reverse=True)[:3]
    assert sorted(c["trial"] for c in bundle["configs"]) == sorted(t.number for t in top3)
    seeds = confirm_seeds(0, 3)
    assert bundle["confirmation"]["seeds"] == seeds and not set(seeds) & {t.user_attrs["config"]["seed"] for t in study.trials}
    means = [c["confirmed"]["validation"]["mean"] for c in bundle["configs"]]
    assert means == sorted(means, reverse=True)  # ranked by the confirmed mean, not the search's value
    first = bundle["configs"][0]["confirmed"]
    assert first["validation"]["std"] == statistics.stdev(first["validation"]["values"])
    assert first["validation"]["mean"] == statistics.fmean(first["validation"]["values"])
    assert len(first["test"]["values"]) == 3 and first["test"]["seeds"] == seeds

    # each per-seed value is a real training run: redo the first one by hand
    file = load_study_file(spec)
    data = load_study_data(file.spec, with_test=True)
    config = dict(bundle["configs"][0]["config"], seed=seeds[0])
    built = []
    make = model_factory(file.spec.model, data)
    result = train(lambda: built.append(make()) or built[-1], data, config, "accuracy")
    assert result.metric == first["validation"]["values"][0]
    assert evaluate(built[-1], data.test_set(), "accuracy") == first["test"]["values"][0]


def test_the_test_set_never_selects_or_prunes(searched, write_study, tmp_path) -> None:
    _, url = searched
    other = f"sqlite:///{tmp_path / 'scrambled.db'}"
    spec = write_study(STUDY.replace("splits:sane", "splits:scrambled"), name="scrambled.toml")
    assert run("launch", spec, "--storage", other, "--engine", "train").exit_code == 0
    history = {}
    for storage in (url, other):
        history[storage] = [(t.params, t.value, t.intermediate_values) for t in optuna.load_study(study_name="tiny", storage=storage).trials]
    assert history[url] == history[other]  # the search cannot tell the test labels apart
    sane = hpsearch.export("tiny", storage=url, top=1, confirm=2)["configs"][0]["confirmed"]
    scrambled = hpsearch.export("tiny", storage=other, top=1, confirm=2)["configs"][0]["confirmed"]
    assert sane["validation"] == scrambled["validation"]
    assert sane["test"]["mean"] > 0.5 > scrambled["test"]["mean"] and sane["test"]["mean"] + scrambled["test"]["mean"] == pytest.approx(1)


def test_confirm_needs_two_seeds(searched) -> None:
    _, url = searched
    result = run("export", "tiny", "--storage", url, "--confirm", "1")
    assert result.exit_code == 2 and "1 is not in the range x>=2" in result.stderr
