"""The walls between the packages: import-linter's contracts in pyproject.toml
([tool.importlinter]) hold on the whole tree, so `make test` fails on an import
that crosses one (a service importing another service, servicekit or the gateway
importing a service, pymilvus or an HTTP client outside their one home)."""

from __future__ import annotations

import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from importlinter import cli

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "pyproject.toml"


def _lint(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.lint_imports(config_filename=str(config), no_cache=True, no_logo=True)
    return code, capsys.readouterr().out


def _contracts() -> list[dict[str, object]]:
    contracts: list[dict[str, object]] = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]
    return contracts


def test_the_import_contracts_hold(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    code, report = _lint(CONFIG, capsys)
    assert code == cli.EXIT_STATUS_SUCCESS, report


def test_every_service_is_walled_off_from_the_others() -> None:
    services = {f"services.{path.parent.name}" for path in (REPO / "services").glob("*/__init__.py")}
    (independence,) = [c for c in _contracts() if c["type"] == "independence"]
    assert set(independence["modules"]) == services  # type: ignore[arg-type]


def test_a_broken_wall_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two tiny packages, one importing the other across an independence contract.
    for name, body in {"wall_a": "from wall_b import thing\n", "wall_b": "thing = 1\n"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(body)
    config = tmp_path / "pyproject.toml"
    config.write_text(
        textwrap.dedent(
            """
            [tool.importlinter]
            root_packages = ["wall_a", "wall_b"]

            [[tool.importlinter.contracts]]
            name = "independent"
            type = "independence"
            modules = ["wall_a", "wall_b"]
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        code, report = _lint(config, capsys)
    finally:
        for name in ("wall_a", "wall_b"):
            sys.modules.pop(name, None)
    assert code == cli.EXIT_STATUS_ERROR, report
    assert "wall_a is not allowed to import wall_b" in report, report
