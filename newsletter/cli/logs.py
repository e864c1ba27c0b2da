"""`--log-format json`: one JSON object per log line, for log shippers; plain lines by default.

Each line has `time` (UTC, ISO 8601, from the log record), `level`, `logger`, `pid` (which
process: `serve --workers N` runs several) and `message`, plus `exception` when there is one.
Only log lines change: what a command prints (summaries, tables) stays as it is; `newsletter
status --json` is the machine-readable form of status.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

FORMATS = ("plain", "json")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(log_format: str) -> None:
    """Install the JSON formatter on the root logger (plain: leave logging as each command
    sets it up). uvicorn is then started without its own log config, so its lines are JSON too."""
    if log_format != "json":
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
