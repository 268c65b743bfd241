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
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
