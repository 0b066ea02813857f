"""The HTTP edge every service shares, installed by create_app: what a request may be before any
route sees it, and how every error is answered.

- `EdgeMiddleware` (ASGI) caps header size (431) and body size (413) before anything parses
  them: by Content-Length, and by counting the chunks of a body sent without one. A request
  that fails on a transient database error (a connection dropped by a restart, a fail-over,
  `pg_terminate_backend`: the pool's pre-ping only catches connections that died idle) is run
  once more, its body replayed, on a fresh connection: its effects were one transaction that
  rolled back (only a connection lost during COMMIT itself leaves the outcome unknown, where
  the duplicate check or an `Idempotency-Key` catches a repeated report). An exception no
  handler took becomes a 5xx in the right format: 503 with Retry-After when the database is
  away, 500 otherwise; never a traceback.
- `guard`, a dependency of every route (added to the app, so a new route cannot forget it),
  refuses text no column can hold (NUL, lone surrogates) in the path (404: no id contains
  one), the query, the headers and the body (422 naming the place), and NaN or Infinity in a
  JSON body. On gridcall's own API (`/v1/`) it also refuses a query parameter the route does
  not take (a misspelt filter would otherwise be ignored and the answer look complete);
  Open311's routes take what its clients send, as its specification expects.
- One exception handler per app maps the domain error hierarchy (services/district/errors.py),
  FastAPI's validation errors and HTTPExceptions onto one answer. Every 422 is the list shape
  `{"detail": [{"loc", "msg", "type"}]}`, any input it echoes is cut to a short excerpt, and
  every body is strict JSON. A path prefix may have a renderer of its own (Open311 answers
  in its specification's format); the rest get `{"detail": ...}`.
"""

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi._compat import field_annotation_is_sequence
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.district.errors import (
    DomainError,
    HeadersTooLarge,
    Invalid,
    NotFound,
    TooLarge,
    Unavailable,
)
from services.district.text import excerpt, first_unstorable, printable, strict_json, unstorable
from services.runtime.retry import describe, transient
from services.web import messages

log = logging.getLogger(__name__)

MAX_JSON_BODY = 256 * 1024  # a report is a few KB; its longest text field is 4,000 characters
MAX_FORM_BODY = 1024 * 1024  # Starlette's limit per form field, which Open311 forms always had
MAX_HEADERS = 16 * 1024  # all header names and values together (nginx's default buffer is 8-32 KB)
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
EXCERPT = 80  # characters of a client's input echoed in an error

ErrorRenderer = Callable[[Request, DomainError], Response]


def kib(n: int) -> str:
    return f"{n // 1024} KB"


class HttpError(DomainError):
    """An HTTPException (from FastAPI, Starlette or a dependency) as a domain error."""

    CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 500: "server_error"}

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, headers=headers, code=self.CODES.get(status, "bad_request"))
        self.status = status


def as_domain_error(exc: BaseException) -> DomainError:
    """Any exception as the domain error it answers as."""
    match exc:
        case DomainError():
            return exc
        case RequestValidationError():
            return Invalid("the request is not valid", errors=[_field_problem(e) for e in exc.errors()])
        case HTTPException():
            detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
            return HttpError(exc.status_code, detail, exc.headers)
        case _ if isinstance(exc, PoolTimeout) or transient(exc):
            return Unavailable("the database is not answering; try again shortly")
    return HttpError(500, "the server failed to answer this request; it has been logged")


def _field_problem(error: Mapping[str, Any]) -> dict[str, Any]:
    """One of FastAPI's validation errors, safe to echo: its input cut to an excerpt, a NaN
    named as such, no context objects that are not JSON."""
    problem = {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
    if error["type"] == "finite_number":
        problem["msg"] = "NaN and Infinity are not numbers JSON allows; send a finite number"
    if "input" in error:
        problem["input"] = excerpt(error["input"], EXCERPT)
    limits = {k: v for k, v in (error.get("ctx") or {}).items() if isinstance(v, str | int | float)}
    if limits:
        problem["ctx"] = limits  # the limits the message names (max_length…), for its Chinese
    return problem


def render_default(request: Request, error: DomainError) -> Response:
    """`{"detail", "code"}`: what to fix in English (a list of problems for a 422), and the
    stable code of the refusal; a client that asks for Chinese (Accept-Language: zh…) also
    gets `message`, the refusal in Chinese, and each problem of a 422 its `message` too."""
    detail: Any = error.errors if isinstance(error, Invalid) else error.message
    body: dict[str, Any] = {"detail": detail, "code": error.code}
    if messages.wants_chinese(request.headers.get("accept-language")):
        body["message"] = messages.refusal(error.code)
        if isinstance(error, Invalid):
            body["detail"] = [{**e, "message": messages.problem(e)} for e in error.errors]
    return Response(strict_json(body), error.status, headers=error.headers, media_type="application/json")


class Renderers:
    """Error renderers by path prefix; the longest matching prefix wins."""

    def __init__(self, by_prefix: Mapping[str, ErrorRenderer]) -> None:
        self.by_prefix = sorted(by_prefix.items(), key=lambda kv: -len(kv[0]))

    def render(self, request: Request, error: DomainError) -> Response:
        render = next((r for p, r in self.by_prefix if request.url.path.startswith(p)), render_default)
        return render(request, error)


# --- the guard: text no column can hold, anywhere in a request ----------------------------

# Bytes that may carry what the guard refuses: \u0000 and surrogate escapes, NaN, Infinity,
# a raw NUL or an encoded one. Only a body that holds one of them is parsed a second time.
SUSPECT = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|NaN|Infinity|\x00|%00", re.IGNORECASE)
# Set in the scope by EdgeMiddleware when the body it read holds none of them: the guard's
# scan is then already done.
PLAIN_BODY = "gridcall.edge.plain_body"


async def guard(request: Request) -> None:
    scope = request.scope
    for value in request.path_params.values():
        if isinstance(value, str) and unstorable(value):
            raise NotFound(_not_found(request))
    if query := scope.get("query_string"):
        scalars, known = _query_params(scope.get("route"))
        if scope["path"].startswith("/v1/") and (unknown := sorted(set(request.query_params) - known)):
            takes = ", ".join(sorted(known)) or "no query parameters"
            raise _refused(
                ("query", unknown[0]),
                f"unknown query parameter {excerpt(unknown[0], 40)!r}: this takes {takes}",
                request.query_params.get(unknown[0]),
            )
        for name in scalars:
            if len(given := request.query_params.getlist(name)) > 1:
                raise _refused(
                    ("query", name), f"query parameter {name!r} takes one value; it was given {len(given)}", given
                )
        # Decoded as Starlette does (latin-1, then %-escapes as UTF-8 with replacement), a query
        # holds NUL only from a raw NUL or %00, and never a lone surrogate.
        if b"%00" in query or b"\x00" in query:
            for key, value in request.query_params.multi_items():
                if problem := unstorable(key) or unstorable(value):
                    raise _refused(("query", key), f"query parameter {excerpt(key, 40)!r} {problem}", value)
    if any(b"\x00" in value for _, value in scope["headers"]):
        for key, value in request.headers.items():
            if "\x00" in value:
                raise _refused(("header", key), f"header {key} contains U+0000 (NUL)", value)
    if request.method in ("GET", "HEAD", "DELETE", "OPTIONS") or scope.get(PLAIN_BODY):
        return
    body = await request.body()
    if not body or not SUSPECT.search(body):
        return
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    parsed: Any
    if kind == "application/x-www-form-urlencoded":
        parsed = parse_qsl(body.decode("latin-1"), keep_blank_values=True, errors="surrogateescape")
        parsed = {k: v for k, v in parsed}
    elif kind in FORMS:
        if b"\x00" in body:
            said = "the form contains U+0000 (NUL), which text cannot hold"
            raise Invalid(said, loc=("body",), kind="unstorable_text")
        return
    else:
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            return  # not JSON: the route's own parsing says so
    if found := first_unstorable(parsed, ("body",)):
        where, problem = found
        raise _refused(where, problem, _at(parsed, where[1:]))


def _refused(loc: tuple[str | int, ...], problem: str, given: Any) -> Invalid:
    error = {"loc": list(loc), "msg": problem, "type": "unstorable_text", "input": excerpt(given, EXCERPT)}
    return Invalid(problem, errors=[error])


def _at(value: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value


_QUERY: dict[int, tuple[list[str], set[str]]] = {}


def _query_params(route: Any) -> tuple[list[str], set[str]]:
    """The route's query parameters that take one value (FastAPI would keep the last of
    several), and all the names it takes."""
    if (dependant := getattr(route, "dependant", None)) is None:
        return [], set()
    if (found := _QUERY.get(id(dependant))) is None:
        scalars, known, todo = [], set(), [dependant]
        while todo:
            d = todo.pop()
            todo += d.dependencies
            scalars += [f.alias for f in d.query_params if not field_annotation_is_sequence(f.field_info.annotation)]
            known |= {f.alias for f in d.query_params}
        found = _QUERY[id(dependant)] = (scalars, known)
    return found


def _not_found(request: Request) -> str:
    """A path id no record can have: answered as the route answers any missing id."""
    route = request.scope.get("route")
    documented = getattr(route, "responses", {}).get(404, {})
    return str(documented.get("description") or "not found")


# --- the middleware -----------------------------------------------------------------------


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        renderers: Renderers,
        *,
        json_limit: int = MAX_JSON_BODY,
        form_limit: int = MAX_FORM_BODY,
        header_limit: int = MAX_HEADERS,
    ) -> None:
        self.app = app
        self.renderers = renderers
        self.json_limit = json_limit
        self.form_limit = form_limit
        self.header_limit = header_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._within_limits(scope, receive)
        except DomainError as refused:
            await self.renderers.render(Request(scope), refused)(scope, receive, send)
            return
        if isinstance(body, dict):
            # The body, read whole: the first attempt and a retry each get it first.
            if body["type"] == "http.request" and not SUSPECT.search(body["body"]):
                scope[PLAIN_BODY] = True
            again = _replay(body, receive) if body["type"] == "http.request" else receive
            attempts: tuple[Receive, ...] = (_replay(body, receive), again)
        else:
            attempts = _recorded(receive)
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        for attempt in attempts:
            try:
                await self.app(scope, attempt, watched)
                return
            except Exception as exc:
                if started:
                    raise
                failure = exc
                if attempt is attempts[0] and transient(exc):
                    log.warning("%s: %s; trying once more on a fresh connection", _where(scope), describe(exc))
                    continue
                break
        error = as_domain_error(failure)
        if isinstance(error, Unavailable):
            log.warning("%s: database unavailable: %s", _where(scope), describe(failure))
        else:
            log.error("%s failed", _where(scope), exc_info=failure)
        await self.renderers.render(Request(scope), error)(scope, receive, send)

    async def _within_limits(self, scope: Scope, receive: Receive) -> Message | None:
        """The body read up front (one message; or the message that ended it early), or None
        for a request without one; refused once it is over the limit."""
        headers = scope["headers"]
        size = 0
        kind = b""
        length = encoding = None
        for key, value in headers:
            size += len(key) + len(value)
            # The last of a repeated header counts, as in dict(headers).
            if key == b"content-type":
                kind = value
            elif key == b"content-length":
                length = value
            elif key == b"transfer-encoding":
                encoding = value
        if size > self.header_limit:
            raise HeadersTooLarge(f"the request headers are larger than {kib(self.header_limit)} together")
        form = kind.split(b";")[0].strip().lower().decode("latin-1") in FORMS
        limit = self.form_limit if form else self.json_limit
        if length is not None:
            try:
                if int(length) > limit:
                    raise self._too_large(form, limit)
            except ValueError:
                pass  # the server refuses a malformed Content-Length itself
        elif encoding is None or b"chunked" not in encoding.lower():
            return None  # no body
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise self._too_large(form, limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return {"type": "http.request", "body": chunks[0] if len(chunks) == 1 else b"".join(chunks)}

    @staticmethod
    def _too_large(form: bool, limit: int) -> TooLarge:
        return TooLarge(f"{'a form body' if form else 'a request body'} is limited to {kib(limit)}")


def _where(scope: Scope) -> str:
    return f"{scope['method']} {printable(scope['path'], 200)}"


def _replay(first: Message, receive: Receive) -> Receive:
    """A receive that first gives the body already read (or the message that ended it)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return first

    return replayed


def _recorded(receive: Receive) -> tuple[Receive, Receive]:
    """For a request whose body the edge did not read: a receive that records the body
    messages it gives, and one for a retry that gives them again."""
    read: list[Message] = []

    async def recording() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            read.append(message)
        return message

    async def replaying() -> Message:
        return read.pop(0) if read else await receive()

    return recording, replaying


# --- wiring -------------------------------------------------------------------------------


def install(app: FastAPI, renderers: Mapping[str, ErrorRenderer]) -> None:
    """The edge on an app whose routes are all included: one exception handler, the middleware.
    (services/web/openapi.py documents the answers they give.)"""
    chosen = Renderers(renderers)

    async def answer(request: Request, exc: Exception) -> Response:
        return chosen.render(request, as_domain_error(exc))

    for kind in (DomainError, RequestValidationError, HTTPException):
        app.add_exception_handler(kind, answer)
    app.add_middleware(EdgeMiddleware, renderers=chosen)
