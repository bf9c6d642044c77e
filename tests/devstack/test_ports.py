"""`make run` checks its ports first and says which process holds one."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from devstack.processes import port_holders, port_is_free
from devstack.stack import Stack, StackConfig, StackError
from tests.conftest import free_port


def test_a_taken_port_is_refused_with_its_holder(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        assert not port_is_free(taken)
        assert [pid for pid, _ in port_holders(taken)] == [os.getpid()]
        config = StackConfig(
            data_dir=tmp_path, demo_kb=None, gateway_port=free_port(), llm_port=free_port(),
            service_ports=(taken, *(free_port() for _ in range(4))),
        )
        with pytest.raises(StackError, match=f"port {taken} \\(retrieval\\) is held by pid {os.getpid()} ") as raised:
            Stack(config).start()
    assert "Stop it first" in str(raised.value)


def test_free_ports_pass(tmp_path: Path) -> None:
    config = StackConfig(
        data_dir=tmp_path, gateway_port=free_port(), llm_port=free_port(),
        service_ports=tuple(free_port() for _ in range(5)),
    )
    Stack(config).check_ports()
