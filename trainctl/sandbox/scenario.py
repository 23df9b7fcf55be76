"""Scenario files: what the emulated world does during a simulated train (see README, "Scenarios")."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import Fleet, FreezeWindow, GitHubSource, format_validation_error


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Outcome = Literal["SUCCEEDED", "FAILED", "FAULT", "TIMED_OUT"]


class BuildBehaviour(_Model):
    outcome: Outcome = "SUCCEEDED"
    duration: timedelta = timedelta(minutes=6)
    throttled: Annotated[int, Field(ge=0, le=20, description="StartBuild calls refused before one is accepted")] = 0
    throttle_code: Literal["AccountLimitExceededException", "ThrottlingException"] = Field(
        default="AccountLimitExceededException",
        description="how CodeBuild refuses them: over an account limit (StartBuild's modelled error) or over the API "
        "request rate (ThrottlingException, 'Rate exceeded': a common error, not in CodeBuild's model)",
    )


class CodeBuildAccount(_Model):
    """The account's CodeBuild quota as the train meets it (CodeBuild User Guide, "Builds in AWS CodeBuild")."""

    concurrent_builds: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        default=None,
        description="concurrently running builds the account allows (all projects, the test projects too); a build "
        "over it waits in phase QUEUED, and StartBuild is refused (AccountLimitExceededException) once five times "
        "as many wait. Default: no limit",
    )
    queued_timeout_minutes: Annotated[int, Field(ge=5, le=480)] = Field(
        default=480,
        description="the projects' queuedTimeoutInMinutes (CreateProject: 5-480, default 480): a build still queued "
        "after it ends TIMED_OUT",
    )


class TestRun(_Model):
    passed: Annotated[int, Field(ge=0)] = 120
    failed: Annotated[int, Field(ge=0)] = 0
    duration: timedelta = timedelta(minutes=12)
    report: bool = Field(default=True, description="false: the run produces no report (missing evidence)")


class AlarmFiring(_Model):
    name: str
    stage: str
    during: Literal["bake", "canary"] = "bake"
    service: str | None = Field(
        default=None, description="for `during: canary`: the service (or one of its functions) whose deployment alarms"
    )
    recovers: bool = Field(default=True, description="goes back to OK before the gate looks (history still shows it)")


class ApprovalAction(_Model):
    decision: Literal["approve", "reject", "none"] = "approve"
    after: timedelta = Field(
        default=timedelta(hours=2), description="virtual time after the approval was requested; may exceed the timeout"
    )
    by: str = "release-manager@example.com"
    reason: str = "looks good"
    as_principal: str | None = Field(
        default=None,
        description="the IAM identity the approver signs in as (default: a ReleaseManager role session named `by`)",
    )

    def principal(self, account: str) -> str:
        session = re.sub(r"[^\w+=,.@-]", "-", self.by)[:64]  # STS RoleSessionName characters
        return self.as_principal or f"arn:aws:sts::{account}:assumed-role/ReleaseManager/{session}"


class BreakGlassStart(_Model):
    """The train is started through the BreakGlass function URL (needs `parameters: {AllowBreakGlass: "true"}`)."""

    as_principal: str | None = Field(
        default=None, description="who calls the URL (default: a ReleaseManager role session named `by`)"
    )
    by: str = "incident-commander@example.com"
    reason: str = "hotfix for an incident: checkout is down"
    skip: tuple[Literal["bake"], ...] = ("bake",)
    services: list[str] | Literal["changed", "all"] = "changed"

    def principal(self, account: str) -> str:
        return ApprovalAction(by=self.by, as_principal=self.as_principal).principal(account)


class GitHubReply(_Model):
    """One answer of the loopback GitHub (trainctl/sandbox/sources.py GitHubAnswer): a status, rate-limit headers,
    or a dropped connection. `delay` is left out: it costs wall time."""

    status: Annotated[int, Field(ge=100, le=599)] = 200
    retry_after: Annotated[int, Field(ge=0)] | None = None
    remaining: Annotated[int, Field(ge=0)] | None = None
    reset_after: Annotated[int, Field(ge=0)] | None = None
    drop: bool = False


class LambdaBehaviour(_Model):
    duration: timedelta = Field(
        default=timedelta(0), description="virtual time the state's Lambda invocation takes before its handler runs"
    )


class CleanupDelivery(_Model):
    """EventBridge delivers the execution's status change to the clean-up at least once, best effort."""

    after: timedelta = Field(default=timedelta(seconds=2), description="delay after the execution ended (0: early)")
    copies: Annotated[int, Field(ge=1, le=3, description="deliveries of the same event")] = 1
    lost: bool = Field(default=False, description="never delivered: the next train must reclaim the lock")


class HoldSpec(_Model):
    scope: str = "*"
    reason: str
    by: str = "oncall@example.com"


class OperatorAction(_Model):
    action: Literal["cancel", "second_start", "hold", "deploy_train"]
    at_state: str = Field(
        description="a state of the state machine (e.g. Build, Bake, RequestApproval): the operator acts once the "
        "world settled after the state was entered (a Task's work is then under way), plus `after`"
    )
    stage: str | None = None
    occurrence: Annotated[int, Field(ge=1)] = 1
    after: timedelta = Field(default=timedelta(0), description="virtual time after the state was entered")
    schedule_time: datetime | None = Field(
        default=None,
        description="second_start only: the schedule fires for this time (default: the same firing again); "
        "a later week while the first train waits for approval supersedes it",
    )
    hold: HoldSpec | None = Field(default=None, description="hold only: the hold the operator places")

    @model_validator(mode="after")
    def _hold_has_one(self) -> OperatorAction:
        if (self.action == "hold") != (self.hold is not None):
            raise ValueError("hold: give `hold: {scope, reason, by}` with action hold, and only then")
        return self


HookMode = Literal["pass", "fail", "raise", "silent"]


class HookBehaviour(_Model):
    """How a canary deployment's hooks behave for a service (or one of its functions)."""

    pre_traffic: HookMode = "pass"
    post_traffic: HookMode = Field(
        default="pass",
        description="pass: the real checks pass. fail: the new version fails every invocation from this hook on, so "
        "its invoke check fails and the hook reports Failed. raise: CodeDeploy answers ThrottlingException to the "
        "hook's reads while this hook runs, so the hook crashes before a verdict and must still report Failed. "
        "silent: the hook is never invoked, so CodeDeploy fails the deployment after the 1-hour hook limit. "
        "(Same meanings for pre_traffic.)",
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
    codebuild: CodeBuildAccount = Field(
        default_factory=CodeBuildAccount, description="the account's concurrent-build quota and queue timeout"
    )
    alarms: list[AlarmFiring] = Field(default_factory=list)
    approvals: dict[str, ApprovalAction | list[ApprovalAction]] = Field(
        default_factory=dict, description="stage -> what the approver does (a list: several answers, in order)"
    )
    lambdas: dict[str, LambdaBehaviour] = Field(
        default_factory=dict, description="state name (PlanRelease, FinalizeRelease...) -> how its Lambda behaves"
    )
    holds: list[HoldSpec] = Field(default_factory=list)
    operator: list[OperatorAction] = Field(default_factory=list)
    hooks: dict[str, HookBehaviour] = Field(
        default_factory=dict, description="service or function name -> hook behaviour in its canary deployments"
    )
    execution_input: dict[str, object] | None = Field(
        default=None, description="start with this input instead of the schedule's (e.g. to test bad input)"
    )
    freeze_now: bool = Field(default=False, description="add a freeze window covering the schedule time")
    freeze_windows: list[FreezeWindow] = Field(
        default_factory=list, description="freeze windows added to the fleet (e.g. one that begins mid-rollout)"
    )
    on_prod_failure: Literal["stop", "rollback"] | None = Field(
        default=None, description="the fleet's policy for this run (default: the fleet file's)"
    )
    github: dict[str, list[Annotated[int, Field(ge=100, le=599)] | GitHubReply]] = Field(
        default_factory=dict,
        description="service -> GitHub's answers to its branch lookups, in order (then the head), e.g. [500, 200]",
    )
    parameters: dict[str, str] = Field(
        default_factory=dict, description="stack parameters for this run (template.yaml), e.g. MinimumFinalBake: PT2H"
    )
    cleanup: CleanupDelivery = Field(
        default_factory=CleanupDelivery, description="how EventBridge delivers the status change to the clean-up"
    )
    break_glass: BreakGlassStart | None = Field(
        default=None, description="start through the audited break-glass function instead of the schedule"
    )

    @model_validator(mode="after")
    def _aware(self) -> Scenario:
        if self.schedule_time.tzinfo is None:
            raise ValueError("schedule_time: needs a time zone, e.g. 2026-11-23T09:00:00Z")
        if self.break_glass is not None and self.parameters.get("AllowBreakGlass") != "true":
            raise ValueError(
                'break_glass: the stack creates the BreakGlass function only with parameters: {AllowBreakGlass: "true"}'
            )
        return self

    def approval_answers(self, stage: str) -> list[ApprovalAction]:
        answers = self.approvals.get(stage)
        if answers is None:
            return []
        return list(answers) if isinstance(answers, list) else [answers]

    def problems(self, fleet: Fleet, states: set[str]) -> list[str]:
        """Names the scenario uses that the fleet or the state machine does not have (each one would be ignored)."""
        stages = {s.name for s in fleet.stages}
        services = {s.name for s in fleet.services}
        functions = {
            name: service.name
            for service in fleet.services
            for stage in fleet.canary_stages(service)
            for name in fleet.functions_for(service, stage)
        }
        canaried = {s.name for s in fleet.services if fleet.canary_stages(s)}
        problems: list[str] = []

        def check(where: str, name: str, known: set[str], what: str) -> None:
            if name not in known:
                problems.append(f"{where}: unknown {what} {name!r}; the fleet has {sorted(known)}")

        for stage, per_service in self.builds.items():
            if stage != "*":
                check(f"builds.{stage}", stage, stages, "stage")
            for service in per_service:
                if service != "*":
                    check(f"builds.{stage}.{service}", service, services, "service")
        with_tests = {s.name for s in fleet.stages if s.test_project}
        for stage in self.tests:
            check(f"tests.{stage}", stage, stages, "stage")
            if stage in stages and stage not in with_tests:
                problems.append(f"tests.{stage}: stage {stage!r} has no test_project in the fleet")
        for stage in self.approvals:
            check(f"approvals.{stage}", stage, stages, "stage")
        on_github = {s.name for s in fleet.services if isinstance(s.source, GitHubSource)}
        for service in self.github:
            check(f"github.{service}", service, on_github, "service on GitHub")
        for i, alarm in enumerate(self.alarms):
            check(f"alarms.{i}.stage", alarm.stage, stages, "stage")
            if alarm.during == "canary":
                if alarm.service is None:
                    problems.append(f"alarms.{i}.service: a canary alarm names the service whose deployment alarms")
                else:
                    check(
                        f"alarms.{i}.service", alarm.service, canaried | set(functions), "canaried service or function"
                    )
        for key in self.hooks:
            check(f"hooks.{key}", key, canaried | set(functions), "service with canary functions (deploy) or function")
        if isinstance(self.changed, list):
            for service in self.changed:
                check("changed", service, services, "service")
        for i, action in enumerate(self.operator):
            check(f"operator.{i}.at_state", action.at_state, states, "state")
            if action.stage is not None:
                check(f"operator.{i}.stage", action.stage, stages, "stage")
        for state in self.lambdas:
            check(f"lambdas.{state}", state, states, "state")
        return problems

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
