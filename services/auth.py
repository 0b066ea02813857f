"""Bearer tokens for staff (one unit each) and ops, signed with the deployment's secret."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

Role = Literal["staff", "ops"]
ISSUER = "gridcall"


@dataclass(frozen=True)
class Principal:
    role: Role
    unit_id: str | None
    name: str


class Authenticator:
    def __init__(self, secret: str) -> None:
        self._secret = secret

    def issue(
        self,
        role: Role,
        *,
        unit_id: str | None = None,
        name: str | None = None,
        now: datetime,
        ttl: timedelta = timedelta(days=365),
    ) -> str:
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
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], issuer=ISSUER)
        except jwt.PyJWTError as exc:
            raise ValueError(f"invalid token: {exc}") from None
        role = claims.get("role")
        if role == "staff":
            return Principal("staff", claims["sub"], claims.get("name", claims["sub"]))
        if role == "ops":
            return Principal("ops", None, claims.get("name", "ops"))
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
