"""structlog configured once per process: JSON lines in containers, pretty
output on a terminal, and the current trace_id/span_id on every line.

Libraries that log through the standard library (pymilvus, grpc, uvicorn, httpx,
sentence-transformers...) go through the same processors: their records are
rendered by structlog's ProcessorFormatter, so a warning from pymilvus is a JSON
line with the service, the level, the time and the trace id like any other."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from opentelemetry import trace

# The handler this module put on the root logger, replaced when logging is configured again.
_HANDLER_NAME = "servicekit.logging"


def _add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event["trace_id"] = format(span_context.trace_id, "032x")
        event["span_id"] = format(span_context.span_id, "016x")
    return event


class _Stderr:
    """Standard error as it is when a line is written, not when logging was configured:
    a stream swapped in for a while (a test capturing output) and closed afterwards
    would otherwise take every later log line, and the code logging it, down with it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _through_the_root() -> None:
    """Libraries that print on their own (pymilvus puts a stderr handler on its loggers and
    stops them propagating) are sent through the root's handler like every other record.
    Loggers made before this call are covered: a service imports its libraries first."""
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if not isinstance(logger, logging.Logger):
            continue
        own = [h for h in logger.handlers if not isinstance(h, logging.NullHandler)]
        for printing in own:
            logger.removeHandler(printing)
        if own:
            logger.propagate = True


def configure_logging(service: str, log_format: str = "auto", level: str = "info") -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    # What every line gets, from structlog or from the standard library alike.
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
    ]
    # Tracebacks without local variables: locals hold requests, and requests hold personal data.
    exceptions: Any = (
        structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        if use_json
        else structlog.processors.format_exc_info
    )
    threshold = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)

    # The standard library's records: the same processors, plus the logger's name.
    handler = logging.StreamHandler(_Stderr())
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, exceptions, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    _through_the_root()
    # Libraries only get to speak up on problems (their INFO is chatter), and no more
    # than the service itself when it is told to be quieter than that.
    root.setLevel(max(logging.WARNING, threshold))
