"""Standard Webhooks signatures (https://www.standardwebhooks.com/): a message is signed as
`v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`, keyed by the
base64-decoded part of a `whsec_` secret. Any Standard Webhooks library verifies what `sign`
makes, and `verify` accepts what any of them signs. Used wherever gridcall signs what it sends
(the adapters' deliveries, the notifier's webhooks) or checks what it receives."""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime

PREFIX = "whsec_"
TOLERANCE_SECONDS = 5 * 60  # a timestamp further from now than this is refused (replays, wrong clocks)


class SecretError(ValueError):
    """A whsec_ secret that is malformed or too short; the text says how to make a good one."""


class SignatureError(ValueError):
    """A message whose signature cannot be trusted; the text says why, for the sender's logs."""


def new_secret() -> str:
    """A fresh secret in the whsec_ format: 32 random bytes, base64."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def key_of(secret: str) -> bytes:
    """The HMAC key a whsec_ secret holds."""
    raw = secret.removeprefix(PREFIX)
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        raise SecretError(
            "the secret is not base64 after its whsec_ prefix (gridcall adapter secret makes one)"
        ) from None
    if len(key) < 24:
        raise SecretError(f"the secret holds {len(key)} bytes; use at least 24 (gridcall adapter secret)")
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
