"""kill -9 (and SIGTERM) of a worker at each phase of a trial: asking, reporting, telling.

The fault comes from outside the product: a `sitecustomize` module on the killed process's
PYTHONPATH listens to every statement any SQLAlchemy engine runs and signals its own process
the Nth time one writes the phase's table of Optuna's schema. Matching the table names, not
hpsearch's functions, keeps the faults where they are when the bookkeeping is rewritten.
Training is covered by `test_faults.py` and `test_workers.py`.

After each fault the study reaches its budget exactly, no trial is left RUNNING or WAITING,
and the trial the fault hit ended FAIL and was run again to its end.
"""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import optuna
import pytest

from tests.run.test_workers import start

N_TRIALS = 8
EPOCHS = 3

STUDY = f"""
[study]
name = "phases"
[model]
name = "mlp"
hidden = 16
[data]
name = "digits"
limit = 400
[train]
epochs = {EPOCHS}
batch_size = 16
[search]
n_trials = {N_TRIALS}
sampler = "random"
seed = 3
heartbeat_interval = 1
grace_period = 2
[space]
optimizer = ["sgd", "adam"]
lr = {{ low = 1e-3, high = 0.1, log = true }}
"""

# For each phase: the statements it writes, how many of them one trial writes, and which of a
# trial's gets the signal:
#   asking:    INSERT INTO trial_params, one per parameter (optimizer, lr): the first, so the
#              trial row exists without its parameters;
#   reporting: INSERT INTO trial_intermediate_values, one per epoch: the second epoch's;
#   telling:   the UPDATE trials SET state that ends a trial, then INSERT INTO trial_values, in
#              one transaction: the value, after the state was set.
PHASES = {
    "asking": (r"INSERT INTO trial_params\b", 2, 1),
    "reporting": (r"INSERT INTO trial_intermediate_values\b", EPOCHS, 2),
    "telling": (r"INSERT INTO trial_values\b|UPDATE trials SET state\b.*'(COMPLETE|PRUNED)'", 2, 2),
}


SITECUSTOMIZE = '''
"""Test fault: signal this process the Nth time a statement matches FAULT_PATTERN."""
import json, os, re, signal, sys

import sqlalchemy

_seen = [0]


def _targeted():
    # sys.argv is final only once the program runs, so it is looked at here, not at import.
    return f" {os.environ['FAULT_ARGV']} " in f" {' '.join(sys.argv)} "


def _before(conn, cursor, statement, parameters, context, executemany):
    # One row, or many (executemany; "insertmanyvalues" sends one flat row of them all).
    many = isinstance(parameters, (list, tuple)) and parameters and isinstance(parameters[0], (list, tuple, dict))
    rows = [list(row.values()) if isinstance(row, dict) else list(row) for row in (parameters if many else [parameters or ()])]
    text = " ".join(statement.split()) + " " + repr(rows)
    if not re.match(os.environ["FAULT_PATTERN"], text) or not _targeted():
        return
    _seen[0] += 1
    if _seen[0] != int(os.environ["FAULT_AT"]):
        return
    trial_id = rows[0][-1] if statement.lstrip().upper().startswith("UPDATE") else rows[0][0]
    with open(os.environ["FAULT_LOG"], "a") as log:
        log.write(json.dumps({"pid": os.getpid(), "trial_id": trial_id, "statement": text[:200]}) + "\\n")
    os.kill(os.getpid(), getattr(signal, os.environ["FAULT_SIGNAL"]))


sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", _before)
'''


def fault_env(tmp_path: Path, phase: str, argv: str, trial: int, signum: str = "SIGKILL") -> dict[str, str]:
    """The environment that arms the fault in the processes whose command line holds `argv`
    (e.g. "--index 1": the launcher's second worker), in the `trial`th trial each runs."""
    folder = tmp_path / "fault"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    pattern, per_trial, which = PHASES[phase]
    at = (trial - 1) * per_trial + which
    return {
        "PYTHONPATH": str(folder),
        "FAULT_PATTERN": pattern,
        "FAULT_AT": str(at),
        "FAULT_ARGV": argv,
        "FAULT_SIGNAL": signum,
        "FAULT_LOG": str(tmp_path / "fault.log"),
    }


def faults_sent(tmp_path: Path) -> list[dict]:
    log = tmp_path / "fault.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def trial_of(study: optuna.Study, trial_id: int) -> optuna.trial.FrozenTrial:
    return next(t for t in study.trials if t._trial_id == trial_id)


def assert_study_recovered(url: str, victim_id: int) -> dict[str, int]:
    """Budget exact, nothing left running or queued, the victim failed and its retry finished."""
    study = optuna.load_study(study_name="phases", storage=url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == N_TRIALS, states
    assert "RUNNING" not in states and "WAITING" not in states, states
    victim = trial_of(study, victim_id)
    assert victim.state.name == "FAIL", (victim.number, victim.state, victim.user_attrs)
    failed = {t.number for t in study.trials if t.state.name == "FAIL"}
    rerun = {t.user_attrs.get("retry_of") for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")}
    assert failed <= rerun, f"failed {sorted(failed)}, run again {sorted(rerun - {None})}"
    return {"failed": len(failed), "rerun": len(failed & rerun), "finished": states.count("COMPLETE") + states.count("PRUNED")}


@pytest.mark.parametrize("phase", list(PHASES))
def test_kill_9_of_one_of_two_workers(phase, write_study, sqlite_url, tmp_path) -> None:
    """The other worker fails the dead one's trial after the grace period and runs it again."""
    spec = write_study(STUDY)
    env = fault_env(tmp_path, phase, "--index 1", trial=1)  # the other may run all the rest
    launcher = start("launch", str(spec), "--storage", sqlite_url, "--workers", "2", "--engine", "train", **env)
    try:
        output, _ = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, output
    assert "Traceback" not in output
    [sent] = faults_sent(tmp_path)
    counts = assert_study_recovered(sqlite_url, sent["trial_id"])
    print(f"{phase}: {counts}")


@pytest.mark.parametrize("phase", list(PHASES))
def test_kill_9_of_a_one_worker_launch_then_relaunch(phase, write_study, sqlite_url, tmp_path) -> None:
    """The launch runs its worker in its own process; killed, the next launch recovers."""
    spec = write_study(STUDY)
    env = fault_env(tmp_path, phase, "launch", trial=2)
    killed = start("launch", str(spec), "--storage", sqlite_url, "--engine", "train", **env)
    try:
        output, _ = killed.communicate(timeout=60)
    finally:
        killed.kill()
    assert killed.returncode == -signal.SIGKILL, output
    [sent] = faults_sent(tmp_path)
    study = optuna.load_study(study_name="phases", storage=sqlite_url)
    assert trial_of(study, sent["trial_id"]).state.name == "RUNNING"  # its tell never committed
    again = start("launch", str(spec), "--storage", sqlite_url, "--engine", "train")
    output, _ = again.communicate(timeout=60)
    assert again.returncode == 0, output
    counts = assert_study_recovered(sqlite_url, sent["trial_id"])
    print(f"{phase}: {counts}")


def test_sigterm_while_telling_finishes_that_tell_then_stops(write_study, sqlite_url, tmp_path) -> None:
    """SIGTERM in the middle of a tell: that trial keeps its result, the launch stops (130)."""
    spec = write_study(STUDY)
    env = fault_env(tmp_path, "telling", "launch", trial=2, signum="SIGTERM")
    stopped = start("launch", str(spec), "--storage", sqlite_url, "--engine", "train", **env)
    try:
        output, _ = stopped.communicate(timeout=60)
    finally:
        stopped.kill()
    assert stopped.returncode == 130, output
    assert "Traceback" not in output
    [sent] = faults_sent(tmp_path)
    study = optuna.load_study(study_name="phases", storage=sqlite_url)
    told = trial_of(study, sent["trial_id"])
    assert told.state.name in ("COMPLETE", "PRUNED") and told.value is not None
    states = [t.state.name for t in study.trials]
    assert "RUNNING" not in states, states
    again = start("launch", str(spec), "--storage", sqlite_url, "--engine", "train")
    output, _ = again.communicate(timeout=60)
    assert again.returncode == 0, output
    study = optuna.load_study(study_name="phases", storage=sqlite_url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == N_TRIALS, states
    assert "RUNNING" not in states and "WAITING" not in states, states
    print(f"telling, SIGTERM: {dict((s, states.count(s)) for s in set(states))}")
