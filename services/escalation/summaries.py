"""Conversation summaries for the context package: an LLM summary checked
against the transcript, and the extractive summary used when the LLM is down
or says something the transcript does not.

The prompt is a plain completion prompt ending in a cue ("... what the agent
did: The customer"), stopped at the newline: it was written for a small *base*
model, which continues text well and follows instructions badly, and the
instruction-tuned model embedded since continues it as well. Worked
examples were tried first and dropped: measured on TweetSumm, Gemma 3 270M
copied the example's content ("charged twice", "cracked screen") into most
summaries instead of reading the conversation; the cue alone makes it state
the customer's issue in the transcript's own words. One call gives both
parts: its first sentence is the summary, the rest the detail.

Tone is the sentiment model's, not the prompt's: the question asks what the
customer "is complaining about" only when the package's sentiment label is
negative ("is asking about" otherwise), and a generated summary that calls a
neutral or positive customer complaining, angry or frustrated is rewritten
("complains about" -> "asks about") or, when it cannot be, refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from aftercare.type.v1 import conversation_pb2
from servicekit.pii import mask
from servicekit.text import content_words as text_content_words
from servicekit.text import split_sentences, stop_words, strip_suffix

SUMMARY_PROMPT_VERSION = "handoff-summary-v3-tone"
# The draft reply's prompt (services/escalation/context.py: draft_prompt).
DRAFT_PROMPT_VERSION = "handoff-draft-v2"
# The transcript part of the prompt stays well inside a 2048-token context.
MAX_TRANSCRIPT_CHARS = 1600
MAX_TURN_CHARS = 400
MAX_SUMMARY_CHARS = 300
MAX_DETAIL_CHARS = 600
# Share of a summary's content words that must occur in the transcript.
MIN_GROUNDED_SHARE = 0.8
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

SPEAKERS = {
    conversation_pb2.ROLE_CUSTOMER: "Customer",
    conversation_pb2.ROLE_ASSISTANT: "AI",
    conversation_pb2.ROLE_AGENT: "Agent",
}

_INSTRUCTION = "A customer support conversation:\n\n"
CUE = "The customer"
_QUESTION = "\n\nIn one sentence, what the customer {asks} and what the agent did: " + CUE
# How the question names the customer's request, by the sentiment label.
_ASKS = {"negative": "is complaining about"}
_NEUTRAL_ASKS = "is asking about"
# A complaint's wording, and what it becomes when the sentiment model did not find one.
_COMPLAINT_WORDING = (
    (re.compile(r"\bis complaining (about|that|of)\b", re.IGNORECASE), r"is asking \1"),
    (re.compile(r"\bcomplains (about|that|of)\b", re.IGNORECASE), r"asks \1"),
    (re.compile(r"\bcomplained (about|that|of)\b", re.IGNORECASE), r"asked \1"),
)
_TONE_WORDS = frozenset(
    "complain complains complained complaining complaint angry angrily frustrated frustration upset furious "
    "annoyed irritated unhappy disappointed irate rude outraged".split()
)

_HANDLE = re.compile(r"(?<!\w)@\w+")
_URL = re.compile(r"https?://\S+")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
# The list the summaries' grounding check (MIN_GROUNDED_SHARE) and the extractive
# summary were measured with: most pronouns, question words, "have"/"had" go as well as the
# commonest words, but many of the base list's (prepositions such as "after",
# "before", "off", "through"; "only", "same", "other"...) stay content words, and
# the spoken fillers of a conversation ("also", "still", "get", "got", "done") go.
_STOPWORDS = stop_words(
    keep="above after against ain am aren because before below between both couldn d didn doesn doing don during "
    "few further hadn hasn haven having hers herself him himself isn itself ll m ma mightn mustn myself needn nor "
    "o off once only other ours ourselves own re s same shan shouldn such t theirs themselves through until ve "
    "wasn weren while whom won wouldn y yours yourself yourselves",
    add="also could done get got per still would yes",
)
# Words a summary may use that are about the conversation, not in it.
_FRAMING = frozenset(
    "customer customers agent agents ai assistant user wants want wanted asks asked ask asking says said "
    "say tells told reports reported complains complained complaining mentions mentioned requests requested "
    "request inquires inquired wonders issue issues problem problems help helped support team suggests suggested "
    "suggest offers offered recommends recommended promises promised confirms confirmed explains explained "
    "informs informed apologizes apologized responds responded replies replied provides provided "
    "details detail information info conversation contact contacted regarding related further fact able "
    "thing things".split()
)


def _stem(word: str) -> str:
    """Just enough stemming that a summary's "connection", "getting", "Spotify's" meet the
    transcript's "connect", "get", "Spotify" (plural, then one ending, then a doubled consonant)."""
    word = word.removesuffix("'s").rstrip("'")
    word = strip_suffix(strip_suffix(word, ("es", "s")), ("ing", "ion", "ed", "ly"))
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeioulsz":
        word = word[:-1]
    return word


def content_words(text: str) -> set[str]:
    return text_content_words(text, stop=_STOPWORDS, word=_WORD, stem=_stem)


def clean(text: str) -> str:
    """A turn as the prompt and the agent see it: one line, no handles or links, personal data masked."""
    text = _URL.sub("[link]", _HANDLE.sub("", text))
    return mask(_SPACES.sub(" ", text).strip())


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut at a word boundary to at most `limit` characters."""
    text = _SPACES.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    room = limit - 1
    cut = text[:room]
    # Cut at the last space, unless that throws away most of the text (one very long word).
    space = cut.rfind(" ")
    if space >= room // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


@dataclass(frozen=True)
class Turn:
    speaker: str
    text: str


def turns(messages: Sequence[conversation_pb2.Message]) -> list[Turn]:
    result = []
    for message in messages:
        text = clean(message.text)
        if text:
            result.append(Turn(SPEAKERS.get(message.role, "Customer"), text))
    return result


def open_question(conversation_turns: Sequence[Turn]) -> list[Turn]:
    """The turns since the AI last answered: what the handoff is about. An answer closes what
    came before it (a customer who got 2FA answered, then asked about a failing export, is
    handed over for the export); a question back to the customer, or a short holding line
    ("Let me check that for you."), does not."""
    for index in range(len(conversation_turns) - 1, -1, -1):
        turn = conversation_turns[index]
        later = conversation_turns[index + 1 :]
        if turn.speaker == "AI" and _answers(turn.text) and any(t.speaker == "Customer" for t in later):
            return list(later)
    return list(conversation_turns)


# An AI turn this long that asks nothing back is an answer (the concierge's answers are a
# knowledge base entry's own words; its clarifications and holding lines are one short line).
_ANSWER_MIN_CHARS = 120


def _answers(text: str) -> bool:
    return len(text) >= _ANSWER_MIN_CHARS and not text.rstrip().endswith("?")


def transcript(conversation_turns: Sequence[Turn], limit: int = MAX_TRANSCRIPT_CHARS) -> str:
    """The turns as prompt lines; a long conversation keeps its start and its end."""
    lines = [f"{turn.speaker}: {shorten(turn.text, MAX_TURN_CHARS)}" for turn in conversation_turns]
    if sum(len(line) + 1 for line in lines) <= limit:
        return "\n".join(lines)
    head: list[str] = []
    tail: list[str] = []
    used = 0
    # Alternate: the first turns say what the problem is, the last ones where it stands.
    for index in range(len(lines)):
        line = lines[index // 2] if index % 2 == 0 else lines[len(lines) - 1 - index // 2]
        if used + len(line) + 1 > limit:
            break
        (head if index % 2 == 0 else tail).append(line)
        used += len(line) + 1
    return "\n".join([*head, "…", *reversed(tail)])


def summary_prompt(conversation_text: str, tone: str = "neutral") -> str:
    """The completion prompt; `tone` is the sentiment label ("negative", "neutral", "positive")."""
    question = _QUESTION.format(asks=_ASKS.get(tone, _NEUTRAL_ASKS))
    return f"{_INSTRUCTION}{conversation_text}{question}"


def prompt_versions(draft_method: str) -> str:
    """A package's lineage prompt versions: the summary's, then the draft's with how the
    draft was made ("template", "llm", or "pending" until its background job settles)."""
    return f"{SUMMARY_PROMPT_VERSION}+{DRAFT_PROMPT_VERSION}-{draft_method}"


def in_tone(generated: str, tone: str, conversation_text: str) -> str:
    """The generated text with the tone the sentiment label gives: a complaint's wording is
    neutral unless the label is negative; "" when it still calls the customer angry,
    frustrated... and neither the label nor the customer's own words say so."""
    if tone == "negative" or not generated:
        return generated
    for pattern, neutral in _COMPLAINT_WORDING:
        generated = pattern.sub(neutral, generated)
    said = set(_WORD.findall(conversation_text.lower()))
    words = set(_WORD.findall(generated.lower()))
    return "" if (words & _TONE_WORDS) - said else generated


def split_generated(generated: str) -> tuple[str, str]:
    """(summary, detail) from the model's continuation of the cue: first sentence, then the rest."""
    generated = _SPACES.sub(" ", generated).strip()
    if not generated:
        return "", ""
    text = f"{CUE} {generated}"
    sentences = _sentences(text)
    if not sentences:
        return "", ""
    return sentences[0], " ".join(sentences[1:])


# Words a reply may use without the notes or the transcript saying them.
REPLY_WORDS = frozenset(
    "hi hello hey thanks thank sorry apologies apologize trouble glad happy please let know reach feel free "
    "welcome hope great day patience understand look looking into".split()
)


def grounded_share(summary: str, source: str, allowed: frozenset[str] = frozenset()) -> float:
    """Share of the summary's content words (framing words aside) that the source contains."""
    words = content_words(summary) - {_stem(w) for w in _FRAMING | allowed}
    if not words:
        return 0.0
    return len(words & content_words(source)) / len(words)


def supported(sentence: str, source: str, allowed: frozenset[str] = frozenset()) -> bool:
    """Whether a sentence states nothing the source does not: it has no factual words
    (greetings, courtesy, framing) or enough of them are in the source, and every figure
    it gives is in the source."""
    words = content_words(sentence) - {_stem(w) for w in _FRAMING | allowed}
    if words and grounded_share(sentence, source, allowed) < MIN_GROUNDED_SHARE:
        return False
    return figures(sentence) <= figures(source)


def figures(text: str) -> set[str]:
    """The numbers a text gives, written one way ("1,950" and "1950" are one figure)."""
    return {number.replace(",", "") for number in _NUMBER.findall(text)}


def figures_stand_together(sentence: str, knowledge: str, conversation: str = "") -> bool:
    """Whether the figures the sentence takes from the knowledge all stand in one of its
    sentences (the customer's own figures, from the conversation, aside). A small model
    borrows a number from the neighbouring rule ("Team ... 100 million events", which is
    Business's): each figure is in the knowledge, but not what it was said of."""
    wanted = figures(sentence) - figures(conversation)
    if not wanted:
        return True
    return any(wanted <= figures(part) for line in knowledge.splitlines() for part in _sentences(line))


def accept(generated: str, source: str, limit: int, allowed: frozenset[str] = frozenset()) -> str | None:
    """The generated text, tidied, if each of its sentences is grounded in the source (a
    share over the whole text would let one invented sentence through among true ones);
    otherwise None."""
    text = _SPACES.sub(" ", generated).strip().strip('"')
    if len(text) < 12 or len(content_words(text)) < 2:
        return None
    if not all(supported(sentence, source, allowed) for sentence in _sentences(text)):
        return None
    return shorten(text, limit)


def _sentences(text: str) -> list[str]:
    return [part.strip() for part in split_sentences(text, at_line_breaks=False) if len(part.strip()) > 2]


def extractive(conversation_turns: Sequence[Turn]) -> tuple[str, str]:
    """(summary, detail) made of the transcript's own sentences: the customer's first
    request, and what the other side last said it did or would do."""
    customer = [turn.text for turn in conversation_turns if turn.speaker == "Customer"]
    others = [turn.text for turn in conversation_turns if turn.speaker != "Customer"]
    if not customer:
        first = conversation_turns[0].text if conversation_turns else ""
        return shorten(first, MAX_SUMMARY_CHARS), shorten(first, MAX_DETAIL_CHARS)
    opening = _sentences(customer[0]) or [customer[0]]
    # Greetings and thanks carry nothing: start at the first sentence with some substance.
    substantive = [s for s in opening if len(content_words(s)) >= 3] or opening
    summary = shorten(f"Customer: {' '.join(substantive[:2])}", MAX_SUMMARY_CHARS)
    detail_parts = [f"Customer: {shorten(' '.join(customer[-1:] if len(customer) > 1 else substantive), 250)}"]
    if others:
        detail_parts.append(last_action(conversation_turns))
    return summary, shorten(" ".join(detail_parts), MAX_DETAIL_CHARS)


def last_action(conversation_turns: Sequence[Turn]) -> str:
    """What the support side last said it did or would do, in its own words ("" if it never spoke)."""
    last_turn = next((turn for turn in reversed(conversation_turns) if turn.speaker != "Customer"), None)
    if last_turn is None:
        return ""
    last = [s for s in _sentences(last_turn.text) if len(content_words(s)) >= 3] or [last_turn.text]
    return f"{last_turn.speaker}: {shorten(' '.join(last[:2]), 250)}"
