"""The dashboard: study notes, and the real optuna-dashboard page in a real browser."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna_dashboard import get_note

from hpsearch.cli import cli
from hpsearch.views.dashboard import exposed_warning
from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


def test_each_launch_refreshes_the_study_note(write_study, sqlite_url) -> None:
    spec = write_study()
    assert CliRunner().invoke(cli, ["launch", str(spec), "--storage", sqlite_url]).exit_code == 0
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    note = get_note(study)
    best = max(study.trials, key=lambda t: t.value)
    assert note.startswith("# tiny\n") and "Trials: 4 complete." in note
    assert f"Trial {best.number}: accuracy = {best.value:.6g}" in note
    assert '"name": "' + best.user_attrs["config"]["optimizer"]["name"] + '"' in note
    assert "| lr | 0.001 .. 0.3 (log) | all |" in note
    assert Path(spec).read_text().strip() in note
    assert CliRunner().invoke(cli, ["launch", str(spec), "--storage", sqlite_url, "--n-trials", "6"]).exit_code == 0
    assert "Trials: 6 complete." in get_note(optuna.load_study(study_name="tiny", storage=sqlite_url))


def test_binding_beyond_localhost_warns() -> None:
    assert exposed_warning("127.0.0.1") is None and exposed_warning("localhost") is None
    assert "can be reached by anyone on that network" in exposed_warning("0.0.0.0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_or_skip() -> str:
    if shutil.which(CHROMIUM) is None:
        why = f"{CHROMIUM} is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return CHROMIUM


def test_the_study_page_shows_its_trials_and_note_in_a_browser(write_study, sqlite_url) -> None:
    browser_path = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    assert CliRunner().invoke(cli, ["launch", str(write_study()), "--storage", sqlite_url]).exit_code == 0
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "dashboard", "--storage", sqlite_url, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/meta", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise AssertionError(f"the dashboard did not start: {server.stdout.read() if server.poll() is not None else ''}") from None
                time.sleep(0.3)
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=browser_path,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/dashboard/studies/{study._study_id}/trials", wait_until="networkidle")
            page.get_by_text("Trial 3").first.wait_for(timeout=30_000)
            for number in range(4):
                assert page.get_by_text(f"Trial {number}").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "dashboard-trials.png"), full_page=True)
            page.goto(f"{base}/dashboard/studies/{study._study_id}/note", wait_until="networkidle")
            page.get_by_text("Best config so far").first.wait_for(timeout=30_000)
            assert page.get_by_text("Search space").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "dashboard-note.png"), full_page=True)
            browser.close()
        assert (ARTIFACTS / "dashboard-trials.png").stat().st_size > 10_000
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
