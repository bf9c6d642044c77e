"""Page tokens of ListHandoffs and ListJudgements: where the previous page ended (a keyset
cursor), tied to the tenant and the query's filters so that a token is only valid for the
same query."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json

from servicekit.errors import InvalidArgument
from services.escalation.judgements import JudgementCursor
from services.escalation.store import PageCursor


def query_fingerprint(tenant_id: str, queue: str, states: tuple[int, ...], tier: int = 0) -> str:
    """Ties a page token to the query it came from (a token is only valid for the same filters)."""
    raw = json.dumps([tenant_id, queue, list(states)] + ([tier] if tier else []))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode_page_token(cursor: PageCursor, fingerprint: str) -> str:
    payload = {
        "p": cursor.priority,
        "c": cursor.created_at.isoformat(),
        "i": cursor.handoff_id,
        "q": fingerprint,
    }
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_page_token(token: str, fingerprint: str) -> PageCursor:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        if payload["q"] != fingerprint:
            raise ValueError("token from another query")
        created_at = dt.datetime.fromisoformat(payload["c"])
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        return PageCursor(priority=int(payload["p"]), created_at=created_at, handoff_id=str(payload["i"]))
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise InvalidArgument([("page_token", "invalid, or from a request with other filters")]) from error


def judgements_fingerprint(tenant_id: str, since: dt.datetime | None) -> str:
    """Ties a ListJudgements token to its tenant and `since`."""
    raw = json.dumps(["judgements", tenant_id, since.isoformat() if since else ""])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode_judgements_token(cursor: JudgementCursor, fingerprint: str) -> str:
    payload = {"j": cursor.judged_at.isoformat(), "i": cursor.judgement_id, "q": fingerprint}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_judgements_token(token: str, fingerprint: str) -> JudgementCursor:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        if payload["q"] != fingerprint:
            raise ValueError("token from another query")
        judged_at = dt.datetime.fromisoformat(payload["j"])
        if judged_at.tzinfo is None:
            raise ValueError("naive timestamp")
        return JudgementCursor(judged_at=judged_at, judgement_id=str(payload["i"]))
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise InvalidArgument([("page_token", "invalid, or from a request with another tenant or since")]) from error
