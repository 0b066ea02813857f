"""Route functions live at module level and take what they work with as dependencies; this is
how a service hands them its parts (its use cases, the district, keys), built once per app by
its bootstrap: `bind(routes, desk=desk)` puts them on each request's state before the route
runs, and `part("desk")` is the dependency that reads one back. Nothing is global, so two
apps in one process (tests, embedded and distributed side by side) never share their parts,
and the API description is the routes' alone (the binding adds no parameter)."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, Request


def bind(routes: APIRouter, **parts: object) -> APIRouter:
    """`routes`, with `parts` on the state of every request they answer."""

    async def provide(request: Request) -> None:
        for name, value in parts.items():
            setattr(request.state, name, value)

    bound = APIRouter(dependencies=[Depends(provide)])
    bound.include_router(routes)
    return bound


def part(name: str) -> Callable[[Request], Coroutine[Any, Any, Any]]:
    """The dependency that gives a route the part `bind` named `name`."""

    async def given(request: Request) -> Any:
        try:
            return getattr(request.state, name)
        except AttributeError:
            raise LookupError(f"these routes were mounted without bind(..., {name}=...)") from None

    given.__name__ = f"part_{name}"
    return given
