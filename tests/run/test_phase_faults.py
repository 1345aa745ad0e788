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
"""Test faults: a process whose command line holds a plan's `argv` sends itself the plan's
signal the `at`th time one of its statements matches the plan's `pattern`; or, for a plan
with `wait_for`, waits before its first statement until that many faults were sent."""
import json, os, re, signal, sys, time

import sqlalchemy

_plan = []  # [plan, statements seen] once this process's plan is known; [None] for none
_PLANS = json.loads(os.environ["FAULT_PLANS"])


def _sent():
    try:
        with open(os.environ["FAULT_LOG"]) as log:
            return len(log.readlines())
    except FileNotFoundError:
        return 0


def _mine():
    # sys.argv is final only once the program runs, so it is read here, not at import.
    line = f" {' '.join(sys.argv)} "
    return next((plan for plan in _PLANS if f" {plan['argv']} " in line), None)


def _before(conn, cursor, statement, parameters, context, executemany):
    if not _plan:
        _plan[:] = [_mine(), 0]
    plan = _plan[0]
    if plan is None:
        return
    if "wait_for" in plan:
        # Held back before its first statement (so it holds no lock) until the others got theirs.
        _plan[0] = None
        deadline = time.time() + 120
        while time.time() < deadline and _sent() < plan["wait_for"]:
            time.sleep(0.1)
        return
    # One row, or many (executemany; "insertmanyvalues" sends one flat row of them all).
    many = isinstance(parameters, (list, tuple)) and parameters and isinstance(parameters[0], (list, tuple, dict))
    rows = [list(row.values()) if isinstance(row, dict) else list(row) for row in (parameters if many else [parameters or ()])]
    text = " ".join(statement.split()) + " " + repr(rows)
    if not re.match(plan["pattern"], text):
        return
    _plan[1] += 1
    if _plan[1] != plan["at"]:
        return
    # The trial: an INSERT's first column; the first whole number an UPDATE is given.
    trial_id = next(v for v in rows[0] if isinstance(v, int)) if text.startswith("UPDATE") else rows[0][0]
    with open(os.environ["FAULT_LOG"], "a") as log:
        log.write(json.dumps({**plan, "pid": os.getpid(), "trial_id": trial_id, "statement": text[:200]}) + "\\n")
    os.kill(os.getpid(), getattr(signal, plan["signal"]))


sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", _before)
'''


def fault(phase: str, argv: str, trial: int, signum: str = "SIGKILL") -> dict:
    """A plan: signal the processes whose command line holds `argv` (e.g. "--index 1": the
    launcher's second worker) at `phase` of the `trial`th trial each runs."""
    pattern, per_trial, which = PHASES[phase]
    return {"phase": phase, "argv": argv, "pattern": pattern, "at": (trial - 1) * per_trial + which, "signal": signum}


def fault_env(tmp_path: Path, *plans: dict) -> dict[str, str]:
    """The environment that arms these plans in a process and all it starts."""
    folder = tmp_path / "fault"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    return {"PYTHONPATH": str(folder), "FAULT_PLANS": json.dumps(plans), "FAULT_LOG": str(tmp_path / "fault.log")}


def faults_sent(tmp_path: Path) -> list[dict]:
    log = tmp_path / "fault.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def trial_of(study: optuna.Study, trial_id: int) -> optuna.trial.FrozenTrial:
    return next(t for t in study.trials if t._trial_id == trial_id)


def assert_study_recovered(url: str, victims: list[int]) -> dict[str, int]:
    """Budget exact, nothing left running or queued, the victims failed and their retries finished."""
    study = optuna.load_study(study_name="phases", storage=url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == N_TRIALS, states
    assert "RUNNING" not in states and "WAITING" not in states, states
    for trial_id in victims:
        victim = trial_of(study, trial_id)
        assert victim.state.name == "FAIL", (victim.number, victim.state, victim.user_attrs)
        assert victim.user_attrs["error"] == "worker stopped sending heartbeats", victim.user_attrs
    failed = {t.number for t in study.trials if t.state.name == "FAIL"}
    rerun = {t.user_attrs.get("retry_of") for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")}
    assert failed <= rerun, f"failed {sorted(failed)}, run again {sorted(rerun - {None})}"
    return {"failed": len(failed), "rerun": len(failed & rerun), "finished": states.count("COMPLETE") + states.count("PRUNED")}


@pytest.mark.parametrize(
    ("storage", "engine"),
    [("sqlite_url", ["cohort", "--cohort", "2"])],
    ids=["sqlite-cohort"],
)
def test_kill_9_of_workers_while_asking_reporting_and_telling(storage, engine, request, write_study, tmp_path) -> None:
    """Three of four workers die, one at each phase of their first trial (of their first
    cohort's first member); the fourth fails their trials after the grace period, runs them
    again and finishes the launch."""
    url = request.getfixturevalue(storage)
    spec = write_study(STUDY)
    plans = [fault(phase, f"--index {i}", trial=1) for i, phase in enumerate(PHASES, start=1)]
    plans.append({"argv": "--index 0", "wait_for": len(PHASES)})  # else it may take every trial first
    launcher = start("launch", str(spec), "--storage", url, "--workers", "4", "--engine", *engine, **fault_env(tmp_path, *plans))
    try:
        output, _ = launcher.communicate(timeout=180)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, output
    assert "Traceback" not in output
    sent = faults_sent(tmp_path)
    assert sorted(s["phase"] for s in sent) == sorted(PHASES), sent
    counts = assert_study_recovered(url, [s["trial_id"] for s in sent])
    print(f"{storage} {engine[0]}, 4 workers, killed while {'/'.join(PHASES)}: {counts}")


def test_kill_9_of_one_worker_launches_at_each_phase_then_relaunch(write_study, sqlite_url, tmp_path) -> None:
    """A one-worker launch runs its worker in its own process. Three launches in a row die,
    one at each phase of their second trial; each next launch fails what the dead one left
    running, and the fourth reaches the budget."""
    spec = write_study(STUDY)
    for phase in PHASES:
        env = fault_env(tmp_path, fault(phase, "launch", trial=2))
        killed = start("launch", str(spec), "--storage", sqlite_url, "--engine", "train", **env)
        try:
            output, _ = killed.communicate(timeout=180)
        finally:
            killed.kill()
        assert killed.returncode == -signal.SIGKILL, output
        sent = faults_sent(tmp_path)[-1]
        assert sent["phase"] == phase, sent
        study = optuna.load_study(study_name="phases", storage=sqlite_url)
        assert trial_of(study, sent["trial_id"]).state.name == "RUNNING"  # nothing of its tell committed
    again = start("launch", str(spec), "--storage", sqlite_url, "--engine", "train")
    output, _ = again.communicate(timeout=180)
    assert again.returncode == 0, output
    counts = assert_study_recovered(sqlite_url, [s["trial_id"] for s in faults_sent(tmp_path)])
    print(f"1-worker launches, killed while {'/'.join(PHASES)}: {counts}")


def test_sigterm_while_telling_finishes_that_tell_then_stops(write_study, sqlite_url, tmp_path) -> None:
    """SIGTERM in the middle of a tell: that trial keeps its result, the launch stops (130)."""
    spec = write_study(STUDY)
    env = fault_env(tmp_path, fault("telling", "launch", trial=2, signum="SIGTERM"))
    stopped = start("launch", str(spec), "--storage", sqlite_url, "--engine", "train", **env)
    try:
        output, _ = stopped.communicate(timeout=180)
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
    output, _ = again.communicate(timeout=180)
    assert again.returncode == 0, output
    study = optuna.load_study(study_name="phases", storage=sqlite_url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == N_TRIALS, states
    assert "RUNNING" not in states and "WAITING" not in states, states
    print(f"1 worker, SIGTERM while telling: {dict((s, states.count(s)) for s in sorted(set(states)))}")
