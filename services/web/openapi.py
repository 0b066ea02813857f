"""What every operation's API description says without each route repeating it: the answers
the kernel and a route's security can give, with their bodies.

Every operation may answer 413 (a body over the size limit), 431 (headers over theirs), 422
(what to fix, one entry per field: FastAPI's `HTTPValidationError`) and 503 (the database is
away: retry later); one with a body also 400 (not UTF-8); one with an id in its path 404;
one behind a bearer token also 401
(no token, or one that is not valid) and 403 (a token that may not do this).
`describe_answers` adds these to the app's /openapi.json for every operation that does not
document that status itself (Open311 documents its own errors, in the spec's format).
Answers that depend on what a route does (404, 409, 429) stay with it."""

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import validation_error_definition, validation_error_response_definition
from pydantic.json_schema import models_json_schema

from services.district.errors import Problem

REF = "#/components/schemas/"


def problem(description: str, **extra: Any) -> dict[str, Any]:
    """A route's `responses=` entry for an answer whose body is a Problem."""
    return {"model": Problem, "description": description, **extra}


def retry_after(description: str) -> dict[str, Any]:
    return {"Retry-After": {"description": description, "schema": {"type": "integer", "minimum": 1}}}


RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: problem(
        "too many requests from this client (per X-API-Key, else per IP address)",
        headers=retry_after("seconds until a request is accepted"),
    )
}


def _answer(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF + schema}}},
    }
    return answer | ({"headers": headers} if headers else {})


EVERY_OPERATION = {
    "413": _answer("the request body is larger than this service accepts", "Problem"),
    "431": _answer("the request's headers are larger than this service accepts", "Problem"),
    "422": _answer("what to fix in the request, one entry per field", "HTTPValidationError"),
    "503": _answer(
        "the service cannot reach its database right now and changed nothing: retry later",
        "Problem",
        retry_after("seconds to wait before retrying"),
    ),
}
WITH_ID = {"404": _answer("no such record: an id in the path that names nothing (or nothing you may see)", "Problem")}
WITH_BODY = {"400": _answer("the body could not be read (e.g. it is not UTF-8)", "Problem")}
BEARER = {
    "401": _answer(
        "no bearer token, or one that is not valid (forged, expired, without an expiry, or for a unit "
        "that does not exist); the detail says which",
        "Problem",
        {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    ),
    "403": _answer("the token is valid but may not do this (another unit's, or not an ops token)", "Problem"),
}


def with_implied_answers(schema: dict[str, Any], own: Sequence[str] = ()) -> dict[str, Any]:
    """`schema` (an OpenAPI document) with the implied answers added where missing; idempotent.
    Paths under a prefix in `own` (Open311) answer errors in a format of their own and document
    them themselves."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _, problems = models_json_schema([(Problem, "serialization")], ref_template=REF + "{model}")
    components.setdefault("Problem", problems["$defs"]["Problem"])
    components.setdefault("ValidationError", validation_error_definition)
    components.setdefault("HTTPValidationError", validation_error_response_definition)
    for path, operations in schema.get("paths", {}).items():
        if path.startswith(tuple(own)):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            implied = EVERY_OPERATION | (WITH_BODY if "requestBody" in operation else {})
            implied |= WITH_ID if any(p.get("in") == "path" for p in operation.get("parameters", [])) else {}
            implied |= BEARER if operation.get("security") else {}
            for status, answer in implied.items():
                responses.setdefault(status, answer)
    return schema


def describe_answers(app: FastAPI, own: Sequence[str] = ()) -> None:
    """Have the app's /openapi.json carry the implied answers of every operation (added once:
    FastAPI caches the schema it generates, and the answers are added to that same object)."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    described: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not described:
            described.append(with_implied_answers(generate(), own))
        return described[0]

    app.openapi = openapi  # type: ignore[method-assign]
