"""`make run` also starts the demo company's back office (demoshop) and the actions service: their
ports are checked with the others, demoshop gets a fresh token that only the actions service is
given, and without the τ-bench data the stack says what it skipped instead of failing."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from devstack.stack import Stack, StackConfig, StackError
from tests.conftest import free_port
from tests.demoshop.live import TAU_RETAIL, needs_tau_retail


def _config(tmp_path: Path, **changes: object) -> StackConfig:
    values: dict[str, object] = {
        "data_dir": tmp_path, "demo_kb": None, "gateway_port": free_port(), "llm_port": free_port(),
        "service_ports": tuple(free_port() for _ in range(5)), "shop_data": TAU_RETAIL,
    }
    return StackConfig(**(values | changes))  # type: ignore[arg-type]


def test_actions_and_demoshop_get_free_ports_unless_given(tmp_path: Path) -> None:
    stack = Stack(_config(tmp_path))
    assert stack.config.actions_port and stack.config.demoshop_port
    assert stack.config.address("actions") == f"127.0.0.1:{stack.config.actions_port}"
    ports = stack.ports()
    assert ports[stack.config.actions_port] == "actions"
    assert (ports.get(stack.config.demoshop_port) == "demoshop") == stack.config.has_shop_data
    # Every process learns where the actions service is (the gateway and, later, the concierge call it).
    assert stack._env("gateway")["ACTIONS_ADDR"] == stack.config.address("actions")
    given = Stack(_config(tmp_path, actions_port=50056, demoshop_port=8090)).config
    assert (given.actions_port, given.demoshop_port) == (50056, 8090)


def test_a_taken_actions_port_is_refused_with_its_holder(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(StackError, match=f"port {taken} \\(actions\\) is held by pid"):
            Stack(_config(tmp_path, actions_port=taken)).start()


def test_without_the_data_demoshop_and_the_shop_tenant_are_skipped_with_a_note(tmp_path: Path) -> None:
    stack = Stack(_config(tmp_path, shop_data=tmp_path / "no-such-folder"))
    assert "demoshop" not in stack.ports().values()
    stack._start_demoshop()
    assert stack.processes == {}
    assert any("demoshop and the shop tenant skipped" in note and "no-such-folder" in note for note in stack.notes)
    # The actions service still starts, with no shop token to hand on.
    assert stack._env("actions").get("DEMOSHOP_TOKEN") != stack.demoshop_token


@needs_tau_retail
def test_demoshop_runs_on_a_fresh_token_that_only_the_actions_service_gets(tmp_path: Path) -> None:
    stack = Stack(_config(tmp_path))
    other = Stack(_config(tmp_path / "other"))
    assert stack.demoshop_token != other.demoshop_token and len(stack.demoshop_token) >= 32
    try:
        stack._start_demoshop()
        process = stack.processes["demoshop"]
        url = stack.demoshop_url
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "logs" / "demoshop.log").read_text()
            assert time.monotonic() < deadline, "demoshop did not become healthy"
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert (tmp_path / "demoshop" / "shop.db").exists()
        assert httpx.get(f"{url}/orders/W5442520").status_code == 401
        token = {"authorization": f"Bearer {stack.demoshop_token}"}
        assert httpx.get(f"{url}/orders/W5442520", headers=token).json()["order_id"] == "#W5442520"
        actions = stack._env("actions")
        assert (actions["DEMOSHOP_TOKEN"], actions["SHOP_BACKOFFICE_URL"]) == (stack.demoshop_token, url)
        # Nobody else is given the company's token.
        for name in ("gateway", "concierge", "escalation"):
            assert stack._env(name).get("DEMOSHOP_TOKEN") != stack.demoshop_token
    finally:
        stack.stop()
    assert process.poll() is not None
