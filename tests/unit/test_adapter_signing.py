"""gridcall's Standard Webhooks signatures against the reference library from PyPI
(`standardwebhooks`): each verifies what the other signs, and each refusal says why."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from departments.adapters.signing import (
    AdapterConfigError,
    SignatureError,
    adapter_keys,
    headers,
    key_of,
    new_secret,
    verify,
)
from services.district.jurisdiction import Adapter, Jurisdiction, load_jurisdiction
from services.runtime.settings import DATA_DIR

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
BODY = json.dumps({"ticket_id": "t1", "type": "accepted", "handler": "王工"}, ensure_ascii=False).encode()


def test_the_reference_library_verifies_what_gridcall_signs():
    secret = new_secret()
    assert secret.startswith("whsec_")
    signed = headers(key_of(secret), "msg_1", int(datetime.now(UTC).timestamp()), BODY)  # the library checks the time
    assert Webhook(secret).verify(BODY, signed) == json.loads(BODY)


def test_gridcall_verifies_what_the_reference_library_signs_and_says_why_it_refuses():
    secret = new_secret()
    signature = Webhook(secret).sign("msg_2", NOW, BODY.decode())
    given = {"webhook-id": "msg_2", "webhook-timestamp": str(int(NOW.timestamp())), "webhook-signature": signature}
    assert verify(key_of(secret), given, BODY, NOW) == "msg_2"
    cases = {
        "no v1 signature matches": (key_of(new_secret()), given, BODY, NOW),
        "body changed": (key_of(secret), given, BODY + b" ", NOW),
        "more than 5 minutes": (key_of(secret), given, BODY, NOW + timedelta(minutes=6)),
        "5 minutes from now": (key_of(secret), given, BODY, NOW - timedelta(minutes=6)),
        "missing": (key_of(secret), {k: v for k, v in given.items() if k != "webhook-signature"}, BODY, NOW),
        "Unix seconds": (key_of(secret), {**given, "webhook-timestamp": "yesterday"}, BODY, NOW),
    }
    for why, args in cases.items():
        with pytest.raises(SignatureError, match=why):
            verify(*args)
    rotated = {**given, "webhook-signature": f"v1,AAAA {signature}"}  # several signatures: any may match
    assert verify(key_of(secret), rotated, BODY, NOW) == "msg_2"


def test_an_adapter_without_its_secret_fails_start_up_naming_the_variable():
    demo = load_jurisdiction(DATA_DIR / "district.yaml")
    units = [
        u.model_copy(update={"adapter": Adapter(url="https://bus.example.cn/hook", secret_env="BUS_SECRET")})
        if u.id == "D-BUS"
        else u
        for u in demo.units
    ]
    j = Jurisdiction.model_validate({**demo.model_dump(), "units": [u.model_dump() for u in units]})
    with pytest.raises(AdapterConfigError, match="BUS_SECRET is not set"):
        adapter_keys(j, {})
    with pytest.raises(AdapterConfigError, match="BUS_SECRET"):
        adapter_keys(j, {"BUS_SECRET": "whsec_not base64!"})
    secret = new_secret()
    assert adapter_keys(j, {"BUS_SECRET": secret}) == {"D-BUS": key_of(secret)}
    with pytest.raises(ValueError, match="needs secret_env"):
        Adapter(url="https://bus.example.cn/hook")
    with pytest.raises(ValueError, match="needs a url"):
        Adapter()
