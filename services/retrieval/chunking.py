"""Heading-aware chunking, bounded by the embedding model's own tokenizer.

A document becomes sections (one per heading, with the path of headings above
it); each section is one chunk when it fits, otherwise it is cut at the best
break (paragraph, line, sentence, word) with a small token overlap. FAQ
documents are first cut at `##` only, so a question and its whole answer stay
one chunk when they fit. HTML becomes the same Markdown-like text (h1-h6 kept
as headings); plain text is paragraphs without headings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal, Protocol, TypedDict

Format = Literal["markdown", "html", "text"]
# Which answer units a document has (see answer_units).
UnitKind = Literal["faq", "ticket", "other"]

# A chunk of pathological text (long runs the tokenizer maps to one [UNK]) is
# also bounded in characters, well below Milvus' VARCHAR limit.
MAX_CHUNK_CHARS = 8000
# Never cut a section into pieces smaller than this many tokens, however long
# the title and headings are (the model then truncates the prefix instead).
MIN_BUDGET = 32

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SENTENCE_END = frozenset(".!?:;")
# Marks the headings the HTML converter emits; NUL never occurs in a valid body.
_HEADING_MARK = "\x00"


class Encoding(TypedDict, total=False):
    """What the chunker reads of a tokenizer's output (a transformers BatchEncoding of one text)."""

    input_ids: list[int]
    # Only with return_offsets_mapping=True: each token's (start, end) in the text.
    offset_mapping: list[tuple[int, int]]


class Tokenizer(Protocol):
    def __call__(self, text: str, **kwargs: object) -> Encoding: ...


@dataclass(frozen=True)
class Chunk:
    index: int
    heading_path: tuple[str, ...]
    text: str
    # What is embedded and keyword-indexed: title, heading path and text.
    embed_text: str


@dataclass(frozen=True)
class Unit:
    """An answer unit: one question the document answers and its whole answer, in the
    company's own words, found from the document's structure."""

    heading_path: tuple[str, ...]
    question: str
    answer: str


@dataclass(frozen=True)
class _Section:
    path: tuple[str, ...]
    body: str


def _sections(text: str, max_level: int, base: tuple[str, ...] = ()) -> list[_Section]:
    """Cut Markdown at headings of level <= max_level (never inside code fences)."""
    sections: list[_Section] = []
    stack: list[tuple[int, str]] = []
    lines: list[str] = []
    fence: str | None = None

    def flush() -> None:
        body = "\n".join(lines).strip("\n")
        if body.strip():
            sections.append(_Section(base + tuple(title for _, title in stack), body))
        lines.clear()

    for line in text.split("\n"):
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
        elif fence is None and (heading := _HEADING.match(line)) and len(heading.group(1)) <= max_level:
            flush()
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading.group(2).strip()))
            continue
        lines.append(line)
    flush()
    return sections


class _HtmlToMarkdown(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "template", "noscript", "svg"})
    _BLOCK = frozenset(
        {
            "p",
            "div",
            "section",
            "article",
            "main",
            "header",
            "footer",
            "aside",
            "nav",
            "ul",
            "ol",
            "dl",
            "dt",
            "dd",
            "table",
            "thead",
            "tbody",
            "tr",
            "blockquote",
            "figure",
            "figcaption",
            "hr",
            "pre",
            "details",
            "summary",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self.parts.append(f"\n\n{_HEADING_MARK}{tag[1]} ")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "br":
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" | ")
        elif tag in self._BLOCK:
            self.parts.append("\n\n")
            if tag == "pre":
                self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif (len(tag) == 2 and tag[0] == "h" and tag[1] in "123456") or tag in self._BLOCK:
            self.parts.append("\n\n")
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre:
            data = re.sub(r"\s+", " ", data)
        self.parts.append(data)

    def markdown(self) -> str:
        lines: list[str] = []
        for raw in "".join(self.parts).split("\n"):
            line = raw.strip()
            if line.startswith(_HEADING_MARK):
                heading = line[2:].strip()
                if heading:
                    lines.append("#" * int(line[1]) + " " + heading)
            else:
                # Text that merely starts with '#' must not become a heading.
                lines.append("\\" + line if line.startswith("#") else line)
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_markdown(html: str) -> str:
    """HTML to Markdown-like text: headings kept as `#` lines, blocks as paragraphs."""
    parser = _HtmlToMarkdown()
    parser.feed(html)
    parser.close()
    return parser.markdown()


def embed_text(title: str, heading_path: tuple[str, ...], text: str) -> str:
    # The H1 usually repeats the title; say it once.
    path = [heading for heading in heading_path if heading != title]
    return "\n".join(part for part in (title, " > ".join(path), text) if part)


class Chunker:
    def __init__(self, tokenizer: Tokenizer, *, max_tokens: int, overlap: int, model_max_tokens: int) -> None:
        self._tokenizer = tokenizer
        # Two special tokens ([CLS], [SEP]) are added around every embedded text.
        self.max_tokens = min(max_tokens, model_max_tokens - 2)
        self.overlap = overlap

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def chunk(self, title: str, body: str, fmt: Format = "markdown", *, faq: bool = False) -> list[Chunk]:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
        if fmt == "html":
            body = html_to_markdown(body)
        if fmt == "text":
            sections = [_Section((), body.strip("\n"))] if body.strip() else []
        elif faq:
            sections = []
            for section in _sections(body, max_level=2):
                if self._fits(title, section):
                    sections.append(section)
                else:  # too long to keep whole: cut at its deeper headings too
                    sections.extend(_sections(section.body, max_level=6, base=section.path))
        else:
            sections = _sections(body, max_level=6)
        if not sections and body.strip():  # nothing but headings
            sections = [_Section((), body.strip())]

        chunks: list[Chunk] = []
        for section in sections:
            for piece in self._split(section.body, self._budget(title, section.path)):
                chunks.append(Chunk(len(chunks), section.path, piece, embed_text(title, section.path, piece)))
        return chunks

    def _budget(self, title: str, path: tuple[str, ...]) -> int:
        return max(MIN_BUDGET, self.max_tokens - self.count_tokens(embed_text(title, path, "")))

    def _fits(self, title: str, section: _Section) -> bool:
        return len(section.body) <= MAX_CHUNK_CHARS and self.count_tokens(section.body) <= self._budget(
            title, section.path
        )

    def _split(self, body: str, budget: int) -> list[str]:
        """Cut a section into token-bounded pieces of its own text, overlapping a little."""
        offsets: list[tuple[int, int]] = self._tokenizer(
            body, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )["offset_mapping"]
        count = len(offsets)
        if count <= budget and len(body) <= MAX_CHUNK_CHARS:
            return [body]
        strength = [_break_strength(body, offsets, i) for i in range(count)]
        overlap = min(self.overlap, budget // 4)
        pieces: list[str] = []
        start = 0
        while start < count:
            limit = min(count, start + budget)
            while limit > start + 1 and offsets[limit - 1][1] - offsets[start][0] > MAX_CHUNK_CHARS:
                limit -= 1
            end = limit
            if limit < count:
                # The strongest break in the second half of the window, the latest among equals.
                best = max(range(start + max(1, (limit - start) // 2), limit + 1), key=lambda i: (strength[i], i))
                if strength[best] > 0:
                    end = best
            pieces.append(body[offsets[start][0] : offsets[end - 1][1]])
            if end >= count:
                break
            start = max(end - overlap, start + 1)
            while start < end and strength[start] == 0:  # begin the overlap on a whole word
                start += 1
        return pieces


def _break_strength(body: str, offsets: list[tuple[int, int]], i: int) -> int:
    """How good a place it is to cut just before token i (0: inside a word)."""
    if i == 0:
        return 4
    gap = body[offsets[i - 1][1] : offsets[i][0]]
    if "\n\n" in gap:
        return 4
    if "\n" in gap:
        return 3
    if not gap:
        return 0
    return 2 if body[offsets[i - 1][1] - 1] in _SENTENCE_END else 1


# Headings of a resolved ticket's section that holds the answer sent to the customer.
_TICKET_ANSWER = re.compile(r"^(final answer|resolution|answer|solution|reply sent)\b", re.IGNORECASE)
_TICKET_SUFFIX = re.compile(r"\s*\((resolved )?ticket\)\s*$", re.IGNORECASE)
# A unit's answer is read in full by the customer: shorter than this is no answer.
MIN_UNIT_ANSWER_CHARS = 20


def answer_units(title: str, body: str, fmt: Format, kind: UnitKind) -> list[Unit]:
    """The document's answer units:
    - an FAQ: each `##` entry (its heading is the question);
    - a resolved ticket: its final answer, for the problem in its title;
    - anything else (how-tos, policies, release notes, plain text): each `##` section,
      for the task its heading names within the title ("Title: Heading"), and the text
      before the first `##` for the title itself.
    Long sections stay whole (bounded in characters only): the customer gets the whole answer."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    if fmt == "html":
        body = html_to_markdown(body)
    sections = [_Section((), body.strip("\n"))] if fmt == "text" else _sections(body, max_level=2)
    units: list[Unit] = []
    for section in sections:
        answer = section.body.strip()[:MAX_CHUNK_CHARS]
        # The H1 usually repeats the title.
        path = tuple(heading for heading in section.path if heading != title)
        if len(answer) < MIN_UNIT_ANSWER_CHARS:
            continue
        if kind == "ticket":
            if path and _TICKET_ANSWER.match(path[-1]):
                units.append(Unit(section.path, _TICKET_SUFFIX.sub("", title), answer))
        elif kind == "faq":
            if path:
                units.append(Unit(section.path, path[-1], answer))
        else:
            units.append(Unit(section.path, f"{title}: {path[-1]}" if path else title, answer))
    return units
