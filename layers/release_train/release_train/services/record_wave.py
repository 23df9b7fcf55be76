"""RecordWave: record a wave's build results and what its services run now (observed); WaveFailed if a build failed."""

from __future__ import annotations

from typing import Any

from release_train.adapters.ledger import BuildRecord, Ledger
from release_train.domain.release import WaveFailed
from release_train.events import InvalidEvent
from release_train.services.context import ReleaseContext, build_id_from_cause, build_status
from release_train.services.live import LiveTracker
from release_train.services.ports import ClockPort, FunctionsPort


class RecordWaveService:
    def __init__(self, ledger: Ledger, functions: FunctionsPort, clock: ClockPort) -> None:
        self._ledger, self._clock = ledger, clock
        self._tracker = LiveTracker(ledger, functions)

    def record(self, release_id: str, stage: str, wave: int, results: list[dict[str, Any]]) -> dict[str, Any]:
        ctx = ReleaseContext(self._ledger, release_id)
        ctx.require_stage(stage, "RecordWave")
        commits = {e.service: e.commit for e in ctx.manifest}
        strangers = [
            f"results[{i}].service: {r['service']!r} does not ride release {release_id}"
            for i, r in enumerate(results)
            if r["service"] not in commits
        ]
        if strangers:  # refused before the first write, not a KeyError halfway through
            raise InvalidEvent("RecordWave", strangers)
        records = [
            BuildRecord(
                stage=stage,
                service=r["service"],
                status=build_status(r),
                build_id=r.get("build_id") or build_id_from_cause(r.get("cause")),
                commit=commits[r["service"]],
                wave=wave,
                error=None if r.get("status") == "SUCCEEDED" else f"{r.get('error', '')}: {r.get('cause', '')}".strip(),
            )
            for r in results
        ]
        self._ledger.record_builds(release_id, records)
        now = self._clock.now()
        self._tracker.after_wave(ctx, stage, wave, {r.service: r.status for r in records}, now)
        failed = [r for r in records if r.status != "SUCCEEDED"]
        self._ledger.add_event(
            release_id,
            "wave_recorded",
            {"stage": stage, "wave": wave, "builds": len(records), "failed": [f.service for f in failed]},
            now,
        )
        if failed:
            names = ", ".join(f"{f.service} ({f.status})" for f in failed)
            raise WaveFailed(f"{stage} wave {wave}: {len(failed)} of {len(records)} builds failed: {names}")
        return {"stage": stage, "wave": wave, "succeeded": len(records)}
