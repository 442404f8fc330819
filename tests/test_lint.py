"""The Python is linted and formatted by ruff, configured in pyproject.toml ([tool.ruff])."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["src", "tests", "benchmarks", "tools"]


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args, *PATHS], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("command", [("check",), ("format", "--check")], ids=["lint", "format"])
def test_ruff_finds_nothing(command):
    result = ruff(*command)
    assert result.returncode == 0, (
        f"ruff {' '.join(command)}: fix with `ruff check --fix` / `ruff format`\n{result.stdout}"
    )


def test_the_linter_would_catch_an_unused_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", str(ROOT / "pyproject.toml"), str(sample)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "F401" in result.stdout
