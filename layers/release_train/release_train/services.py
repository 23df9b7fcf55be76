"""Use cases the handlers call. Each receives its adapters; none builds a client or reads the environment."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any, Protocol

from release_train.adapters.ledger import ApprovalRecord, BuildRecord, Ledger, ReleaseRecord
from release_train.adapters.sources import describe
from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import Fleet, utc
from release_train.domain.release import (
    ApprovalNotWaiting,
    ApprovalRejected,
    Evidence,
    GateBlocked,
    ManifestEntry,
    PromotionViolation,
    ReleaseAlreadyExists,
    ReleaseInProgress,
    Status,
    TestEvidence,
    WaveFailed,
    decide,
    parse_execution_input,
    release_id_for,
    select_services,
)

# --- ports (what the services need from the outside world) -------------------------------------------------------


class ClockPort(Protocol):
    def now(self) -> datetime: ...


class FleetPort(Protocol):
    def load(self) -> tuple[Fleet, str | None]: ...


class SourcesPort(Protocol):
    def head(self, source: Any) -> str: ...


class ExecutionsPort(Protocol):
    def is_running(self, execution_arn: str) -> bool: ...
    def status(self, execution_arn: str) -> str | None: ...
    def last_entered_state(self, execution_arn: str) -> str | None: ...
    def approve(self, task_token: str, output: dict[str, Any]) -> None: ...
    def reject(self, task_token: str, error: str, cause: str) -> None: ...


class NotifierPort(Protocol):
    def send(self, subject: str, body: dict[str, Any], webhook_secret: str | None = None) -> bool: ...


class CodeBuildPort(Protocol):
    def running_builds_for_release(self, projects: list[str], release_id: str) -> list[str]: ...
    def stop(self, build_id: str) -> None: ...
    def test_evidence(self, build_id: str) -> TestEvidence | None: ...


class AlarmsPort(Protocol):
    def evidence(self, selector: Any, start: datetime, end: datetime) -> list[Any]: ...


# --- shared helpers -----------------------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return utc(moment).isoformat(timespec="seconds")


class _ReleaseContext:
    """A release and the fleet pinned when it was planned (later edits to fleet.yaml do not change a running train)."""

    def __init__(self, ledger: Ledger, release_id: str) -> None:
        record = ledger.release(release_id)
        if record is None:
            raise KeyError(f"release {release_id} is not in the ledger")
        self.record: ReleaseRecord = record
        pinned = ledger.pinned_fleet(release_id)
        self.fleet: Fleet = Fleet.model_validate(pinned)
        self.manifest: list[ManifestEntry] = ledger.manifest(release_id)

    def stage_index(self, stage: str) -> int:
        return [s.name for s in self.fleet.stages].index(stage)


def _notify(notifier: NotifierPort, fleet: Fleet | None, subject: str, body: dict[str, Any]) -> None:
    notifier.send(subject, body, fleet.notifications.webhook_secret if fleet else None)


def _release_notes(ctx: _ReleaseContext) -> list[str]:
    lines = []
    for e in sorted(ctx.manifest, key=lambda m: (m.wave, m.service)):
        since = e.previous_commit[:12] if e.previous_commit else "first release"
        lines.append(f"{e.service}: {since}..{e.commit[:12]} ({e.source}, wave {e.wave})")
    return lines


# --- plan ---------------------------------------------------------------------------------------------------------


class PlanService:
    def __init__(
        self,
        ledger: Ledger,
        fleets: FleetPort,
        sources: SourcesPort,
        executions: ExecutionsPort,
        notifier: NotifierPort,
        clock: ClockPort,
    ) -> None:
        self._ledger, self._fleets, self._sources = ledger, fleets, sources
        self._executions, self._notifier, self._clock = executions, notifier, clock

    def plan(self, raw_input: Any, execution_arn: str, execution_name: str) -> dict[str, Any]:
        # Everything that can be wrong with the input is checked before the first write.
        request = parse_execution_input(raw_input)
        fleet, fleet_version = self._fleets.load()
        now = self._clock.now()
        release_id = release_id_for(request, execution_name, now)
        heads = {s.name: self._sources.head(s.source) for s in fleet.services}
        baseline_id, baseline = self._ledger.baseline(fleet.fleet)
        changes, unknown = select_services(fleet, request, heads, baseline)
        if unknown:
            raise InvalidInput("execution input", [f"services: not in fleet {fleet.fleet}: {unknown}"])

        self._take_lock(fleet.fleet, release_id, execution_arn, now)
        try:
            created = self._ledger.create_release(
                ReleaseRecord(
                    release_id=release_id,
                    fleet=fleet.fleet,
                    status=Status.RUNNING,
                    reason="planned",
                    execution_arn=execution_arn,
                    created_at=_iso(now),
                    stages=[s.name for s in fleet.stages],
                    requested_by=request.requested_by,
                    fleet_version=fleet_version,
                ),
                pinned_fleet=fleet.model_dump(mode="json"),
            )
            if not created:
                raise ReleaseAlreadyExists(f"release {release_id} was already started; a schedule fires once per week")
            return self._plan_release(fleet, release_id, changes, baseline_id, request.requested_by, now)
        except ReleaseAlreadyExists:
            self._ledger.release_lock(fleet.fleet, execution_arn)
            raise
        except Exception as exc:
            # We hold the lock and maybe a RUNNING release: close both before the error leaves (invariant 3).
            self._ledger.close_release(release_id, Status.FAILED, f"plan failed: {exc}", now, "PlanRelease")
            self._ledger.release_lock(fleet.fleet, execution_arn)
            raise

    def _plan_release(
        self,
        fleet: Fleet,
        release_id: str,
        changes: list[Any],
        baseline_id: str | None,
        requested_by: str,
        now: datetime,
    ) -> dict[str, Any]:
        by_name = {s.name: s for s in fleet.services}
        frozen = fleet.freeze_at(now)
        if frozen is not None:
            reopens = fleet.next_open_time(now)
            reason = f"freeze window '{frozen.reason}' until {_iso(frozen.end)}; next open time {_iso(reopens)}"
            return self._close_early(fleet, release_id, Status.BLOCKED, reason, now)
        if not changes:
            reason = f"no service changed since {baseline_id or 'the first release'}"
            return self._close_early(fleet, release_id, Status.NOTHING_TO_RELEASE, reason, now)

        entries = [
            ManifestEntry(
                c.service, c.commit, c.previous_commit, by_name[c.service].wave, describe(by_name[c.service].source)
            )
            for c in changes
        ]
        self._ledger.put_manifest(release_id, entries)
        waves = sorted({e.wave for e in entries})
        self._ledger.add_event(release_id, "planned", {"services": len(entries), "waves": waves}, now)
        _notify(
            self._notifier,
            fleet,
            f"Release {release_id} started: {len(entries)} services",
            {
                "kind": "started",
                "release_id": release_id,
                "requested_by": requested_by,
                "lines": [f"{e.service} -> {e.commit[:12]} (wave {e.wave})" for e in entries],
            },
        )
        stages = []
        for stage in fleet.stages:
            item: dict[str, Any] = {"name": stage.name, "waves": waves, "bake_seconds": int(stage.bake.total_seconds())}
            if stage.test_project:
                item["test_project"] = stage.test_project
            if stage.approval.required:
                item["approval_timeout_seconds"] = int(stage.approval.timeout.total_seconds())
            stages.append(item)
        return {
            "release_id": release_id,
            "status": Status.RUNNING.value,
            "reason": "planned",
            "service_count": len(entries),
            "build_concurrency": fleet.defaults.build_concurrency,
            "stages": stages,
        }

    def _close_early(self, fleet: Fleet, release_id: str, status: Status, reason: str, now: datetime) -> dict[str, Any]:
        record = self._ledger.release(release_id)
        self._ledger.close_release(release_id, status, reason, now)
        if record is not None:
            self._ledger.release_lock(fleet.fleet, record.execution_arn)
        _notify(
            self._notifier,
            fleet,
            f"Release {release_id}: {status.value}",
            {"kind": status.value.lower(), "release_id": release_id, "reason": reason, "lines": [reason]},
        )
        return {
            "release_id": release_id,
            "status": status.value,
            "reason": reason,
            "stages": [],
            "service_count": 0,
            "build_concurrency": 1,
        }

    def _take_lock(self, fleet: str, release_id: str, execution_arn: str, now: datetime) -> None:
        holder = self._ledger.acquire_lock(fleet, release_id, execution_arn, now)
        if holder is None:
            return
        if holder.release_id == release_id:
            raise ReleaseAlreadyExists(f"release {release_id} is already running ({holder.execution_arn})")
        if not self._executions.is_running(holder.execution_arn):
            # The holder ended without cleaning up (its clean-up event was lost: EventBridge delivers best effort):
            # reclaim, conditionally, and close its release, which nobody else will (invariant 3).
            if self._ledger.steal_lock(fleet, holder.execution_arn, release_id, execution_arn, now):
                self._ledger.add_event(holder.release_id, "lock_reclaimed", {"by": release_id}, now)
                self._close_abandoned(holder.release_id, holder.execution_arn, release_id, now)
                return
        elif self._supersede_pending_approvals(holder.release_id, release_id, now) and self._ledger.steal_lock(
            fleet, holder.execution_arn, release_id, execution_arn, now
        ):
            return
        raise ReleaseInProgress(
            f"release {holder.release_id} holds the {fleet} train lock since {holder.acquired_at} "
            f"({holder.execution_arn}); this start was refused, not queued"
        )

    def _close_abandoned(self, old_release: str, execution_arn: str, new_release: str, now: datetime) -> None:
        try:
            ended = self._executions.status(execution_arn) or "ENDED"
        except Exception:
            ended = "ENDED"  # unreadable: the release is still closed, with what we know
        status = Status.CANCELLED if ended == "ABORTED" else Status.FAILED
        reason = f"execution {ended} and its clean-up never ran; closed when release {new_release} reclaimed the lock"
        if self._ledger.close_release(old_release, status, reason, now):
            for approval in self._ledger.pending_approvals(old_release):
                self._ledger.decide_approval(old_release, approval.stage, "CANCELLED", "release-train", reason)
            self._notifier.send(
                f"Release {old_release} {status.value}",
                {"kind": status.value.lower(), "release_id": old_release, "reason": reason, "lines": [reason]},
            )

    def _supersede_pending_approvals(self, old_release: str, new_release: str, now: datetime) -> bool:
        """A train waiting only for a human is replaced by the newer train: its approval is rejected with why."""
        pending = self._ledger.pending_approvals(old_release)
        for approval in pending:
            reason = f"superseded by release {new_release}"
            if self._ledger.decide_approval(old_release, approval.stage, "SUPERSEDED", "release-train", reason):
                self._executions.reject(approval.task_token, "ApprovalRejected", reason)
                self._ledger.add_event(old_release, "approval_superseded", {"by": new_release}, now)
        return bool(pending)


# --- waves --------------------------------------------------------------------------------------------------------


class WaveService:
    def __init__(self, ledger: Ledger, clock: ClockPort) -> None:
        self._ledger, self._clock = ledger, clock

    def load(self, release_id: str, stage: str, wave: int) -> dict[str, Any]:
        ctx = _ReleaseContext(self._ledger, release_id)
        entries = [e for e in ctx.manifest if e.wave == wave]
        index = ctx.stage_index(stage)
        if index > 0:
            self._check_promotion(ctx, entries, [s.name for s in ctx.fleet.stages[:index]])
        return {
            "builds": [
                {
                    "service": e.service,
                    "project": ctx.fleet.project_for(ctx.fleet.service(e.service), stage),
                    "commit": e.commit,
                }
                for e in sorted(entries, key=lambda m: m.service)
            ]
        }

    def _check_promotion(self, ctx: _ReleaseContext, entries: list[ManifestEntry], earlier: list[str]) -> None:
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

    def record(self, release_id: str, stage: str, wave: int, results: list[dict[str, Any]]) -> dict[str, Any]:
        ctx = _ReleaseContext(self._ledger, release_id)
        commits = {e.service: e.commit for e in ctx.manifest}
        records = [
            BuildRecord(
                stage=stage,
                service=r["service"],
                status=_build_status(r),
                build_id=r.get("build_id") or _build_id_from_cause(r.get("cause")),
                commit=commits[r["service"]],
                wave=wave,
                error=None if r.get("status") == "SUCCEEDED" else f"{r.get('error', '')}: {r.get('cause', '')}".strip(),
            )
            for r in results
        ]
        self._ledger.record_builds(release_id, records)
        failed = [r for r in records if r.status != "SUCCEEDED"]
        now = self._clock.now()
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


def _build_status(result: dict[str, Any]) -> str:
    """A failed .sync build arrives as status FAILED with the build as its cause: keep CodeBuild's own verdict
    (TIMED_OUT, FAULT, STOPPED) so the ledger and the reason say what really happened."""
    status = str(result.get("status", "FAILED"))
    if status == "SUCCEEDED":
        return status
    build = _build_from_cause(result.get("cause"))
    return str(build.get("BuildStatus") or build.get("buildStatus") or status) if build else status


def _build_from_cause(cause: Any) -> dict[str, Any] | None:
    try:
        build = json.loads(cause) if isinstance(cause, str) else None
    except ValueError:
        return None
    if isinstance(build, dict):
        nested = build.get("Build")
        return nested if isinstance(nested, dict) else build
    return None


def _build_id_from_cause(cause: Any) -> str | None:
    """A failed .sync build's cause is the build as JSON; keep its id for the operator."""
    try:
        build = json.loads(cause) if isinstance(cause, str) else None
    except ValueError:
        return None
    if isinstance(build, dict):
        value = build.get("Id") or build.get("id") or build.get("Build", {}).get("Id")
        return str(value) if value else None
    return None


# --- gate ---------------------------------------------------------------------------------------------------------


class GateService:
    def __init__(
        self, ledger: Ledger, codebuild: CodeBuildPort, alarms: AlarmsPort, notifier: NotifierPort, clock: ClockPort
    ) -> None:
        self._ledger, self._codebuild, self._alarms = ledger, codebuild, alarms
        self._notifier, self._clock = notifier, clock

    def evaluate(self, state: dict[str, Any]) -> dict[str, Any]:
        release_id, stage_name = state["release_id"], state["stage"]["name"]
        evidence = self.collect(state)
        now = self._clock.now()
        decision = decide(evidence)
        evidence_doc = asdict(evidence)
        self._ledger.put_gate(release_id, stage_name, decision.verdict.value, list(decision.reasons), evidence_doc)
        self._ledger.add_event(
            release_id,
            "gate",
            {"stage": stage_name, "verdict": decision.verdict.value, "reasons": list(decision.reasons)},
            now,
        )
        if decision.reasons:
            raise GateBlocked(f"{stage_name}: " + "; ".join(decision.reasons))
        return {"stage": stage_name, "verdict": decision.verdict.value}

    def collect(self, state: dict[str, Any]) -> Evidence:
        """Everything the gate looks at for this stage iteration's state, read now; None where unreadable."""
        release_id, stage_name = state["release_id"], state["stage"]["name"]
        ctx = _ReleaseContext(self._ledger, release_id)
        stage = ctx.fleet.stages[ctx.stage_index(stage_name)]
        now = self._clock.now()
        evidence = Evidence(
            stage=stage_name, tests_expected=bool(stage.test_project), alarms_expected=stage.alarms is not None
        )
        builds = self._ledger.builds(release_id, stage_name)
        riding = {e.service for e in ctx.manifest}
        built = {b.service for b in builds if b.status == "SUCCEEDED"}
        evidence.builds_succeeded = riding <= built if builds else None

        if stage.test_project:
            build_id = (state.get("tests") or {}).get("build_id") or _build_id_from_cause(
                (state.get("tests_error") or {}).get("Cause")
            )
            if build_id is None:
                evidence.missing.append("the test run did not start or left no build id")
            else:
                try:
                    evidence.tests = self._codebuild.test_evidence(build_id)
                except Exception as exc:
                    evidence.missing.append(f"test reports of {build_id} unreadable: {exc}")

        if stage.alarms is not None:
            start = self._bake_started(release_id, stage_name) or now
            try:
                evidence.alarms = self._alarms.evidence(stage.alarms, start, now)
            except Exception as exc:
                evidence.missing.append(f"alarms unreadable: {exc}")

        try:
            evidence.holds = [h for h in self._ledger.holds(ctx.fleet.fleet) if h.scope in riding | {"*"}]
        except Exception as exc:
            evidence.missing.append(f"holds unreadable: {exc}")
        frozen = ctx.fleet.freeze_at(now)
        evidence.freeze_reason = f"{frozen.reason} until {_iso(frozen.end)}" if frozen else None
        return evidence

    def _bake_started(self, release_id: str, stage: str) -> datetime | None:
        times = [
            e["at"]
            for e in self._ledger.events(release_id)
            if e["kind"] == "wave_recorded" and e["detail"].get("stage") == stage
        ]
        return datetime.fromisoformat(max(times)) if times else None


# --- approval -----------------------------------------------------------------------------------------------------


class EvidencePort(Protocol):
    def collect(self, state: dict[str, Any]) -> Evidence: ...


class ApprovalService:
    def __init__(
        self,
        ledger: Ledger,
        executions: ExecutionsPort,
        notifier: NotifierPort,
        clock: ClockPort,
        evidence: EvidencePort | None = None,
    ) -> None:
        self._ledger, self._executions, self._notifier, self._clock = ledger, executions, notifier, clock
        self._evidence = evidence  # the gate's own collection: the approver sees what the gate will see

    def request(
        self, release_id: str, stage: str, task_token: str, state: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        ctx = _ReleaseContext(self._ledger, release_id)
        now = self._clock.now()
        packet: dict[str, Any] = {
            "release_id": release_id,
            "stage": stage,
            "services": _release_notes(ctx),
            "earlier_stages": [
                {
                    "stage": g["stage"],
                    "verdict": g["verdict"],
                    "tests": g["evidence"].get("tests"),
                    "alarms": [a["name"] + ":" + a["state_now"] for a in g["evidence"].get("alarms") or []],
                }
                for g in self._ledger.gates(release_id)
            ],
            "this_stage": self._preview(state),
            "approve": f"trainctl approve {release_id} --stage {stage}",
            "reject": f"trainctl reject {release_id} --stage {stage} --reason '...'",
        }
        self._ledger.put_approval(release_id, ApprovalRecord(stage, "PENDING", task_token, _iso(now)), packet)
        self._ledger.add_event(release_id, "approval_requested", {"stage": stage}, now)
        _notify(
            self._notifier,
            ctx.fleet,
            f"Approval needed: release {release_id} -> {stage}",
            {"kind": "approval", **packet, "lines": packet["services"]},
        )
        return {"stage": stage, "status": "PENDING"}

    def _preview(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        """This stage's tests, alarms over the bake, holds and freeze, and what the gate would say about them now."""
        if self._evidence is None or not state:
            return None
        try:
            evidence = self._evidence.collect(state)
        except Exception as exc:  # the packet must still go out; the gate itself fails closed later
            return {"unavailable": f"{type(exc).__name__}: {exc}"}
        return {
            "tests": {**asdict(evidence.tests), "report_arns": list(evidence.tests.report_arns)}
            if evidence.tests
            else None,
            "alarms": [
                f"{a.name}: {a.state_now}" + (" (fired during the bake)" if a.fired_during_bake else "")
                for a in evidence.alarms or []
            ],
            "holds": [f"{h.scope}: {h.reason} ({h.by})" for h in evidence.holds or []],
            "gate_would_block_for": list(decide(evidence).reasons),
        }

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


# --- finalize, failure, clean-up ----------------------------------------------------------------------------------


class CloseService:
    """Every way a release ends goes through here, so lock release and notification cannot be forgotten."""

    def __init__(
        self,
        ledger: Ledger,
        executions: ExecutionsPort,
        codebuild: CodeBuildPort,
        notifier: NotifierPort,
        clock: ClockPort,
    ) -> None:
        self._ledger, self._executions, self._codebuild = ledger, executions, codebuild
        self._notifier, self._clock = notifier, clock

    def finalize(self, release_id: str) -> dict[str, Any]:
        ctx = _ReleaseContext(self._ledger, release_id)
        now = self._clock.now()
        self._ledger.set_baseline(ctx.fleet.fleet, release_id, {e.service: e.commit for e in ctx.manifest})
        closed = self._ledger.close_release(release_id, Status.SUCCEEDED, "all stages promoted", now)
        self._ledger.release_lock(ctx.fleet.fleet, ctx.record.execution_arn)
        if closed:
            self._ledger.add_event(release_id, "succeeded", {}, now)
            _notify(
                self._notifier,
                ctx.fleet,
                f"Release {release_id} shipped: {len(ctx.manifest)} services",
                {"kind": "succeeded", "release_id": release_id, "lines": _release_notes(ctx)},
            )
        return {"release_id": release_id, "status": Status.SUCCEEDED.value}

    def record_failure(
        self, release_id: str, outcome: str, error: dict[str, Any], execution_arn: str
    ) -> dict[str, Any]:
        ctx = _ReleaseContext(self._ledger, release_id)
        now = self._clock.now()
        status = Status.BLOCKED if outcome == "BLOCKED" else Status.FAILED
        name, cause = str(error.get("Error", "Unknown")), _cause_text(error.get("Cause"))
        failed_state = self._failed_state(execution_arn)
        if name == "ApprovalTimedOut":
            for approval in self._ledger.pending_approvals(release_id):
                self._ledger.decide_approval(release_id, approval.stage, "TIMED_OUT", "release-train", cause)
        reason = f"{name}: {cause}"
        closed = self._ledger.close_release(release_id, status, reason, now, failed_state)
        self._ledger.release_lock(ctx.fleet.fleet, execution_arn)
        if closed:
            self._ledger.add_event(release_id, status.value.lower(), {"error": name, "state": failed_state}, now)
            _notify(
                self._notifier,
                ctx.fleet,
                f"Release {release_id} {status.value}: {name}",
                {
                    "kind": status.value.lower(),
                    "release_id": release_id,
                    "failed_state": failed_state,
                    "reason": reason,
                    "lines": [reason],
                },
            )
        return {"release_id": release_id, "status": status.value}

    def _failed_state(self, execution_arn: str) -> str | None:
        try:
            return self._executions.last_entered_state(execution_arn)
        except Exception:
            return None  # a missing detail must not stop the release from being closed

    def cleanup(self, detail: dict[str, Any]) -> dict[str, Any]:
        """EventBridge 'Step Functions Execution Status Change' (ABORTED, FAILED, TIMED_OUT); at-least-once."""
        execution_arn, sfn_status = detail["executionArn"], detail["status"]
        release_id = self._ledger.release_for_execution(execution_arn)
        if release_id is None:
            return {"execution": execution_arn, "action": "none: this execution never owned a release"}
        ctx = _ReleaseContext(self._ledger, release_id)
        now = self._clock.now()
        projects = [
            ctx.fleet.project_for(ctx.fleet.service(e.service), s.name) for e in ctx.manifest for s in ctx.fleet.stages
        ]
        projects += [s.test_project for s in ctx.fleet.stages if s.test_project]
        stopped = []
        for build_id in self._codebuild.running_builds_for_release(projects, release_id):
            try:
                self._codebuild.stop(build_id)
                stopped.append(build_id)
            except Exception:
                pass  # already finished between the list and the stop
        for approval in self._ledger.pending_approvals(release_id):
            self._ledger.decide_approval(release_id, approval.stage, "CANCELLED", "release-train", sfn_status)
        status = Status.CANCELLED if sfn_status == "ABORTED" else Status.FAILED
        cause = detail.get("cause") or detail.get("error") or f"execution {sfn_status}"
        reason = f"execution {sfn_status}: {cause}"
        closed = self._ledger.close_release(release_id, status, reason, now, None)
        self._ledger.release_lock(ctx.fleet.fleet, execution_arn)
        if closed:
            self._ledger.add_event(release_id, "cleaned_up", {"status": sfn_status, "stopped_builds": stopped}, now)
            _notify(
                self._notifier,
                ctx.fleet,
                f"Release {release_id} {status.value}",
                {
                    "kind": status.value.lower(),
                    "release_id": release_id,
                    "reason": reason,
                    "stopped_builds": stopped,
                    "lines": [reason, f"stopped {len(stopped)} running builds"],
                },
            )
        return {"release_id": release_id, "closed": closed, "stopped_builds": stopped}


def _cause_text(cause: Any) -> str:
    """Lambda errors arrive as a JSON cause with errorMessage; builds as the build JSON. Keep it readable and short."""
    if not isinstance(cause, str):
        return str(cause or "")
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause[:1000]
    if isinstance(parsed, dict):
        if "errorMessage" in parsed:
            return str(parsed["errorMessage"])[:1000]
        if "BuildStatus" in parsed or "Id" in parsed:
            return f"build {parsed.get('Id')} {parsed.get('BuildStatus')}"
    return cause[:1000]
