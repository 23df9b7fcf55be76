"""RecordFailure: close a release BLOCKED or FAILED with the failed state and cause, settle what is live (and roll it
back when the fleet says so), free the lock, tell people."""

from __future__ import annotations

from typing import Any

from release_train.adapters.ledger import Ledger
from release_train.adapters.metrics import MetricsPort, NoMetrics
from release_train.domain.release import Status
from release_train.services.context import ReleaseContext, cause_text, live_items, notify
from release_train.services.ending import settle_live
from release_train.services.live import LiveTracker
from release_train.services.ports import ClockPort, ExecutionsPort, FunctionsPort, NotifierPort
from release_train.services.stage_ports import PerAccount


class RecordFailureService:
    def __init__(
        self,
        ledger: Ledger,
        executions: ExecutionsPort,
        functions: FunctionsPort | PerAccount[FunctionsPort],
        notifier: NotifierPort,
        clock: ClockPort,
        metrics: MetricsPort | None = None,
    ) -> None:
        self._ledger, self._executions, self._notifier, self._clock = ledger, executions, notifier, clock
        self._metrics = metrics or NoMetrics()
        self._tracker = LiveTracker(ledger, functions)

    def record_failure(
        self, release_id: str, outcome: str, error: dict[str, Any], execution_arn: str
    ) -> dict[str, Any]:
        ctx = ReleaseContext(self._ledger, release_id)
        now = self._clock.now()
        status = Status.BLOCKED if outcome == "BLOCKED" else Status.FAILED
        name, cause = str(error.get("Error", "Unknown")), cause_text(error.get("Cause"))
        failed_state = self._failed_state(execution_arn)
        if name == "ApprovalTimedOut":
            for approval in self._ledger.pending_approvals(release_id):
                self._ledger.decide_approval(release_id, approval.stage, "TIMED_OUT", "release-train", cause)
        live = settle_live(self._ledger, self._tracker, ctx, now)
        reason = f"{name}: {cause}{live.reason_suffix()}"
        closed = self._ledger.close_release(release_id, status, reason, now, failed_state)
        self._ledger.release_lock(ctx.fleet.fleet, execution_arn)
        if closed:
            self._ledger.add_event(release_id, status.value.lower(), {"error": name, "state": failed_state}, now)
            self._metrics.release_ended(ctx.fleet.fleet, status)
            notify(
                self._notifier,
                ctx.fleet,
                f"Release {release_id} {status.value}: {name}",
                {
                    "kind": status.value.lower(),
                    "release_id": release_id,
                    "failed_state": failed_state,
                    "reason": reason,
                    "lines": [reason, *live.lines, *[f"rolled back {r}" for r in live.rolled_back]],
                },
                full=live_items(release_id, ctx.fleet.fleet),
            )
        return {"release_id": release_id, "status": status.value}

    def _failed_state(self, execution_arn: str) -> str | None:
        try:
            return self._executions.last_entered_state(execution_arn)
        except Exception:
            return None  # a missing detail must not stop the release from being closed
