from __future__ import annotations

from pathlib import Path

import pytest

from aftercare.retrieval.v1 import retrieval_pb2 as pb
from services.retrieval.loader import load_folder, split_front_matter


def test_front_matter_is_parsed_and_stripped() -> None:
    fields, body = split_front_matter("---\ndoc_id: faq-sso\ntitle: \"SSO FAQ\"\nversion: '4.3'\n---\n# SSO\n")
    assert fields == {"doc_id": "faq-sso", "title": "SSO FAQ", "version": "4.3"}
    assert body == "# SSO\n"
    assert split_front_matter("# No front matter\n") == ({}, "# No front matter\n")


def test_load_folder_reads_markdown_html_and_text(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# Not ingested\n")
    (tmp_path / "faq-sso.md").write_text(
        '---\ndoc_id: sso-faq\ndoc_type: faq\nproduct: beacon\nversion: "4.3"\nurl: https://x.example/sso\n'
        "updated_at: 2026-01-02\n---\n# Single sign-on FAQ\n\n## Is SSO included?\n\nOn Business.\n"
    )
    (tmp_path / "refunds.md").write_text("Intro.\n\n# Refund policy\n\nWithin 30 days.\n")
    (tmp_path / "page.html").write_text("<html><head><title>Webhooks guide</title></head><body>x</body></html>")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("Release notes\n\nFixed things.\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")

    documents = {document.doc_id: document for document in load_folder(tmp_path, "demo")}
    assert set(documents) == {"sso-faq", "refunds", "page", "sub.notes"}
    faq = documents["sso-faq"]
    assert faq.tenant_id == "demo"
    assert faq.title == "Single sign-on FAQ"
    assert faq.doc_type == pb.DOCUMENT_TYPE_FAQ
    assert (faq.product, faq.version, faq.url) == ("beacon", "4.3", "https://x.example/sso")
    assert faq.updated_at.seconds > 0
    assert faq.body.startswith("# Single sign-on FAQ")
    assert documents["refunds"].title == "Refund policy"
    assert documents["refunds"].doc_type == pb.DOCUMENT_TYPE_ARTICLE
    assert documents["page"].format == pb.DOCUMENT_FORMAT_HTML
    assert documents["page"].title == "Webhooks guide"
    assert documents["sub.notes"].format == pb.DOCUMENT_FORMAT_TEXT
    assert documents["sub.notes"].title == "Release notes"


def test_unknown_doc_type_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.md").write_text("---\ndoc_type: blog\n---\n# X\n")
    with pytest.raises(ValueError, match="doc_type"):
        load_folder(tmp_path, "demo")


def test_demo_knowledge_base_loads() -> None:
    folder = Path(__file__).resolve().parents[3] / "kb" / "demo"
    if not folder.is_dir():
        pytest.skip("no demo knowledge base")
    documents = load_folder(folder, "demo")
    assert documents
    assert all(document.title and document.body for document in documents)
