"""Builds the HTTP apps: all four services in one process (embedded) or one service alone."""

from collections.abc import Sequence

from fastapi import FastAPI

from gridcall.migrate import schema
from gridcall.services import BOOTSTRAP
from services.district.clock import Clock
from services.runtime.app import create_app
from services.runtime.context import build_context
from services.runtime.settings import Settings


def build_app(settings: Settings, names: Sequence[str] | None = None, *, clock: Clock | None = None) -> FastAPI:
    names = list(names or BOOTSTRAP)
    one = names[0] if len(names) == 1 else None
    ctx = build_context(settings, clock=clock, name=f"gridcall-{one}" if one else "gridcall", service=one)
    parts = [BOOTSTRAP[n](ctx) for n in names]
    title = f"gridcall {one}" if one else "gridcall"
    return create_app(ctx, parts, title=title, schemas={n: schema(n) for n in names})
