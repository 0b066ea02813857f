"""Liveness apart from readiness: `/livez` asks nothing of the dependencies, `/readyz` names
what keeps the process from its work: a database that does not answer, tables behind their
migrations' head, a relay whose outbox rows wait."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import make_url, text

from gridcall.migrate import schema
from notifier.tables import outbox
from services.runtime.health import readiness
from services.storage.db import Database
from tests.support.apps import running
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


async def test_a_fresh_embedded_app_is_alive_and_ready(embedded_settings):
    async with running(embedded_settings) as app:
        assert (await app.client.get("/livez")).json() == {"status": "alive"}
        r = await app.client.get("/readyz")
        assert r.status_code == 200 and r.json() == {"status": "ready", "failing": {}, "degraded": {}}


async def test_tables_behind_their_head_are_not_ready_and_say_to_migrate(embedded_settings):
    async with running(embedded_settings) as app:
        db = Database(embedded_settings.db_url)

        async def at(revision: str) -> None:
            async with db.transaction() as s:
                await s.execute(
                    text("UPDATE alembic_version SET version_num = :to WHERE version_num LIKE 'intake_%'"),
                    {"to": revision},
                )

        try:
            await at("intake_0004")
            r = await app.client.get("/readyz")
            assert r.status_code == 503 and set(r.json()["failing"]) == {"migrations"}
            [head] = schema("intake").heads
            assert r.json()["failing"]["migrations"] == f"not at {head}: run gridcall migrate"
            assert (await app.client.get("/livez")).status_code == 200  # alive all the same: no restart
            await at("intake_0099")  # a newer release migrated them: no reason for this one to stop serving
            assert (await app.client.get("/readyz")).status_code == 200
        finally:
            await db.dispose()


async def test_an_outbox_row_waiting_past_its_limit_says_the_relay_is_stuck(embedded_settings):
    """The check itself, on a migrated database no relay runs against (a running relay would
    take the row): a row five minutes old against a limit of a minute."""
    db = Database(embedded_settings.db_url)
    notifier = SimpleNamespace(name="notifier", store=SimpleNamespace(outbox=outbox))
    bus = SimpleNamespace(unready=_answers)
    try:
        assert await readiness(db, bus, [notifier], {}, outbox_age=60) == ({}, {})  # type: ignore[arg-type]
        async with db.transaction() as s:
            at = datetime.now(UTC) - timedelta(minutes=5)
            await s.execute(outbox.insert().values(topic="t", key="k", payload=b"{}", created_at=at))
        failing, degraded = await readiness(db, bus, [notifier], {}, outbox_age=60)  # type: ignore[arg-type]
        assert failing == {} and set(degraded) == {"relay"}  # reported, and still ready to serve
        assert degraded["relay"].startswith("notifier's oldest outbox row has waited 3")
    finally:
        await db.dispose()


async def _answers() -> None:
    return None


async def test_a_database_that_does_not_answer_is_not_ready_but_the_process_is_alive(pg_settings):
    nowhere = make_url(pg_settings.database_url).set(port=free_port())  # nothing listens there
    away = pg_settings.model_copy(update={"database_url": nowhere.render_as_string(hide_password=False)})
    async with running(away, ["intake"]) as app:
        assert (await app.client.get("/livez")).status_code == 200
        r = await app.client.get("/readyz")
        assert r.status_code == 503 and set(r.json()["failing"]) == {"database"}
        assert r.json()["failing"]["database"].startswith("not answering")
