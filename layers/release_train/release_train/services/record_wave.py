"""RecordWave, in three steps that keep every payload small (ADR 0007):

- `summarise_failure` (BuildChunk's BuildFailed): a failed build's ~4 KB cause becomes a few hundred bytes;
- `record_chunk` (BuildChunk's RecordChunk): a chunk's build results go to the ledger;
- `record` (the release's RecordWave): the wave's records, read back from the ledger, decide the wave; what its
  services run now is observed (`LIVE#`); WaveFailed if a build failed or a chunk never recorded its builds.
"""

from __future__ import annotations

from typing import Any

from release_train.adapters.ledger import BuildRecord, Ledger
from release_train.adapters.metrics import MetricsPort, NoMetrics
from release_train.domain.release import WaveFailed
from release_train.domain.scale import CHUNK_SIZE, chunk_of
from release_train.events import InvalidEvent
from release_train.services.context import ReleaseContext, build_from_cause, build_id_from_cause
from release_train.services.live import LiveTracker
from release_train.services.ports import ClockPort, FunctionsPort
from release_train.services.stage_ports import PerAccount

SUMMARY_CHARS = 500  # a failed build's summary in the payload; the ledger keeps up to 2,000 characters


def summarise_failure(service: str, error: str, cause: str | None) -> dict[str, Any]:
    """What a failed build says, short: CodeBuild's verdict (TIMED_OUT, FAULT, STOPPED, FAILED), its id, and the
    failed phase's message. A cause that is not a build (StartBuild refused) is kept as text."""
    build = build_from_cause(cause)
    if not build:
        text = f"{error}: {cause or ''}".strip().rstrip(":")
        return {"service": service, "status": "FAILED", "build_id": None, "error": text[:SUMMARY_CHARS]}
    status = str(build.get("BuildStatus") or build.get("buildStatus") or "FAILED")
    if status == "SUCCEEDED":  # not a build failure after all: Step Functions failed the task for another reason
        status = "FAILED"
    phases = build.get("Phases") or build.get("phases") or []
    failed = next(
        (p for p in phases if (p.get("PhaseStatus") or p.get("phaseStatus")) not in (None, "SUCCEEDED")),
        None,
    )
    where = ""
    if failed is not None:
        contexts = failed.get("Contexts") or failed.get("contexts") or []
        message = "; ".join(str(c.get("Message") or c.get("message") or "") for c in contexts if c)
        where = f" in {failed.get('PhaseType') or failed.get('phaseType')}" + (f": {message}" if message else "")
    text = f"{error}: build {status}{where}"
    return {
        "service": service,
        "status": status,
        "build_id": build_id_from_cause(cause),
        "error": text[:SUMMARY_CHARS],
    }


class RecordWaveService:
    def __init__(
        self,
        ledger: Ledger,
        functions: FunctionsPort | PerAccount[FunctionsPort],
        clock: ClockPort,
        metrics: MetricsPort | None = None,
    ) -> None:
        self._ledger, self._clock = ledger, clock
        self._metrics = metrics or NoMetrics()
        self._tracker = LiveTracker(ledger, functions)

    def record_chunk(
        self, release_id: str, stage: str, wave: int, chunk: int, results: list[dict[str, Any]]
    ) -> dict[str, Any]:
        ctx = ReleaseContext(self._ledger, release_id)
        ctx.require_stage(stage, "RecordWave")
        commits = {e.service: e.commit for e in ctx.manifest if e.wave == wave}
        expected = set(chunk_of(sorted(commits), chunk))
        strangers = [
            f"results[{i}].service: {r['service']!r} is not in chunk {chunk} of {stage} wave {wave} of {release_id}"
            for i, r in enumerate(results)
            if r["service"] not in expected
        ]
        if strangers:  # refused before the first write, not a KeyError halfway through
            raise InvalidEvent("RecordWave", strangers)
        records = [
            BuildRecord(
                stage=stage,
                service=r["service"],
                status=str(r["status"]),
                build_id=r.get("build_id"),
                commit=commits[r["service"]],
                wave=wave,
                error=None if r["status"] == "SUCCEEDED" else str(r.get("error") or r["status"]),
            )
            for r in results
        ]
        self._ledger.record_builds(release_id, records)
        failed = sum(1 for r in records if r.status != "SUCCEEDED")
        return {"chunk": chunk, "builds": len(records), "failed": failed}

    def record(self, release_id: str, stage: str, wave: int, chunks: list[dict[str, Any]]) -> dict[str, Any]:
        ctx = ReleaseContext(self._ledger, release_id)
        ctx.require_stage(stage, "RecordWave")
        commits = {e.service: e.commit for e in ctx.manifest if e.wave == wave}
        recorded = {b.service: b for b in self._ledger.builds(release_id, stage) if b.wave == wave}
        chunk_errors = {int(c["chunk"]): str(c.get("error") or "") for c in chunks if c["status"] != "SUCCEEDED"}
        # A chunk execution that failed, or one that ended without recording (it was stopped), leaves services
        # without a record: they did not succeed, and the ledger says why.
        missing = []
        for index, name in enumerate(sorted(commits)):
            if name in recorded:
                continue
            chunk = index // CHUNK_SIZE
            why = chunk_errors.get(chunk, "")
            missing.append(
                BuildRecord(
                    stage=stage,
                    service=name,
                    status="FAILED",
                    build_id=None,
                    commit=commits[name],
                    wave=wave,
                    error=f"chunk {chunk} of the wave ended without recording this build" + (f": {why}" if why else ""),
                )
            )
        if missing:
            self._ledger.record_builds(release_id, missing)
        records = [*recorded.values(), *missing]
        now = self._clock.now()
        self._tracker.after_wave(ctx, stage, wave, {r.service: r.status for r in records}, now)
        failed = sorted((r for r in records if r.status != "SUCCEEDED"), key=lambda r: r.service)
        self._ledger.add_event(
            release_id,
            "wave_recorded",
            {"stage": stage, "wave": wave, "builds": len(records), "failed": [f.service for f in failed]},
            now,
        )
        self._metrics.build_failures(ctx.fleet.fleet, len(failed))
        if failed:
            shown = ", ".join(f"{f.service} ({f.status})" for f in failed[:20])
            more = f" and {len(failed) - 20} more" if len(failed) > 20 else ""
            raise WaveFailed(f"{stage} wave {wave}: {len(failed)} of {len(records)} builds failed: {shown}{more}")
        return {"stage": stage, "wave": wave, "succeeded": len(records)}
