"""Read a folder of knowledge-base files (.md, .html, .txt) into Documents.

Markdown may open with a front-matter block between `---` lines holding simple
`key: value` lines (doc_id, title, doc_type, product, version, url,
updated_at); nothing more than that is parsed, so no YAML library is needed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from aftercare.retrieval.v1 import retrieval_pb2 as pb

_FORMATS = {
    ".md": pb.DOCUMENT_FORMAT_MARKDOWN,
    ".markdown": pb.DOCUMENT_FORMAT_MARKDOWN,
    ".html": pb.DOCUMENT_FORMAT_HTML,
    ".htm": pb.DOCUMENT_FORMAT_HTML,
    ".txt": pb.DOCUMENT_FORMAT_TEXT,
}
DOC_TYPES = {
    "article": pb.DOCUMENT_TYPE_ARTICLE,
    "faq": pb.DOCUMENT_TYPE_FAQ,
    "changelog": pb.DOCUMENT_TYPE_CHANGELOG,
    "policy": pb.DOCUMENT_TYPE_POLICY,
    "resolved_ticket": pb.DOCUMENT_TYPE_RESOLVED_TICKET,
}
_H1 = re.compile(r"^ {0,3}#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>|<h1[^>]*>(.*?)</h1>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_NOT_ID = re.compile(r"[^A-Za-z0-9._:-]+")


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """(front-matter fields, body) of a Markdown text; no block gives ({}, text)."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        return {}, text
    fields: dict[str, str] = {}
    for line in lines[1:end]:
        key, sep, value = line.partition(":")
        if not sep or not key.strip() or line[:1].isspace() or line.lstrip().startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        fields[key.strip().lower()] = value
    return fields, "\n".join(lines[end + 1 :]).lstrip("\n")


def _timestamp(value: str) -> Timestamp | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _default_title(body: str, fmt: int, fallback: str) -> str:
    if fmt == pb.DOCUMENT_FORMAT_MARKDOWN and (match := _H1.search(body)):
        return match.group(1).strip()
    if fmt == pb.DOCUMENT_FORMAT_HTML and (match := _HTML_TITLE.search(body)):
        title = " ".join(_TAG.sub(" ", match.group(1) or match.group(2)).split())
        if title:
            return title
    if fmt == pb.DOCUMENT_FORMAT_TEXT:
        first = next((line.strip() for line in body.splitlines() if line.strip()), "")
        if first and len(first) <= 200:
            return first
    return fallback


def load_file(path: Path, tenant_id: str, doc_id: str) -> pb.Document:
    fmt = _FORMATS[path.suffix.lower()]
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    fields, body = split_front_matter(text) if fmt == pb.DOCUMENT_FORMAT_MARKDOWN else ({}, text)
    doc_type = fields.get("doc_type", "article").strip().lower()
    if doc_type not in DOC_TYPES:
        raise ValueError(f"{path}: doc_type {doc_type!r} is not one of {', '.join(DOC_TYPES)}")
    document = pb.Document(
        tenant_id=tenant_id,
        doc_id=fields.get("doc_id") or doc_id,
        title=fields.get("title") or _default_title(body, fmt, path.stem.replace("-", " ").replace("_", " ")),
        body=body,
        format=fmt,
        doc_type=DOC_TYPES[doc_type],
        url=fields.get("url", ""),
        product=fields.get("product", ""),
        version=fields.get("version", ""),
    )
    if (updated := fields.get("updated_at") or fields.get("updated")) and (stamp := _timestamp(updated)):
        document.updated_at.CopyFrom(stamp)
    return document


def load_folder(path: str | Path, tenant_id: str) -> list[pb.Document]:
    """Every .md/.html/.txt file under `path` (README.md files excluded), in path order."""
    root = Path(path)
    documents: list[pb.Document] = []
    seen: dict[str, Path] = {}
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root)
        if (
            not file.is_file()
            or file.suffix.lower() not in _FORMATS
            or file.name.lower() == "readme.md"
            or any(part.startswith(".") for part in relative.parts)
        ):
            continue
        # Nested files get their folders in the id, so equal names in two folders differ.
        default_id = _NOT_ID.sub("-", ".".join((*relative.parent.parts, file.stem)))[:128]
        document = load_file(file, tenant_id, default_id)
        if document.doc_id in seen:
            raise ValueError(f"{file} and {seen[document.doc_id]} have the same doc_id {document.doc_id!r}")
        seen[document.doc_id] = file
        documents.append(document)
    return documents
