"""One grammar for the ids that cross the services: tenant, customer, conversation
and document ids (and the other ids a client chooses, such as a client message id).

An id is 1-128 characters of ASCII letters, digits and `. _ : @ -` (a customer
id may have up to 200). Why this grammar:
- it is what the gateway, retrieval and the concierge already accepted, so every
  id stored today stays valid ("demo", "fuzz-kb", "acme:eu", "email-<hex>",
  "web-<hex>", "docs.setup-guide"); '@' is added so that a tenant's customer ids
  may be e-mail-like handles;
- nothing in it needs quoting in a URL path, a log line, a SQL or Milvus string
  literal or an HTTP header, and it holds no space, control character or NUL;
- 128 is the width of the id columns (200 for customer ids, as the stores hold them).
An id is not always a safe file name ('.', '..', ':' on some file systems):
`file_name` encodes one for a directory name.
"""

from __future__ import annotations

import re

from servicekit.errors import Violations

ID_CHARACTERS = "A-Za-z0-9._:@-"
MAX_ID_CHARS = 128
MAX_CUSTOMER_ID_CHARS = 200
# For pydantic fields and FastAPI path parameters (anchored, like the checks below).
ID_PATTERN = rf"^[{ID_CHARACTERS}]{{1,{MAX_ID_CHARS}}}$"
CUSTOMER_ID_PATTERN = rf"^[{ID_CHARACTERS}]{{1,{MAX_CUSTOMER_ID_CHARS}}}$"
ID_RULE = "letters, digits, '.', '_', ':', '@' or '-'"

_ID = re.compile(rf"[{ID_CHARACTERS}]+")
# Characters kept as they are in a file name; every other one is %XX-encoded.
_FILE_SAFE = re.compile(r"[A-Za-z0-9_.-]")


def id_problem(value: str, max_chars: int = MAX_ID_CHARS) -> str | None:
    """Why `value` is not an id, or None when it is one."""
    if not value:
        return "required"
    if len(value) > max_chars:
        return f"at most {max_chars} characters"
    if not _ID.fullmatch(value):
        return f"only {ID_RULE}"
    return None


def is_id(value: str, max_chars: int = MAX_ID_CHARS) -> bool:
    return id_problem(value, max_chars) is None


def check_id(violations: Violations, value: str, field_path: str, *, max_chars: int = MAX_ID_CHARS) -> None:
    """Add a field violation when `value` is not an id (gRPC request validation)."""
    problem = id_problem(value, max_chars)
    if problem is not None:
        violations.add(field_path, problem)


def check_customer_id(violations: Violations, value: str, field_path: str) -> None:
    check_id(violations, value, field_path, max_chars=MAX_CUSTOMER_ID_CHARS)


def file_name(value: str) -> str:
    """A file or directory name for an id: characters outside [A-Za-z0-9_.-] and a
    leading '.' become %XX, so "acme:eu" is "acme%3Aeu" and "." or ".." never occur.
    Ids of only those characters (not starting with '.') keep their name, and since
    '%' is no id character two ids never share a name."""
    if not is_id(value, MAX_CUSTOMER_ID_CHARS):
        raise ValueError(f"{value!r} is not an id")
    encoded = "".join(c if _FILE_SAFE.match(c) else f"%{ord(c):02X}" for c in value)
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


def from_file_name(name: str) -> str:
    """The id a file_name was made from."""
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), name)
