"""What happens to what is live when a release ends other than SUCCEEDED (RecordFailure, CleanupExecution).

If the last stage had begun deploying: observe what every riding service runs there, roll back the aliases this
release moved when the fleet says so (`on_prod_failure: rollback`), and say exactly which services run which commit.
Waves that started but were never recorded (a cancel mid-wave) are settled here: services with declared functions
through their aliases, the others are recorded unknown (their build was stopped; their stack may still be updating).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from release_train.adapters.ledger import Ledger
from release_train.domain.live import UNKNOWN, Live
from release_train.services.context import ReleaseContext, iso
from release_train.services.live import LiveTracker


@dataclass
class LiveAfterEnd:
    headline: str | None = None  # "prod runs new code for 4 of 6 services: ..." (None: the last stage was untouched)
    lines: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)

    def reason_suffix(self) -> str:
        return f". {self.headline}" if self.headline else ""


def settle_live(ledger: Ledger, tracker: LiveTracker, ctx: ReleaseContext, now: datetime) -> LiveAfterEnd:
    release_id = ctx.record.release_id
    events = ledger.events(release_id)
    started = {(e["detail"]["stage"], int(e["detail"]["wave"])) for e in events if e["kind"] == "wave_started"}
    recorded = {(e["detail"]["stage"], int(e["detail"]["wave"])) for e in events if e["kind"] == "wave_recorded"}
    for stage, wave in sorted(started - recorded):
        unrecorded = [
            Live(
                stage,
                e.service,
                UNKNOWN,
                release_id,
                "build stopped mid-deploy; stack state not observed",
                observed_at=iso(now),
            )
            for e in ctx.manifest
            # no alias to observe: services without a deploy block and ECS services (the tracker sees only aliases)
            if e.wave == wave and ctx.fleet.service(e.service).lambda_deploy is None
        ]
        ledger.set_live(ctx.fleet.fleet, unrecorded)
        tracker.observe(ctx, stage, now)
    last = ctx.fleet.stages[-1].name
    if not any(stage == last for stage, _ in started):
        return LiveAfterEnd()
    rolled_back = tracker.roll_back(ctx, last, now) if ctx.fleet.on_prod_failure == "rollback" else []
    headline, lines, _ = tracker.report(ctx.fleet, last, {e.service: e.commit for e in ctx.manifest})
    ledger.add_event(
        release_id,
        "live_after_end",
        {"stage": last, "headline": headline, "lines": lines, "rolled_back": rolled_back},
        now,
    )
    return LiveAfterEnd(headline, lines, rolled_back)
