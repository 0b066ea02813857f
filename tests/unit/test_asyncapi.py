"""The adapters' AsyncAPI contract: docs/asyncapi.yaml is what the models generate today, it is
a valid AsyncAPI 3.0 document (the JSON Schema npm's @asyncapi/specs ships, fetched by
`make asyncapi-specs`), and the departments service serves the same document."""

import json
from pathlib import Path

import jsonschema
import yaml

from departments.adapters.asyncapi import document, to_yaml
from departments.adapters.messages import Update
from tests.support.apps import running

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "docs" / "asyncapi.yaml"
SPEC = ROOT / ".cache" / "asyncapi-specs" / "package" / "schemas" / "3.0.0.json"
REGENERATE = "python -m departments.adapters.asyncapi > docs/asyncapi.yaml"


def test_the_checked_in_contract_is_what_the_models_generate():
    assert CHECKED_IN.read_text(encoding="utf-8") == to_yaml(document()), (
        f"docs/asyncapi.yaml is out of date with departments/adapters/messages.py: run `{REGENERATE}`"
    )


def test_the_contract_is_valid_asyncapi_3():
    assert SPEC.exists(), f"{SPEC} is missing: run `make asyncapi-specs` (npm pack @asyncapi/specs@6)"
    schema = json.loads(SPEC.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    doc = yaml.safe_load(CHECKED_IN.read_text(encoding="utf-8"))
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert not problems, problems
    broken = {**doc, "operations": {"x": {"action": "shout", "channel": {"$ref": "#/channels/updates"}}}}
    assert not validator.is_valid(broken)  # the schema's references resolve: a bad operation is caught
    assert set(doc["channels"]) == {"assignments", "updates"}
    assert doc["channels"]["updates"]["address"] == "{prefix}.dept.{unit_id}.updates"
    assert doc["components"]["messages"]["update"]["headers"]["required"] == ["ce_id"]


def test_an_update_in_the_contract_is_one_the_endpoint_takes():
    schema = yaml.safe_load(CHECKED_IN.read_text(encoding="utf-8"))["components"]["schemas"]
    check = jsonschema.Draft202012Validator({"$ref": "#/components/schemas/Update", "components": {"schemas": schema}})
    good = {"ticket_id": "t1", "type": "resolved", "note": "fixed", "handler": "王工"}
    assert check.is_valid(good) and Update.model_validate(good).missing() is None
    lacking = {"ticket_id": "t1", "type": "resolved", "handler": "王工"}
    assert not check.is_valid(lacking) and Update.model_validate(lacking).missing() == "note"
    assert not check.is_valid({**good, "type": "rejected"})  # a rejection needs its reason_code


async def test_the_departments_service_serves_the_contract(embedded_settings):
    async with running(embedded_settings, ["departments"]) as app:
        client = app.client
        r = await client.get("/asyncapi.json")
        assert r.status_code == 200 and r.json() == json.loads(json.dumps(document()))
        assert "/asyncapi.json" not in (await client.get("/openapi.json")).json()["paths"]
