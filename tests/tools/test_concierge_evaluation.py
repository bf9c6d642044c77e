"""The evaluation tool finds its data sets wherever it lives in the tree."""

from __future__ import annotations

from tools.concierge_evaluation import dataset


def test_the_demo_data_set_is_the_demo_knowledge_base_and_the_teams_questions() -> None:
    demo = dataset("demo")
    assert len(demo.documents) >= 30 and {d.tenant_id for d in demo.documents} == {"demo"}
    assert len(demo.questions) >= 120
    assert any(not q["answerable"] for q in demo.questions)
