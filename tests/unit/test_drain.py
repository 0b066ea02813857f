"""The drain's parts (services/runtime/drain.py) without a process: which signal drains and
which stops at once, when the drain ends, and the answers that close their connection. The
whole drain, on processes under load, is tests/e2e/test_drain.py."""

import signal

import httpx
import uvicorn
from fastapi import FastAPI

from services.runtime.drain import CloseWhileDraining, Draining, Server


def server(drain: float) -> Server:
    config = uvicorn.Config(FastAPI(), log_config=None)
    config.load()
    return Server(config, Draining(), drain)


async def test_sigterm_drains_for_its_seconds_then_stops():
    s = server(drain=5)
    s.handle_exit(signal.SIGTERM, None)
    assert s.draining and not s.should_exit
    assert await s.on_tick(1) is False  # still serving
    assert s.draining.since is not None
    s.draining.since -= 5  # the drain's seconds have passed
    assert await s.on_tick(2) is True and s.should_exit


async def test_a_second_sigterm_sigint_or_no_drain_stop_at_once():
    twice = server(drain=5)
    twice.handle_exit(signal.SIGTERM, None)
    twice.handle_exit(signal.SIGTERM, None)
    assert twice.should_exit
    interrupted = server(drain=5)
    interrupted.handle_exit(signal.SIGINT, None)
    assert interrupted.should_exit and not interrupted.draining  # Ctrl-C at `make run`: no drain
    undrained = server(drain=0)
    undrained.handle_exit(signal.SIGTERM, None)
    assert undrained.should_exit and not undrained.draining


async def test_answers_close_their_connection_only_while_draining():
    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    draining = Draining()
    wrapped = CloseWhileDraining(app, draining)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t") as client:
        assert "connection" not in (await client.get("/")).headers
        draining.begin()
        begun = draining.since
        draining.begin()  # a second signal does not restart the drain
        assert draining.since == begun
        answer = await client.get("/")
    assert answer.json() == {"hello": "world"} and answer.headers["connection"] == "close"
