import pytest
from pydantic import ValidationError

from services.runtime.settings import Settings


def test_embedded_is_the_default(tmp_path):
    s = Settings(var_dir=tmp_path)
    assert s.embedded
    assert s.db_url == f"sqlite+aiosqlite:///{tmp_path / 'gridcall.db'}"


def test_a_database_url_with_an_unknown_driver_fails_with_what_to_use():
    with pytest.raises(ValidationError, match="postgresql\\+asyncpg://"):
        Settings(database_url="mysql://root@localhost/db")


def test_prod_refuses_the_placeholder_secret():
    with pytest.raises(ValidationError, match="GRIDCALL_SECRET_KEY"):
        Settings(env="prod")
    assert Settings(env="prod", secret_key="x" * 40).env == "prod"


def test_environment_variables_are_read_with_the_prefix(monkeypatch):
    monkeypatch.setenv("GRIDCALL_KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("GRIDCALL_TOPIC_PREFIX", "city")
    s = Settings()
    assert not s.embedded
    assert s.topic("cases") == "city.cases"


def test_the_rate_limit_is_shared_in_the_database_on_postgresql_and_refused_on_sqlite(tmp_path):
    assert Settings(var_dir=tmp_path).rate_limit_store == "auto"  # database on PostgreSQL, memory on SQLite
    with pytest.raises(ValidationError, match="GRIDCALL_RATE_LIMIT_STORE=database needs intake's database on Postg"):
        Settings(var_dir=tmp_path, rate_limit_store="database")
    on_postgres = Settings(database_url="postgresql+asyncpg://gridcall@db/gridcall", rate_limit_store="database")
    assert on_postgres.rate_limit_store == "database"


def test_deliveries_are_kept_at_least_as_long_as_the_inbox_remembers_their_events(tmp_path):
    s = Settings(var_dir=tmp_path)
    assert (s.inbox_horizon_days, s.delivery_retention_days) == (14, 30)
    assert Settings(var_dir=tmp_path, inbox_horizon_days=20, delivery_retention_days=20).delivery_retention_days == 20
    with pytest.raises(ValidationError, match="GRIDCALL_DELIVERY_RETENTION_DAYS \\(10\\) cannot be shorter than"):
        Settings(var_dir=tmp_path, delivery_retention_days=10)
