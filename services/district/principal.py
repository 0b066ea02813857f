"""Who is asking: a person of one unit (a handler or a supervisor), or ops. Tokens become
principals at the edge (services/web/auth.py); the services' rules are about principals
(departments/domain.py: who may see or do what with a ticket)."""

from dataclasses import dataclass
from typing import Literal

Role = Literal["staff", "ops"]
Duty = Literal["handler", "supervisor"]


@dataclass(frozen=True)
class Principal:
    role: Role
    unit_id: str | None
    name: str
    staff_id: str | None = None
    duty: Duty = "handler"

    @property
    def supervisor(self) -> bool:
        return self.role == "staff" and self.duty == "supervisor"
