"""LoadWave: whether one wave of one stage may start now (no hold, no freeze; invariant 1) and in how many chunks,
with the aliases its services' functions point to before it deploys (the alias journal); and, for a BuildChunk
execution, the builds of one chunk."""

from __future__ import annotations

from typing import Any

from release_train.adapters.ledger import Ledger
from release_train.domain.release import ManifestEntry, PromotionViolation, WaveBlocked
from release_train.domain.scale import chunk_of, chunk_plan
from release_train.events import InvalidEvent
from release_train.services.context import ReleaseContext, guard
from release_train.services.live import LiveTracker
from release_train.services.ports import ClockPort, FunctionsPort
from release_train.services.stage_ports import PerAccount


class LoadWaveService:
    def __init__(self, ledger: Ledger, functions: FunctionsPort | PerAccount[FunctionsPort], clock: ClockPort) -> None:
        self._ledger, self._clock = ledger, clock
        self._tracker = LiveTracker(ledger, functions)

    def load(self, release_id: str, stage: str, wave: int) -> dict[str, Any]:
        ctx = ReleaseContext(self._ledger, release_id)
        ctx.require_stage(stage, "LoadWave")
        entries = [e for e in ctx.manifest if e.wave == wave]
        now = self._clock.now()
        why = guard(ctx, self._ledger.holds(ctx.fleet.fleet), now, f"{stage} wave {wave}")
        if why is not None:
            deployed = sorted({b.wave for b in self._ledger.builds(release_id, stage)})
            done = ", ".join(str(w) for w in deployed) if deployed else "none"
            self._ledger.add_event(release_id, "wave_blocked", {"stage": stage, "wave": wave, "why": why}, now)
            raise WaveBlocked(f"{why}; {stage} waves deployed: {done}")
        index = ctx.stage_index(stage)
        if index > 0:
            self._check_promotion(ctx, entries, [s.name for s in ctx.fleet.stages[:index]])
        self._tracker.before_wave(ctx, stage, wave, entries)
        self._ledger.add_event(release_id, "wave_started", {"stage": stage, "wave": wave}, now)
        return chunk_plan(len(entries), ctx.fleet.defaults.build_concurrency).to_dict()

    def load_chunk(self, release_id: str, stage: str, wave: int, chunk: int) -> dict[str, Any]:
        """The builds of one chunk of a wave (BuildChunk's first state). The wave's checks ran in `load`."""
        ctx = ReleaseContext(self._ledger, release_id)
        ctx.require_stage(stage, "LoadWave")
        entries = {e.service: e for e in ctx.manifest if e.wave == wave}
        names = chunk_of(sorted(entries), chunk)
        if not names:
            plan = chunk_plan(len(entries), 1) if entries else None
            have = f"it has {plan.chunks} chunk(s)" if plan else "it has no services"
            raise InvalidEvent("LoadWave", [f"chunk: {chunk} is not a chunk of {stage} wave {wave}; {have}"])
        return {
            "builds": [
                {
                    "service": name,
                    "project": ctx.fleet.project_for(ctx.fleet.service(name), stage),
                    "commit": entries[name].commit,
                }
                for name in names
            ]
        }

    def _check_promotion(self, ctx: ReleaseContext, entries: list[ManifestEntry], earlier: list[str]) -> None:
        """Invariant 1: a later stage builds exactly the commit that succeeded in every earlier stage."""
        passed = {(b.stage, b.service): b for b in self._ledger.builds(ctx.record.release_id)}
        problems = []
        for e in entries:
            for stage in earlier:
                build = passed.get((stage, e.service))
                if build is None or build.status != "SUCCEEDED":
                    problems.append(f"{e.service} has no successful {stage} build")
                elif build.commit != e.commit:
                    problems.append(f"{e.service}: {stage} built {build.commit[:12]}, manifest pins {e.commit[:12]}")
        if problems:
            raise PromotionViolation("; ".join(problems))
