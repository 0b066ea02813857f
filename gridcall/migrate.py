"""Schema migrations with Alembic: one branch per service, each in its service's
`migrations/` folder, so every service owns its tables' history."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import make_url

from gridcall.services import METADATA, MIGRATIONS
from services.runtime.health import Schema
from services.runtime.settings import Settings

HERE = Path(__file__).parent / "alembic"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("version_locations", " ".join(str(p) for p in MIGRATIONS.values()))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["database_url"] = database_url
    cfg.attributes["metadata"] = list(METADATA.values())
    return cfg


def schema(service: str) -> Schema:
    """`service`'s migrations as this release has them: its branch's head, and every revision."""
    scripts = ScriptDirectory.from_config(alembic_config(""))
    mine = [r for r in scripts.walk_revisions() if service in r.branch_labels]
    return Schema(
        heads=frozenset(r.revision for r in scripts.get_revisions("heads") if r and service in r.branch_labels),
        known=frozenset(r.revision for r in mine),
    )


def upgrade_services(settings: Settings, service: str | None = None) -> None:
    """Every service's tables (or one service's) up to date, each in its own database
    (Settings.db_url_of); the services that share a database are brought up together."""
    names = [service] if service else list(MIGRATIONS)
    shared: dict[str, list[str]] = {}
    for name in names:
        shared.setdefault(settings.db_url_of(name), []).append(name)
    for url, together in shared.items():
        if len(together) == len(MIGRATIONS):
            upgrade(url)
        else:
            for name in together:
                upgrade(url, name)


def upgrade(database_url: str, service: str | None = None) -> None:
    """Bring the schema up to date: every service's branch, or one service's."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    target = f"{service}@head" if service else "heads"
    command.upgrade(alembic_config(database_url), target)
