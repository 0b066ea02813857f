"""Many rows in one statement, whatever their number.

An executemany binds and executes its statement once per row in PostgreSQL. On PostgreSQL
these send one array per column instead, in a statement that is the same for any number of
rows (so it is prepared once per connection and planned once per call); in the dispatcher's
timer wave that cut PostgreSQL's CPU by about a quarter. (In Python it costs about what the
executemany did: asyncpg encodes the arrays where SQLAlchemy processed each row.)

    INSERT INTO t (a, b) SELECT * FROM unnest($1::a_type[], $2::b_type[])
    ... ON CONFLICT DO NOTHING RETURNING key         (insert_new: the inbox)
    UPDATE t SET b = v.b FROM unnest($1::a_type[], $2::b_type[]) AS v(a, b) WHERE t.a = v.a
    ... WHERE t.a = ANY($1::a_type[])

On SQLite, which has no arrays, they are the plain executemany and `IN (...)`.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, String, Table, any_, bindparam, func, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

Rows = Sequence[Mapping[str, Any]]


def _postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _arrays(table: Table, names: Sequence[str], rows: Rows) -> list[Any]:
    """One bound array per column, of the column's type (its values go through that type's
    own conversion, e.g. JSON or UTC timestamps). Text without its length: a cast to
    varchar(n) cuts a longer value silently, where storing it in the column refuses it."""
    return [
        bindparam(f"c_{name}", [row[name] for row in rows], type_=ARRAY(_element(table.c[name].type))) for name in names
    ]


def _element(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    """A column's type for an array's elements: text without its length (see `_arrays`)."""
    return String() if isinstance(type_, String) else type_


async def insert_rows(session: AsyncSession, table: Table, rows: Rows) -> None:
    """Insert `rows` (every row with the same keys) in one statement."""
    if not rows:
        return
    if not _postgres(session):
        await session.execute(table.insert(), list(rows))
        return
    names = list(rows[0])
    unnested = func.unnest(*_arrays(table, names, rows))
    await session.execute(table.insert().from_select(names, select(literal_column("*")).select_from(unnested)))


async def update_rows(session: AsyncSession, table: Table, key: str, rows: Rows) -> None:
    """Update the rows whose `key` column holds each row's `key` value, setting the row's
    other columns (every row with the same keys), in one statement."""
    if not rows:
        return
    names = list(rows[0])
    if not _postgres(session):
        # parameters named apart from the columns, which SQLAlchemy reserves for itself
        new: dict[str, Any] = {name: bindparam(f"new_{name}") for name in names if name != key}
        await session.execute(
            update(table).where(table.c[key] == bindparam("new_" + key)).values(new),
            [{f"new_{name}": value for name, value in row.items()} for row in rows],
        )
        return
    given = func.unnest(*_arrays(table, names, rows)).table_valued(*names).render_derived(name="given")
    await session.execute(
        update(table).where(table.c[key] == given.c[key]).values({name: given.c[name] for name in names if name != key})
    )


async def insert_new(session: AsyncSession, table: Table, rows: Rows, key: str) -> set[Any]:
    """Insert, in one statement, the rows whose unique key is not in the table yet, and return
    the `key` values of the rows inserted (of a key given twice, the first row goes in). A row
    that another transaction is inserting meanwhile is waited for, and skipped if that
    transaction commits. Unlike a lookup before the insert, this reads nothing but the unique
    index, whatever the planner believes of the table (the inbox's lookup by half its primary
    key was planned on a young table as a scan of all the consumer's rows)."""
    if not rows:
        return set()
    insert: postgresql.Insert | sqlite.Insert
    if _postgres(session):
        names = list(rows[0])
        unnested = func.unnest(*_arrays(table, names, rows))
        insert = postgresql.insert(table).from_select(names, select(literal_column("*")).select_from(unnested))
    else:
        insert = sqlite.insert(table).values(list(rows))
    return set(await session.scalars(insert.on_conflict_do_nothing().returning(table.c[key])))


def among(session: AsyncSession, column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `column = ANY(:array)`: one prepared statement
    whatever the number of values, and planned in a fraction of the time a list of hundreds
    of parameters takes. A value longer than the column matches nothing (not the row its
    first characters name)."""
    if not _postgres(session):
        return column.in_(values)
    return column == any_(bindparam(None, list(values), type_=ARRAY(_element(column.type))))
