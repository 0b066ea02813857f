"""The views across queues, on SQLite and PostgreSQL: a supervisor's "all units under me", a
person's "my tickets", and search by case id, ticket id or words of the description (Chinese
text, and `%` and `_` searched for as themselves)."""

import uuid

import pytest

from tests.support.apps import running
from tests.support.clock import frozen_clock
from tests.support.journey import bearer, file_report, open_ticket

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def base(request: pytest.FixtureRequest):
    return request.getfixturevalue("embedded_settings" if request.param == "sqlite" else "pg_settings")


@pytest.fixture
async def stack(base):
    async with running(base, clock=frozen_clock(), handlers=["U-G11", "U-G12"], supervisors=["U-C1"]) as app:
        yield app


def in_g11(i: int) -> dict[str, float]:
    return {"lat": round(30.501 + 0.002 * i, 6), "lon": 114.301}


async def filed(client, description: str, location: dict) -> dict:
    """A new case wherever it is (insist: no earlier report close by takes it in)."""
    body = {"category": "garbage", "description": description, "location": location, "insist": True}
    return await file_report(client, body)


async def listed(client, token, **params) -> list[dict]:
    r = await client.get("/v1/tickets", headers=bearer(token), params=params)
    assert r.status_code == 200, r.text
    return r.json()["tickets"]


async def test_a_supervisor_sees_every_unit_under_her_a_handler_his_own_and_his_tickets(stack):
    client, handler, other, supervisor = (
        stack.client,
        stack.tokens("U-G11"),
        stack.tokens("U-G12"),
        stack.supervisors("U-C1"),
    )
    said = ["3号楼下水道100%堵塞", "5号楼门口垃圾_堆放", "路灯不亮"]
    cases = [await filed(client, d, in_g11(i)) for i, d in enumerate(said)]
    g12 = await filed(client, "8号楼垃圾", {"address": "8 Maple Lane"})
    mine = await open_ticket(client, "U-G11", handler, cases[0]["case_id"])
    theirs = await open_ticket(client, "U-G12", other, g12["case_id"])
    for c in cases[1:]:
        await open_ticket(client, "U-G11", handler, c["case_id"])

    everything = await listed(client, supervisor)
    ours = {t["case_id"]: t["unit_id"] for t in everything if t["case_id"] in {c["case_id"] for c in [*cases, g12]}}
    assert ours == {**{c["case_id"]: "U-G11" for c in cases}, g12["case_id"]: "U-G12"}
    dues = [t["clock"]["due"] for t in everything]
    assert dues == sorted(dues)  # nearest due first, across the units
    assert {t["unit_id"] for t in await listed(client, handler)} == {"U-G11"}  # a handler: his unit alone
    assert {t["unit_id"] for t in await listed(client, stack.tokens())} >= {"U-G11", "U-G12"}  # ops: every unit

    assert await listed(client, handler, mine="true") == []
    r = await client.post(f"/v1/tickets/{mine['ticket_id']}/claim", headers=bearer(handler))
    assert r.status_code == 200, r.text
    assert [t["ticket_id"] for t in await listed(client, handler, mine="true")] == [mine["ticket_id"]]
    assert await listed(client, other, mine="true") == []
    r = await client.get("/v1/tickets", headers=bearer(stack.tokens()), params={"mine": "true"})
    assert r.status_code == 403 and "ops token holds no tickets" in r.json()["detail"]
    assert theirs["unit_id"] == "U-G12"


async def test_search_finds_a_case_by_its_id_or_its_words_whatever_its_status(stack):
    client, handler, supervisor = stack.client, stack.tokens("U-G11"), stack.supervisors("U-C1")
    tag = uuid.uuid4().hex[:8]  # this run's words: the database may hold other tests' tickets
    said = [
        f"{tag}号楼下水道100%堵塞",
        f"{tag}号楼下水道100X堵塞",
        f"{tag}门口垃圾_堆放",
        f"{tag}门口垃圾X堆放",
        f"{tag} Lamp OUT",
    ]
    cases = [await filed(client, d, in_g11(i)) for i, d in enumerate(said)]
    found = [await open_ticket(client, "U-G11", handler, c["case_id"]) for c in cases]
    done = found[0]["ticket_id"]
    assert (await client.post(f"/v1/tickets/{done}/claim", headers=bearer(handler))).status_code == 200
    r = await client.post(f"/v1/tickets/{done}/resolve", headers=bearer(handler), json={"note": "已疏通"})
    assert r.status_code == 200, r.text

    async def search(text: str, token: str = supervisor, **params) -> set[int]:
        """Which of this test's cases the search finds."""
        hits = {t["case_id"] for t in await listed(client, token, q=text, **params)}
        return {n for n, c in enumerate(cases) if c["case_id"] in hits}

    assert await search(f"{tag}号楼下水道") == {0, 1}  # the first resolved, and found: every status is searched
    assert await search(f"{tag}号楼下水道", status="open") == {1}
    assert await search(f"{tag}号楼下水道100%") == {0}  # a percent sign is one, not "anything"
    assert await search(f"{tag}门口垃圾_") == {2}  # an underscore too
    assert await search(f"{tag} lamp out") == {4}  # letters in either case
    assert await search(cases[1]["case_id"]) == {1}
    assert await search(found[3]["ticket_id"]) == {3}
    r = await client.get("/v1/units/U-G11/tickets", headers=bearer(handler), params={"q": f"{tag} LAMP"})
    assert [t["case_id"] for t in r.json()["tickets"]] == [cases[4]["case_id"]]  # a unit's queue searches too
    r = await client.get("/v1/tickets", headers=bearer(supervisor), params={"q": "x" * 201})
    assert r.status_code == 422 and "q" in r.text
