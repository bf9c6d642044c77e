"""One sentence encoder for every triage test: loading it is the slow part."""

from __future__ import annotations

import pytest

from services.triage.encoder import Encoder


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    # Every server in these tests shares it (intent models and the sentiment model).
    return Encoder(torch_threads=1)
