"""Bearer tokens for staff (one unit each) and ops, signed with the deployment's secret.

A token must name its issuer, when it was issued and when it expires; a staff token must name a
unit of this jurisdiction (a unit removed from the district file loses its tokens)."""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

Role = Literal["staff", "ops"]
ISSUER = "gridcall"
REQUIRED_CLAIMS = ["iss", "iat", "exp", "sub"]
REISSUE = "issue a new one with: gridcall token issue"


@dataclass(frozen=True)
class Principal:
    role: Role
    unit_id: str | None
    name: str


class Authenticator:
    """Issues and checks tokens. `units`: the unit ids of the jurisdiction, which a staff token
    must name; None only where tokens are issued for a unit checked elsewhere (tests)."""

    def __init__(self, secret: str, units: Collection[str] | None = None) -> None:
        self._secret = secret
        self._units = frozenset(units) if units is not None else None

    def issue(
        self,
        role: Role,
        *,
        unit_id: str | None = None,
        name: str | None = None,
        now: datetime,
        ttl: timedelta = timedelta(days=365),
    ) -> str:
        if ttl <= timedelta(0):
            raise ValueError(f"a token's lifetime must be positive, not {ttl}")
        if role == "staff" and not unit_id:
            raise ValueError("a staff token names its unit")
        if unit_id is not None and self._units is not None and unit_id not in self._units:
            raise ValueError(f"no unit {unit_id!r} in this jurisdiction")
        claims = {
            "iss": ISSUER,
            "role": role,
            "sub": unit_id or "ops",
            "name": name or unit_id or "ops",
            "iat": now,
            "exp": now + ttl,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], issuer=ISSUER, options={"require": REQUIRED_CLAIMS}
            )
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
            if self._units is not None and sub not in self._units:
                raise ValueError(f"invalid token: unit {sub!r} does not exist in this jurisdiction; {REISSUE}")
            return Principal("staff", sub, name)
        if role == "ops":
            return Principal("ops", None, name)
        raise ValueError("invalid token: unknown role")


_bearer = HTTPBearer(auto_error=False)


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token: send 'Authorization: Bearer <token>' (gridcall token issue)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    authenticator: Authenticator = request.app.state.authenticator
    try:
        return authenticator.verify(credentials.credentials)
    except ValueError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_ops(principal: PrincipalDep) -> Principal:
    if principal.role != "ops":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this endpoint needs an ops token")
    return principal


OpsDep = Annotated[Principal, Depends(require_ops)]
