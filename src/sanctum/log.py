"""Logging set-up for Sanctum programs: human text or JSON lines.

Library code only ever logs through ``logging.getLogger(__name__)``; it never prints and never
configures handlers. Programs (the CLI, the manager, the launcher) call :func:`configure_logging`
once at start-up. The JSON-lines form is for log collectors: one object per line with the time
(RFC 3339, UTC), level, logger, message and any ``extra`` fields the caller attached.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from typing import Final, TextIO

__all__ = ["JsonLinesFormatter", "configure_logging"]

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is kept.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class JsonLinesFormatter(logging.Formatter):
    """Format each record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a single-line JSON object."""
        out: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(
            {
                key: value
                for key, value in vars(record).items()
                if key not in _STANDARD_ATTRS and not key.startswith("_")
            }
        )
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: tracebacks can carry secrets from local variables.
            out["exception"] = record.exc_info[0].__name__
        return json.dumps(out, default=str, separators=(",", ":"))


class _TextFormatter(logging.Formatter):
    """The human-readable format, with the date part of ``asctime`` made once per second.

    ``logging.Formatter.formatTime`` converts and formats the time of every record; a busy
    server logs many records per second (an access line per request), which all share the
    same seconds text. The output is the standard one, byte for byte.
    """

    def __init__(self, fmt: str) -> None:
        """Format records with ``fmt`` (the default date format)."""
        super().__init__(fmt)
        # One tuple, replaced whole: a reader in another thread sees one consistent pair.
        self._cached: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """Return ``asctime`` exactly as the base class would (``datefmt`` is not used here)."""
        if datefmt is not None or self.default_msec_format is None:  # pragma: no cover
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached = self._cached
        if cached[0] != second:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            cached = self._cached = (second, text)
        return self.default_msec_format % (cached[1], record.msecs)


def configure_logging(
    level: str | int = "INFO", *, json_lines: bool = False, stream: TextIO | None = None
) -> None:
    """Configure the root logger once for a Sanctum program.

    Args:
        level: A logging level name or number.
        json_lines: Emit JSON lines instead of human-readable text.
        stream: Where to write (standard error by default).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    if json_lines:
        handler.setFormatter(JsonLinesFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
