"""A year of a district (issue 21): seeds a year of cases into PostgreSQL through the tables the
services write, then measures, with the four services running as separate processes, the reads
people wait on; prints a table and writes bench/results/year-<timestamp>.json. In four rooms:
simulate.py (the cases and each service's rows for them), seed.py (COPY into the databases),
serve.py (the services with a clock at the seed's end) and measure.py (the reads, timed).

    .venv/bin/python -m bench.year [--cases 1000000] [--reuse] [--runs 30] [--explain] [--only WORDS ...]

How the year is seeded (said in the output too):

- The history is made by the dispatcher's own pure `Router`, driven by the figures test's
  generator (tests/integration/test_figures_exact.py `Simulation`: its category mix, priorities,
  delays, claims, resolutions, 上报, 退单, 吹哨, cancellations, satisfaction answers, breaches
  fired by its timers, supervision, reopenings), with one change: a case is acted on until it
  closes (at most 40 steps), not one to nine times, since a year-old case left half-handled would
  collect a supervision alert every few hours for months. Locations are the grid's centre with
  a few metres of jitter (the figures test puts every case on one point).
- Not every case is simulated. The last 15 days before "now" are simulated case by case (each
  case distinct, open ones included, with their pending SLA timers). The 350 days before them
  are a template of cases reported over 14 days, each simulated until it closes within 14 days
  (some 6% do not: they are dropped and counted, so the longest-running cases are under-
  represented before the last 15 days), replicated 25 times, each copy shifted by a
  whole number of fortnights (weekday and time of day kept, so the working-hours calendar still
  holds, public holidays aside) with fresh case and assignment ids: every row's internal timing
  stays consistent, and the pattern repeats every 14 days. Two processes simulate and write.
- Rows are written with COPY (asyncpg `copy_records_to_table`) into each service's own
  database, as each service writes them: the dispatcher's cases, assignments, history and
  timers (dispatcher/repository.py's row builders); departments' tickets (one per assignment,
  its status from how the assignment ended, claimer and resolver the unit's seeded handler);
  intake's reports, case views and timeline (intake/domain.py `view_change` over the events);
  the notifier's cases and notifications (notifier/domain.py `notices` over the events).
  The dispatcher's history, written case by case, is then put in time order on disk (CLUSTER),
  as a running district writes it.
- Left out, on purpose or for time: duplicate reports (each case has one report, no contact,
  channel `app`), ticket notes and evidence, adapters' and the notifier's deliveries, residents'
  notifications (no case has a follower), and notifications of template cases (the notifier's
  pruner deletes those older than 30 days: services/storage/pruning.py; the tail's are kept).
  Notification texts are short stand-ins, not rendered templates. Tickets carry no adapter
  deliveries; the dispatcher's timers are written for the tail's open cases only (the others
  have none).

`--reuse` runs the migrations first (as a deployment would), so a migration written since the
seed runs on the year's rows and the services find the schema they expect.

"Now" is the end of the seeded year: the services run from this module (`serve`) with a clock
that reads the wall clock shifted so that it started at the seed's end, so `--reuse` measures
the same year days later. Each read is timed from the client, one request at a time, after a
warm-up request; a read slower than a second is timed fewer times (5, 2 past 10 s, 1 past
30 s), and one that takes longer than the timeout (120 s) is reported as a timeout and not asked
again: the service, still busy with it, is restarted (its peak RSS noted) before the next read.
`--explain` then restarts the services with auto_explain on for the bench's databases only
(ALTER DATABASE ... SET, reset afterwards), asks each read once and keeps the three slowest
statements' EXPLAIN (ANALYZE, BUFFERS) plans from the server's log."""

import re
from datetime import timedelta
from pathlib import Path

RESULTS = Path(__file__).parents[1] / "results"
ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PREFIX = "gridcall_year"
SERVICES = ("intake", "dispatcher", "departments", "notifier")
TAIL_DAYS = 15  # simulated case by case, up to now
TEMPLATE_DAYS = 14  # the template's span, and the step between its copies
COPIES = 25  # 25 x 14 = 350 days before the tail
TEMPLATE_HORIZON = timedelta(days=14)  # a template case must close within this (the tail's length, less a day)
NOTIFICATIONS_KEPT = timedelta(days=30)  # the notifier's retention (GRIDCALL_DELIVERY_RETENTION_DAYS)
TIMEOUT = 120.0
DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?=T\d)")


def dsn(service: str) -> str:
    return ADMIN.rsplit("/", 1)[0] + f"/{PREFIX}_{service}"


def sqlalchemy_url(service: str) -> str:
    return dsn(service).replace("postgresql://", "postgresql+asyncpg://")
