"""The shape of the package: stages import one way, heavy libraries load where they are used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("optuna_dashboard", "distributed", "dask", "plotly", "matplotlib", "scipy")
MAX_MODULE_LINES = 400


def test_the_import_contracts_in_pyproject_hold() -> None:
    # The contracts are in pyproject.toml ([tool.importlinter]); import-linter reads them.
    found = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports; raise SystemExit(lint_imports())"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert found.returncode == 0, found.stdout + found.stderr
    assert "0 broken" in found.stdout


def _modules_loaded_by(code: str) -> list[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _heavy(modules: list[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules if m.split(".")[0] in HEAVY})


@pytest.mark.parametrize(
    "args",
    [["--help"], ["db", "check", "--storage", "sqlite:///nowhere/hpsearch.db"], ["launch", "--help"]],
    ids=lambda a: " ".join(a[:2]),
)
def test_the_command_line_loads_no_heavy_library_it_does_not_use(args: list[str]) -> None:
    code = f"from hpsearch.cli import cli\ntry:\n    cli.main({args!r})\nexcept SystemExit:\n    pass"
    assert _heavy(_modules_loaded_by(code)) == []


def test_the_public_optimizer_module_loads_torch_alone() -> None:
    loaded = _modules_loaded_by("import hpsearch.optim")
    assert "torch" in loaded
    assert _heavy(loaded) == []
    assert not {"optuna", "sqlalchemy", "alembic", "pydantic"} & {m.split(".")[0] for m in loaded}


def test_no_module_is_longer_than_a_reader_can_hold() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / "hpsearch").rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines: {long}"
