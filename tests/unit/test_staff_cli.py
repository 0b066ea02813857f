"""`gridcall staff add | list | revoke` and `gridcall token issue --unit`: the accounts a
district's IT desk makes from the command line, in `make run`'s setting (SQLite in the data
directory, the key kept there), and what the running service makes of their tokens."""

import asyncio
import json

import httpx
import pytest
from typer.testing import CliRunner

from gridcall.app import build_app
from gridcall.cli import app as cli
from services.runtime.context import build_context
from services.runtime.settings import Settings
from tests.support.apps import lifespan
from tests.support.journey import bearer


@pytest.fixture
def dev_env(tmp_path, monkeypatch):
    for name in ("GRIDCALL_SECRET_KEY", "GRIDCALL_DATABASE_URL", "GRIDCALL_KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRIDCALL_ENV", "dev")
    monkeypatch.setenv("GRIDCALL_VAR_DIR", str(tmp_path / "var"))


def run(*args: str) -> tuple[int, str]:
    """The exit code, and standard output (what a script takes) if it succeeded, else all it said."""
    result = CliRunner().invoke(cli, list(args))
    said = result.stdout if result.exit_code == 0 else result.output
    return result.exit_code, " ".join(said.replace("│", " ").split())


def test_each_command_that_makes_a_secret_says_what_it_made_on_standard_error_alone(dev_env):
    made = CliRunner().invoke(cli, ["staff", "add", "--unit", "U-G11", "--name", "Wang Fang", "--days", "7"])
    assert made.exit_code == 0, made.output
    [token] = made.stdout.split()  # the token alone, for TOKEN=$(gridcall staff add ...)
    assert build_context(Settings()).authenticator.verify(token).name == "Wang Fang"
    assert "added Wang Fang (st-" in made.stderr and "handler of U-G11" in made.stderr and "expires" in made.stderr
    issued = CliRunner().invoke(cli, ["token", "issue", "--unit", "U-G11", "--name", "Wang Fang"])
    assert len(issued.stdout.split()) == 1 and "a token for Wang Fang" in issued.stderr
    ops = CliRunner().invoke(cli, ["token", "issue", "--ops", "--days", "3"])
    assert len(ops.stdout.split()) == 1 and "an ops token" in ops.stderr and "expires" in ops.stderr
    key = CliRunner().invoke(cli, ["open311-key", "create", "Lanxi app"])
    assert len(key.stdout.split()) == 1 and "an Open311 API key for 'Lanxi app'" in key.stderr


def test_add_prints_a_token_that_names_the_person_and_the_unit(dev_env):
    code, token = run("staff", "add", "--unit", "U-C1", "--name", "Chen Jing", "--role", "supervisor", "--days", "7")
    assert code == 0, token
    person = build_context(Settings()).authenticator.verify(token)
    assert (person.unit_id, person.name, person.duty) == ("U-C1", "Chen Jing", "supervisor")
    assert person.staff_id and person.staff_id.startswith("st-")
    code, said = run("staff", "add", "--unit", "U-C1", "--name", "Chen Jing")
    assert code == 2 and "already has a person named 'Chen Jing'" in said


def test_a_pool_member_is_an_account_of_the_pool(dev_env):
    code, token = run("staff", "add", "--pool", "P-C1", "--name", "Volunteer Liu")
    assert code == 0, token
    assert build_context(Settings()).authenticator.verify(token).unit_id == "P-C1"
    code, said = run("staff", "add", "--pool", "U-G11", "--name", "Not a pool")
    assert code == 2 and "not a pool" in said
    code, said = run("staff", "add", "--name", "Nowhere")
    assert code == 2 and "exactly one of --unit" in said


def test_bad_input_is_a_clear_error_not_a_traceback(dev_env):
    code, said = run("staff", "add", "--unit", "U-NOPE", "--name", "X")
    assert code == 2 and "no unit 'U-NOPE'" in said
    code, said = run("staff", "add", "--unit", "U-G11", "--name", "   ")
    assert code == 2 and "name" in said
    code, said = run("staff", "add", "--unit", "U-G11", "--name", "X", "--role", "boss")
    assert code == 2 and "'handler', 'supervisor'" in said
    code, said = run("staff", "revoke", "nobody-at-all")
    assert code == 2 and "no staff account" in said


def test_list_and_revoke_and_the_service_refuses_the_revoked_token_at_once(dev_env):
    _, first = run("staff", "add", "--unit", "U-G11", "--name", "Zhou Lei")
    _, second = run("staff", "add", "--unit", "U-G12", "--name", "Zhou Lei")
    _, script = run("token", "issue", "--unit", "U-G11")  # a script's token names its own "person"
    code, listed = run("staff", "list", "--unit", "U-G11")
    people = [json.loads(line) for line in CliRunner().invoke(cli, ["staff", "list"]).output.splitlines()]
    assert code == 0 and {(p["unit_id"], p["name"]) for p in people} == {
        ("U-G11", "Zhou Lei"),
        ("U-G12", "Zhou Lei"),
        ("U-G11", "script"),
    }
    code, said = run("staff", "revoke", "Zhou Lei")
    assert code == 2 and "2 people are named 'Zhou Lei'" in said
    target = next(p for p in people if p["unit_id"] == "U-G11" and p["name"] == "Zhou Lei")

    async def while_the_service_runs() -> None:
        app = build_app(Settings())
        async with (
            lifespan(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gridcall") as client,
        ):
            for token in (first, script):
                assert (await client.get("/v1/units/U-G11/tickets", headers=bearer(token))).status_code == 200
            code, said = await asyncio.to_thread(run, "staff", "revoke", target["staff_id"])  # another process's work
            assert code == 0 and "revoked Zhou Lei" in said
            r = await client.get("/v1/units/U-G11/tickets", headers=bearer(first))
            assert r.status_code == 401 and "revoked" in r.json()["detail"]
            assert (await client.get("/v1/units/U-G12/tickets", headers=bearer(second))).status_code == 200

    asyncio.run(while_the_service_runs())
    code, said = run("token", "issue", "--unit", "U-G11", "--name", "Zhou Lei")
    assert code == 2 and "was revoked" in said
