"""BreakGlass: an operator starts one train with one guardrail overridden (the bake), on the record.

Only reachable when the stack allows it (`AllowBreakGlass`: the function, its URL and its KMS key exist only then),
only by principals holding the stack's BreakGlassPolicy, and never quietly: before the train starts, the override is
written to the fleet's audit trail with the caller's IAM identity and reason, and announced on the notifications
topic. The grant it issues is signed (KMS HMAC) for exactly the execution it starts; PlanRelease verifies it
(domain/break_glass.py) and records it on the release.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from release_train.adapters.ledger import Ledger
from release_train.domain.break_glass import BreakGlass, Grant, Override
from release_train.domain.errors import InvalidInput
from release_train.domain.release import parse_execution_input, release_id_for
from release_train.services.context import iso
from release_train.services.ports import ClockPort, FleetPort, NotifierPort


class MacSigner(Protocol):
    def sign(self, message: bytes) -> str: ...


class StarterPort(Protocol):
    def start(self, state_machine_arn: str, name: str, execution_input: dict[str, Any]) -> str: ...


class BreakGlassService:
    def __init__(
        self,
        ledger: Ledger,
        fleets: FleetPort,
        signer: MacSigner,
        executions: StarterPort,
        notifier: NotifierPort,
        clock: ClockPort,
        state_machine_arn: str,
    ) -> None:
        self._ledger, self._fleets, self._signer = ledger, fleets, signer
        self._executions, self._notifier, self._clock = executions, notifier, clock
        self._state_machine = state_machine_arn

    def start(
        self,
        caller: str,
        reason: str,
        skip: tuple[Override, ...],
        services: tuple[str, ...] | str = "changed",
        release_id: str | None = None,
    ) -> dict[str, Any]:
        """Start a train with `skip` overridden; the execution's ARN and name, and the audited grant."""
        fleet, _ = self._fleets.load()
        if isinstance(services, tuple):
            unknown = sorted(set(services) - {s.name for s in fleet.services})
            if unknown:
                raise InvalidInput("request", [f"services: not in fleet {fleet.fleet}: {unknown}"])
        now = self._clock.now()
        name = f"breakglass-{uuid.uuid4().hex[:12]}"
        grant = Grant(execution_name=name, identity=caller, reason=reason, skip=skip, issued_at=now)
        block = BreakGlass(grant=grant, mac=self._signer.sign(grant.message()))
        request: dict[str, Any] = {
            "trigger": "manual",
            "services": list(services) if isinstance(services, tuple) else services,
            "requested_by": f"{caller}: break glass ({', '.join(skip)}): {reason}",
            "break_glass": block.model_dump(mode="json"),
        }
        if release_id:
            request["release_id"] = release_id
        parsed = parse_execution_input(request)  # what PlanRelease will parse: refused here, before the audit record
        # On the record before anything moves: an override that then fails to start is still an override asked for.
        audit = {"identity": caller, "reason": reason, "skip": list(skip), "execution_name": name, "by": caller}
        self._ledger.audit_action(fleet.fleet, "break_glass", audit, now)
        self._notifier.send(
            f"BREAK GLASS: a train starts without {', '.join(skip)}",
            {
                "kind": "break_glass",
                "reason": reason,
                "lines": [f"by {caller}", f"overrides: {', '.join(skip)}", f"execution: {name}", f"why: {reason}"],
            },
        )
        arn = self._executions.start(self._state_machine, name, request)
        return {
            "release_id": release_id_for(parsed, name, now),  # as PlanRelease will name it
            "execution_arn": arn,
            "execution_name": name,
            "fleet": fleet.fleet,
            "grant": audit | {"at": iso(now)},
        }
