"""The domain error hierarchy. Services raise these (or their own subclasses); the kernel's one
exception handler per app (services/web/edge.py) turns them into HTTP answers, so a new subclass
gets its parent's status instead of a 500."""

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field
from pydantic_core import PydanticCustomError


def refused(kind: str, message: str) -> PydanticCustomError:
    """A validator's refusal of a kind of its own (a ValueError, as pydantic wants): the kind
    becomes the 422 problem's `type`, which services/web/messages.py says in Chinese; the
    message stays its English `msg`."""
    return PydanticCustomError(kind, message)


class DomainError(Exception):
    """An answer that is not the one asked for. `status` is the HTTP status it maps to; `code`
    names the kind of refusal, stable for clients and pages to act on (and to say in their
    language: services/web/messages.py), beside the English `message` that says what to fix.
    A class sets its code; a raise may name a narrower one (`code=`)."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers) if headers else None
        if code is not None:
            self.code = code


class BadRequest(DomainError):
    status = 400


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class TooLarge(DomainError):
    status = 413
    code = "too_large"


class Invalid(DomainError):
    """The request names something wrong: a 422 whose body lists each problem with its place
    (`loc`), as FastAPI's own validation errors do, so every 422 has one shape."""

    status = 422
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        loc: Sequence[str | int] = ("body",),
        kind: str = "value_error",
        errors: Sequence[Mapping[str, Any]] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.errors = [dict(e) for e in errors] if errors else [{"loc": list(loc), "msg": message, "type": kind}]


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"


class HeadersTooLarge(DomainError):
    status = 431
    code = "headers_too_large"


class Unavailable(DomainError):
    """A dependency (the database) is away for now: try again later."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class Problem(BaseModel):
    """An error that is not about one field of the request (those are 422 with a list)."""

    detail: str = Field(description="what is wrong and what to do, in English")
    code: str = Field(
        description="the kind of refusal, stable: e.g. token_expired, not_your_ticket, ticket_conflict, rate_limited"
    )
    message: str | None = Field(
        None, description="the refusal in Chinese, when the request's Accept-Language asks for zh"
    )
