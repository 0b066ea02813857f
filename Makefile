# gridcall: `make run` starts the embedded system, `make test` runs every test.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test unit integration e2e fault faults fuzz bench bench-quick bench-backlog bench-year wrk chromium compose asyncapi-specs lint fmt migrate up down clean

# The AsyncAPI 3.0 JSON Schema, from npm's @asyncapi/specs: tests/unit/test_asyncapi.py validates docs/asyncapi.yaml with it.
ASYNCAPI_SPECS := .cache/asyncapi-specs
ASYNCAPI_SCHEMA := $(ASYNCAPI_SPECS)/package/schemas/3.0.0.json

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)                 ## all services in one process on http://127.0.0.1:8000
	$(BIN)/gridcall run

# The suite's frozen clock moved years from today (tests/support/clock.py): the whole suite runs with
# it years back, and the tests on it once more years ahead, so that nothing that mixes the injected
# clock with the wall clock passes on the day it was written and fails on another.
CLOCK_YEARS ?= 7
# A test that hangs (a broker call with no deadline) fails on its own instead of stalling the run.
TEST_TIMEOUT ?= 600

test: $(STAMP) chromium asyncapi-specs compose  ## the whole suite: unit, integration (PostgreSQL + broker), e2e
	GRIDCALL_TEST_CLOCK_YEARS=-$(CLOCK_YEARS) $(BIN)/pytest -q --timeout=$(TEST_TIMEOUT)
	GRIDCALL_TEST_CLOCK_YEARS=+$(CLOCK_YEARS) $(BIN)/pytest -q --timeout=$(TEST_TIMEOUT) -m frozen_clock

unit: $(STAMP) asyncapi-specs compose
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

e2e: $(STAMP) chromium
	$(BIN)/pytest -q tests/e2e

fault: $(STAMP)               ## 10,000 due SLA timers, two dispatcher processes, one killed with -9
	GRIDCALL_FAULT_CASES=10000 $(BIN)/pytest -q -s tests/e2e/test_timer_failover.py

faults: $(STAMP)              ## the fault table: each scenario 20 times (make test runs each once); JSON in bench/results/
	GRIDCALL_FAULT_RUNS=$${GRIDCALL_FAULT_RUNS:-20} GRIDCALL_FAULT_BROKER_PAUSE=30 GRIDCALL_FAULT_BROKER_STALLS=1 GRIDCALL_FAULT_TABLE=bench/results \
		$(BIN)/pytest -q -s tests/faults

fuzz: $(STAMP)                ## schemathesis over every operation, embedded and distributed, 500 examples each
	GRIDCALL_FUZZ_EXAMPLES=500 $(BIN)/pytest -q tests/unit/test_whole_api_fuzz.py tests/e2e/test_fuzz_distributed.py

bench: $(STAMP) wrk           ## one table: intake vs bare, end to end, CPU per case, RSS, SLA timers, embedded, notifier
	$(BIN)/python -m bench.run

bench-quick: $(STAMP) wrk     ## the same, smaller: about three minutes, for checking a change
	$(BIN)/python -m bench.run --quick

bench-backlog: $(STAMP)       ## how fast one dispatcher drains a backlog of case.reported
	$(BIN)/python -m bench.dispatcher_backlog

bench-year: $(STAMP)          ## a year of 1,000,000 cases in PostgreSQL, then p50/p99 of the reads people wait on (YEAR_ARGS=--reuse)
	$(BIN)/python -m bench.year $(YEAR_ARGS)

wrk:                          ## the HTTP load generator, from Debian's packages
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

chromium:                     ## the browser, its driver and a Chinese font for the console's browser test (Debian packages)
	@command -v chromium >/dev/null && test -x /usr/bin/chromedriver || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver fonts-wqy-microhei)

compose:                      ## docker-compose (Debian's), which validates docker-compose.yml without an engine
	@command -v docker-compose >/dev/null || (apt-get update -qq && apt-get install -y -qq docker-compose)

asyncapi-specs: $(ASYNCAPI_SCHEMA)

$(ASYNCAPI_SCHEMA):
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	mkdir -p $(ASYNCAPI_SPECS)
	cd $(ASYNCAPI_SPECS) && npm pack --silent @asyncapi/specs@6 >/dev/null && tar xzf asyncapi-specs-*.tgz && rm asyncapi-specs-*.tgz

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy services intake dispatcher departments notifier gridcall bench

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: $(STAMP)
	$(BIN)/gridcall migrate

up:                           ## distributed mode on one host (needs a Docker engine)
	docker compose up -d --build

down:
	docker compose down

clean:
	rm -rf $(VENV) var
