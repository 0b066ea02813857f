"""Operators tell the services apart: each names itself to PostgreSQL and to the broker."""

import pytest
from sqlalchemy import text

from gridcall.app import build_app

pytestmark = pytest.mark.integration


async def test_a_service_shows_its_name_on_its_connections(pg_settings):
    ctx = build_app(pg_settings, ["dispatcher"]).state.ctx
    await ctx.bus.start()
    try:
        async with ctx.db.sessions() as s:
            assert await s.scalar(text("SELECT current_setting('application_name')")) == "gridcall-dispatcher"
        assert ctx.bus._producer.client._client_id == "gridcall-dispatcher"
        subscription = ctx.bus.subscribe("names", [pg_settings.topic("cases")])
        assert subscription._consumer._client._client_id == "gridcall-dispatcher"
    finally:
        await ctx.bus.stop()
        await ctx.db.dispose()


async def test_a_process_of_all_four_services_is_just_gridcall(embedded_settings, pg_url):
    ctx = build_app(embedded_settings.model_copy(update={"database_url": pg_url})).state.ctx
    try:
        async with ctx.db.sessions() as s:
            assert await s.scalar(text("SELECT current_setting('application_name')")) == "gridcall"
    finally:
        await ctx.db.dispose()
