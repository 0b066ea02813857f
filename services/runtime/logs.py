"""Log lines: JSON when nobody reads them on a terminal, plain text when someone does.

A JSON line has `time`, `level`, `logger`, `message`, `service`, and `case_id` / `event_id`
when it concerns a case: given with `extra=` by the line itself, or taken from context
variables that the consumer sets around each record's effect and requests set when their path
names a case. Messages are what the code wrote; residents' words reach them only through
`services.district.text.printable`, and no log call writes contact details.
"""

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType

CASE_ID: ContextVar[str | None] = ContextVar("case_id", default=None)
EVENT_ID: ContextVar[str | None] = ContextVar("event_id", default=None)
SERVICES = frozenset({"intake", "dispatcher", "departments", "notifier"})


class about:  # noqa: N801  (used as a `with` statement, like contextlib's helpers)
    """Log lines written inside name this case and event. A class, not a generator-based
    context manager: it runs once per consumed record."""

    __slots__ = ("case_id", "event_id", "_tokens")

    def __init__(self, case_id: str | None, event_id: str | None = None) -> None:
        self.case_id = case_id
        self.event_id = event_id

    def __enter__(self) -> None:
        self._tokens = (CASE_ID.set(self.case_id), EVENT_ID.set(self.event_id))

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        case, event = self._tokens
        EVENT_ID.reset(event)
        CASE_ID.reset(case)


class JsonFormatter(logging.Formatter):
    """One JSON object a line. `service` is the service whose code wrote the line (its
    package), else the process's own name (`gridcall` in embedded mode)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        package = record.name.split(".", 1)[0]
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": getattr(record, "service", None) or (package if package in SERVICES else self.service),
        }
        case_id = getattr(record, "case_id", None) or CASE_ID.get()
        if case_id is not None:
            line["case_id"] = case_id
        event_id = getattr(record, "event_id", None) or EVENT_ID.get()
        if event_id is not None:
            line["event_id"] = event_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(service: str, log_format: str = "auto") -> None:
    """Log to stderr at INFO: as JSON or as text, as `GRIDCALL_LOG_FORMAT` says; `auto` is text
    on a terminal (`make run`) and JSON otherwise (a container, a supervisor, a file)."""
    handler = logging.StreamHandler()
    if log_format == "json" or (log_format == "auto" and not sys.stderr.isatty()):
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
