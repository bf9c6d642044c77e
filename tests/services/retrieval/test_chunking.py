from __future__ import annotations

import itertools

from services.retrieval.chunking import Chunker, answer_units, embed_text, html_to_markdown

LOREM = "Exports run every hour and write one Parquet file per table into the bucket you configured. "


def test_heading_path_follows_the_heading_tree(chunker: Chunker) -> None:
    body = (
        "# Billing guide\n\nHow billing works.\n\n## Invoices\n\nInvoices are monthly.\n\n"
        "### Refunds\n\nRefunds take 5 days.\n\n```\n# not a heading, code\n```\n\n## Taxes\n\nVAT applies."
    )
    chunks = chunker.chunk("Billing guide", body)
    paths = [chunk.heading_path for chunk in chunks]
    assert paths == [
        ("Billing guide",),
        ("Billing guide", "Invoices"),
        ("Billing guide", "Invoices", "Refunds"),
        ("Billing guide", "Taxes"),
    ]
    assert "# not a heading, code" in chunks[2].text
    assert chunks[2].text.startswith("Refunds take 5 days.")
    assert [chunk.index for chunk in chunks] == [0, 1, 2, 3]


def test_embed_text_has_title_and_path_once() -> None:
    text = embed_text("Billing guide", ("Billing guide", "Invoices"), "Invoices are monthly.")
    assert text == "Billing guide\nInvoices\nInvoices are monthly."


def test_long_sections_are_token_bounded_with_overlap(chunker: Chunker) -> None:
    paragraphs = [f"Paragraph {i}. " + LOREM * 5 for i in range(12)]
    chunks = chunker.chunk("Exports", "# Exports\n\n## Schedule\n\n" + "\n\n".join(paragraphs))
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.heading_path == ("Exports", "Schedule")
        assert chunker.count_tokens(chunk.text) <= 256
        # What the model reads, [CLS] and [SEP] included, fits its 256-token window.
        assert chunker.count_tokens(chunk.embed_text) + 2 <= 256
    for previous, following in itertools.pairwise(chunks):
        assert previous.text[-40:].split()[-1] in following.text[:300]
    joined = " ".join(chunk.text for chunk in chunks)
    assert all(f"Paragraph {i}." in joined for i in range(12))


def test_a_word_longer_than_the_budget_is_still_cut(chunker: Chunker) -> None:
    words = " ".join(f"token{i}" for i in range(2000))
    chunks = chunker.chunk("Words", words, "text")
    assert len(chunks) > 5
    assert all(chunker.count_tokens(chunk.text) <= 256 for chunk in chunks)


FAQ = """# Billing FAQ

## Can I get a refund?

Yes, within 30 days of purchase.

### Annual plans

Annual plans are refunded pro rata for the unused months.

## How do I change my card?

Go to Settings > Billing > Payment method.
"""


def test_faq_question_stays_whole_with_its_subsections(chunker: Chunker) -> None:
    chunks = chunker.chunk("Billing FAQ", FAQ, faq=True)
    assert [chunk.heading_path for chunk in chunks] == [
        ("Billing FAQ", "Can I get a refund?"),
        ("Billing FAQ", "How do I change my card?"),
    ]
    assert "Yes, within 30 days" in chunks[0].text and "pro rata" in chunks[0].text
    # The same text as an article is cut at every heading.
    article = chunker.chunk("Billing FAQ", FAQ)
    assert ("Billing FAQ", "Can I get a refund?", "Annual plans") in [chunk.heading_path for chunk in article]


def test_faq_answer_too_long_is_split_under_its_question(chunker: Chunker) -> None:
    body = "## Why is my export late?\n\n" + "\n\n".join(LOREM * 4 for _ in range(10))
    chunks = chunker.chunk("Exports FAQ", body, faq=True)
    assert len(chunks) > 1
    assert all(chunk.heading_path == ("Why is my export late?",) for chunk in chunks)


def test_html_keeps_headings_and_drops_scripts(chunker: Chunker) -> None:
    html = (
        "<html><head><title>T</title><style>p {}</style></head><body><h1>Webhooks</h1>"
        "<p>Send events &amp; alerts.</p><script>var x = 1;</script><p># not a heading</p>"
        "<h2>Retries</h2><ul><li>3 retries</li><li>then disabled</li></ul></body></html>"
    )
    markdown = html_to_markdown(html)
    assert "var x" not in markdown and "p {}" not in markdown
    chunks = chunker.chunk("Webhooks", html, "html")
    assert [chunk.heading_path for chunk in chunks] == [("Webhooks",), ("Webhooks", "Retries")]
    assert "Send events & alerts." in chunks[0].text
    assert "- 3 retries\n- then disabled" in chunks[1].text


def test_plain_text_is_paragraphs_without_headings(chunker: Chunker) -> None:
    chunks = chunker.chunk("Notes", "# not a heading in text\n\nSecond paragraph.", "text")
    assert len(chunks) == 1
    assert chunks[0].heading_path == ()
    assert chunks[0].text.startswith("# not a heading")


def test_document_of_only_headings_still_has_a_chunk(chunker: Chunker) -> None:
    chunks = chunker.chunk("Empty", "# Empty\n\n## Nothing here")
    assert len(chunks) == 1
    assert "Nothing here" in chunks[0].text


def test_answer_units_follow_the_documents_structure() -> None:
    faq = "# Billing FAQ\n\nIntro text that answers nothing in particular.\n\n## Can I get a refund?\n\n" \
        "Annual plans within 14 days.\n\n### Details\n\nProrated by day.\n\n## Short?\n\nYes."
    units = answer_units("Billing FAQ", faq, "markdown", "faq")
    # Each `##` entry, its deeper headings included; no unit for the intro or a too-short answer.
    assert [(u.question, u.answer) for u in units] == [
        ("Can I get a refund?", "Annual plans within 14 days.\n\n### Details\n\nProrated by day.")
    ]
    ticket = "# Login fails (resolved ticket)\n\n## Customer question\n\nWe cannot log in since today.\n\n" \
        "## Investigation notes\n\nClock skew of 6 minutes.\n\n## Final answer\n\nSync your IdP clock with NTP."
    units = answer_units("Login fails (resolved ticket)", ticket, "markdown", "ticket")
    assert [(u.question, u.answer) for u in units] == [("Login fails", "Sync your IdP clock with NTP.")]
    article = "# Enable 2FA\n\n2FA is available on all plans.\n\n## Add a security key\n\n1. Open Security.\n2. Add."
    units = answer_units("Enable 2FA", article, "markdown", "other")
    assert [u.question for u in units] == ["Enable 2FA", "Enable 2FA: Add a security key"]
    assert units[1].heading_path == ("Enable 2FA", "Add a security key")
    body = "Adjust the picture mode from the Settings menu."
    text = answer_units("Picture settings", body, "text", "other")
    assert [(u.question, u.answer) for u in text] == [("Picture settings", body)]
