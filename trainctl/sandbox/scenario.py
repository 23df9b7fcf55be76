"""Scenario files: what the emulated world does during a simulated train (see README, "Scenarios")."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import format_validation_error


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Outcome = Literal["SUCCEEDED", "FAILED", "FAULT", "TIMED_OUT"]


class BuildBehaviour(_Model):
    outcome: Outcome = "SUCCEEDED"
    duration: timedelta = timedelta(minutes=6)
    throttled: Annotated[int, Field(ge=0, le=20, description="StartBuild calls refused before one is accepted")] = 0


class TestRun(_Model):
    passed: Annotated[int, Field(ge=0)] = 120
    failed: Annotated[int, Field(ge=0)] = 0
    duration: timedelta = timedelta(minutes=12)
    report: bool = Field(default=True, description="false: the run produces no report (missing evidence)")


class AlarmFiring(_Model):
    name: str
    stage: str
    during: Literal["bake", "canary"] = "bake"
    service: str | None = Field(default=None, description="for `during: canary`: the service whose deployment alarms")
    recovers: bool = Field(default=True, description="goes back to OK before the gate looks (history still shows it)")


class ApprovalAction(_Model):
    decision: Literal["approve", "reject", "none"] = "approve"
    after: timedelta = timedelta(hours=2)
    by: str = "release-manager@example.com"
    reason: str = "looks good"


class HoldSpec(_Model):
    scope: str = "*"
    reason: str
    by: str = "oncall@example.com"


class OperatorAction(_Model):
    action: Literal["cancel", "second_start"]
    at_state: str = Field(
        description="while in this state (e.g. Build, Bake, RequestApproval): on entry, or for a Task state once its "
        "work is under way (a .sync build started, a callback task submitted)"
    )
    stage: str | None = None
    occurrence: Annotated[int, Field(ge=1)] = 1
    schedule_time: datetime | None = Field(
        default=None,
        description="second_start only: the schedule fires for this time (default: the same firing again); "
        "a later week while the first train waits for approval supersedes it",
    )


class HookBehaviour(_Model):
    """Issue 4: how a prod canary deployment behaves for one service's function."""

    pre_traffic: Literal["pass", "fail", "raise"] = "pass"
    post_traffic: Literal["pass", "fail", "raise"] = Field(
        default="pass",
        description="pass: the real checks pass. fail: the function's DynamoDB table is deleted just before the hook "
        "runs, so the new version errors and its invoke check fails (the hook reports Failed). raise: the hook's "
        "GetDeployment call fails (ThrottlingException on every attempt) while this hook runs, so the hook crashes "
        "before a verdict and must still report Failed. (Same meanings for pre_traffic.)",
    )
    duplicate_delivery: bool = Field(
        default=False, description="each hook event is delivered twice (Lambda async at-least-once)"
    )


class Scenario(_Model):
    name: str = "happy-path"
    description: str = ""
    schedule_time: datetime = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    changed: list[str] | Literal["all"] = Field(
        default="all", description="services whose release branch moved since the last good release"
    )
    builds: dict[str, dict[str, BuildBehaviour]] = Field(
        default_factory=dict, description="stage -> service (or '*') -> behaviour"
    )
    tests: dict[str, TestRun] = Field(default_factory=dict, description="stage -> test run")
    alarms: list[AlarmFiring] = Field(default_factory=list)
    approvals: dict[str, ApprovalAction] = Field(default_factory=dict, description="stage -> what the approver does")
    holds: list[HoldSpec] = Field(default_factory=list)
    operator: list[OperatorAction] = Field(default_factory=list)
    hooks: dict[str, HookBehaviour] = Field(default_factory=dict, description="service -> hook behaviour in prod")
    execution_input: dict[str, object] | None = Field(
        default=None, description="start with this input instead of the schedule's (e.g. to test bad input)"
    )
    freeze_now: bool = Field(default=False, description="add a freeze window covering the schedule time")
    status_change_deliveries: Annotated[int, Field(ge=1, le=3)] = Field(
        default=1, description="EventBridge delivers at least once: deliver the execution's status change this often"
    )

    @model_validator(mode="after")
    def _aware(self) -> Scenario:
        if self.schedule_time.tzinfo is None:
            raise ValueError("schedule_time: needs a time zone, e.g. 2026-11-23T09:00:00Z")
        return self

    def build(self, stage: str, service: str) -> BuildBehaviour:
        per_stage = self.builds.get(stage, {})
        return per_stage.get(service) or per_stage.get("*") or self.builds.get("*", {}).get("*") or BuildBehaviour()

    def commit(self, service: str, generation: str) -> str:
        """Deterministic fake commit ids: the same scenario always pins the same commits."""
        return hashlib.sha1(f"{service}:{generation}".encode()).hexdigest()


def load_scenario(path: Path | None) -> Scenario:
    if path is None:
        return Scenario()
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(str(path), [f"cannot read scenario: {exc}"]) from exc
    try:
        return Scenario.model_validate(raw or {})
    except ValidationError as exc:
        raise InvalidInput(str(path), format_validation_error(exc)) from exc
