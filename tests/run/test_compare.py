"""hpsearch compare: equal budgets, paired re-runs on fresh seeds, all in ordinary studies."""

from __future__ import annotations

import json

import optuna
import sqlalchemy as sa
from click.testing import CliRunner

from hpsearch.cli import cli
from hpsearch.db import tables
from tests.conftest import TINY_STUDY

STUDY = TINY_STUDY.replace('optimizer = ["sgd", "adam"]', 'optimizer = ["sgd", "momentum", "adam"]') + (
    "momentum = {low = 0.5, high = 0.95}\nbeta1 = {low = 0.8, high = 0.95}\n"
)


def test_compare_tunes_each_optimizer_then_reruns_the_winners_on_shared_seeds(write_study, sqlite_url, tmp_path) -> None:
    out = tmp_path / "compare.html"
    result = CliRunner().invoke(cli, ["compare", str(write_study(STUDY)), "--budget", "3", "--seeds", "3", "--storage", sqlite_url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "Fair comparison of optimizers: 3 tuning trials each, the best re-trained with 3 seeds" in result.stdout
    names = {s.study_name for s in optuna.get_all_study_summaries(sqlite_url)}
    assert names == {"tiny-sgd", "tiny-momentum", "tiny-adam", "tiny-seeds"}
    for name in ("sgd", "momentum", "adam"):
        trials = optuna.load_study(study_name=f"tiny-{name}", storage=sqlite_url).trials
        assert len(trials) == 3 and {t.user_attrs["config"]["optimizer"]["name"] for t in trials} == {name}
    seeds_study = optuna.load_study(study_name="tiny-seeds", storage=sqlite_url)
    assert len(seeds_study.trials) == 9
    seeds_of = {}
    for trial in seeds_study.trials:
        seeds_of.setdefault(trial.user_attrs["compare_optimizer"], []).append(trial.user_attrs["config"]["seed"])
        assert trial.user_attrs["config"]["seed"] == trial.user_attrs["seed"]
    assert len({tuple(sorted(s)) for s in seeds_of.values()}) == 1  # every optimizer saw the same seeds
    comparison = seeds_study.user_attrs["comparison"]
    assert [r["rank"] for r in comparison["ranking"]] == [1, 2, 3] and comparison["budget"] == 3
    assert all(r["runs"] == 3 for r in comparison["ranking"])
    with sa.create_engine(sqlite_url).connect() as conn:
        (row,) = conn.execute(sa.select(tables.comparisons)).all()
    assert json.loads(row.result)["ranking"] == comparison["ranking"]
    assert "Fair comparison" in out.read_text()
    report = CliRunner().invoke(cli, ["report", "tiny-seeds", "--storage", sqlite_url])
    assert "Fair comparison of optimizers" in report.stdout


def test_compare_needs_two_optimizers(write_study) -> None:
    spec = write_study(TINY_STUDY.replace('optimizer = ["sgd", "adam"]', 'optimizer = "adam"'))
    result = CliRunner().invoke(cli, ["compare", str(spec), "--budget", "2"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {spec}: space.optimizer: compare needs at least two optimizers, got ['adam']"


def test_each_optimizers_study_keeps_its_own_keys_and_table(write_study, sqlite_url) -> None:
    text = TINY_STUDY.replace('optimizer = ["sgd", "adam"]', 'optimizer = ["momentum", "adam"]') + (
        "momentum = {low = 0.5, high = 0.95}\nbeta1 = {low = 0.8, high = 0.95}\n"
        "\n[space.optimizers.adam]\nlr = { low = 1e-4, high = 1e-3, log = true }\namsgrad = [false, true]\n"
    )
    result = CliRunner().invoke(cli, ["compare", str(write_study(text)), "--budget", "2", "--seeds", "2", "--storage", sqlite_url])
    assert result.exit_code == 0, result.output
    adam = optuna.load_study(study_name="tiny-adam", storage=sqlite_url).trials
    assert all(set(t.params) == {"adam.lr", "adam.amsgrad", "beta1"} and 1e-4 <= t.params["adam.lr"] <= 1e-3 for t in adam)
    momentum = optuna.load_study(study_name="tiny-momentum", storage=sqlite_url).trials
    assert all(set(t.params) == {"lr", "momentum"} for t in momentum)
    seeds = optuna.load_study(study_name="tiny-seeds", storage=sqlite_url).trials
    assert {t.user_attrs["compare_optimizer"] for t in seeds} == {"momentum", "adam"} and len(seeds) == 4
