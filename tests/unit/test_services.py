"""Use cases with fakes for the outside world and the real Ledger on a moto table shaped like template.yaml."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto import mock_aws

from release_train.adapters.ledger import ApprovalRecord, BuildRecord, Ledger, Lock
from release_train.adapters.sources import describe
from release_train.domain.errors import InvalidInput, NoSuchApproval, NotAnApprover
from release_train.domain.fleet import Fleet, Source, parse_fleet
from release_train.domain.guardrails import Guardrails
from release_train.domain.live import Live
from release_train.domain.release import (
    GateBlocked,
    PromotionViolation,
    ReleaseAlreadyExists,
    ReleaseInProgress,
    Status,
    WaveFailed,
)
from release_train.services import (
    AnswerApprovalService,
    CleanupService,
    FinalizeService,
    LoadWaveService,
    PlanService,
    RecordFailureService,
    RecordWaveService,
)
from release_train.services.record_wave import summarise_failure
from tests.unit.adapters.ledger_table import all_items, create_ledger_table

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 2026-W48
EXEC_A = "arn:aws:states:us-east-1:123456789012:execution:ReleaseTrain-rt:a"
EXEC_B = "arn:aws:states:us-east-1:123456789012:execution:ReleaseTrain-rt:b"
FLEET_YAML = """
fleet: acme
defaults:
  project: "train-{service}-{stage}"
  build_concurrency: 4
  approvers: ["arn:aws:iam::123456789012:role/ReleaseManager"]
stages:
  - {name: staging, bake: P2D, test_project: train-e2e-staging}
  - {name: prod, bake: PT1H, approval: {required: true, timeout: PT24H}}
freeze_windows:
  - {start: 2026-12-21T00:00:00Z, end: 2026-12-28T00:00:00Z, reason: Year-end freeze}
  - {start: 2026-12-28T00:00:00Z, end: 2027-01-04T00:00:00Z, reason: New-year freeze}
services:
  - {name: api, source: {codecommit: api, branch: release}, wave: 1}
  - {name: web, source: {github: acme/web, branch: release, token_secret: release-train/github-token}, wave: 2}
"""
HEADS = {"api": "a" * 40, "web": "b" * 40}


# --- fakes ----------------------------------------------------------------------------------------------------------


@dataclass
class FixedClock:
    moment: datetime = MONDAY

    def now(self) -> datetime:
        return self.moment


@dataclass
class FakeFleets:
    fleet: Fleet | None = None
    error: Exception | None = None

    def load(self) -> tuple[Fleet, str | None]:
        if self.error is not None:
            raise self.error
        assert self.fleet is not None
        return self.fleet, "v1"


@dataclass
class FakeSources:
    by_repo: dict[str, str] = field(default_factory=lambda: dict(HEADS))  # repository -> its branch's head
    resolved: list[str] = field(default_factory=list)
    asked: list[list[Source]] = field(default_factory=list)  # each `heads` call's sources

    def head(self, source: Source) -> str:
        repo = getattr(source, "codecommit", None) or getattr(source, "github", "").split("/")[-1]
        self.resolved.append(repo)
        return self.by_repo[repo]

    def heads(self, sources: Sequence[Source], within: float | None = None) -> dict[Source, str]:
        self.asked.append(list(sources))
        return {source: self.head(source) for source in sources}


@dataclass
class FakeExecutions:
    running: set[str] = field(default_factory=set)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)
    approved: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)  # execution -> status once it is not running
    stopped: list[tuple[str, str, str]] = field(default_factory=list)

    def is_running(self, execution_arn: str) -> bool:
        return execution_arn in self.running

    def status(self, execution_arn: str) -> str | None:
        return "RUNNING" if execution_arn in self.running else self.ended.get(execution_arn)

    def last_entered_state(self, execution_arn: str) -> str | None:
        return "EvaluateGate"

    def approve(self, task_token: str, output: dict[str, Any]) -> None:
        self.approved.append((task_token, output))

    def reject(self, task_token: str, error: str, cause: str) -> None:
        self.rejected.append((task_token, error, cause))

    def stop(self, execution_arn: str, error: str, cause: str) -> None:
        self.stopped.append((execution_arn, error, cause))


@dataclass
class FakeNotifier:
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def send(self, subject: str, body: dict[str, Any], webhook_secret: str | None = None) -> bool:
        self.sent.append((subject, body))
        return True


@dataclass
class FakeCodeBuild:
    running: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    asked_projects: list[str] = field(default_factory=list)

    def running_builds_for_release(self, projects: list[str], release_id: str) -> list[str]:
        self.asked_projects = sorted(set(projects))
        return [b for b in self.running if b not in self.stopped]

    def stop(self, build_id: str) -> None:
        self.stopped.append(build_id)

    def test_evidence(self, build_id: str) -> None:
        return None


@dataclass
class FakeFunctions:
    """Lambda aliases: function -> version behind its alias; version descriptions name a commit."""

    aliases: dict[str, str] = field(default_factory=dict)
    descriptions: dict[tuple[str, str], str] = field(default_factory=dict)
    pointed: list[tuple[str, str, str]] = field(default_factory=list)

    def alias_version(self, function: str, alias: str) -> str | None:
        return self.aliases.get(function)

    def commit_of(self, function: str, version: str) -> str | None:
        from release_train.domain.live import commit_in

        return commit_in(self.descriptions.get((function, version)))

    def point(self, function: str, alias: str, version: str) -> None:
        self.pointed.append((function, alias, version))
        self.aliases[function] = version


@dataclass
class FakeDeployments:
    running: dict[str, str] = field(default_factory=dict)  # deployment id -> function
    stopped: list[str] = field(default_factory=list)

    def in_flight(self, functions: list[str], since: datetime) -> dict[str, str]:
        return {d: f for d, f in self.running.items() if f in functions and d not in self.stopped}

    def stop(self, deployment_id: str) -> str:
        self.stopped.append(deployment_id)
        return "Pending"

    def wait_ended(self, deployment_ids: list[str], budget_s: float = 120.0) -> dict[str, str]:
        return dict.fromkeys(deployment_ids, "Stopped")


class _Waves:
    def __init__(self, world: World) -> None:
        loader = LoadWaveService(world.ledger, world.functions, world.clock)
        self.load, self.load_chunk = loader.load, loader.load_chunk
        self.recorder = RecordWaveService(world.ledger, world.functions, world.clock)

    def record(self, release_id: str, stage: str, wave: int, results: list[dict[str, Any]]) -> dict[str, Any]:
        """A one-chunk wave as the state machines run it: BuildFailed summarises each failure (from its Catch's
        error and cause), RecordChunk writes the chunk, RecordWave decides."""
        items = [
            r
            if r["status"] == "SUCCEEDED"
            else summarise_failure(r["service"], r.get("error", "States.TaskFailed"), r.get("cause"))
            for r in results
        ]
        self.recorder.record_chunk(release_id, stage, wave, 0, items)
        return self.recorder.record(release_id, stage, wave, [{"chunk": 0, "status": "SUCCEEDED"}])


class _Closer:
    def __init__(self, world: World) -> None:
        self.finalize = FinalizeService(world.ledger, world.notifier, world.clock).finalize
        self.record_failure = RecordFailureService(
            world.ledger, world.executions, world.functions, world.notifier, world.clock
        ).record_failure
        self.cleanup = CleanupService(
            world.ledger,
            world.executions,
            world.codebuild,
            world.deployments,
            world.functions,
            world.notifier,
            world.clock,
        ).cleanup


@dataclass
class World:
    table: Any
    ledger: Ledger
    fleets: FakeFleets
    sources: FakeSources
    executions: FakeExecutions
    notifier: FakeNotifier
    codebuild: FakeCodeBuild
    clock: FixedClock
    functions: FakeFunctions = field(default_factory=FakeFunctions)
    deployments: FakeDeployments = field(default_factory=FakeDeployments)
    guardrails: Guardrails = field(default_factory=lambda: Guardrails.from_parameters({}, "123456789012"))

    def planner(self, **extra: Any) -> PlanService:
        """PlanService on this world; `extra`: its optional ports (break_glass, metrics)."""
        return PlanService(
            self.ledger, self.fleets, self.sources, self.executions, self.notifier, self.clock, self.guardrails, **extra
        )

    def waves(self) -> _Waves:
        return _Waves(self)

    def closer(self) -> _Closer:
        return _Closer(self)

    def plan(self, execution_arn: str = EXEC_A, **raw_input: Any) -> dict[str, Any]:
        raw = {"trigger": "schedule", "scheduled_time": self.clock.now().isoformat(), **raw_input}
        return self.planner().plan(raw, execution_arn, execution_arn.rsplit(":", 1)[-1])


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        table = create_ledger_table()
        yield World(
            table=table,
            ledger=Ledger(table),
            fleets=FakeFleets(parse_fleet(FLEET_YAML)),
            sources=FakeSources(),
            executions=FakeExecutions(),
            notifier=FakeNotifier(),
            codebuild=FakeCodeBuild(),
            clock=FixedClock(),
        )


def _a_week_later(world: World) -> None:
    world.clock.moment = MONDAY + timedelta(weeks=1)


# --- plan: bad input, no side effect (invariant 6) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        {"trigger": "schedule"},
        {"trigger": "manual", "services": ["api", "billing"]},
        {"trigger": "manual", "servics": "all"},
    ],
    ids=["schedule-without-time", "unknown-service", "unknown-key"],
)
def test_given_bad_execution_input_when_planning_then_invalid_input_is_raised(world: World, raw: Any) -> None:
    with pytest.raises(InvalidInput):
        world.planner().plan(raw, EXEC_A, "a")


@pytest.mark.parametrize(
    "raw",
    [{"trigger": "schedule"}, {"trigger": "manual", "services": ["billing"]}],
    ids=["schedule-without-time", "unknown-service"],
)
def test_given_bad_execution_input_when_planning_then_nothing_is_written_or_sent(world: World, raw: Any) -> None:
    with pytest.raises(InvalidInput):
        world.planner().plan(raw, EXEC_A, "a")

    assert (all_items(world.table), world.notifier.sent) == ([], [])


def test_given_an_invalid_fleet_when_planning_then_the_error_propagates_nothing_is_written_and_people_hear(
    world: World,
) -> None:
    world.fleets.error = InvalidInput("s3://cfg/fleet.yaml", ["services: Field required"])

    with pytest.raises(InvalidInput, match=r"^s3://cfg/fleet\.yaml is invalid"):
        world.plan()

    assert all_items(world.table) == []
    assert [(b["kind"], b["lines"]) for _, b in world.notifier.sent] == [("rejected", ["services: Field required"])]


def test_given_a_fleet_below_the_stacks_guardrails_when_planning_then_it_is_refused_naming_the_rule_and_nothing_written(
    world: World,
) -> None:
    world.guardrails = Guardrails.from_parameters({"MinimumFinalBake": "PT2H"}, "123456789012")

    with pytest.raises(InvalidInput) as caught:
        world.plan()

    assert caught.value.problems == [
        "stages[1] (prod).bake: PT1H is shorter than MinimumFinalBake (the last stage) = PT2H"
    ]
    assert "against the stack's guardrails" in caught.value.source
    assert all_items(world.table) == []
    assert world.sources.resolved == []  # refused before any source was asked


# --- plan: the happy path -------------------------------------------------------------------------------------------


def test_given_changed_services_when_planning_then_the_plan_carries_stages_waves_bake_and_approval(
    world: World,
) -> None:
    plan = world.plan()

    assert plan == {
        "release_id": "2026-W48",
        "status": "RUNNING",
        "reason": "planned",
        "service_count": 2,
        "build_concurrency": 4,
        "stages": [
            {"name": "staging", "waves": [1, 2], "bake_seconds": 172800, "test_project": "train-e2e-staging"},
            {"name": "prod", "waves": [1, 2], "bake_seconds": 3600, "approval_timeout_seconds": 86400},
        ],
    }


def test_given_changed_services_when_planning_then_the_manifest_pins_each_head(world: World) -> None:
    world.plan()

    assert {(e.service, e.commit, e.wave) for e in world.ledger.manifest("2026-W48")} == {
        ("api", HEADS["api"], 1),
        ("web", HEADS["web"], 2),
    }


def test_given_services_sharing_a_branch_when_planning_then_all_heads_are_asked_once_in_one_call(
    world: World,
) -> None:
    world.fleets.fleet = parse_fleet(
        FLEET_YAML + "  - {name: api-worker, source: {codecommit: api, branch: release}, wave: 2}\n"
    )

    world.plan()

    (asked,) = world.sources.asked  # one call for the whole fleet: the adapter batches and overlaps the lookups
    assert [describe(s) for s in asked] == ["codecommit:api@release", "github:acme/web@release"]
    pinned = {e.service: e.commit for e in world.ledger.manifest("2026-W48")}
    assert pinned == {"api": HEADS["api"], "api-worker": HEADS["api"], "web": HEADS["web"]}


def test_given_a_plan_when_it_succeeds_then_this_execution_holds_the_lock(world: World) -> None:
    world.plan()

    lock = world.ledger.lock("acme")
    assert lock is not None and (lock.release_id, lock.execution_arn) == ("2026-W48", EXEC_A)


# --- plan: one train at a time (invariant 2) ------------------------------------------------------------------------


def test_given_a_running_holder_when_a_second_train_starts_then_it_is_refused(world: World) -> None:
    world.plan(EXEC_A)
    world.executions.running.add(EXEC_A)
    _a_week_later(world)

    with pytest.raises(ReleaseInProgress, match=r"release 2026-W48 holds the acme train lock .* refused, not queued"):
        world.plan(EXEC_B)


def test_given_a_running_holder_when_a_second_train_is_refused_then_nothing_is_written_for_it(world: World) -> None:
    world.plan(EXEC_A)
    world.executions.running.add(EXEC_A)
    _a_week_later(world)
    before = all_items(world.table)

    with pytest.raises(ReleaseInProgress):
        world.plan(EXEC_B)

    assert all_items(world.table) == before


def test_given_the_same_schedule_firing_twice_when_the_second_starts_then_release_already_exists(world: World) -> None:
    world.plan(EXEC_A)
    world.executions.running.add(EXEC_A)

    with pytest.raises(ReleaseAlreadyExists):
        world.plan(EXEC_B)


def test_given_a_finished_release_when_its_schedule_fires_again_then_it_is_refused_and_the_lock_is_free(
    world: World,
) -> None:
    world.sources.by_repo = {"api": "a" * 40, "web": "b" * 40}
    world.ledger.set_baseline("acme", "2026-W47", dict(world.sources.by_repo))
    world.plan(EXEC_A)  # nothing changed: closes itself and frees the lock

    with pytest.raises(ReleaseAlreadyExists):
        world.plan(EXEC_B)

    assert world.ledger.lock("acme") is None


def test_given_a_holder_that_ended_without_cleanup_when_a_train_starts_then_the_lock_is_reclaimed(
    world: World,
) -> None:
    world.plan(EXEC_A)  # EXEC_A is not running: its clean-up event was lost
    _a_week_later(world)

    world.plan(EXEC_B)

    assert world.ledger.lock("acme") == Lock("2026-W49", EXEC_B, "2026-11-30T09:00:00+00:00")


def test_given_a_reclaimed_lock_when_the_old_release_is_read_then_it_records_who_reclaimed_it(world: World) -> None:
    world.plan(EXEC_A)
    _a_week_later(world)

    world.plan(EXEC_B)

    assert {"kind": "lock_reclaimed", "at": "2026-11-30T09:00:00+00:00", "detail": {"by": "2026-W49"}} in (
        world.ledger.events("2026-W48")
    )


@pytest.mark.parametrize(("ended", "closed_as"), [("ABORTED", Status.CANCELLED), ("FAILED", Status.FAILED)])
def test_given_a_holder_whose_clean_up_was_lost_when_its_lock_is_reclaimed_then_its_release_is_closed(
    world: World, ended: str, closed_as: Status
) -> None:
    world.plan(EXEC_A)
    world.executions.ended[EXEC_A] = ended  # stopped or failed, and EventBridge never delivered the status change
    _a_week_later(world)

    world.plan(EXEC_B)

    old = world.ledger.release("2026-W48")
    assert old is not None
    assert old.status is closed_as  # invariant 3: no release stays RUNNING after its execution ended
    assert old.reason == (
        f"execution {ended} and its clean-up never ran; closed when release 2026-W49 reclaimed the lock"
    )


def _waiting_for_approval(world: World) -> None:
    world.plan(EXEC_A)
    world.executions.running.add(EXEC_A)
    world.ledger.put_approval("2026-W48", ApprovalRecord("prod", "PENDING", "token-w48", "2026-11-25T10:00:00"), {})
    _a_week_later(world)


SUPERSEDED = "superseded by release 2026-W49 while waiting for an approval"


def test_given_a_holder_waiting_for_approval_when_a_train_starts_then_it_is_closed_blocked_and_stopped_not_answered(
    world: World,
) -> None:
    _waiting_for_approval(world)

    world.plan(EXEC_B)

    old = world.ledger.release("2026-W48")
    assert old is not None and (old.status, old.reason) == (Status.BLOCKED, SUPERSEDED)
    assert world.executions.stopped == [(EXEC_A, "Superseded", SUPERSEDED)]
    assert (world.executions.rejected, world.executions.approved) == ([], [])  # only AnswerApproval answers
    assert ("blocked", "2026-W48") in [(b["kind"], b.get("release_id")) for _, b in world.notifier.sent]


def test_given_a_holder_waiting_for_approval_when_a_train_starts_then_it_takes_the_lock(world: World) -> None:
    _waiting_for_approval(world)

    world.plan(EXEC_B)

    lock = world.ledger.lock("acme")
    assert lock is not None and lock.execution_arn == EXEC_B


def test_given_a_holder_waiting_for_approval_when_superseded_then_its_approval_says_so(world: World) -> None:
    _waiting_for_approval(world)

    world.plan(EXEC_B)

    approval = world.ledger.approval("2026-W48", "prod")
    assert approval is not None
    assert (approval.status, approval.reason) == ("SUPERSEDED", SUPERSEDED)


# --- plan: closing early --------------------------------------------------------------------------------------------


def test_given_a_freeze_when_planning_then_the_release_is_blocked_with_the_next_open_time(world: World) -> None:
    world.clock.moment = datetime(2026, 12, 21, 9, 0, tzinfo=UTC)

    plan = world.plan()

    assert (plan["status"], plan["stages"]) == ("BLOCKED", [])
    assert plan["reason"] == (
        "freeze window 'Year-end freeze' until 2026-12-28T00:00:00+00:00; next open time 2027-01-04T00:00:00+00:00"
    )


def test_given_a_freeze_when_planning_then_the_ledger_says_blocked_and_the_lock_is_free(world: World) -> None:
    world.clock.moment = datetime(2026, 12, 21, 9, 0, tzinfo=UTC)

    plan = world.plan()

    record = world.ledger.release(plan["release_id"])
    assert (record and record.status, world.ledger.lock("acme")) == (Status.BLOCKED, None)


def test_given_nothing_changed_when_planning_then_nothing_to_release_and_the_lock_is_free(world: World) -> None:
    world.ledger.set_baseline("acme", "2026-W47", dict(HEADS))

    plan = world.plan()

    record = world.ledger.release("2026-W48")
    assert (plan["status"], plan["reason"]) == (
        "NOTHING_TO_RELEASE",
        "no service's head differs from what prod runs (last release 2026-W47)",
    )
    assert (record and record.status, world.ledger.lock("acme")) == (Status.NOTHING_TO_RELEASE, None)


def test_given_a_source_failing_mid_plan_when_planning_then_the_release_is_closed_failed_without_a_manifest(
    world: World,
) -> None:
    world.sources.by_repo = {"api": "a" * 40}  # web cannot be resolved (an unexpected error, not a SourceError)

    with pytest.raises(KeyError):
        world.plan()

    record = world.ledger.release("2026-W48")
    assert record is not None and record.status is Status.FAILED and record.reason.startswith("plan failed: ")
    assert world.ledger.manifest("2026-W48") == []
    assert world.ledger.lock("acme") is None


def test_given_a_permanent_source_error_when_planning_then_the_release_exists_failed_naming_the_service(
    world: World,
) -> None:
    from release_train.adapters.sources import SourceRejected

    class Refusing(FakeSources):
        def head(self, source: Source) -> str:
            if getattr(source, "github", "") == "acme/web":
                raise SourceRejected("github:acme/web@release", "no such repository or branch (HTTP 404)")
            return super().head(source)

    world.sources = Refusing()

    with pytest.raises(SourceRejected):
        world.plan()

    record = world.ledger.release("2026-W48")
    assert record is not None and record.status is Status.FAILED
    assert record.reason == "plan failed: github:acme/web@release: service web: no such repository or branch (HTTP 404)"
    assert [b["kind"] for _, b in world.notifier.sent][-1] == "failed"
    assert world.ledger.lock("acme") is None


def test_given_a_rejected_source_shared_by_services_when_planning_then_the_first_service_on_it_is_named(
    world: World,
) -> None:
    from release_train.adapters.sources import SourceRejected

    world.fleets.fleet = parse_fleet(
        FLEET_YAML
        + "  - {name: web-admin, source: {github: acme/web, branch: release, token_secret: release-train/github-token},"
        " wave: 2}\n"
    )

    class Refusing(FakeSources):
        def heads(self, sources: Sequence[Source], within: float | None = None) -> dict[Source, str]:
            raise SourceRejected("github:acme/web@release", "no such branch (GitHub answered ref: null)")

    world.sources = Refusing()

    with pytest.raises(SourceRejected, match=r"^github:acme/web@release: service web: no such branch"):
        world.plan()


def test_given_a_transient_source_error_when_planning_then_the_release_stays_running_and_a_retry_resumes_it(
    world: World,
) -> None:
    from release_train.adapters.sources import SourceUnavailable

    class Flaky(FakeSources):
        failures: int = 1

        def head(self, source: Source) -> str:
            if getattr(source, "github", "") == "acme/web" and self.failures:
                self.failures -= 1
                raise SourceUnavailable("github:acme/web@release", "HTTP 503 after 3 attempts")
            return super().head(source)

    world.sources = Flaky()

    with pytest.raises(SourceUnavailable):
        world.plan(EXEC_A)
    record = world.ledger.release("2026-W48")
    assert record is not None and record.status is Status.RUNNING  # left for the state machine's Retry

    plan = world.plan(EXEC_A)  # the Retry: the same execution

    assert (plan["release_id"], plan["status"]) == ("2026-W48", "RUNNING")
    assert [e.service for e in world.ledger.manifest("2026-W48")] == ["api", "web"]


def test_given_another_execution_when_it_plans_the_same_release_id_then_it_is_refused_not_resumed(
    world: World,
) -> None:
    world.plan(EXEC_A)
    world.ledger.release_lock("acme", EXEC_A)

    with pytest.raises(ReleaseAlreadyExists):
        world.plan(EXEC_B)


# --- waves: prod builds exactly what passed staging (invariant 1) ---------------------------------------------------


def _staging_built(world: World, api_commit: str, status: str = "SUCCEEDED") -> None:
    world.plan()
    world.ledger.record_builds(
        "2026-W48",
        [
            BuildRecord("staging", "api", status, "train-api-staging:1", api_commit, 1),
            BuildRecord("staging", "web", "SUCCEEDED", "train-web-staging:1", HEADS["web"], 2),
        ],
    )


def test_given_staging_passed_when_prod_loads_a_wave_then_it_builds_the_pinned_commit_in_the_prod_project(
    world: World,
) -> None:
    _staging_built(world, HEADS["api"])

    loaded = world.waves().load("2026-W48", "prod", 1)
    chunk = world.waves().load_chunk("2026-W48", "prod", 1, 0)

    assert loaded == {"chunks": [0], "chunk_concurrency": 1, "parallel_chunks": 1}
    assert chunk == {"builds": [{"service": "api", "project": "train-api-prod", "commit": HEADS["api"]}]}


def test_given_a_commit_that_failed_staging_when_prod_loads_the_wave_then_promotion_is_refused(world: World) -> None:
    _staging_built(world, HEADS["api"], status="FAILED")

    with pytest.raises(PromotionViolation, match="api has no successful staging build"):
        world.waves().load("2026-W48", "prod", 1)


def test_given_staging_built_another_commit_when_prod_loads_the_wave_then_promotion_is_refused(world: World) -> None:
    _staging_built(world, "c" * 40)

    with pytest.raises(PromotionViolation, match=r"api: staging built cccccccccccc, manifest pins aaaaaaaaaaaa"):
        world.waves().load("2026-W48", "prod", 1)


def test_given_a_failed_build_in_the_results_when_a_wave_is_recorded_then_wave_failed_names_it(world: World) -> None:
    world.plan()
    results = [{"service": "api", "status": "FAILED", "error": "CodeBuild.BuildFailed", "cause": "{}"}]

    with pytest.raises(WaveFailed, match=r"staging wave 1: 1 of 1 builds failed: api \(FAILED\)"):
        world.waves().record("2026-W48", "staging", 1, results)


# --- close: clean-up is idempotent (invariant 3) --------------------------------------------------------------------


def _aborted(world: World) -> dict[str, Any]:
    world.plan(EXEC_A)
    world.codebuild.running = ["train-api-staging:7"]
    return {"executionArn": EXEC_A, "status": "ABORTED", "cause": None, "error": None}


def test_given_an_aborted_execution_when_cleaned_up_twice_then_the_release_is_closed_once(world: World) -> None:
    detail = _aborted(world)

    first = world.closer().cleanup(detail)
    second = world.closer().cleanup(detail)

    assert (first["closed"], second["closed"]) == (True, False)


def test_given_an_aborted_execution_when_cleaned_up_twice_then_people_are_told_once(world: World) -> None:
    detail = _aborted(world)
    world.notifier.sent.clear()  # the plan's "started" notification

    world.closer().cleanup(detail)
    world.closer().cleanup(detail)

    assert [subject for subject, _ in world.notifier.sent] == ["Release 2026-W48 CANCELLED"]


def test_given_an_aborted_execution_when_cleaned_up_then_it_is_cancelled_its_builds_stopped_and_the_lock_freed(
    world: World,
) -> None:
    detail = _aborted(world)

    world.closer().cleanup(detail)

    record = world.ledger.release("2026-W48")
    assert (record and record.status, world.codebuild.stopped, world.ledger.lock("acme")) == (
        Status.CANCELLED,
        ["train-api-staging:7"],
        None,
    )


def test_given_an_aborted_execution_when_cleaned_up_then_every_project_of_the_release_is_searched(
    world: World,
) -> None:
    detail = _aborted(world)

    world.closer().cleanup(detail)

    assert world.codebuild.asked_projects == [
        "train-api-prod",
        "train-api-staging",
        "train-e2e-staging",
        "train-web-prod",
        "train-web-staging",
    ]


def test_given_an_execution_that_never_owned_a_release_when_cleaned_up_then_nothing_happens(world: World) -> None:
    result = world.closer().cleanup({"executionArn": EXEC_B, "status": "FAILED"})

    assert (result["action"], all_items(world.table), world.notifier.sent) == (
        "none: this execution never owned a release",
        [],
        [],
    )


def test_given_a_gate_block_when_the_failure_is_recorded_then_the_release_is_blocked_with_the_failed_state(
    world: World,
) -> None:
    world.plan(EXEC_A)
    error = {"Error": GateBlocked.__name__, "Cause": '{"errorMessage": "staging: hold on api by bob: migration"}'}

    world.closer().record_failure("2026-W48", "BLOCKED", error, EXEC_A)

    record = world.ledger.release("2026-W48")
    assert record is not None
    assert (record.status, record.reason, record.failed_state) == (
        Status.BLOCKED,
        "GateBlocked: staging: hold on api by bob: migration",
        "EvaluateGate",
    )


def _promoted(world: World) -> None:
    world.plan(EXEC_A)
    for stage in ("staging", "prod"):
        world.ledger.put_gate("2026-W48", stage, "PROMOTE", [], {})


def test_given_a_promoted_release_when_finalized_then_it_becomes_the_baseline(world: World) -> None:
    _promoted(world)

    world.closer().finalize("2026-W48")

    assert world.ledger.baseline("acme") == ("2026-W48", HEADS)


def test_given_a_release_cancelled_meanwhile_when_finalize_lands_then_the_baseline_does_not_move(world: World) -> None:
    _promoted(world)
    world.closer().cleanup({"executionArn": EXEC_A, "status": "ABORTED", "cause": "operator"})  # the cancel wins

    result = world.closer().finalize("2026-W48")

    assert result == {"release_id": "2026-W48", "status": "CANCELLED", "finalized": False}
    assert world.ledger.baseline("acme") == (None, {})
    record = world.ledger.release("2026-W48")
    assert record is not None and record.status is Status.CANCELLED


def test_given_a_stage_that_did_not_promote_when_finalize_is_asked_then_it_refuses(world: World) -> None:
    from release_train.domain.release import NotFinalizable

    world.plan(EXEC_A)
    world.ledger.put_gate("2026-W48", "staging", "PROMOTE", [], {})

    with pytest.raises(NotFinalizable, match=r"\['prod'\]"):
        world.closer().finalize("2026-W48")
    assert world.ledger.baseline("acme") == (None, {})


# --- what is live, holds and freezes before a wave, rollback ------------------------------------------------------

LIVE_FLEET = FLEET_YAML.replace(
    "  - {name: api, source: {codecommit: api, branch: release}, wave: 1}",
    "  - {name: api, source: {codecommit: api, branch: release}, wave: 1,\n"
    "     deploy: {functions: ['svc-api-{stage}-fn']}}",
)


def _deployed_to_prod(world: World, *, policy: str = "stop") -> None:
    """Both services ride; staging done; prod wave 1 (api, a declared function) deployed; prod wave 2 (web) built."""
    world.fleets.fleet = parse_fleet(LIVE_FLEET + f"on_prod_failure: {policy}\n")
    world.functions.aliases = {"svc-api-staging-fn": "3", "svc-api-prod-fn": "7"}
    world.ledger.set_live(
        "acme",
        [
            Live("prod", "api", "0" * 40, "2026-W47", "aliases", {"svc-api-prod-fn": "7"}),
            Live("prod", "web", "9" * 40, "2026-W47", "build"),
        ],
    )
    world.plan(EXEC_A)
    waves = world.waves()
    for stage in ("staging", "prod"):
        for wave, service in ((1, "api"), (2, "web")):
            waves.load("2026-W48", stage, wave)
            if service == "api":  # sam deploy published a new version and moved the alias
                new = str(int(world.functions.aliases[f"svc-api-{stage}-fn"]) + 1)
                world.functions.aliases[f"svc-api-{stage}-fn"] = new
                world.functions.descriptions[(f"svc-api-{stage}-fn", new)] = f"release 2026-W48 commit {HEADS['api']}"
            waves.record("2026-W48", stage, wave, [{"service": service, "status": "SUCCEEDED", "build_id": "b"}])


def test_given_a_deployed_wave_when_recorded_then_the_ledger_says_what_runs_and_how_it_knows(world: World) -> None:
    _deployed_to_prod(world)

    prod = world.ledger.live("acme")["prod"]
    assert (prod["api"].commit, prod["api"].how, prod["api"].functions) == (
        HEADS["api"],
        "aliases",
        {"svc-api-prod-fn": "8"},
    )
    assert (prod["api"].previous_commit, prod["api"].previous_release) == ("0" * 40, "2026-W47")
    assert (prod["web"].commit, prod["web"].how) == (HEADS["web"], "build")
    [move] = [m for m in world.ledger.alias_moves("2026-W48", "prod") if m.function == "svc-api-prod-fn"]
    assert (move.before, move.after, move.wave, move.service) == ("7", "8", 1, "api")


def test_given_a_build_that_failed_with_its_alias_unchanged_then_the_service_runs_what_it_ran(world: World) -> None:
    world.fleets.fleet = parse_fleet(LIVE_FLEET)
    world.functions.aliases = {"svc-api-staging-fn": "3"}
    world.ledger.set_live(
        "acme", [Live("staging", "api", "0" * 40, "2026-W47", "aliases", {"svc-api-staging-fn": "3"})]
    )
    world.plan(EXEC_A)
    world.waves().load("2026-W48", "staging", 1)

    with pytest.raises(WaveFailed):
        world.waves().record("2026-W48", "staging", 1, [{"service": "api", "status": "FAILED", "cause": "{}"}])

    api = world.ledger.live("acme")["staging"]["api"]
    assert (api.commit, api.release_id) == ("0" * 40, "2026-W47")


def test_given_a_stopped_build_whose_alias_moved_then_what_runs_is_unknown_until_observed(world: World) -> None:
    world.fleets.fleet = parse_fleet(LIVE_FLEET)
    world.functions.aliases = {"svc-api-staging-fn": "3"}
    world.plan(EXEC_A)
    world.waves().load("2026-W48", "staging", 1)
    world.functions.aliases["svc-api-staging-fn"] = "4"  # no commit in its description: cannot tell whose it is

    with pytest.raises(WaveFailed):
        world.waves().record(
            "2026-W48", "staging", 1, [{"service": "api", "status": "FAILED", "cause": '{"BuildStatus": "STOPPED"}'}]
        )

    api = world.ledger.live("acme")["staging"]["api"]
    assert api.commit == "unknown" and "aliases moved: svc-api-staging-fn" in api.how


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        ("hold", "prod wave 2 not started: hold on the fleet by oncall: incident 7; prod waves deployed: 1"),
        (
            "freeze",
            "prod wave 2 not started: freeze window 'Year-end freeze' until 2026-12-28T00:00:00+00:00; "
            "prod waves deployed: 1",
        ),
    ],
)
def test_given_a_hold_or_a_freeze_beginning_between_two_waves_then_the_later_wave_never_starts(
    world: World, setup: str, why: str
) -> None:
    from release_train.domain.release import Hold, WaveBlocked

    world.plan(EXEC_A)
    waves = world.waves()
    for stage, wave, service in (("staging", 1, "api"), ("staging", 2, "web"), ("prod", 1, "api")):
        waves.load("2026-W48", stage, wave)
        waves.record("2026-W48", stage, wave, [{"service": service, "status": "SUCCEEDED", "build_id": "b"}])
    if setup == "hold":
        world.ledger.put_hold("acme", Hold("*", "incident 7", "oncall"), MONDAY)
    else:
        world.clock.moment = datetime(2026, 12, 21, 0, 0, tzinfo=UTC)  # the freeze's first second

    with pytest.raises(WaveBlocked) as blocked:
        waves.load("2026-W48", "prod", 2)
    assert str(blocked.value) == why


def test_given_a_freeze_that_ended_a_second_ago_when_a_wave_starts_then_it_may(world: World) -> None:
    world.plan(EXEC_A)
    world.clock.moment = datetime(2027, 1, 4, 0, 0, tzinfo=UTC)  # both windows chain and end here (end exclusive)
    assert world.waves().load("2026-W48", "staging", 1)["chunks"] == [0]
    assert world.waves().load_chunk("2026-W48", "staging", 1, 0)["builds"][0]["service"] == "api"


def test_given_a_failed_prod_release_with_the_stop_policy_then_it_says_what_runs_and_touches_nothing(
    world: World,
) -> None:
    _deployed_to_prod(world, policy="stop")

    world.closer().record_failure("2026-W48", "BLOCKED", {"Error": "GateBlocked", "Cause": "prod: alarm"}, EXEC_A)

    record = world.ledger.release("2026-W48")
    assert record is not None
    assert record.reason == "GateBlocked: prod: alarm. prod runs new code for 2 of 2 services: api, web"
    assert world.functions.pointed == []


def test_given_a_failed_prod_release_with_the_rollback_policy_then_the_aliases_it_moved_go_back(world: World) -> None:
    _deployed_to_prod(world, policy="rollback")

    world.closer().record_failure("2026-W48", "BLOCKED", {"Error": "GateBlocked", "Cause": "prod: alarm"}, EXEC_A)

    assert world.functions.pointed == [("svc-api-prod-fn", "live", "7")]  # staging is left alone
    api = world.ledger.live("acme")["prod"]["api"]
    assert (api.commit, api.release_id) == ("0" * 40, "2026-W47")
    record = world.ledger.release("2026-W48")
    assert record is not None and record.reason.endswith("prod runs new code for 1 of 2 services: web")
    [move] = [m for m in world.ledger.alias_moves("2026-W48", "prod") if m.function == "svc-api-prod-fn"]
    assert move.rolled_back


def test_given_an_alias_a_later_release_moved_when_rolling_back_then_it_is_left_and_said_so(world: World) -> None:
    _deployed_to_prod(world, policy="rollback")
    world.functions.aliases["svc-api-prod-fn"] = "9"  # someone moved it since

    world.closer().record_failure("2026-W48", "FAILED", {"Error": "X", "Cause": "y"}, EXEC_A)

    assert world.functions.pointed == []
    [(_, body)] = [(s, b) for s, b in world.notifier.sent if b.get("kind") == "failed"]
    assert "rolled back svc-api-prod-fn: not rolled back, its alias points to 9, not 8" in body["lines"]


def test_given_a_cancel_while_a_canary_runs_then_the_clean_up_stops_the_deployment(world: World) -> None:
    _deployed_to_prod(world)
    world.deployments.running = {"d-ABC": "svc-api-prod-fn", "d-OTHER": "svc-other-fn"}

    result = world.closer().cleanup({"executionArn": EXEC_A, "status": "ABORTED", "cause": "operator"})

    assert world.deployments.stopped == ["d-ABC"]
    assert result["stopped_deployments"] == {"svc-api-prod-fn d-ABC": "Stopped"}


def test_given_what_prod_runs_when_the_next_train_plans_then_changes_are_against_it_not_the_last_success(
    world: World,
) -> None:
    world.ledger.set_baseline("acme", "2026-W47", dict(HEADS))  # the last success had today's heads...
    world.ledger.set_live("acme", [Live("prod", "api", "0" * 40, "2026-W46", "rollback")])  # ...but prod was put back

    plan = world.plan(EXEC_A)

    assert plan["status"] == "RUNNING" and plan["service_count"] == 1  # api rides again; web really is live


# --- approval packet ------------------------------------------------------------------------------------------------


def test_given_a_stage_that_needs_approval_when_entered_then_the_packet_shows_what_will_be_deployed_before_it_is(
    world: World,
) -> None:
    from release_train.services import ApprovalService

    world.plan(EXEC_A)
    world.ledger.put_gate("2026-W48", "staging", "PROMOTE", [], {"tests": {"passed": 120}, "alarms": []})
    service = ApprovalService(world.ledger, world.executions, world.notifier, world.clock)

    service.request("2026-W48", "prod", "token-1")

    [(subject, body)] = [(s, b) for s, b in world.notifier.sent if b.get("kind") == "approval"]
    assert subject == "Approval needed before deploying to prod: release 2026-W48"
    assert [(d["service"], d["wave"], d["to"]) for d in body["will_deploy"]] == [
        ("api", 1, "a" * 40),
        ("web", 2, "b" * 40),
    ]
    assert body["waves"] == [1, 2]
    assert [(g["stage"], g["verdict"]) for g in body["earlier_stages"]] == [("staging", "PROMOTE")]
    assert world.ledger.builds("2026-W48", "prod") == []  # nothing was deployed to prod to be approved


@pytest.mark.parametrize(
    ("hold_or_freeze", "why"),
    [
        ("hold", "stage prod not started: hold on the fleet by oncall: incident 7"),
        ("freeze", "stage prod not started: freeze window 'Year-end freeze' until 2026-12-28T00:00:00+00:00"),
    ],
)
def test_given_a_hold_or_freeze_when_a_stage_needing_approval_is_entered_then_it_blocks_without_asking(
    world: World, hold_or_freeze: str, why: str
) -> None:
    from release_train.domain.release import Hold, WaveBlocked
    from release_train.services import ApprovalService

    world.plan(EXEC_A)
    if hold_or_freeze == "hold":
        world.ledger.put_hold("acme", Hold("*", "incident 7", "oncall"), MONDAY)
    else:
        world.clock.moment = datetime(2026, 12, 22, 9, tzinfo=UTC)
    service = ApprovalService(world.ledger, world.executions, world.notifier, world.clock)

    with pytest.raises(WaveBlocked, match=re.escape(why)):
        service.request("2026-W48", "prod", "token-1")
    assert world.ledger.approval("2026-W48", "prod") is None  # nobody was asked


@dataclass
class UnreachableExecutions(FakeExecutions):
    error: Exception = field(default_factory=lambda: RuntimeError("throttled"))

    def approve(self, task_token: str, output: dict[str, Any]) -> None:
        raise self.error


def _pending_prod_approval(world: World) -> None:
    world.plan(EXEC_A)
    world.ledger.put_approval("2026-W48", ApprovalRecord("prod", "PENDING", "token-1", "2026-11-25T10:00:00"), {})


RM = "arn:aws:sts::123456789012:assumed-role/ReleaseManager/rm"


def test_given_an_approval_the_execution_no_longer_waits_for_when_approved_then_it_is_marked_expired(
    world: World,
) -> None:
    from release_train.domain.release import ApprovalNotWaiting

    _pending_prod_approval(world)
    gone = UnreachableExecutions(error=ApprovalNotWaiting("TaskTimedOut: task timed out"))
    service = AnswerApprovalService(world.ledger, gone, world.clock)

    with pytest.raises(InvalidInput, match="no longer waits for an answer"):
        service.answer(RM, "2026-W48", "prod", approve=True, reason="ok", by="rm@example.com")

    approval = world.ledger.approval("2026-W48", "prod")
    assert approval is not None and (approval.status, approval.identity) == ("EXPIRED", RM)


def test_given_step_functions_unreachable_when_approved_then_the_approval_stays_pending_for_a_retry(
    world: World,
) -> None:
    _pending_prod_approval(world)
    service = AnswerApprovalService(world.ledger, UnreachableExecutions(), world.clock)

    with pytest.raises(RuntimeError, match="throttled"):
        service.answer(RM, "2026-W48", "prod", approve=True, reason="ok", by="rm@example.com")

    approval = world.ledger.approval("2026-W48", "prod")
    assert approval is not None and approval.status == "PENDING"


def test_given_an_approver_when_answering_then_the_identity_is_recorded_beside_the_name_and_the_task_answered(
    world: World,
) -> None:
    _pending_prod_approval(world)
    service = AnswerApprovalService(world.ledger, world.executions, world.clock)

    record = service.answer(RM, "2026-W48", "prod", approve=True, reason="ship it", by="Rita")

    assert (record.status, record.decided_by, record.identity) == ("APPROVED", "Rita", RM)
    assert world.executions.approved == [("token-1", {"approved_by": "Rita", "identity": RM, "reason": "ship it"})]


@pytest.mark.parametrize(
    "caller",
    [
        "arn:aws:sts::123456789012:assumed-role/Developer/eve",
        "arn:aws:sts::999999999999:assumed-role/ReleaseManager/rm",  # the same role name in another account
        "arn:aws:iam::123456789012:user/ReleaseManager",
    ],
)
def test_given_a_caller_not_among_the_approvers_when_answering_then_it_is_refused_recorded_and_nothing_sent(
    world: World, caller: str
) -> None:
    _pending_prod_approval(world)
    service = AnswerApprovalService(world.ledger, world.executions, world.clock)

    with pytest.raises(NotAnApprover, match="is not an approver of stage prod"):
        service.answer(caller, "2026-W48", "prod", approve=True, reason="trust me", by="rm@example.com")

    approval = world.ledger.approval("2026-W48", "prod")
    assert approval is not None and approval.status == "PENDING"
    assert (world.executions.approved, world.executions.rejected) == ([], [])
    refused = [e for e in world.ledger.events("2026-W48") if e["kind"] == "approval_refused"]
    assert [(e["detail"]["identity"], e["detail"]["by"]) for e in refused] == [(caller, "rm@example.com")]


def test_given_a_stage_without_an_approval_request_when_answering_then_no_such_approval_names_it(
    world: World,
) -> None:
    _pending_prod_approval(world)
    service = AnswerApprovalService(world.ledger, world.executions, world.clock)

    with pytest.raises(NoSuchApproval, match="has no approval request for stage staging"):
        service.answer(RM, "2026-W48", "staging", approve=True, reason="ok")
