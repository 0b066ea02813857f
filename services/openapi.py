"""What every operation's API description says without each route repeating it: the answers
the kernel and a route's security can give, with their bodies.

Every operation may answer 413 (a body or header over the size limit), 422 (what to fix, one
entry per field: FastAPI's `HTTPValidationError`) and 503 (the database is away: retry
later); one behind a bearer token also 401 (no token, or one that is not valid) and 403 (a
token that may not do this). `describe_answers` adds these to the app's /openapi.json for every
operation that does not document that status itself (Open311 documents its own errors, in
the spec's format). Answers that depend on what a route does (404, 409, 429) stay with it."""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import validation_error_definition, validation_error_response_definition
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/"


class Problem(BaseModel):
    """An error that is not about one field of the request (those are 422 with a list)."""

    detail: str


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
    "413": _answer("the request body or a header is larger than this service accepts", "Problem"),
    "422": _answer("what to fix in the request, one entry per field", "HTTPValidationError"),
    "503": _answer(
        "the service cannot reach its database right now and changed nothing: retry later",
        "Problem",
        retry_after("seconds to wait before retrying"),
    ),
}
BEARER = {
    "401": _answer(
        "no bearer token, or one that is not valid (forged, expired, without an expiry, or for a unit "
        "that does not exist); the detail says which",
        "Problem",
        {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    ),
    "403": _answer("the token is valid but may not do this (another unit's, or not an ops token)", "Problem"),
}


def with_implied_answers(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (an OpenAPI document) with the implied answers added where missing; idempotent."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _, problems = models_json_schema([(Problem, "serialization")], ref_template=REF + "{model}")
    components.setdefault("Problem", problems["$defs"]["Problem"])
    components.setdefault("ValidationError", validation_error_definition)
    components.setdefault("HTTPValidationError", validation_error_response_definition)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            implied = EVERY_OPERATION | (BEARER if operation.get("security") else {})
            for status, answer in implied.items():
                responses.setdefault(status, answer)
    return schema


def describe_answers(app: FastAPI) -> None:
    """Have the app's /openapi.json carry the implied answers of every operation."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    app.openapi = lambda: with_implied_answers(generate())  # type: ignore[method-assign]
