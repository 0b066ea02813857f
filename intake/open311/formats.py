"""The spec's formats: one answer rendered as JSON or XML, errors as the spec's list of
{code, description} in the format the path asks for, and w3 date-times both ways."""

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

from fastapi import Request, Response

from services.district.errors import BadRequest, DomainError, Invalid, NotFound
from services.district.text import moment as sane

PREFIX = "/open311/"  # the paths whose errors `render_error` answers
FORMATS = {"xml": "text/xml; charset=utf-8", "json": "application/json; charset=utf-8"}
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")  # not allowed in XML 1.0
# XML element names of list items, by their list's name (the spec's Spark convention).
ITEMS = {
    "services": "service",
    "attributes": "attribute",
    "values": "value",
    "service_requests": "request",
    "endpoints": "endpoint",
    "formats": "format",
    "errors": "error",
    "service_requests_updates": "request_update",
}


def _element(tag: str, value: Any) -> ElementTree.Element:
    node = ElementTree.Element(tag)
    if isinstance(value, list):
        node.extend(_element(ITEMS[tag], item) for item in value)
    elif isinstance(value, dict):
        node.extend(_element(k, v) for k, v in value.items())
    elif isinstance(value, bool):
        node.text = "true" if value else "false"
    elif value is not None:
        node.text = NOT_XML.sub("", str(value))
    return node


def served(fmt: str) -> None:
    """A route checks its format first: one the spec does not know is a 404, in the spec's
    format (XML) like every error, which the kernel's handler renders with `render_error`."""
    if fmt not in FORMATS:
        raise NotFound(f"format {fmt!r} is not served; use .xml or .json")


def render(fmt: str, root: str, body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    if fmt == "json":
        content = json.dumps(body, ensure_ascii=False).encode("utf-8", "backslashreplace")
    else:
        content = XML_DECLARATION + ElementTree.tostring(_element(root, body), encoding="unicode").encode()
    return Response(content, status_code=status, headers=headers, media_type=FORMATS[fmt])


def error(fmt: str, code: int, description: str, headers: Mapping[str, str] | None = None) -> Response:
    return render(
        fmt if fmt in FORMATS else "xml", "errors", [{"code": code, "description": description}], code, headers
    )


def fmt_of(path: str) -> str:
    """The format a path asks for (`….json`), XML if it names none the spec knows."""
    fmt = path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else "xml"
    return fmt if fmt in FORMATS else "xml"


def render_error(request: Request, err: DomainError) -> Response:
    """The kernel's error renderer for /open311/: every error in the spec's format. A request the
    kernel finds invalid (a 422 elsewhere) is the spec's 400, naming the field."""
    if isinstance(err, Invalid):
        where = [
            ".".join(str(part) for part in e["loc"][1:]) or str(e["loc"][0]) if e.get("loc") else "request"
            for e in err.errors
        ]
        text = "; ".join(f"{w}: {e['msg']}" for w, e in zip(where, err.errors, strict=True))
        return error(fmt_of(request.url.path), 400, text, err.headers)
    return error(fmt_of(request.url.path), err.status, err.message, err.headers)


def w3(moment: datetime | None, zone: Any) -> str | None:
    """A W3C date-time with the district's offset, e.g. 2026-11-02T09:30:00+08:00."""
    return moment.astimezone(zone).isoformat(timespec="seconds") if moment else None


def parse_w3(name: str, text: str) -> datetime:
    # An unencoded '+' in a query string arrives as a space: '...T00:00:00 08:00'.
    text = re.sub(r" (\d\d:?\d\d)$", r"+\1", text.strip()).upper()  # RFC 3339 allows a lowercase t and z
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} must be a w3 date-time, e.g. 2026-11-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise BadRequest(f"{name} must include a time zone (Z or an offset such as +08:00)")
    try:
        return sane(moment)
    except ValueError as exc:
        raise BadRequest(f"{name} {exc}") from None
