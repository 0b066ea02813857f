"""Failpoints (services/runtime/failpoints.py): a test's settings may name them, no other's; a
named one pauses the process where it is placed, and nothing else does."""

import asyncio
import time

import pytest
from pydantic import ValidationError

from services.runtime.failpoints import Failpoints
from services.runtime.settings import Settings


def test_only_a_tests_settings_may_name_failpoints(tmp_path):
    assert Settings(env="test", failpoints="relay.published=3", var_dir=tmp_path).failpoints == "relay.published=3"
    for env in ("dev", "prod"):
        with pytest.raises(ValidationError, match="GRIDCALL_FAILPOINTS is for tests"):
            Settings(env=env, failpoints="relay.published=3", var_dir=tmp_path, secret_key="k" * 40)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("relay.nowhere=1", "no failpoint 'relay.nowhere': the places are relay.published"),
        ("relay.published=x", "not seconds"),
        ("relay.published=inf", "not seconds"),
        ("relay.published=-1", "not seconds"),
    ],
)
def test_a_failpoint_that_is_not_one_is_refused_naming_it(tmp_path, spec, says):
    with pytest.raises(ValidationError, match=says):
        Settings(env="test", failpoints=spec, var_dir=tmp_path)


async def test_a_named_failpoint_pauses_there_and_others_pass():
    points = Failpoints("relay.published=0.3")
    started = time.monotonic()
    await asyncio.wait_for(Failpoints().reach("relay.published"), 0.05)  # none named: no pause
    await points.reach("relay.published")
    assert time.monotonic() - started >= 0.3
