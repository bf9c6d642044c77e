"""The words the customer reads once the gate has let an answer through: the matched unit's
own words, or the LLM's phrasing of them (or, in the generative mode, its answer from the
best units) when every sentence is supported by the sources, streamed sentence by sentence
as each is checked. A phrasing that fails any check gives way to the unit's own words."""

from __future__ import annotations

import re

import structlog

from servicekit.llm import LlmBusy, LlmClient, LlmUnavailable
from services.concierge import guardrails, prompts
from services.concierge.decisions import Reason
from services.concierge.grounding import content_words, support
from services.concierge.matching import Match
from services.concierge.settings import ConciergeSettings
from services.concierge.turns import Attempt, Turn

log = structlog.get_logger(__name__)

# A sentence ends at . ! ? or a line break, followed by white space.
_PIECE = re.compile(r".*?(?:[.!?](?=\s)|\n)\s*|.+$", re.DOTALL)
# Share of a phrased sentence's content words its unit must contain.
MIN_SENTENCE_SUPPORT = 0.8


def pieces(text: str) -> list[str]:
    """`text` cut after each sentence; the pieces join back to `text` exactly."""
    return [piece for piece in _PIECE.findall(text) if piece]


def supported(sentence: str, sources: list[str]) -> bool:
    """Whether the sources state what a generated sentence says (a sentence of no content
    words, "Sure!", passes; it says nothing)."""
    return not content_words(sentence) or support(sentence, sources) >= MIN_SENTENCE_SUPPORT


class Phraser:
    """Says an answer the gate let through, in the configured answer mode and phrasing."""

    def __init__(self, settings: ConciergeSettings, llm: LlmClient) -> None:
        self._settings = settings
        self._llm = llm

    async def say(self, turn: Turn, match: Match, attempt: Attempt, injected: list[str]) -> str:
        """The reply the customer reads, streamed sentence by sentence as each is checked:
        the unit's own words, or the LLM's phrasing of them when the configuration asks
        for it and every sentence is supported by the unit (else the unit's words)."""
        events = turn.events
        phrase = self._settings.answer_mode == "generative" or (
            self._settings.phrasing == "always"
            or (self._settings.phrasing == "long" and not match.signals.reply_is_whole_unit)
        )
        if not phrase:
            for piece in pieces(match.reply):
                if events:
                    events.sentence(piece)
            return match.reply

        sources = [match.unit.text]
        if self._settings.answer_mode == "generative":
            # The matched unit first, then the next best (already cleaned of injected sentences).
            shown = [match.unit, *match.runners_up[:2]]
            sources = [unit.text for unit in shown]
            messages = prompts.chat(turn.persona, turn.standalone_query,
                                    [(unit.unit_question, unit.text) for unit in shown])
            attempt.prompt_version = prompts.GENERATIVE_VERSION
        else:
            messages = prompts.phrase(turn.persona, turn.masked_text, match.reply)
            attempt.prompt_version = prompts.PHRASE_VERSION
        buffer = ""
        failed = False

        async def on_delta(text: str) -> None:
            nonlocal buffer, failed
            buffer += text
            *complete, buffer = pieces(buffer) or [""]
            for sentence in complete:
                failed = failed or not supported(sentence, sources)
                if not failed and events:
                    events.sentence(sentence)

        try:
            completion = await self._llm.chat(messages, max_tokens=160, on_delta=on_delta, model=turn.llm_model)
        except LlmBusy:
            raise
        except LlmUnavailable as error:
            log.warning("phrasing_unavailable", error=str(error))
            completion = None
        if completion is not None:
            attempt.model = completion.model
            failed = failed or (bool(buffer.strip()) and not supported(buffer, sources))
            text = completion.text.strip()
            failed = failed or not text or text.startswith(prompts.DONT_KNOW)
            failed = failed or guardrails.follows_injection(text, injected, prompts.CANARIES, sources)
            failed = failed or bool(guardrails.promises(text, sources))
        if completion is None or failed:
            log.info("phrasing_dropped", unavailable=completion is None)
            attempt.model = ""
            attempt.prompt_version = ""
            if events:
                if events.shown:
                    events.retract(Reason.DECISION_REASON_CONFIDENT, match.reply)
                else:
                    for piece in pieces(match.reply):
                        events.sentence(piece)
            return match.reply
        if events and buffer.strip():
            events.sentence(buffer)
        return text
