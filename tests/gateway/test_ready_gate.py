"""The ready gate: while READY_GATE_FILE exists (the local stack is still ingesting the demo
knowledge base), /readyz is 503 even though every backend serves; once it is gone, 200."""

from __future__ import annotations

from pathlib import Path

from tests.gateway.conftest import Mesh, open_gateway


async def test_readyz_waits_for_the_ready_gate(mesh: Mesh, tmp_path: Path) -> None:
    gate = tmp_path / "warming"
    gate.write_text("the demo knowledge base is still being ingested\n")
    async with open_gateway(mesh.settings(ready_gate_file=gate)) as gateway:
        warming = await gateway.get("/readyz")
        gate.unlink()
        ready = await gateway.get("/readyz")

    assert warming.status_code == 503, warming.text
    problem = warming.json()
    assert problem["reason"] == "NOT_READY"
    assert problem["warming"] == "the demo knowledge base is still being ingested"
    assert "still being ingested" in problem["detail"]
    assert set(problem["backends"].values()) == {"SERVING"}
    assert ready.status_code == 200, ready.text
