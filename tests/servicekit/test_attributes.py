"""Custom telemetry names are declared once, in servicekit/attributes.py."""

from __future__ import annotations

import re
from pathlib import Path

from servicekit import attributes

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for folder in ("services", "gateway", "servicekit", "devstack") for p in (ROOT / folder).rglob("*.py")]
# A literal name handed straight to a span or an instrument, instead of a declared constant.
LITERAL_NAME = re.compile(
    r"""(set_attribute|create_(?:counter|histogram|up_down_counter|observable_gauge|gauge))\(\s*["']([^"']+)["']"""
)


def test_custom_names_are_namespaced() -> None:
    for value in attributes.DECLARED:
        assert value.startswith(("aftercare.", "rpc.", "gen_ai.", "http.")), value


def test_no_undeclared_aftercare_names_in_code() -> None:
    offenders = []
    for path in SOURCES:
        for match in LITERAL_NAME.finditer(path.read_text()):
            name = match.group(2)
            if name.startswith("aftercare.") and name not in attributes.DECLARED:
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, "declare these in servicekit/attributes.py: " + ", ".join(offenders)
