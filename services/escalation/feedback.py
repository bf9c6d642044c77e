"""The feedback loop's arithmetic: how much an agent changed the AI draft, and
the exports built from agents' work (preference pairs, intent labels).

Edit distance is counted in words (a Levenshtein distance over tokens,
normalised by the longer text): a changed word counts once however long it
is, and the cost stays O(n*m) over words, not characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from aftercare.escalation.v1 import escalation_pb2
from servicekit.pii import mask

_TOKEN = re.compile(r"\w+|[^\w\s]")

# Upper bounds of edit_ratio for each use of the draft; above REWRITTEN_MAX the
# final text has essentially nothing of the draft left.
ACCEPTED_MAX = 0.0
EDITED_MAX = 0.35
REWRITTEN_MAX = 0.85


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def edit_ratio(draft: str, final: str) -> float:
    """Word-level Levenshtein distance / length of the longer text, in [0, 1]."""
    a, b = tokens(draft), tokens(final)
    if not a and not b:
        return 0.0
    if not a or not b:
        return 1.0
    previous = list(range(len(b) + 1))
    for i, word in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, other in enumerate(b, start=1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (word != other),  # substitution
            )
        previous = current
    return previous[-1] / max(len(a), len(b))


def draft_use(draft: str, ratio: float) -> escalation_pb2.DraftUse:
    """What the agent did with the draft, from the edit ratio."""
    if not draft.strip():
        return escalation_pb2.DRAFT_USE_DISCARDED
    if ratio <= ACCEPTED_MAX:
        return escalation_pb2.DRAFT_USE_ACCEPTED
    if ratio <= EDITED_MAX:
        return escalation_pb2.DRAFT_USE_EDITED
    if ratio <= REWRITTEN_MAX:
        return escalation_pb2.DRAFT_USE_REWRITTEN
    return escalation_pb2.DRAFT_USE_DISCARDED


def preference_jsonl(records: Iterable[tuple[str, str, str]]) -> tuple[str, int]:
    """JSON Lines of {"prompt","rejected","chosen"} (personal data masked) from
    (prompt, draft, final) triples; pairs where the agent sent the draft as is
    teach nothing about preference and are left out."""
    lines = []
    for prompt, draft, final in records:
        if not draft.strip() or not final.strip() or tokens(draft) == tokens(final):
            continue
        lines.append(
            json.dumps({"prompt": mask(prompt), "rejected": mask(draft), "chosen": mask(final)}, ensure_ascii=False)
        )
    return "".join(f"{line}\n" for line in lines), len(lines)


def labelled_jsonl(examples: Sequence[tuple[str, str]]) -> str:
    """JSON Lines of {"text","label"}: the input format of triage's train CLI."""
    return "".join(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n" for text, label in examples)


def masked_examples(examples: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Corrections as training examples: text masked, the latest label per text wins."""
    latest: dict[str, str] = {}
    for text, label in examples:
        latest[mask(" ".join(text.split()))] = label
    return [(text, label) for text, label in latest.items() if text]
