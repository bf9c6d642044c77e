"""Static types: mypy, strict, on the packages its [tool.mypy] section in pyproject.toml
names (servicekit, the gateway, and the services whose errors are fixed), so `make test`
fails on a type error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_type_errors() -> None:
    # From the repo root, so mypy reads pyproject.toml's [tool.mypy] (packages, strict, overrides).
    result = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
