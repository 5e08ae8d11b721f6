"""Logging for the ``prebuilds`` command: readable lines by default, JSON lines on request.

Text: ``prebuilds: <message>``, INFO to stdout (cron mails it, systemd journals it), warnings and
errors to stderr. JSON (``--log-format json``): one object per line on stdout with ``ts``,
``level``, ``message`` and the structured fields a record carries (``event``, ``run_id``, …).
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
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _MaxLevel(logging.Filter):
    def __init__(self, below: int) -> None:
        super().__init__()
        self.below = below

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.below


def configure(fmt: LogFormat = "text", *, debug: bool = False) -> None:
    """Send the ``prebuilds`` logger's records to stdout/stderr in ``fmt``; idempotent."""
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    formatter: logging.Formatter = (
        JsonFormatter() if fmt == "json" else logging.Formatter("prebuilds: %(message)s")
    )
    if fmt == "json":
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(formatter)
        log.addHandler(handler)
        return
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(_MaxLevel(logging.WARNING))
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(formatter)
        log.addHandler(handler)
