"""Releases, manifests, and the policies that decide them. Pure: no AWS, no clock (times are passed in)."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from release_train.domain.break_glass import BreakGlass
from release_train.domain.errors import InvalidInput, ReleaseTrainError
from release_train.domain.fleet import Fleet, format_validation_error, utc


class Status(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    BLOCKED = "BLOCKED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    NOTHING_TO_RELEASE = "NOTHING_TO_RELEASE"

    @property
    def terminal(self) -> bool:
        return self is not Status.RUNNING


class Verdict(StrEnum):
    PROMOTE = "PROMOTE"
    BLOCK = "BLOCK"


# --- typed errors the ASL matches by name -------------------------------------------------------------------------


class ReleaseInProgress(ReleaseTrainError):
    """Another execution holds the fleet's train lock."""


class ReleaseAlreadyExists(ReleaseTrainError):
    """This release id was already started (the same schedule firing twice)."""


class WaveFailed(ReleaseTrainError):
    """At least one build of the wave did not succeed; later waves and stages must not run."""


class PromotionViolation(ReleaseTrainError):
    """A later stage was about to build a commit that did not pass the earlier stages."""


class GateBlocked(ReleaseTrainError):
    """The gate's verdict is BLOCK."""


class WaveBlocked(ReleaseTrainError):
    """A hold or a freeze window keeps a stage or a wave from starting: nothing more is deployed."""


class NotFinalizable(ReleaseTrainError):
    """FinalizeRelease was asked to finish a release that is not running any more (cancelled, blocked, closed)."""


class ApprovalNotWaiting(ReleaseTrainError):
    """The execution no longer waits for this approval (timed out, stopped, or the token is unknown)."""


class ApprovalRejected(ReleaseTrainError):
    """An approver rejected the stage (or a newer release superseded it)."""


# --- execution input ----------------------------------------------------------------------------------------------


class ExecutionInput(BaseModel):
    """What may start a train: the schedule's target input, or an operator's `trainctl start`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trigger: Literal["schedule", "manual"] = "manual"
    scheduled_time: datetime | None = Field(default=None, description="the schedule's <aws.scheduler.scheduled-time>")
    release_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] | None = None
    services: tuple[str, ...] | Literal["changed", "all"] = "changed"
    requested_by: str = "schedule"
    break_glass: BreakGlass | None = Field(
        default=None, description="an audited override issued by the BreakGlass function (domain/break_glass.py)"
    )

    @model_validator(mode="after")
    def _schedule_has_time(self) -> ExecutionInput:
        if self.trigger == "schedule" and self.scheduled_time is None:
            raise ValueError("scheduled_time: required when trigger is 'schedule' (<aws.scheduler.scheduled-time>)")
        if self.scheduled_time is not None and self.scheduled_time.tzinfo is None:
            raise ValueError("scheduled_time: needs a time zone, e.g. 2026-11-23T09:00:00Z")
        return self


def parse_execution_input(raw: object) -> ExecutionInput:
    try:
        return ExecutionInput.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput("execution input", format_validation_error(exc)) from exc


def release_id_for(request: ExecutionInput, execution_name: str, now: datetime) -> str:
    """Deterministic from the schedule time, so a schedule firing twice names the same release (ISO week)."""
    if request.release_id:
        return request.release_id
    if request.scheduled_time is not None:
        year, week, _ = utc(request.scheduled_time).isocalendar()
        return f"{year}-W{week:02d}"
    year, week, _ = utc(now).isocalendar()
    suffix = re.sub(r"[^A-Za-z0-9-]", "", execution_name)[-12:] or utc(now).strftime("%H%M%S")
    return f"{year}-W{week:02d}-manual-{suffix}"


# --- the plan -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    service: str
    commit: str
    previous_commit: str | None
    wave: int
    source: str  # "codecommit:repo@branch" or "github:owner/repo@branch", for release notes


@dataclass(frozen=True)
class Change:
    service: str
    previous_commit: str | None
    commit: str


def select_services(
    fleet: Fleet, request: ExecutionInput, heads: dict[str, str], baseline: dict[str, str]
) -> tuple[list[Change], list[str]]:
    """Which services ride: changed since the last good release, all, or a named subset (even if unchanged).

    Returns the changes and the names of requested services that are not in the fleet (an input error).
    """
    names = [s.name for s in fleet.services]
    if isinstance(request.services, tuple):
        unknown = [n for n in request.services if n not in names]
        chosen = [n for n in names if n in request.services]
    else:
        unknown = []
        chosen = names if request.services == "all" else [n for n in names if heads[n] != baseline.get(n)]
    return [Change(n, baseline.get(n), heads[n]) for n in chosen], unknown


# --- the gate -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestEvidence:
    report_arns: tuple[str, ...]
    total: int
    passed: int
    failed: int  # FAILED + ERROR + UNKNOWN: anything that is not a pass or a deliberate skip


@dataclass(frozen=True)
class AlarmEvidence:
    name: str
    state_now: str
    fired_during_bake: bool  # any transition to ALARM inside the bake window


@dataclass(frozen=True)
class Hold:
    scope: str  # a service name, or "*" for the whole fleet
    reason: str
    by: str  # the name a person gave
    identity: str = ""  # the IAM principal that put it (STS GetCallerIdentity), beside the name


def blocking_holds(holds: Iterable[Hold], riding: Collection[str]) -> list[Hold]:
    """The holds that keep a release of `riding` from entering a stage or starting a wave: on the fleet, or on a
    riding service (services/context.py's guard; `trainctl plan` previews it)."""
    return [h for h in holds if h.scope == "*" or h.scope in riding]


@dataclass
class Evidence:
    """What the gate saw. None means 'could not be collected' — never the same as 'nothing bad found'."""

    stage: str
    builds_succeeded: bool | None = None
    tests: TestEvidence | None = None
    tests_expected: bool = False
    alarms: list[AlarmEvidence] | None = None
    alarms_expected: bool = False
    holds: list[Hold] | None = None
    freeze_reason: str | None = None
    missing: list[str] = field(default_factory=list)  # what could not be read, and why


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...]


def decide(evidence: Evidence) -> Decision:
    """Fail closed: any missing or unreadable evidence is a reason to block, like any bad evidence."""
    reasons: list[str] = [f"evidence missing: {m}" for m in evidence.missing]
    if evidence.builds_succeeded is None:
        reasons.append("evidence missing: build results for this stage")
    elif not evidence.builds_succeeded:
        reasons.append("not every build of this stage succeeded")
    if evidence.tests_expected:
        if evidence.tests is None:
            reasons.append("evidence missing: no test report for this release and stage")
        elif evidence.tests.total == 0:
            reasons.append("evidence missing: test reports contain no test cases")
        elif evidence.tests.failed:
            reasons.append(f"tests failed: {evidence.tests.failed} of {evidence.tests.total}")
    if evidence.alarms_expected and evidence.alarms is None:
        reasons.append("evidence missing: alarm state and history could not be read")
    for alarm in evidence.alarms or []:
        if alarm.state_now == "ALARM":
            reasons.append(f"alarm {alarm.name} is in ALARM")
        elif alarm.fired_during_bake:
            reasons.append(f"alarm {alarm.name} went to ALARM during the bake")
        elif alarm.state_now == "INSUFFICIENT_DATA":
            reasons.append(f"alarm {alarm.name} has INSUFFICIENT_DATA")
    if evidence.holds is None:
        reasons.append("evidence missing: operator holds could not be read")
    for hold in evidence.holds or []:
        target = "the fleet" if hold.scope == "*" else hold.scope
        reasons.append(f"hold on {target} by {hold.by}: {hold.reason}")
    if evidence.freeze_reason:
        reasons.append(f"freeze window: {evidence.freeze_reason}")
    return Decision(Verdict.BLOCK if reasons else Verdict.PROMOTE, tuple(reasons))
