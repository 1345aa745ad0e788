"""Study files: what validates, and the exact one-line errors for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.config.spec import load_study_file, parse_study_file
from hpsearch.config.values import FloatRange, IntRange
from hpsearch.errors import SpecError
from tests.conftest import ROOT, TINY_STUDY


def error_of(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_study_file(text, "x.toml")
    return str(caught.value)


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_studies_validate(path: Path) -> None:
    study = load_study_file(path)
    assert study.spec.study.name == path.stem
    assert study.sha256 == __import__("hashlib").sha256(path.read_bytes()).hexdigest()


def test_ranges_choices_and_fixed_values() -> None:
    spec = parse_study_file(
        TINY_STUDY.replace("batch_size = 64", "") + 'batch_size = [16, "full"]\nstep_size = {low = 1, high = 3}\neps = 1e-7\n'
        'schedule = ["constant", "step"]\n',
        "x.toml",
    ).spec
    assert spec.space.lr == FloatRange(low=1e-3, high=0.3, log=True)
    assert spec.space.optimizer == ["sgd", "adam"]
    assert spec.space.step_size == IntRange(low=1, high=3)
    assert spec.space.eps == 1e-7
    assert spec.space.batch_size == [16, "full"]
    assert spec.metric == "accuracy" and spec.direction == "maximize"


def test_defaults_and_name_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[model]\nname = "linreg"\n[data]\nname = "linear"\n[space]\noptimizer = "sgd"\nlr = 0.1\n')
    spec = load_study_file(path).spec
    assert spec.study.name == "mine"
    assert (spec.metric, spec.direction) == ("mse", "minimize")
    assert spec.batch_sizes == 128
    assert spec.search.sampler == "tpe" and spec.search.pruner == "none"


def test_range_order_error_names_file_key_rule_and_values() -> None:
    text = TINY_STUDY.replace("low = 1e-3, high = 0.3", "low = 0.1, high = 0.001")
    assert error_of(text) == "x.toml: space.lr: low must be < high, got low=0.1 high=0.001"


def test_misspelt_optimizer_lists_the_valid_ones() -> None:
    text = TINY_STUDY.replace('["sgd", "adam"]', '["sgd", "adamm"]')
    assert error_of(text) == (
        "x.toml: space.optimizer: must be one of sgd, momentum, adagrad, rmsprop, adam, adamw, adadelta, "
        "adamax, nadam, radam, asgd, rprop, adafactor, muon, lbfgs, newton, cg or 'package.module:Class', got 'adamm'"
    )


def test_unknown_key_lists_the_valid_keys() -> None:
    text = TINY_STUDY.replace("epochs = 2", "epochs = 2\nepoch = 3")
    assert error_of(text) == "x.toml: train.epoch: unknown key; valid keys are epochs, batch_size, seed, loss, loss_options, function, options"
    text = TINY_STUDY.replace("low = 1e-3, high = 0.3, log = true", "low = 1e-3, high = 0.3, logg = true")
    assert error_of(text) == "x.toml: space.lr.logg: unknown key; valid keys are low, high, log, step"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("epochs = 2", 'epochs = "2"', "x.toml: train.epochs: input should be a valid integer, got '2'"),
        ("epochs = 2", "epochs = 0", "x.toml: train.epochs: input should be greater than or equal to 1, got 0"),
        ("log = true }", "log = true }\nbeta1 = 1.2", "x.toml: space.beta1: must be in [0, 1), got 1.2"),
        ("log = true }", 'log = true }\nbatch_size = [32, "half"]', 'x.toml: space.batch_size[1]: must be an integer >= 1 or "full", got \'half\''),
        ("low = 1e-3", "low = 0.0", "x.toml: space.lr: a log range needs low > 0, got low=0"),
        ('name = "mlp"', 'name = "mpl"', "x.toml: model.name: unknown model 'mpl'; use one of linreg, softmax, mlp, cnn or 'package.module:factory'"),
        ('name = "digits"', 'name = "mnits"', "x.toml: data.name: unknown dataset 'mnits'; use one of digits, linear, mnist, fashion-mnist, cifar10, synthetic-mnist, synthetic-cifar10 or 'package.module:factory'"),
        ('sampler = "random"', 'sampler = "grid"', "x.toml: search.sampler: grid needs every space key to be a list or a fixed value, got a range for space.lr; list its values instead"),
        ("log = true }", "log = true }\nwarmup_epochs = [0, 2]", "x.toml: space.warmup_epochs: must be < train.epochs (2), got 2"),
        ("log = true }", "log = true }\nmomentum = 0.9", "x.toml: space.momentum: applies only to momentum, muon, none of which is in space.optimizer or space.schedule; remove the key or add one of them"),
        ("log = true }", "log = true }\ngamma = 0.5", "x.toml: space.gamma: applies only to step, exponential, none of which is in space.optimizer or space.schedule; remove the key or add one of them"),
        ('name = "tiny"', 'name = "tiny"\nmetric = "mse"', "x.toml: study.metric: mse needs a regression problem, but data 'digits' has class labels, got metric='mse'; use 'accuracy' or 'loss'"),
        ('name = "tiny"', 'name = "tiny"\ndirection = "minimize"', "x.toml: study.direction: accuracy is maximized, got direction='minimize'; remove the key or change study.metric"),
        ("batch_size = 64", "batch_size = 64\n[space2]", "x.toml: space2: unknown key; valid keys are study, model, data, train, search, space"),
        ("n_trials = 4", "n_trials = 4\nheartbeat_interval = 5\ngrace_period = 5", "x.toml: search: grace_period must be > heartbeat_interval (5), got 5"),
        ("batch_size = 64", "batch_size = 0", 'x.toml: train.batch_size: must be an integer >= 1 or "full", got 0'),
        ("batch_size = 64", "batch_size = -5", 'x.toml: train.batch_size: must be an integer >= 1 or "full", got -5'),
        ("lr = { low = 1e-3, high = 0.3, log = true }", "lr = inf", "x.toml: space.lr: input should be a finite number, got inf"),
        ("lr = { low = 1e-3, high = 0.3, log = true }", "lr = nan", "x.toml: space.lr: input should be a finite number, got nan"),
        ("lr = { low = 1e-3, high = 0.3, log = true }", "lr = -0.1", "x.toml: space.lr: must be > 0, got -0.1"),
        ("lr = { low = 1e-3, high = 0.3, log = true }", "lr = [0.1, inf]", "x.toml: space.lr[1]: input should be a finite number, got inf"),
        ("high = 0.3", "high = inf", "x.toml: space.lr.high: input should be a finite number, got inf"),
        ("log = true }", "log = true }\nweight_decay = -inf", "x.toml: space.weight_decay: input should be a finite number, got -inf"),
        ("n_trials = 4", "n_trials = 4\ntimeout = inf", "x.toml: search.timeout: input should be a finite number, got inf"),
    ],
)
def test_bad_values_give_one_clear_line(old: str, new: str, message: str) -> None:
    text = TINY_STUDY.replace(old, new)
    assert error_of(text) == message
    assert "\n" not in message


def test_conflicting_batch_size_locations() -> None:
    text = TINY_STUDY + "batch_size = [16, 32]\n"
    assert error_of(text) == "x.toml: space.batch_size: set the batch size in [train] or in [space], not both"


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    assert error_of("[study\n").startswith("x.toml: not valid TOML: ")
    with pytest.raises(SpecError, match=r"no such study file; check the path"):
        load_study_file(tmp_path / "nope.toml")


def test_overrides_are_validated_again() -> None:
    spec = parse_study_file(TINY_STUDY, "x.toml").spec
    assert spec.with_overrides(n_trials=9, sampler="tpe").search.n_trials == 9
    assert spec.with_overrides(n_trials=None) is spec
    with pytest.raises(SpecError, match="command line: search.sampler: input should be"):
        spec.with_overrides(sampler="nope")


ADAM_TABLE = "\n[space.optimizers.adam]\nlr = { low = 1e-5, high = 1e-2, log = true }\namsgrad = [false, true]\n"


def test_an_optimizer_table_holds_that_optimizers_own_ranges() -> None:
    spec = parse_study_file(TINY_STUDY + ADAM_TABLE, "x.toml").spec
    assert spec.space.optimizers == {"adam": {"lr": FloatRange(low=1e-5, high=1e-2, log=True), "amsgrad": [False, True]}}
    assert spec.space.lr == FloatRange(low=1e-3, high=0.3, log=True)  # still every other optimizer's
    again = spec.with_overrides(n_trials=7)
    assert again.space.optimizers == spec.space.optimizers


def test_lr_may_live_in_every_optimizers_table_instead() -> None:
    text = TINY_STUDY.replace("lr = { low = 1e-3, high = 0.3, log = true }\n", "") + ADAM_TABLE
    assert error_of(text) == (
        "x.toml: space.lr: required key is missing; set it here or in the table of each optimizer (none for sgd)"
    )
    text += "\n[space.optimizers.sgd]\nlr = 0.1\n"
    assert parse_study_file(text, "x.toml").spec.space.lr is None


@pytest.mark.parametrize(
    "table, message",
    [
        ("[space.optimizers.adam]\nrho = 0.9\n", "x.toml: space.optimizers.adam.rho: unknown key; adam takes lr, beta1, beta2, eps, weight_decay, amsgrad"),
        ("[space.optimizers.adam]\nbeta1 = 1.5\n", "x.toml: space.optimizers.adam.beta1: must be in [0, 1), got 1.5"),
        ("[space.optimizers.adam]\nlr = { low = 1, high = 0.1 }\n", "x.toml: space.optimizers.adam.lr: low must be < high, got low=1 high=0.1"),
        ("[space.optimizers.adagrad]\nlr = 0.1\n", "x.toml: space.optimizers.adagrad: adagrad is not in space.optimizer; add it there or remove the table"),
        ('[space.optimizers."a.b:C"]\nlr = 0.1\n', 'x.toml: space.optimizers."a.b:C": a.b:C is not in space.optimizer; add it there or remove the table'),
        ("[space.optimizers.lion]\nlr = 0.1\n", "x.toml: space.optimizers.lion: unknown optimizer 'lion'; use one of sgd, momentum, adagrad, rmsprop, adam, adamw, adadelta, adamax, nadam, radam, asgd, rprop, adafactor, muon, lbfgs, newton, cg or 'package.module:Class'"),
        ('[space.optimizers."a.b:C"]\nparams = 1\n', 'x.toml: space.optimizers."a.b:C".params: must name a keyword argument of the class, got \'params\''),
        ('[space.optimizers."a.b:C"]\nbeta = { low = 0.9, high = 0.1 }\n', 'x.toml: space.optimizers."a.b:C".beta: low must be < high, got low=0.9 high=0.1'),
        ('[space.optimizers."a.b:C"]\nbeta = [[1, 2]]\n', 'x.toml: space.optimizers."a.b:C".beta: must be a number, flag or word (or a range or list of them), got [1, 2]'),
        ("[space.optimizers.rmsprop]\nmomentum = 1.0\n", "x.toml: space.optimizers.rmsprop.momentum: must be in [0, 1), got 1"),
        ('[space.optimizers."a.b:C"]\nbeta = inf\n', 'x.toml: space.optimizers."a.b:C".beta: input should be a finite number, got inf'),
        ('[space.optimizers."a.b:C"]\nbeta = { low = 0.1, high = nan }\n', 'x.toml: space.optimizers."a.b:C".beta.high: input should be a finite number, got nan'),
    ],
)
def test_table_errors_name_the_table_key_rule_and_value(table: str, message: str) -> None:
    text = TINY_STUDY.replace('optimizer = ["sgd", "adam"]', 'optimizer = ["sgd", "adam", "rmsprop", "a.b:C"]')
    if "adagrad" in table or '"a.b:C"]\nlr' in table:
        text = TINY_STUDY
    assert error_of(text + "\n" + table) == message


def test_new_optimizers_and_schedules_validate_their_keys() -> None:
    base = TINY_STUDY.replace('optimizer = ["sgd", "adam"]', 'optimizer = ["adadelta", "rprop", "lbfgs", "cg"]')
    ok = base + 'rho = { low = 0.8, high = 0.95 }\neta_plus = 1.3\nline_search = ["strong_wolfe", "none"]\nmethod = "fletcher-reeves"\n'
    ok += 'schedule = ["one-cycle", "plateau", "cosine-restarts"]\npct_start = 0.25\npatience = [1, 2]\nT_0 = 2\n'
    spec = parse_study_file(ok, "x.toml").spec
    assert spec.space.method == "fletcher-reeves" and spec.space.patience == [1, 2]
    assert error_of(base + "eta_plus = 0.9\n") == "x.toml: space.eta_plus: must be > 1, got 0.9"
    assert error_of(base + 'line_search = "backtracking"\n') == "x.toml: space.line_search: must be one of 'strong_wolfe', 'none', got 'backtracking'"
    assert error_of(base + "amsgrad = true\n") == (
        "x.toml: space.amsgrad: applies only to adam, adamw, none of which is in space.optimizer or space.schedule; remove the key or add one of them"
    )


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("epochs = 2", 'epochs = 2\nloss = "hinge"', "x.toml: train.loss: unknown loss 'hinge'; use one of cross-entropy, nll, mse, huber, smooth-l1 or 'package.module:factory'"),
        ("epochs = 2", 'epochs = 2\nloss = "mse"', "x.toml: train.loss: mse is a regression loss, but data digits has class labels; use cross-entropy or nll"),
        ('name = "tiny"', 'name = "tiny"\nmetric = "mse"\n[x]', "x.toml: x: unknown key; valid keys are study, model, data, train, search, space"),
        ('name = "digits"', 'name = "my:data"', None),
        ("epochs = 2", 'epochs = 2\nloss = "huber"\nloss_options = { beta = 1.0 }', "x.toml: train.loss_options: huber takes delta, got beta"),
        ("epochs = 2", "epochs = 2\nloss_options = { delta = 1.0 }", "x.toml: train.loss_options: set train.loss too; the options belong to the loss it names"),
        ("epochs = 2", "epochs = 2\noptions = { width = 3 }", "x.toml: train.options: keyword arguments for train.function, which is not set"),
        ("epochs = 2", 'epochs = 2\nfunction = "my.loop:run"', "x.toml: model: train.function builds its own model; remove [model] (pass settings in train.options)"),
        ("epochs = 2", 'epochs = 2\nfunction = "run"', "x.toml: train.function: expected 'package.module:function', got 'run'"),
        ('[model]\nname = "mlp"\nhidden = 16', "", "x.toml: model: required section is missing (or set train.function to train with your own loop)"),
        ("limit = 300", "limit = 300\nvalidation_fraction = 0.6\ntest_fraction = 0.4", "x.toml: data.test_fraction: validation_fraction + test_fraction must be < 1 to leave training examples, got 0.6 + 0.4"),
    ],
)
def test_the_train_and_data_rules(old: str, new: str, message: str | None) -> None:
    text = TINY_STUDY.replace(old, new)
    if message is None:  # a factory's task is known only once it returns: checked when data loads
        assert parse_study_file(text.replace("epochs = 2", 'epochs = 2\nloss = "huber"'), "x.toml").spec.train.loss == "huber"
        return
    assert error_of(text) == message


def test_a_study_with_its_own_loop_names_its_metric_and_nothing_it_does_itself() -> None:
    own = '[study]\nname = "own"\n[train]\nfunction = "my.loop:run"\n[space]\noptimizer = "adam"\nlr = 0.01\n'
    assert error_of(own) == "x.toml: study.metric: say what train.function reports and returns: accuracy, mse or loss"
    spec = parse_study_file(own.replace('name = "own"', 'name = "own"\nmetric = "loss"'), "x.toml").spec
    assert spec.direction == "minimize" and spec.model is None and spec.trains == "train.function my.loop:run"
    with_data = own.replace('name = "own"', 'name = "own"\nmetric = "loss"') + '[data]\nname = "digits"\n'
    assert error_of(with_data) == "x.toml: data: train.function loads its own data; remove [data] (pass settings in train.options)"
    with_loss = own.replace('name = "own"', 'name = "own"\nmetric = "loss"').replace('run"', 'run"\nloss = "mse"')
    assert error_of(with_loss) == "x.toml: train.loss: train.function computes its own loss; remove train.loss"
