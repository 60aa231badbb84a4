"""Structured logging for component processes: structlog rendered through stdlib logging.

Both structlog loggers and plain ``logging`` loggers (aiohttp, asyncio, libraries) end up in
one handler with one renderer, so a process writes either JSON lines or console lines, never
a mix.  Values bound with :func:`log_context` (cluster, object key, ...) live in contextvars:
they follow the current task and are added to every line it logs.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog
from structlog.contextvars import bound_contextvars as log_context
from structlog.typing import Processor

__all__ = ["LogFormat", "configure_logging", "log_context"]

LogFormat = Literal["json", "console"]


def configure_logging(
    log_format: LogFormat = "console", level: int | str = "INFO", stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging to ``stream`` (stderr) in ``log_format``."""
    # Shared by structlog events and by records from stdlib loggers ("foreign" records).
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    stream = stream or sys.stderr
    renderer: list[Processor]
    # Tracebacks never show local variables: locals hold tokens, Secrets and whole objects
    # (a leak into logs), and rendering them made a reconcile error cost milliseconds of CPU.
    if log_format == "json":
        tracebacks = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        renderer = [
            structlog.processors.ExceptionRenderer(tracebacks),
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
        ]

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *pre_chain,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Module-level loggers that logged before this call must pick the new settings up.
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=pre_chain,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # The HTTP stack logs every request at INFO: at heartbeat and watch rates across many
    # clusters that drowns what matters. API traffic is measured by rest_client_* metrics.
    for chatty in ("httpx2", "httpcore2", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
