"""The four services, by name: what the composition root wires together."""

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import MetaData

import departments
import dispatcher
import intake
import notifier
from departments import bootstrap as departments_bootstrap
from departments import tables as departments_tables
from dispatcher import bootstrap as dispatcher_bootstrap
from dispatcher import tables as dispatcher_tables
from intake import bootstrap as intake_bootstrap
from intake import tables as intake_tables
from notifier import bootstrap as notifier_bootstrap
from notifier import tables as notifier_tables
from services.runtime.context import Context, ServiceParts

BOOTSTRAP: dict[str, Callable[[Context], ServiceParts]] = {
    "intake": intake_bootstrap.bootstrap,
    "dispatcher": dispatcher_bootstrap.bootstrap,
    "departments": departments_bootstrap.bootstrap,
    "notifier": notifier_bootstrap.bootstrap,
}

METADATA: dict[str, MetaData] = {
    "intake": intake_tables.metadata,
    "dispatcher": dispatcher_tables.metadata,
    "departments": departments_tables.metadata,
    "notifier": notifier_tables.metadata,
}

MIGRATIONS: dict[str, Path] = {
    name: Path(pkg.__file__).parent / "migrations"  # type: ignore[arg-type]
    for name, pkg in {
        "intake": intake,
        "dispatcher": dispatcher,
        "departments": departments,
        "notifier": notifier,
    }.items()
}
