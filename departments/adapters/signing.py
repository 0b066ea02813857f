"""Standard Webhooks signatures (https://www.standardwebhooks.com/): a message is signed as
`v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`, keyed by the
base64-decoded part of a `whsec_` secret. Any Standard Webhooks library verifies what `sign`
makes, and `verify` accepts what any of them signs."""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime

from services.district.jurisdiction import Jurisdiction, JurisdictionError

PREFIX = "whsec_"
TOLERANCE_SECONDS = 5 * 60  # a timestamp further from now than this is refused (replays, wrong clocks)


class SignatureError(ValueError):
    """A message whose signature cannot be trusted; the text says why, for the sender's logs."""


class AdapterConfigError(JurisdictionError):
    """A configured adapter whose secret is missing or malformed: start-up fails, naming it."""


def new_secret() -> str:
    """A fresh secret in the whsec_ format: 32 random bytes, base64."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def key_of(secret: str) -> bytes:
    """The HMAC key a whsec_ secret holds."""
    raw = secret.removeprefix(PREFIX)
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        raise AdapterConfigError(
            "the secret is not base64 after its whsec_ prefix (gridcall adapter secret makes one)"
        ) from None
    if len(key) < 24:
        raise AdapterConfigError(f"the secret holds {len(key)} bytes; use at least 24 (gridcall adapter secret)")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, msg_id, timestamp, body),
    }


def verify(key: bytes, given: Mapping[str, str], body: bytes, now: datetime) -> str:
    """The message's webhook-id, if `given` (the request's headers) sign `body` with `key`
    within the tolerance of `now`; else SignatureError saying what is wrong."""
    msg_id, stamp, signatures = (given.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not Unix seconds") from None
    if abs(now.timestamp() - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError("webhook-timestamp is more than 5 minutes from now: check the clock, sign afresh")
    expected = sign(key, msg_id, timestamp, body).encode()
    for candidate in signatures.split():  # space-separated, one per key during a rotation
        version, _, _ = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(candidate.encode(), expected):
            return msg_id
    raise SignatureError("no v1 signature matches: wrong secret, or the body changed after signing")


def secret_names(j: Jurisdiction) -> list[str]:
    """The environment variables that hold the adapters' secrets, as the district file names them."""
    return [u.adapter.secret_env for u in j.units if u.adapter is not None and u.adapter.secret_env is not None]


def adapter_keys(j: Jurisdiction, environ: Mapping[str, str]) -> dict[str, bytes]:
    """The signing key of every unit with a webhook adapter, from the environment variables
    the district file names (`environ`: their values, Settings.environment at start-up); a
    missing or malformed one fails start-up, naming it."""
    keys: dict[str, bytes] = {}
    for unit in j.units:
        if unit.adapter is None or unit.adapter.secret_env is None:
            continue
        name = unit.adapter.secret_env
        if not environ.get(name):
            raise AdapterConfigError(
                f"unit {unit.id} has an adapter, but its secret variable {name} is not set "
                f"(gridcall adapter secret prints a new one)"
            )
        try:
            keys[unit.id] = key_of(environ[name])
        except AdapterConfigError as exc:
            raise AdapterConfigError(f"{name} (unit {unit.id}'s adapter secret): {exc}") from None
    return keys
