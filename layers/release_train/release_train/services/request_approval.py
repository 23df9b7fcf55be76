"""RequestApproval: an approval guards ENTRY to a stage. Keep the task token and the packet (what will be deployed, from
what, the earlier stages' evidence), send its summary; people answer through AnswerApproval (answer_approval.py), never
this function."""

from __future__ import annotations

from typing import Any

from release_train.adapters.ledger import ApprovalRecord, Ledger
from release_train.domain.release import WaveBlocked
from release_train.services.context import NOTIFY_LINES, ReleaseContext, guard, iso, manifest_item, notify
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
        riding = sorted(ctx.manifest, key=lambda m: (m.wave, m.service))
        was = {
            e.service: live[e.service].commit if e.service in live else (e.previous_commit or "not deployed")
            for e in riding
        }
        # What people are sent: counts and the first NOTIFY_LINES services (2,000 would not fit SNS's 256 KB, nor be
        # read); where every service is, when some are left out.
        summary: dict[str, Any] = {
            "release_id": release_id,
            "stage": stage,
            "services": len(riding),
            "waves": sorted({e.wave for e in riding}),
            "will_deploy": [
                {"service": e.service, "wave": e.wave, "from": was[e.service], "to": e.commit, "source": e.source}
                for e in riding[:NOTIFY_LINES]
            ],
            "earlier_stages": [
                {
                    "stage": g["stage"],
                    "verdict": g["verdict"],
                    "reasons": _first(g["reasons"]),
                    "tests": g["evidence"].get("tests"),
                    "alarms": _first([a["name"] + ":" + a["state_now"] for a in g["evidence"].get("alarms") or []]),
                }
                for g in self._ledger.gates(release_id)
            ],
            "approve": f"trainctl approve {release_id} --stage {stage}",
            "reject": f"trainctl reject {release_id} --stage {stage} --reason '...'",
        }
        # The ledger keeps every service: `from` here (what the stage runs before it), to/wave/source in the manifest.
        # Not the whole will_deploy list: at 2,000 services it is ~0.5 MB, over DynamoDB's 400 KB item limit.
        packet = {**summary, "from": was}
        self._ledger.put_approval(release_id, ApprovalRecord(stage, "PENDING", task_token, iso(now)), packet)
        self._ledger.add_event(release_id, "approval_requested", {"stage": stage}, now)
        lines = [f"{e.service}: {str(was[e.service])[:12]} -> {e.commit[:12]} (wave {e.wave})" for e in riding]
        notify(
            self._notifier,
            ctx.fleet,
            f"Approval needed before deploying to {stage}: release {release_id}",
            {"kind": "approval", **summary, "lines": lines},
            full=(
                f"ledger item PK=RELEASE#{release_id}, SK=APPROVAL#{stage} (packet.from: what {stage} runs now) "
                f"and {manifest_item(release_id)} (to, wave, source)"
            ),
        )
        return {"stage": stage, "status": "PENDING"}


def _first(items: list[str]) -> list[str]:
    """A gate's reasons or alarms, at most NOTIFY_LINES of them (the GATE# item keeps them all)."""
    if len(items) <= NOTIFY_LINES:
        return list(items)
    return [*items[:NOTIFY_LINES], f"... and {len(items) - NOTIFY_LINES} more (ledger GATE# item)"]
