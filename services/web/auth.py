"""Bearer tokens for staff (one person in one unit each) and ops, signed with the deployment's secret.

A token must name its issuer, when it was issued and when it expires. A staff token names its
person (`sub`: the staff account's id), the person's unit, which must be a unit of this
jurisdiction (a unit removed from the district file loses its tokens), and the person's duty
(handler or supervisor). Whether the account still stands (not revoked) is the departments
service's to check, on every request (departments/usecases/staff.py)."""

import math
import secrets
from collections.abc import Collection
from datetime import timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.district.clock import Clock
from services.district.errors import Forbidden, Unauthorized
from services.district.principal import Duty, Principal, Role

ISSUER = "gridcall"
REQUIRED_CLAIMS = ["iss", "iat", "exp", "sub"]
REISSUE = "issue a new one with: gridcall token issue"


class Authenticator:
    """Issues and checks tokens. `units`: the unit ids of the jurisdiction, which a staff token
    must name; None only where tokens are issued for a unit checked elsewhere (tests).

    `clock` decides a token's life at both ends: when it is issued and whether it has expired
    (PyJWT would check `exp` against the wall clock; a token issued by one clock and checked
    by another lives as long as the two disagree)."""

    def __init__(self, secret: str, clock: Clock, units: Collection[str] | None = None) -> None:
        self._secret = secret
        self._clock = clock
        self._units = frozenset(units) if units is not None else None

    def issue(
        self,
        role: Role,
        *,
        unit_id: str | None = None,
        staff_id: str | None = None,
        name: str | None = None,
        duty: Duty = "handler",
        ttl: timedelta = timedelta(days=30),
    ) -> str:
        """A staff token names its person (`staff_id`, an account made by departments/usecases/staff.py)."""
        now = self._clock.now()
        if ttl <= timedelta(0):
            raise ValueError(f"a token's lifetime must be positive, not {ttl}")
        if role == "staff" and not (unit_id and staff_id):
            raise ValueError("a staff token names its unit and its person (staff_id)")
        if unit_id is not None and self._units is not None and unit_id not in self._units:
            raise ValueError(f"no unit {unit_id!r} in this jurisdiction")
        claims: dict[str, object] = {"iss": ISSUER, "role": role, "iat": now, "exp": now + ttl}
        if role == "staff":
            claims |= {"sub": staff_id, "unit": unit_id, "duty": duty, "name": name or staff_id}
        else:
            claims |= {"sub": "ops", "name": name or "ops"}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def issue_ticket(self, purpose: str, ttl: timedelta, name: str = "ops") -> str:
        """A short-lived ticket that opens one thing (`purpose`, its audience) and nothing else:
        `verify` refuses it as a token, since a token has no audience. It names the person it
        was issued to, and has an id of its own (`jti`), so that it can be used once."""
        now = self._clock.now()
        claims = {"iss": ISSUER, "aud": purpose, "sub": "ops", "name": name, "iat": now, "exp": now + ttl}
        return jwt.encode({**claims, "jti": secrets.token_urlsafe(12)}, self._secret, algorithm="HS256")

    def verify_ticket(self, ticket: str, purpose: str) -> dict[str, Any]:
        """The ticket's claims (`jti`, `exp`, `name`), if it is one for `purpose`."""
        try:
            return self._decode(ticket, audience=purpose, require=[*REQUIRED_CLAIMS, "aud", "jti"])
        except jwt.PyJWTError as exc:
            raise ValueError(f"invalid ticket: {exc}; ask for a new one") from None

    def verify(self, token: str) -> Principal:
        try:
            claims = self._decode(token, audience=None, require=REQUIRED_CLAIMS)
        except jwt.MissingRequiredClaimError as exc:
            why = "it never expires (no 'exp' claim)" if exc.claim == "exp" else f"it has no {exc.claim!r} claim"
            raise ValueError(f"invalid token: {why}; {REISSUE}") from None
        except jwt.ExpiredSignatureError:
            raise ValueError(f"invalid token: it has expired; {REISSUE}") from None
        except jwt.PyJWTError as exc:
            raise ValueError(f"invalid token: {exc}") from None
        role, sub, name = claims.get("role"), claims["sub"], claims.get("name")
        name = name if isinstance(name, str) else sub
        if role == "staff":
            unit, duty = claims.get("unit"), claims.get("duty")
            if not isinstance(unit, str) or duty not in ("handler", "supervisor"):
                raise ValueError(f"invalid token: it names no person's unit and duty (an older token?); {REISSUE}")
            if self._units is not None and unit not in self._units:
                raise ValueError(f"invalid token: unit {unit!r} does not exist in this jurisdiction; {REISSUE}")
            return Principal("staff", unit, name, staff_id=sub, duty=duty)
        if role == "ops":
            return Principal("ops", None, name)
        raise ValueError("invalid token: unknown role")

    def _decode(self, token: str, *, audience: str | None, require: list[str]) -> dict[str, Any]:
        """The claims of a token signed with this secret, with `exp` and `iat` read against this
        authenticator's clock rather than PyJWT's wall clock."""
        claims: dict[str, Any] = jwt.decode(
            token,
            self._secret,
            algorithms=["HS256"],
            issuer=ISSUER,
            audience=audience,
            options={"require": require, "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
        now = self._clock.now().timestamp()
        times = {name: claims[name] for name in ("exp", "iat", "nbf") if name in claims}
        for name, t in times.items():
            if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
                raise jwt.DecodeError(f"its {name!r} claim must be a finite number of seconds")
        if times["exp"] <= now:
            raise jwt.ExpiredSignatureError("Signature has expired")
        if times["iat"] > now:
            raise jwt.ImmatureSignatureError("The token is not yet valid (iat)")
        if times.get("nbf", now) > now:
            raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
        return claims


MISSING = "missing bearer token: send 'Authorization: Bearer <token>' (gridcall token issue)"
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None without one."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authenticate(authenticator: Authenticator, token: str | None, *, missing: str = MISSING) -> Principal:
    """Who `token` is; 401 (with the bearer challenge) without one or for a bad one."""
    if token is None:
        raise Unauthorized(missing, headers=CHALLENGE, code="token_missing")
    try:
        return authenticator.verify(token)
    except ValueError as exc:
        code = "token_expired" if "expired" in str(exc) else "token_invalid"
        raise Unauthorized(str(exc), headers=CHALLENGE, code=code) from None


def ops_only(principal: Principal) -> Principal:
    if principal.role != "ops":
        raise Forbidden("this endpoint needs an ops token")
    return principal


# FastAPI's parser of the header, so that the API description shows the bearer scheme.
_bearer = HTTPBearer(auto_error=False)


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    token = credentials.credentials.strip() or None if credentials else None
    return authenticate(request.app.state.authenticator, token)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_ops(principal: PrincipalDep) -> Principal:
    return ops_only(principal)


OpsDep = Annotated[Principal, Depends(require_ops)]
