"""The contracts: buf lint, buf breaking against the previous commit, and
generated stubs in sync with protos/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"


def _buf() -> str:
    if BUF.exists():
        return str(BUF)
    found = shutil.which("buf")
    if found is None:
        pytest.fail("buf is not installed: run `make test` (it runs `npm install` for @bufbuild/buf)")
    return found


def test_buf_lint_passes() -> None:
    result = subprocess.run([_buf(), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_breaking_change_against_previous_commit() -> None:
    has_parent = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "HEAD~1:protos"], cwd=ROOT, capture_output=True
    )
    if has_parent.returncode != 0:
        pytest.skip("no previous commit with protos/ to compare against (shallow clone or first commit)")
    result = subprocess.run(
        [_buf(), "breaking", "--against", ".git#ref=HEAD~1"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_stubs_match_protos() -> None:
    result = subprocess.run(
        [sys.executable, "protos/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_has_pyi_stubs() -> None:
    for service in ("retrieval", "triage", "concierge", "escalation", "outreach"):
        assert (ROOT / "gen" / "aftercare" / service / "v1" / f"{service}_pb2.pyi").exists()
