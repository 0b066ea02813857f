"""Staff and ops tokens: they expire, name a real unit, and are signed with a secret nobody
reads in the source (the embedded default is a random key kept in the data directory)."""

import re
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from gridcall.cli import app as cli
from services.district.clock import SystemClock
from services.runtime.context import build_context
from services.runtime.settings import Settings
from services.web.auth import Authenticator
from services.web.pages import language
from tests.support.apps import running
from tests.support.clock import frozen_clock
from tests.support.journey import TEST_SECRET, bearer

SECRET_FILE = "secret_key"  # in the data directory (GRIDCALL_VAR_DIR)
OLD_DEV_SECRET = "dev-only-insecure-secret-change-me"  # what the source used to sign with


@pytest.fixture
async def client(embedded_settings):
    async with running(embedded_settings) as app:
        yield app.client


def signed(claims: dict, secret: str = TEST_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_a_token_that_never_expires_is_refused_and_the_answer_says_so(client):
    now = SystemClock().now()
    forever = signed({"iss": "gridcall", "role": "staff", "sub": "U-G11", "iat": now})
    r = await client.get("/v1/units/U-G11/tickets", headers=bearer(forever))
    assert r.status_code == 401, r.text
    assert "never expires" in r.json()["detail"] and "gridcall token issue" in r.json()["detail"]
    assert r.headers["WWW-Authenticate"] == "Bearer"
    ops = signed({"iss": "gridcall", "role": "ops", "sub": "ops", "iat": now})
    r = await client.get("/v1/notifications", params={"case_id": "x"}, headers=bearer(ops))
    assert r.status_code == 401 and "never expires" in r.json()["detail"]


@pytest.mark.parametrize("missing", ["iss", "iat", "sub"])
async def test_a_token_without_its_issuer_issue_time_or_subject_is_refused(client, missing):
    now = SystemClock().now()
    claims = {"iss": "gridcall", "role": "staff", "sub": "U-G11", "iat": now, "exp": now + timedelta(hours=1)}
    del claims[missing]
    r = await client.get("/v1/units/U-G11/tickets", headers=bearer(signed(claims)))
    assert r.status_code == 401 and repr(missing) in r.json()["detail"]


async def test_an_expired_token_is_refused_and_the_answer_says_so(client):
    now = SystemClock().now()
    old = signed({"iss": "gridcall", "role": "ops", "sub": "ops", "iat": now - timedelta(days=2), "exp": now})
    r = await client.get("/v1/notifications", params={"case_id": "x"}, headers=bearer(old))
    assert r.status_code == 401 and "expired" in r.json()["detail"]


async def test_a_staff_token_for_a_unit_that_does_not_exist_is_refused(client):
    nope = Authenticator(TEST_SECRET, SystemClock()).issue("staff", unit_id="U-NOPE", staff_id="st-1")
    r = await client.get("/v1/units/U-NOPE/tickets", headers=bearer(nope))
    assert r.status_code == 401, r.text
    assert "'U-NOPE' does not exist in this jurisdiction" in r.json()["detail"]
    r = await client.post("/v1/tickets/whatever/claim", headers=bearer(nope))
    assert r.status_code == 401


def test_the_authenticator_refuses_to_issue_a_token_that_is_born_expired_or_for_no_unit():
    auth = Authenticator(TEST_SECRET, SystemClock(), units=["U-G11"])
    SystemClock().now()
    for ttl in (timedelta(0), timedelta(days=-5)):
        with pytest.raises(ValueError, match="lifetime must be positive"):
            auth.issue("ops", ttl=ttl)
    with pytest.raises(ValueError, match="U-NOPE"):
        auth.issue("staff", unit_id="U-NOPE", staff_id="st-1")
    with pytest.raises(ValueError, match="names its unit and its person"):
        auth.issue("staff", unit_id="U-G11")
    person = auth.verify(auth.issue("staff", unit_id="U-G11", staff_id="st-1", name="Li", duty="supervisor"))
    assert (person.unit_id, person.staff_id, person.name, person.supervisor) == ("U-G11", "st-1", "Li", True)


@pytest.fixture
def dev_env(tmp_path, monkeypatch):
    """`make run`'s setting: dev, no GRIDCALL_SECRET_KEY, a data directory of its own."""
    for name in ("GRIDCALL_SECRET_KEY", "GRIDCALL_DATABASE_URL", "GRIDCALL_KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRIDCALL_ENV", "dev")
    monkeypatch.setenv("GRIDCALL_VAR_DIR", str(tmp_path / "var"))
    return tmp_path / "var"


@pytest.mark.parametrize("days", ["-5", "0"])
def test_token_issue_refuses_a_lifetime_that_is_not_positive(dev_env, days):
    result = CliRunner().invoke(cli, ["token", "issue", "--ops", "--days", days])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.replace("│", " ").split())
    assert "Invalid value for '--days': Input should be greater than or equal to 1" in said


def test_token_issue_refuses_a_unit_that_does_not_exist(dev_env):
    result = CliRunner().invoke(cli, ["token", "issue", "--unit", "U-NOPE"])
    assert result.exit_code == 2 and "no unit 'U-NOPE'" in result.output


def test_without_a_configured_secret_a_random_key_is_kept_in_the_data_directory(dev_env):
    issued = CliRunner().invoke(cli, ["token", "issue", "--unit", "U-G11", "--days", "1"])
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    key = dev_env / SECRET_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_text().strip()) >= 32
    # what `make run` builds in the same setting accepts the CLI's token, and so does it after a restart
    for _ in range(2):
        assert build_context(Settings()).authenticator.verify(token).unit_id == "U-G11"
    again = CliRunner().invoke(cli, ["token", "issue", "--ops"])
    assert Authenticator(key.read_text().strip(), SystemClock()).verify(again.stdout.strip()).role == "ops"
    # the key that used to ship in the source signs nothing here
    with pytest.raises(ValueError, match="invalid token"):
        Authenticator(OLD_DEV_SECRET, SystemClock()).verify(token)
    forged = Authenticator(OLD_DEV_SECRET, SystemClock()).issue("ops")
    with pytest.raises(ValueError, match="invalid token"):
        build_context(Settings()).authenticator.verify(forged)


def test_each_data_directory_gets_its_own_key_and_processes_starting_together_agree(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: Settings(var_dir=tmp_path / "a").signing_key(), range(16)))
    assert len(keys) == 1
    assert Settings(var_dir=tmp_path / "b").signing_key() not in keys
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [SECRET_FILE]  # no spare files left


def test_a_configured_secret_wins_and_a_blank_one_counts_as_unset(tmp_path):
    assert Settings(var_dir=tmp_path, secret_key="s" * 40).signing_key() == "s" * 40
    assert not (tmp_path / SECRET_FILE).exists()
    assert Settings(var_dir=tmp_path, secret_key=" ").signing_key() == (tmp_path / SECRET_FILE).read_text().strip()


def test_a_damaged_key_file_is_reported_with_what_to_do(tmp_path):
    (tmp_path / SECRET_FILE).write_text("short\n")
    with pytest.raises(ValueError, match="delete it to have one generated"):
        Settings(var_dir=tmp_path).signing_key()


def test_prod_needs_a_real_secret_of_its_own():
    for secret in (None, OLD_DEV_SECRET, "x" * 31):
        with pytest.raises(ValidationError, match="GRIDCALL_SECRET_KEY"):
            Settings(env="prod", secret_key=secret)
    assert Settings(env="prod", secret_key="x" * 40).signing_key() == "x" * 40


@pytest.mark.parametrize("years", [-9, 9])
def test_a_token_lives_by_the_injected_clock_alone_whatever_the_wall_clock_says(years):
    """Issued and checked by one clock years away from today: valid until that clock passes its
    expiry, refused after; the same for the board's stream tickets."""
    clock = frozen_clock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC) + timedelta(weeks=52 * years))
    auth = Authenticator(TEST_SECRET, clock, units=["U-G11"])
    token = auth.issue("staff", unit_id="U-G11", staff_id="st-1", ttl=timedelta(days=30))
    ticket = auth.issue_ticket("breach-stream", timedelta(minutes=1))
    clock.advance(timedelta(seconds=59))
    assert auth.verify(token).staff_id == "st-1"
    auth.verify_ticket(ticket, "breach-stream")
    clock.advance(timedelta(seconds=1))
    with pytest.raises(ValueError, match="invalid ticket"):
        auth.verify_ticket(ticket, "breach-stream")
    clock.advance(timedelta(days=30) - timedelta(minutes=1, seconds=1))
    assert auth.verify(token).staff_id == "st-1"
    clock.advance(timedelta(seconds=1))
    with pytest.raises(ValueError, match="it has expired"):
        auth.verify(token)


def test_a_token_issued_after_the_clock_s_now_is_refused():
    """One issued by a clock ahead of this one (another machine's, a forger's) is not yet valid."""
    ahead = frozen_clock()
    ahead.advance(timedelta(hours=1))
    token = Authenticator(TEST_SECRET, ahead).issue("ops", ttl=timedelta(days=1))
    with pytest.raises(ValueError, match="not yet valid"):
        Authenticator(TEST_SECRET, frozen_clock()).verify(token)


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"exp": float("inf")}, "'exp' claim must be a finite number"),
        ({"exp": float("nan")}, "'exp' claim must be a finite number"),
        ({"iat": float("nan")}, "'iat' claim must be a finite number"),
        ({"exp": "9999999999"}, "'exp' claim must be a finite number"),
        ({"nbf": "soon"}, "'nbf' claim must be a finite number"),
        ({"nbf_in": 60}, "not yet valid (nbf)"),
    ],
)
def test_a_token_whose_times_are_not_finite_numbers_or_not_yet_valid_is_refused(claims, says):
    """A token must expire: an 'exp' of infinity or NaN (which compares false with everything)
    would never do so."""
    clock = frozen_clock()
    now = clock.now().timestamp()
    body = {"iss": "gridcall", "role": "ops", "sub": "ops", "iat": now, "exp": now + 3600}
    if "nbf_in" in claims:
        claims = {"nbf": now + claims.pop("nbf_in")}
    with pytest.raises(ValueError, match=re.escape(says)):
        Authenticator(TEST_SECRET, clock).verify(signed({**body, **claims}))


@pytest.mark.parametrize(
    ("asked", "lang"), [("en", "en"), ("EN-gb", "en"), ("en_US", "en"), ("english", "zh-CN"), (None, "zh-CN")]
)
def test_a_page_is_english_only_when_english_is_asked_for(asked, lang):
    assert language(asked) == lang
