"""RequestApproval: an approval guards ENTRY to a stage. Keep the task token, send the packet (what will be deployed,
the earlier stages' evidence); `trainctl approve|reject` answers through `decide`."""

from __future__ import annotations

from typing import Any

from release_train.adapters.ledger import ApprovalRecord, Ledger
from release_train.domain.errors import InvalidInput
from release_train.domain.release import ApprovalNotWaiting, ApprovalRejected, WaveBlocked
from release_train.services.context import ReleaseContext, guard, iso, notify
from release_train.services.ports import ClockPort, ExecutionsPort, NotifierPort


class ApprovalService:
    def __init__(self, ledger: Ledger, executions: ExecutionsPort, notifier: NotifierPort, clock: ClockPort) -> None:
        self._ledger, self._executions, self._notifier, self._clock = ledger, executions, notifier, clock

    def request(self, release_id: str, stage: str, task_token: str) -> dict[str, Any]:
        """Asked on entry to the stage, before anything is deployed to it. A hold or a freeze blocks the stage right
        away (nobody is asked to approve what could not start); they are checked again before each wave."""
        ctx = ReleaseContext(self._ledger, release_id)
        ctx.require_stage(stage, "RequestApproval")
        now = self._clock.now()
        why = guard(ctx, self._ledger.holds(ctx.fleet.fleet), now, f"stage {stage}")
        if why is not None:
            self._ledger.add_event(release_id, "stage_blocked", {"stage": stage, "why": why}, now)
            raise WaveBlocked(f"{why}; nothing was deployed to {stage}")
        live = self._ledger.live(ctx.fleet.fleet).get(stage, {})
        packet: dict[str, Any] = {
            "release_id": release_id,
            "stage": stage,
            "will_deploy": [
                {
                    "service": e.service,
                    "wave": e.wave,
                    "from": live[e.service].commit if e.service in live else (e.previous_commit or "not deployed"),
                    "to": e.commit,
                    "source": e.source,
                }
                for e in sorted(ctx.manifest, key=lambda m: (m.wave, m.service))
            ],
            "waves": sorted({e.wave for e in ctx.manifest}),
            "earlier_stages": [
                {
                    "stage": g["stage"],
                    "verdict": g["verdict"],
                    "reasons": g["reasons"],
                    "tests": g["evidence"].get("tests"),
                    "alarms": [a["name"] + ":" + a["state_now"] for a in g["evidence"].get("alarms") or []],
                }
                for g in self._ledger.gates(release_id)
            ],
            "approve": f"trainctl approve {release_id} --stage {stage}",
            "reject": f"trainctl reject {release_id} --stage {stage} --reason '...'",
        }
        self._ledger.put_approval(release_id, ApprovalRecord(stage, "PENDING", task_token, iso(now)), packet)
        self._ledger.add_event(release_id, "approval_requested", {"stage": stage}, now)
        lines = [
            f"{d['service']}: {str(d['from'])[:12]} -> {d['to'][:12]} (wave {d['wave']})" for d in packet["will_deploy"]
        ]
        notify(
            self._notifier,
            ctx.fleet,
            f"Approval needed before deploying to {stage}: release {release_id}",
            {"kind": "approval", **packet, "lines": lines},
        )
        return {"stage": stage, "status": "PENDING"}

    def decide(self, release_id: str, stage: str, approve: bool, by: str, reason: str = "") -> ApprovalRecord:
        record = self._ledger.approval(release_id, stage)
        if record is None:
            raise InvalidInput("approval", [f"release {release_id} has no approval request for stage {stage}"])
        status = "APPROVED" if approve else "REJECTED"
        if not self._ledger.decide_approval(release_id, stage, status, by, reason):
            current = self._ledger.approval(release_id, stage)
            why = f"already decided: {current.status if current else '?'}"
            self._refused(release_id, stage, status, by, why)
            raise InvalidInput("approval", [why])
        # Claimed in the ledger first (two approvers cannot both answer); undone if the answer cannot be delivered.
        try:
            if approve:
                self._executions.approve(record.task_token, {"approved_by": by, "reason": reason})
            else:
                self._executions.reject(record.task_token, ApprovalRejected.__name__, f"rejected by {by}: {reason}")
        except ApprovalNotWaiting as exc:
            self._ledger.decide_approval(release_id, stage, "EXPIRED", by, str(exc), expected=status)
            self._refused(release_id, stage, status, by, f"Step Functions no longer waits: {exc}")
            raise InvalidInput(
                "approval", [f"release {release_id} stage {stage} no longer waits for an answer ({exc})"]
            ) from exc
        except Exception:
            self._ledger.decide_approval(release_id, stage, "PENDING", "", "", expected=status)
            raise
        self._ledger.add_event(
            release_id, "approval_decided", {"stage": stage, "status": status, "by": by}, self._clock.now()
        )
        decided = self._ledger.approval(release_id, stage)
        assert decided is not None
        return decided

    def _refused(self, release_id: str, stage: str, answer: str, by: str, why: str) -> None:
        """A refused answer is kept too: who tried to answer what, when, and why it did not count."""
        self._ledger.add_event(
            release_id, "approval_refused", {"stage": stage, "answer": answer, "by": by, "why": why}, self._clock.now()
        )
