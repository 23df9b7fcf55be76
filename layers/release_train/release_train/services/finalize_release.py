"""FinalizeRelease: the release becomes the baseline and is closed SUCCEEDED in one transaction; the lock is freed.

It refuses a release whose stages did not all promote (an ordering defect), and it changes nothing for a release
that is no longer RUNNING (a cancel's clean-up got there first: the baseline must not move)."""

from __future__ import annotations

from typing import Any

from release_train.adapters.ledger import Ledger
from release_train.adapters.metrics import MetricsPort, NoMetrics
from release_train.domain.release import NotFinalizable, Status
from release_train.services.context import ReleaseContext, notify, release_notes
from release_train.services.ports import ClockPort, NotifierPort


class FinalizeService:
    def __init__(
        self, ledger: Ledger, notifier: NotifierPort, clock: ClockPort, metrics: MetricsPort | None = None
    ) -> None:
        self._ledger, self._notifier, self._clock = ledger, notifier, clock
        self._metrics = metrics or NoMetrics()

    def finalize(self, release_id: str) -> dict[str, Any]:
        ctx = ReleaseContext(self._ledger, release_id)
        verdicts = {g["stage"]: g["verdict"] for g in self._ledger.gates(release_id)}
        missing = [s.name for s in ctx.fleet.stages if verdicts.get(s.name) != "PROMOTE"]
        if missing:
            raise NotFinalizable(f"release {release_id}: stages without a PROMOTE verdict: {missing}")
        now = self._clock.now()
        finalized = self._ledger.finalize(release_id, ctx.fleet.fleet, {e.service: e.commit for e in ctx.manifest}, now)
        self._ledger.release_lock(ctx.fleet.fleet, ctx.record.execution_arn)
        if not finalized:
            current = self._ledger.release(release_id)
            status = current.status.value if current else "?"
            self._ledger.add_event(release_id, "finalize_refused", {"status": status}, now)
            return {"release_id": release_id, "status": status, "finalized": False}
        self._ledger.add_event(release_id, "succeeded", {}, now)
        self._metrics.release_ended(ctx.fleet.fleet, Status.SUCCEEDED)
        self._metrics.lead_time(ctx.fleet.fleet, ctx.record.created_at, now)
        notify(
            self._notifier,
            ctx.fleet,
            f"Release {release_id} shipped: {len(ctx.manifest)} services",
            {"kind": "succeeded", "release_id": release_id, "lines": release_notes(ctx)},
        )
        return {"release_id": release_id, "status": Status.SUCCEEDED.value, "finalized": True}
