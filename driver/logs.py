"""Logging for the ``prebuilds`` command: readable lines by default, JSON lines on request.

Text: ``prebuilds: <message>``, INFO to stdout (cron mails it, systemd journals it), warnings and
errors to stderr. JSON (``--log-format json``): one object per line on stdout with ``ts``,
``level``, ``message`` and the structured fields a record carries (``event``, ``run_id``, …).

Records of other loggers (``psycopg``, ``psycopg.pool``, Python warnings, anything else that
reaches the root logger) at warning level and above go through the same formatter, so that JSON
output is JSON only: such a record carries ``"event": "log"`` and ``logger`` (its logger's name);
in text mode it is a ``prebuilds: <logger>: <message>`` line on stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

log = logging.getLogger("prebuilds")

#: Attributes every LogRecord has; anything else was passed in ``extra`` and is a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

#: Marks the handlers ``configure`` installs, so that calling it again replaces only those
#: (a test runner's handlers on the root logger stay).
_OURS = "_prebuilds_handler"


def _ours(record: logging.LogRecord) -> bool:
    return record.name == log.name or record.name.startswith(log.name + ".")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        if not _ours(record):
            entry.update(event="log", logger=record.name)
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``prebuilds: <message>``; another logger's record names that logger, on one line."""

    def __init__(self) -> None:
        super().__init__("prebuilds: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if _ours(record):
            return super().format(record)
        message = " ".join(f"{record.name}: {record.getMessage()}".split())
        return f"prebuilds: {message}"


class _MaxLevel(logging.Filter):
    def __init__(self, below: int) -> None:
        super().__init__()
        self.below = below

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.below


def _handler(stream: Any, formatter: logging.Formatter, level: int = logging.NOTSET) -> Any:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.setLevel(level)
    setattr(handler, _OURS, True)
    return handler


def configure(fmt: LogFormat = "text", *, debug: bool = False) -> None:
    """Send the ``prebuilds`` logger's records to stdout/stderr in ``fmt``, and other loggers'
    warnings and errors through the same formatter; idempotent."""
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    # Python warnings (DeprecationWarning, RuntimeWarning, …) become records of `py.warnings`.
    logging.captureWarnings(True)
    if fmt == "json":
        log.addHandler(_handler(sys.stdout, formatter))
        root.addHandler(_handler(sys.stdout, formatter, logging.WARNING))
        return
    out = _handler(sys.stdout, formatter)
    out.addFilter(_MaxLevel(logging.WARNING))
    log.addHandler(out)
    log.addHandler(_handler(sys.stderr, formatter, logging.WARNING))
    root.addHandler(_handler(sys.stderr, formatter, logging.WARNING))
