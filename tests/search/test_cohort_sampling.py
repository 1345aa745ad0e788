"""A cohort sampled from one read of the study draws exactly the configs that K asks in a row
would: same sampler, same seed, same study, compared with ==."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.config.space import suggest_config
from hpsearch.config.spec import parse_study_file
from hpsearch.db.claims import claim
from hpsearch.db.storage import initialize, open_storage, rdb
from hpsearch.search.cohort_sampling import sample_cohort
from hpsearch.search.samplers import make_sampler
from tests.conftest import TINY_STUDY

K = 12
SPACES = {
    "random": "",
    "tpe": "",
    "qmc": "",
    "cmaes": "",
    "grid": 'lr = [0.1, 0.01, 0.001]\n',
}


def _spec(sampler: str):
    text = TINY_STUDY.replace('sampler = "random"', f'sampler = "{sampler}"')
    if sampler == "grid":
        text = text.replace("lr = { low = 1e-3, high = 0.3, log = true }\n", SPACES["grid"])
    return parse_study_file(text, "tiny.toml").spec


def _study(url: str, spec) -> optuna.Study:
    initialize(url)
    study = optuna.create_study(study_name="tiny", storage=open_storage(url), sampler=make_sampler(spec))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The same finished history in both studies (enough for TPE to leave its random start).
    for i in range(14 if spec.search.sampler != "grid" else 3):
        trial = study.ask()
        config = suggest_config(trial, spec, i)
        study.tell(trial, config["optimizer"]["lr"] * (1 + i % 3))
    return study


@pytest.mark.parametrize("sampler", list(SPACES))
def test_a_cohort_draws_what_k_asks_in_a_row_draw(sampler, tmp_path) -> None:
    spec = _spec(sampler)
    one_by_one = _study(f"sqlite:///{tmp_path / 'a.db'}", spec)
    asked = []
    for _ in range(K if sampler != "grid" else 3):
        trial = one_by_one.ask()
        asked.append((trial.number, suggest_config(trial, spec, 0)))

    cohort = _study(f"sqlite:///{tmp_path / 'b.db'}", spec)
    claimed = claim(rdb(cohort).engine, cohort._study_id, n_trials=100, size=len(asked))
    sampled = sample_cohort(cohort, claimed, lambda trial: suggest_config(trial, spec, 0))
    assert [(trial.number, config) for trial, config in sampled] == asked

    # Stored as Optuna stores them: a fresh reader sees the same parameters and distributions.
    fresh = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'b.db'}")
    reference = {t.number: (t.params, t.distributions, t.system_attrs) for t in one_by_one.get_trials(deepcopy=False)}
    numbers = {number for number, _ in asked}
    for t in fresh.get_trials(deepcopy=False):
        if t.number in numbers:
            assert (t.params, t.distributions, t.system_attrs) == reference[t.number], t.number


def test_attributes_set_while_sampling_are_stored_with_the_cohort(tmp_path) -> None:
    spec = _spec("random")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = _study(url, spec)
    claimed = claim(rdb(study).engine, study._study_id, n_trials=100, size=3)

    def suggest(trial: optuna.Trial) -> dict:
        config = suggest_config(trial, spec, 0)
        trial.set_user_attr("config", config)
        return config

    sampled = sample_cohort(study, claimed, suggest)
    stored = {t.number: t.user_attrs["config"] for t in optuna.load_study(study_name="tiny", storage=url).trials if t.number in {c.number for c in claimed}}
    assert stored == {trial.number: config for trial, config in sampled}
    # The trials read and write the real study afterwards, as asked trials do.
    trial = sampled[0][0]
    trial.report(0.5, 0)
    assert study._storage.get_trial(trial._trial_id).intermediate_values == {0: 0.5}
