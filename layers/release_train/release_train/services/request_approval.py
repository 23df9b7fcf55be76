"""RequestApproval: an approval guards ENTRY to a stage. Keep the task token, send the packet (what will be deployed,
the earlier stages' evidence); people answer through AnswerApproval (answer_approval.py), never this function."""

from __future__ import annotations

from typing import Any

from release_train.adapters.ledger import ApprovalRecord, Ledger
from release_train.domain.release import WaveBlocked
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
