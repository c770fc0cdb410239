"""structlog, configured once: JSON lines when stderr is not a terminal, console otherwise."""

from __future__ import annotations

import logging
import os
import sys

import structlog

_configured = False


class _Stderr:
    """Whatever `sys.stderr` is when a line is logged (it may be replaced after configure)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str | None = None) -> None:
    """Configure structlog for the process (idempotent). Logs go to stderr."""
    global _configured
    if _configured:
        return
    _configured = True
    name = (level or os.environ.get("PERPLEDGER_LOG_LEVEL", "warning")).upper()
    lvl = getattr(logging, name, logging.WARNING)
    renderer: structlog.typing.Processor
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=True)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # exc_info=... renders the traceback into the (debug) log line.
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
