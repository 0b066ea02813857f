"""Text that crosses the edge: what every service accepts from outside, and how it is logged.

Two rules hold for every string a request or an event carries:
- it can be stored: no NUL (PostgreSQL refuses it in text and jsonb) and no lone surrogate
  (it has no UTF-8 form). The kernel's edge guard refuses such text anywhere in a request,
  and every event model refuses it, so no service ever hands one to its database;
- free text a person wrote (a description, a note, a reason) has no control characters
  other than newline and tab (a carriage return is a newline: "\\r\\n" and "\\r" become
  "\\n"), and it is blank if it holds nothing visible: whitespace, zero-width and other
  format characters do not count as words. It is stripped of them at both ends.

The JSON schema of each type states the same rule as a `pattern`, so a client generated from
the OpenAPI description (or a fuzzer) knows it; the validators give the messages.
"""

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from services.district.errors import refused

# Not storable anywhere: NUL, and lone surrogates (what JSON's "\ud800" decodes to).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Control characters (C0 and C1) that free text may not hold; newline, tab and CR are allowed.
CONTROL = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f"
# Characters that show nothing: whitespace, and the format characters that render as nothing
# (zero-width space, joiners, word joiner, BOM, soft hyphen, bidi marks, Hangul fillers, braille blank).
INVISIBLE = (
    "\\s\\u00a0\\u00ad\\u034f\\u061c\\u115f\\u1160\\u17b4\\u17b5\\u180b-\\u180f\\u2000-\\u200f"
    "\\u2028-\\u202f\\u205f-\\u206f\\u2800\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0"
)
_CONTROL = re.compile(f"[{CONTROL}]")
_VISIBLE = re.compile(f"[^{CONTROL}{INVISIBLE}]")
_EDGES = re.compile(f"^[{INVISIBLE}]+|[{INVISIBLE}]+$")
# The JSON-schema form of the rules: no control character, and at least one visible character.
STORABLE_PATTERN = "^[^\\x00]*$"  # a lone surrogate cannot be written in JSON schema's UTF-8 at all
FREE_TEXT_PATTERN = f"^[^{CONTROL}]*$"
WORDS_PATTERN = f"^[^{CONTROL}]*[^{CONTROL}{INVISIBLE}][^{CONTROL}]*$"
# Ids and codes: case and ticket ids (uuids), unit, grid and street ids, category codes, keys.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
# A person's own addresses, as a resident's contact and a staff account take them.
PHONE_PATTERN = r"^\+?[0-9][0-9 -]{5,19}$"
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"


def describe(char: str) -> str:
    """A character as a reader can see it, e.g. 'U+0000 (NUL)'."""
    names = {"\x00": "NUL", "\x1b": "ESC", "\x7f": "DEL"}
    name = names.get(char) or ("a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character")
    return f"U+{ord(char):04X} ({name})"


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, or None if it can."""
    if found := UNSTORABLE.search(text):
        return f"contains {describe(found[0])}, which text cannot hold"
    return None


def storable(text: str) -> str:
    if problem := unstorable(text):
        raise refused("unstorable_text", problem)
    return text


def words(text: str) -> str:
    """Free text, checked and stripped; '' if it holds nothing visible."""
    storable(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if found := _CONTROL.search(text):
        raise refused(
            "control_character",
            f"contains {describe(found[0])}: only newline and tab are allowed among control characters",
        )
    return _EDGES.sub("", text) if _VISIBLE.search(text) else ""


def not_blank(text: str) -> str:
    if not text:
        raise refused(
            "blank", "cannot be blank: say it in words (whitespace and zero-width characters alone do not count)"
        )
    return text


def _storable_any(value: Any) -> Any:
    return storable(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class FreeText:
    """Annotated metadata for text a person writes, after its length constraints, e.g.
    `Annotated[str, Field(min_length=1, max_length=4000), FreeText()]`: checked and stripped
    by `words`; blank (then '') only if `blank`. Its schema states the rule as a pattern."""

    blank: bool = False

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        check = words if self.blank else _words_not_blank
        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = FREE_TEXT_PATTERN if self.blank else WORDS_PATTERN
        return json_schema


def _words_not_blank(text: str) -> str:
    return not_blank(words(text))


WORDS = FreeText()
REMARK = FreeText(blank=True)
# An id or a code: letters, digits and . _ : - (a 422 otherwise).
Identifier = Annotated[
    str, Field(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN), BeforeValidator(_storable_any)
]


EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def moment(value: datetime) -> datetime:
    """A time from outside, as every service takes one (a query's window, a due time, a date
    inside a cursor): with a time zone, since a bare time would be read in whichever zone the
    server runs; and between 1900 and 2199 in UTC, which every sum gridcall does with it (a
    window of 30 days before, a shift to the policy's zone) and every database holds; the
    year 1 at +14:00 is before the first instant a datetime can hold."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise refused("needs_time_zone", "needs a time zone, e.g. 2026-11-01T00:00:00+08:00")
    try:
        inside = EARLIEST <= value.astimezone(UTC) < LATEST
    except OverflowError:
        inside = False
    if not inside:
        raise refused("moment_out_of_range", "must lie between the years 1900 and 2199")
    return value


# A date-time a client sends (a 422 naming it, if it has no zone or lies outside 1900–2199).
Moment = Annotated[datetime, AfterValidator(moment)]


def first_unstorable(value: Any, loc: tuple[str | int, ...] = ()) -> tuple[tuple[str | int, ...], str] | None:
    """The location and the problem of the first string (key or value) in a JSON-like value
    that cannot be stored, or of a number that is not finite (NaN, Infinity)."""
    if _plainly_storable(value):
        return None
    for where, item in _leaves(value, loc):
        if isinstance(item, str) and (problem := unstorable(item)):
            return where, problem
        if isinstance(item, float) and not math.isfinite(item):
            return where, f"{json_spelling(item)} is not a number JSON allows (NaN and Infinity are refused)"
    return None


def _plainly_storable(value: Any) -> bool:
    """A quick yes for the usual JSON-like value, in one pass of C instead of a walk in Python
    (every event a consumer decodes is checked): its JSON text has no non-finite number, no
    escaped NUL and no lone surrogate. Anything else, a value that is not plain JSON included,
    gets the walk that says where the problem is."""
    try:
        text = _QUICK_JSON.encode(value)
    except (TypeError, ValueError):
        return False
    return "\\u0000" not in text and UNSTORABLE.search(text) is None


# What JSON text must hold to decode to something `first_unstorable` refuses: an escaped NUL or
# surrogate (a raw NUL, a raw surrogate and a lone surrogate escape are not JSON the parser
# takes), or the NaN and Infinity that Python's and pydantic's parsers accept.
UNSTORABLE_JSON = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|NaN|Infinity")


def plainly_storable_json(raw: bytes) -> bool:
    """A quick yes for JSON text that cannot decode to an unstorable value (one search in C,
    before the text is parsed); a no only means: check what it decodes to."""
    return UNSTORABLE_JSON.search(raw) is None


def _as_json(value: Any) -> Any:
    """What json.dumps cannot write by itself: a timestamp, or a model inside the value (an
    event's location, say), which is checked with the rest instead of sending the whole value
    on the walk in Python."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(type(value).__name__)


# Made once: `json.dumps` with options builds an encoder per call, half the cost of a small value.
_QUICK_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_as_json)


def _leaves(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*loc, k), k
            yield from _leaves(v, (*loc, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _leaves(v, (*loc, i))
    else:
        yield loc, value


def excerpt(value: Any, limit: int = 80) -> Any:
    """A short excerpt of what a client sent, to echo in an error: strings cut to `limit`
    characters, containers cut to their first items, NaN and Infinity as strings."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"… ({len(value)} characters)"
    if isinstance(value, bytes):
        return excerpt(value.decode("utf-8", "backslashreplace"), limit)
    if isinstance(value, float) and not math.isfinite(value):
        return json_spelling(value)
    if isinstance(value, dict):
        items = list(value.items())
        cut = {excerpt(str(k), 40): excerpt(v, limit) for k, v in items[:5]}
        if len(items) > 5:
            cut["…"] = f"{len(items) - 5} more"
        return cut
    if isinstance(value, list | tuple):
        return [excerpt(v, limit) for v in value[:5]] + ([f"… {len(value) - 5} more"] if len(value) > 5 else [])
    return value


def strict_json(value: Any) -> bytes:
    """JSON that every parser reads: never NaN or Infinity (they become strings), and lone
    surrogates escaped rather than failing to encode."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(value), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", "backslashreplace")


def json_spelling(number: float) -> str:
    """How a non-finite number is written in the JSON that Python reads: NaN, Infinity, -Infinity."""
    return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return json_spelling(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def printable(value: Any, limit: int = 500) -> str:
    """User text made safe for one log line: control characters, line and paragraph
    separators and backslashes escaped (a newline cannot start a forged line, an ANSI escape
    cannot colour the terminal), cut to `limit` characters."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + f"…(+{len(text) - limit})"
    return _UNPRINTABLE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


_UNPRINTABLE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

# The largest id a database row may have (PostgreSQL's bigint, SQLite's integer): a larger one in
# a request is a 422, not a database error.
ROW_ID_MAX = 2**63 - 1
