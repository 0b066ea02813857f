import asyncio

from alembic import context

from services.storage.db import create_engine

config = context.config
URL = config.attributes["database_url"]
METADATA = config.attributes.get("metadata", [])


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run() -> None:
    # The services' own (SQLite files are in WAL mode from the start), with no limit on how long a
    # statement may take: an index built on a year of cases takes what it takes.
    engine = create_engine(URL, command_timeout=None)
    async with engine.connect() as conn:
        await conn.run_sync(_configure)
        await conn.commit()
    await engine.dispose()


asyncio.run(_run())
