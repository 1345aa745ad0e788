"""The report: per-optimizer tables, importances, and a self-contained HTML page."""

from __future__ import annotations

import re

from click.testing import CliRunner

from hpsearch.cli import cli
from hpsearch.run.compare import rank
from tests.conftest import TINY_STUDY


def test_terminal_and_html_report(write_study, sqlite_url, tmp_path) -> None:
    spec = write_study(TINY_STUDY.replace("n_trials = 4", "n_trials = 10") + "schedule = [\"constant\", \"cosine\"]\n")
    assert CliRunner().invoke(cli, ["launch", str(spec), "--storage", sqlite_url]).exit_code == 0
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", "tiny", "--storage", sqlite_url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "sgd" in result.stdout and "adam" in result.stdout and "importance" in result.stdout
    assert re.search(r"lr\s+│\s+0\.\d+", result.stdout)
    page = out.read_text()
    for title in ("Optimization history", "against the learning rate, per optimizer", "Learning curves of the best", "Parameter importances", "By optimizer"):
        assert title in page
    assert page.count("<script") >= 5 and 'src="http' not in page  # plotly.js inlined: no network
    assert len(page) > 1_000_000


def test_ranking_and_paired_significance() -> None:
    seeds = [1, 2, 3, 4, 5]
    values = {
        "adam": dict(zip(seeds, [0.90, 0.91, 0.92, 0.90, 0.91])),
        "sgd": dict(zip(seeds, [0.80, 0.79, 0.82, 0.81, 0.80])),
        "rmsprop": dict(zip(seeds, [0.905, 0.905, 0.915, 0.905, 0.905])),
    }
    result = rank(values, "maximize", seeds)
    by_name = {r["optimizer"]: r for r in result["ranking"]}
    assert [r["optimizer"] for r in result["ranking"]] == ["adam", "rmsprop", "sgd"]
    assert by_name["adam"]["verdict"] == "best" and by_name["adam"]["mean"] == 0.908
    assert by_name["sgd"]["verdict"] == "significantly worse" and by_name["sgd"]["p_value"] < 1e-4
    assert by_name["rmsprop"]["verdict"] == "not significantly different"
    assert rank(values, "minimize", seeds)["ranking"][0]["optimizer"] == "sgd"
