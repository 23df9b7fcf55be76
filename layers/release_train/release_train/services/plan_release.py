"""PlanRelease: validate input and fleet, pin commits, take the train lock, write the manifest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from release_train.adapters.ledger import Ledger, ReleaseRecord
from release_train.adapters.metrics import MetricsPort, NoMetrics
from release_train.adapters.sources import SourceUnavailable, describe
from release_train.domain.break_glass import BreakGlass, Grant, MacVerifier, honour
from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import Fleet
from release_train.domain.guardrails import Guardrails
from release_train.domain.release import (
    ManifestEntry,
    ReleaseAlreadyExists,
    ReleaseInProgress,
    Status,
    parse_execution_input,
    release_id_for,
)
from release_train.services.context import iso, notify
from release_train.services.ports import ClockPort, ExecutionsPort, FleetPort, NotifierPort, SourcesPort
from release_train.services.preview import freeze_reason, nothing_reason, what_rides


class PlanService:
    def __init__(
        self,
        ledger: Ledger,
        fleets: FleetPort,
        sources: SourcesPort,
        executions: ExecutionsPort,
        notifier: NotifierPort,
        clock: ClockPort,
        guardrails: Guardrails,
        break_glass: MacVerifier | None = None,
        metrics: MetricsPort | None = None,
    ) -> None:
        self._ledger, self._fleets, self._sources = ledger, fleets, sources
        self._executions, self._notifier, self._clock = executions, notifier, clock
        self._guardrails = guardrails
        self._break_glass = break_glass  # None: the stack does not allow break glass (no key to verify with)
        self._metrics = metrics or NoMetrics()

    def plan(
        self, raw_input: Any, execution_arn: str, execution_name: str, within: float | None = None
    ) -> dict[str, Any]:
        """`within`: seconds the heads may take, so the Lambda ends with SourceUnavailable (the state machine
        retries, and this execution resumes its release) rather than by its timeout with a half-written plan."""
        # Everything that can be wrong with the input is checked before the first write.
        request = parse_execution_input(raw_input)
        grant = self._honour(request.break_glass, execution_name) if request.break_glass else None
        try:
            fleet, fleet_version = self._fleets.load()
            # A fleet file put around `trainctl fleet push` (straight into the bucket) meets the same floor here.
            self._guardrails.check(fleet, "the fleet in the config bucket")
        except InvalidInput as exc:
            # Nothing is written, but a train that did not leave is news (a silent skipped week is the worst case);
            # SNS only: the fleet's own webhook setting is part of what was refused.
            self._notifier.send(
                "Release train did not leave: the fleet was refused",
                {"kind": "rejected", "reason": str(exc), "lines": exc.problems},
            )
            raise
        now = self._clock.now()
        release_id = release_id_for(request, execution_name, now)
        names = {s.name for s in fleet.services}
        unknown = [n for n in request.services if n not in names] if isinstance(request.services, tuple) else []
        if unknown:
            raise InvalidInput("execution input", [f"services: not in fleet {fleet.fleet}: {unknown}"])

        self._take_lock(fleet.fleet, release_id, execution_arn, now)
        try:
            # The release exists before the first source is asked: a source that fails leaves a record and a reason.
            created = self._ledger.create_release(
                ReleaseRecord(
                    release_id=release_id,
                    fleet=fleet.fleet,
                    status=Status.RUNNING,
                    reason="planned",
                    execution_arn=execution_arn,
                    created_at=iso(now),
                    stages=[s.name for s in fleet.stages],
                    requested_by=request.requested_by,
                    fleet_version=fleet_version,
                ),
                pinned_fleet=fleet.model_dump(mode="json"),
            )
            if not created and not self._resumed(release_id, execution_arn):
                raise ReleaseAlreadyExists(f"release {release_id} was already started; a schedule fires once per week")
            # The same decision `trainctl plan` previews (services/preview.py): heads, then what they are compared with.
            riding = what_rides(fleet, request, self._sources, self._ledger, within)
            changes, baseline_id = riding.changes, riding.baseline_id
            if grant is not None:
                self._record_break_glass(fleet.fleet, release_id, grant, now)
            skip = grant.skip if grant else ()
            return self._plan_release(fleet, release_id, changes, baseline_id, request.requested_by, now, skip)
        except ReleaseAlreadyExists:
            self._ledger.release_lock(fleet.fleet, execution_arn)
            raise
        except SourceUnavailable:
            # Transient: the state machine retries PlanRelease with a longer back-off, and this execution resumes its
            # own release (`_resumed`); if every retry fails, the clean-up closes it (execution FAILED).
            raise
        except Exception as exc:
            # We hold the lock and a RUNNING release: close both before the error leaves (invariant 3).
            reason = f"plan failed: {exc}"
            if self._ledger.close_release(release_id, Status.FAILED, reason, now, "PlanRelease"):
                self._metrics.release_ended(fleet.fleet, Status.FAILED)
                notify(
                    self._notifier,
                    fleet,
                    f"Release {release_id}: FAILED",
                    {"kind": "failed", "release_id": release_id, "reason": reason, "lines": [reason]},
                )
            self._ledger.release_lock(fleet.fleet, execution_arn)
            raise

    def _honour(self, block: BreakGlass, execution_name: str) -> Grant:
        """A break-glass grant PlanRelease may act on, or InvalidInput (nothing written) and a notification: a refused
        override is news to the people who own the guardrails."""
        try:
            return honour(block, self._break_glass, execution_name, self._clock.now())
        except InvalidInput as exc:
            self._notifier.send(
                "Release train did not leave: a break-glass start was refused",
                {
                    "kind": "rejected",
                    "reason": str(exc),
                    "lines": [*exc.problems, f"claimed by {block.grant.identity}"],
                },
            )
            raise

    def _record_break_glass(self, fleet: str, release_id: str, grant: Grant, now: datetime) -> None:
        detail = {"identity": grant.identity, "reason": grant.reason, "skip": list(grant.skip)}
        self._ledger.add_event(release_id, "break_glass", detail, now)
        self._ledger.audit_action(fleet, "break_glass_honoured", {**detail, "release_id": release_id}, now)

    def _resumed(self, release_id: str, execution_arn: str) -> bool:
        """A retried PlanRelease of the same execution (after a transient source error) continues its release."""
        record = self._ledger.release(release_id)
        return record is not None and record.execution_arn == execution_arn and record.status is Status.RUNNING

    def _plan_release(
        self,
        fleet: Fleet,
        release_id: str,
        changes: list[Any],
        baseline_id: str | None,
        requested_by: str,
        now: datetime,
        skip: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        by_name = {s.name: s for s in fleet.services}
        frozen = freeze_reason(fleet, now)
        if frozen is not None:
            return self._close_early(fleet, release_id, Status.BLOCKED, frozen, now)
        if not changes:
            return self._close_early(
                fleet, release_id, Status.NOTHING_TO_RELEASE, nothing_reason(fleet, baseline_id), now
            )

        entries = [
            ManifestEntry(
                c.service, c.commit, c.previous_commit, by_name[c.service].wave, describe(by_name[c.service].source)
            )
            for c in changes
        ]
        self._ledger.put_manifest(release_id, entries)
        waves = sorted({e.wave for e in entries})
        self._ledger.add_event(release_id, "planned", {"services": len(entries), "waves": waves}, now)
        notify(
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
            # Break glass may skip the bake (audited, domain/break_glass.py); never the approval.
            bake = 0 if "bake" in skip else int(stage.bake.total_seconds())
            item: dict[str, Any] = {"name": stage.name, "waves": waves, "bake_seconds": bake}
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
        if self._ledger.close_release(release_id, status, reason, now):
            self._metrics.release_ended(fleet.fleet, status)
        if record is not None:
            self._ledger.release_lock(fleet.fleet, record.execution_arn)
        notify(
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
        """A train waiting only for a human is replaced by the newer train: its approval is marked SUPERSEDED, its
        release closed BLOCKED saying why, and its execution stopped. Stopped, not answered: only AnswerApproval may
        send a task's success or failure (docs/guardrails.md), and nothing was deployed to the waiting stage."""
        pending = self._ledger.pending_approvals(old_release)
        reason = f"superseded by release {new_release} while waiting for an approval"
        for approval in pending:
            if self._ledger.decide_approval(old_release, approval.stage, "SUPERSEDED", "release-train", reason):
                self._ledger.add_event(old_release, "approval_superseded", {"by": new_release}, now)
        if not pending:
            return False
        record = self._ledger.release(old_release)
        if self._ledger.close_release(old_release, Status.BLOCKED, reason, now):
            self._notifier.send(
                f"Release {old_release} BLOCKED",
                {"kind": "blocked", "release_id": old_release, "reason": reason, "lines": [reason]},
            )
        if record is not None:
            # Its clean-up (EventBridge, ABORTED) finds the release closed and only settles what is live.
            self._executions.stop(record.execution_arn, "Superseded", reason)
        return True
