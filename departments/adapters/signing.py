"""The adapters' signing keys: each unit's whsec_ secret, from the environment variable the
district file names. The signatures themselves are Standard Webhooks' (services/delivery/signing.py)."""

from collections.abc import Mapping

from services.delivery.signing import SecretError, SignatureError, headers, key_of, new_secret, sign, verify
from services.district.jurisdiction import Jurisdiction, JurisdictionError

__all__ = ["SignatureError", "headers", "key_of", "new_secret", "sign", "verify"]


class AdapterConfigError(JurisdictionError):
    """A configured adapter whose secret is missing or malformed: start-up fails, naming it."""


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
        except SecretError as exc:
            raise AdapterConfigError(f"{name} (unit {unit.id}'s adapter secret): {exc}") from None
    return keys
