"""Time arithmetic in SQL that PostgreSQL and SQLite answer alike: the seconds between two
timestamps, and the day a timestamp falls on in a named time zone.

PostgreSQL has both built in. SQLite has no time zones and keeps a timestamp as text, so each
SQLite connection gets the two as functions written in Python (`install`, called as a
connection opens: services/storage/sqlite.py), exact to the microsecond as PostgreSQL is."""

import sqlite3
from datetime import UTC, date, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Numeric, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class seconds_between(FunctionElement[Any]):  # noqa: N801 (SQL functions are lower case)
    """`seconds_between(later, earlier)`: the seconds from `earlier` to `later`, exact."""

    type = Numeric()
    name = "seconds_between"
    inherit_cache = True


class local_day(FunctionElement[str]):  # noqa: N801
    """`local_day(at, zone)`: the date `at` falls on in time zone `zone`, as YYYY-MM-DD."""

    type = String()
    name = "local_day"
    inherit_cache = True


@compiles(seconds_between, "postgresql")
def _seconds_on_postgresql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"EXTRACT(EPOCH FROM {later} - {earlier})"


@compiles(local_day, "postgresql")
def _day_on_postgresql(element: local_day, compiler: SQLCompiler, **kw: Any) -> str:
    at, zone = (compiler.process(c, **kw) for c in element.clauses)
    return f"to_char(timezone({zone}, {at}), 'YYYY-MM-DD')"


@compiles(seconds_between, "sqlite")
@compiles(local_day, "sqlite")
def _on_sqlite(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return f"gridcall_{element.name}({compiler.process(element.clauses, **kw)})"


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)  # SQLite's timestamps are UTC, zoneless


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _seconds(later: str | None, earlier: str | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (_moment(later) - _moment(earlier)).total_seconds()


def _day(at: str | None, zone: str) -> str | None:
    return None if at is None else date.isoformat(_moment(at).astimezone(_zone(zone)).date())


def install(connection: sqlite3.Connection) -> None:
    """Give a SQLite connection what the constructs above compile to."""
    connection.create_function("gridcall_seconds_between", 2, _seconds, deterministic=True)
    connection.create_function("gridcall_local_day", 2, _day, deterministic=True)
