"""The domain error hierarchy. Services raise these (or their own subclasses); the kernel's one
exception handler per app (services/web/edge.py) turns them into HTTP answers, so a new subclass
gets its parent's status instead of a 500."""

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel


class DomainError(Exception):
    """An answer that is not the one asked for. `status` is the HTTP status it maps to."""

    status: int = 400

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers) if headers else None


class BadRequest(DomainError):
    status = 400


class Unauthorized(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class TooLarge(DomainError):
    status = 413


class Invalid(DomainError):
    """The request names something wrong: a 422 whose body lists each problem with its place
    (`loc`), as FastAPI's own validation errors do, so every 422 has one shape."""

    status = 422

    def __init__(
        self,
        message: str,
        *,
        loc: Sequence[str | int] = ("body",),
        kind: str = "value_error",
        errors: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.errors = [dict(e) for e in errors] if errors else [{"loc": list(loc), "msg": message, "type": kind}]


class RateLimited(DomainError):
    status = 429


class HeadersTooLarge(DomainError):
    status = 431


class Unavailable(DomainError):
    """A dependency (the database) is away for now: try again later."""

    status = 503

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class Problem(BaseModel):
    """An error that is not about one field of the request (those are 422 with a list)."""

    detail: str
