"""The emulated account's concurrent-build quota: CodeBuild's queue, its order and its timeout, in virtual time.

AWS (CodeBuild User Guide, "Builds in AWS CodeBuild"): builds over the account's concurrent running build quota are
queued; at most five times the quota may wait; a build that does not start within its queuedTimeoutInMinutes
(CreateProject: 5-480, default 480) is removed from the queue and ends TIMED_OUT. BatchGetBuilds shows a waiting build
as buildStatus IN_PROGRESS in phase QUEUED. The sandbox starts queued builds first in, first out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from tests.sandbox.harness import Sandbox, sandbox
from trainctl.sandbox import emulators
from trainctl.sandbox.codebuild import Build
from trainctl.sandbox.runner import simulate
from trainctl.sandbox.scenario import ApprovalAction, BuildBehaviour, CodeBuildAccount, Scenario

ROOT = Path(__file__).resolve().parents[2]
MINUTE = 60.0


def _scenario(concurrent_builds: int, **durations: float) -> Scenario:
    """`durations`: service -> minutes its staging build takes."""
    return Scenario(
        codebuild=CodeBuildAccount(concurrent_builds=concurrent_builds),
        builds={"staging": {s: BuildBehaviour(duration=timedelta(minutes=m)) for s, m in durations.items()}},
    )


class Account:
    """The test acts on the emulated account as a person does: at a virtual moment, once the machines due then have
    settled (`script`), so what it sees does not depend on thread timing."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.codebuild = boto3.client("codebuild")  # made inside the sandbox: its calls reach the emulator

    def start(self, *services: str, **extra: Any) -> list[str]:
        """One build per service, in this order, at the same instant."""
        for service in services:
            if f"{service}-staging" not in self.box.world.codebuild.projects:
                self.box.world.codebuild.register_project(f"{service}-staging", "staging", service)
        return [
            self.codebuild.start_build(projectName=f"{s}-staging", sourceVersion="c0ffee", **extra)["build"]["id"]
            for s in services
        ]

    def get(self, build_id: str) -> dict[str, Any]:
        return dict(self.codebuild.batch_get_builds(ids=[build_id])["builds"][0])

    def script(self, steps: dict[float, Callable[[], Any]]) -> dict[float, Any]:
        """Run each step at its virtual second, then let the world run out; what each step returned (or raised)."""
        seen: dict[float, Any] = {}

        def person(at: float, step: Callable[[], Any]) -> Callable[[], None]:
            def act() -> None:
                try:
                    seen[at] = step()
                except Exception as exc:  # the test reads it
                    seen[at] = exc

            return act

        with self.box.clock.holding():
            for at, step in sorted(steps.items()):
                self.box.clock.schedule(at, person(at, step), f"person-at-{at:g}s")
        self.box.settle()
        return seen

    def build(self, build_id: str) -> Build:
        return self.box.world.codebuild.builds[build_id]


def _phases(build: dict[str, Any]) -> dict[str, str | None]:
    return {p["phaseType"]: p.get("phaseStatus") for p in build["phases"]}


def _phase(build: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(p for p in build["phases"] if p["phaseType"] == kind)


def _elapsed(box: Sandbox, build: dict[str, Any], key: str) -> float:
    return (build[key] - box.clock.start).total_seconds()


# --- the queue as BatchGetBuilds shows it -----------------------------------------------------------------------------


def test_given_the_account_is_at_its_limit_when_a_build_is_started_then_it_waits_in_phase_queued(
    tmp_path: Path,
) -> None:
    with sandbox(tmp_path, _scenario(1, first=10, second=6)) as box:
        account = Account(box)
        ids: list[str] = []
        seen = account.script(
            {
                0: lambda: ids.extend(account.start("first", "second")),
                5 * MINUTE: lambda: [account.get(i) for i in ids],
                30 * MINUTE: lambda: account.get(ids[1]),
            }
        )
        running, waiting = seen[5 * MINUTE]
        assert running["currentPhase"] == "BUILD"
        assert (waiting["buildStatus"], waiting["currentPhase"], waiting["buildComplete"]) == (
            "IN_PROGRESS",
            "QUEUED",
            False,
        )
        assert _phases(waiting) == {"SUBMITTED": "SUCCEEDED", "QUEUED": "IN_PROGRESS"}
        assert waiting["queuedTimeoutInMinutes"] == 480  # CreateProject's default
        done = seen[30 * MINUTE]
        assert done["buildStatus"] == "SUCCEEDED"
        assert _phases(done) == {
            "SUBMITTED": "SUCCEEDED",
            "QUEUED": "SUCCEEDED",
            "BUILD": "SUCCEEDED",
            "COMPLETED": None,
        }
        assert _phase(done, "QUEUED")["durationInSeconds"] == 600  # it waited for the first build's 10 minutes
        assert _elapsed(box, done, "startTime") == 0  # startTime is when it was submitted
        assert _elapsed(box, done, "endTime") == 16 * MINUTE
        assert box.world.codebuild.running == 0
        assert not box.world.codebuild.queue


# --- the queue timeout, at its boundary -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_minutes", "second_status", "second_ended_min"),
    [
        (480, "SUCCEEDED", 480 + 6),  # a slot frees at exactly queuedTimeoutInMinutes: it starts
        (481, "TIMED_OUT", 480),  # one minute more: it is removed from the queue at 480 minutes
    ],
)
def test_given_a_build_queued_for_its_whole_queued_timeout_then_it_starts_only_if_a_slot_frees_in_time(
    tmp_path: Path, first_minutes: int, second_status: str, second_ended_min: int
) -> None:
    with sandbox(tmp_path, _scenario(1, first=first_minutes, second=6)) as box:
        account = Account(box)
        first, second = account.script({0: lambda: account.start("first", "second")})[0]
        built = account.get(second)
        assert built["buildStatus"] == second_status
        assert _elapsed(box, built, "endTime") == second_ended_min * MINUTE
        queued = _phase(built, "QUEUED")
        assert queued["phaseStatus"] == ("SUCCEEDED" if second_status == "SUCCEEDED" else "TIMED_OUT")
        assert queued["durationInSeconds"] == 480 * MINUTE
        if second_status == "TIMED_OUT":
            assert built["currentPhase"] == "COMPLETED"
            assert "BUILD" not in _phases(built)  # it never ran
        assert account.get(first)["buildStatus"] == "SUCCEEDED"


def test_given_a_queued_timeout_override_when_the_queue_outlasts_it_then_the_build_times_out_then(
    tmp_path: Path,
) -> None:
    with sandbox(tmp_path, _scenario(1, first=6, second=6)) as box:
        account = Account(box)

        def start() -> str:
            account.start("first")
            return account.start("second", queuedTimeoutInMinutesOverride=5)[0]

        second = account.script({0: start})[0]
        built = account.get(second)
        assert (built["buildStatus"], built["queuedTimeoutInMinutes"]) == ("TIMED_OUT", 5)
        assert _elapsed(box, built, "endTime") == 5 * MINUTE


def test_given_a_project_with_its_own_queued_timeout_then_its_builds_use_it(tmp_path: Path) -> None:
    with sandbox(tmp_path, _scenario(1, first=6, second=6)) as box:
        account = Account(box)
        box.world.codebuild.register_project("second-staging", "staging", "second", queued_timeout_minutes=6)
        _, second = account.script({0: lambda: account.start("first", "second")})[0]
        built = account.get(second)
        assert (built["buildStatus"], built["queuedTimeoutInMinutes"]) == ("SUCCEEDED", 6)  # a slot at exactly 6 min


# --- order, limit 1, the queue's own limit ----------------------------------------------------------------------------


def test_given_limit_1_when_four_builds_are_started_then_they_run_one_at_a_time_first_in_first_out(
    tmp_path: Path,
) -> None:
    with sandbox(tmp_path, _scenario(1, a=6, b=6, c=6, d=6)) as box:
        account = Account(box)
        ids = account.script({0: lambda: account.start("a", "b", "c", "d")})[0]
        builds = [account.build(i) for i in ids]
        assert [b.run_v for b in builds] == [0, 360, 720, 1080]  # in the order they were submitted
        assert [b.end_v for b in builds] == [360, 720, 1080, 1440]
        assert all(b.final == "SUCCEEDED" for b in builds)
        assert box.world.codebuild.most_queued == 3


def test_given_limit_1_when_a_running_build_fails_or_is_stopped_then_the_next_queued_build_takes_its_slot(
    tmp_path: Path,
) -> None:
    scenario = Scenario(
        codebuild=CodeBuildAccount(concurrent_builds=1),
        builds={"staging": {"a": BuildBehaviour(outcome="FAILED"), "*": BuildBehaviour()}},
    )
    with sandbox(tmp_path, scenario) as box:
        account = Account(box)
        ids: list[str] = []
        account.script(
            {
                0: lambda: ids.extend(account.start("a", "b", "c")),
                7 * MINUTE: lambda: account.codebuild.stop_build(id=ids[1]),  # a failed at 6 minutes; b runs
            }
        )
        assert [(account.build(i).final, account.build(i).run_v, account.build(i).end_v) for i in ids] == [
            ("FAILED", 0, 360),
            ("STOPPED", 360, 420),
            ("SUCCEEDED", 420, 780),
        ]


def test_given_a_queued_build_when_it_is_stopped_then_it_never_runs_and_the_queue_moves_up(tmp_path: Path) -> None:
    with sandbox(tmp_path, _scenario(1, a=6, b=6, c=6)) as box:
        account = Account(box)
        ids: list[str] = []
        seen = account.script(
            {
                0: lambda: ids.extend(account.start("a", "b", "c")),
                MINUTE: lambda: account.codebuild.stop_build(id=ids[1])["build"],
            }
        )
        stopped = seen[MINUTE]
        assert stopped["buildStatus"] == "STOPPED"
        assert _phases(stopped) == {"SUBMITTED": "SUCCEEDED", "QUEUED": "STOPPED", "COMPLETED": None}
        assert account.build(ids[1]).run_v is None
        assert account.build(ids[2]).run_v == 360  # next in line once a ended


def test_given_limit_1_when_five_builds_wait_then_startbuild_is_refused_until_one_leaves_the_queue(
    tmp_path: Path,
) -> None:
    services = ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]
    with sandbox(tmp_path, _scenario(1, **dict.fromkeys(services, 6))) as box:
        account = Account(box)
        seen = account.script(
            {
                0: lambda: account.start(*services[:6]),  # one runs, five wait: the queue is full
                1: lambda: account.start("s6"),
                6 * MINUTE: lambda: account.start("s6"),  # s0 ended, s1 runs: four wait
            }
        )
        refused = seen[1]
        assert isinstance(refused, ClientError)
        assert refused.response["Error"]["Code"] == "AccountLimitExceededException"
        assert refused.response["Error"]["Message"] == "Cannot have more than 5 builds in queue for the account"
        assert box.world.codebuild.throttled_calls == 1
        (accepted,) = seen[6 * MINUTE]
        assert account.build(accepted).final == "SUCCEEDED"
        assert len(box.world.codebuild.builds) == 7


def test_given_no_limit_in_the_scenario_then_every_build_runs_at_once(tmp_path: Path) -> None:
    with sandbox(tmp_path, Scenario()) as box:
        account = Account(box)
        ids = account.script({0: lambda: account.start(*(f"s{i}" for i in range(30)))})[0]
        assert {account.build(i).run_v for i in ids} == {0}
        assert box.clock.elapsed == 6 * MINUTE


# --- through Step Functions ---------------------------------------------------------------------------------------


def test_given_a_build_that_times_out_in_the_queue_when_run_by_startbuild_sync_then_the_task_fails_with_its_build(
    tmp_path: Path,
) -> None:
    definition = {
        "StartAt": "Wave",
        "States": {
            "Wave": {
                "Type": "Map",
                "ItemsPath": "$.projects",
                "MaxConcurrency": 2,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Build",
                    "States": {
                        "Build": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::codebuild:startBuild.sync",
                            "Parameters": {"ProjectName.$": "$"},
                            "ResultSelector": {"status.$": "$.Build.BuildStatus"},
                            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$", "Next": "Failed"}],
                            "End": True,
                        },
                        "Failed": {"Type": "Pass", "End": True},
                    },
                },
                "End": True,
            }
        },
    }
    with sandbox(tmp_path, _scenario(1, a=6, b=6)) as box:
        # Both iterations start at the same instant, in either order: whichever comes second waits, and times out.
        box.world.codebuild.register_project("a-staging", "staging", "a", queued_timeout_minutes=5)
        box.world.codebuild.register_project("b-staging", "staging", "b", queued_timeout_minutes=5)
        result = box.run(definition, {"projects": ["a-staging", "b-staging"]})
    assert result["status"] == "SUCCEEDED", result
    outputs = json.loads(result["output"])
    assert {"status": "SUCCEEDED"} in outputs
    (timed_out,) = [o for o in outputs if o != {"status": "SUCCEEDED"}]
    assert timed_out["Error"] == "States.TaskFailed"
    cause = json.loads(timed_out["Cause"])
    assert cause["BuildStatus"] == "TIMED_OUT"
    assert {p["PhaseType"]: p.get("PhaseStatus") for p in cause["Phases"]}["QUEUED"] == "TIMED_OUT"


# --- a 500-service fleet on an account that runs 10 builds at once ---------------------------------------------------


def _fleet(services: int, build_concurrency: int) -> dict[str, Any]:
    """One stage (prod: the guardrails want its approval), five waves, as bench/train_bench.py builds fleets."""
    waves = 5
    return {
        "fleet": f"queue-{services}",
        "defaults": {
            "build_concurrency": build_concurrency,
            "approvers": ["arn:aws:iam::123456789012:role/ReleaseManager"],
        },
        "stages": [{"name": "prod", "bake": "PT1H", "approval": {"required": True, "timeout": "PT24H"}}],
        "services": [
            {
                "name": f"svc-{i:03d}",
                "source": {"codecommit": f"svc-{i:03d}", "branch": "release"},
                "wave": 1 + i * waves // services,
            }
            for i in range(services)
        ],
    }


@pytest.fixture
def worlds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[emulators.World]]:
    """The worlds simulate() creates (it keeps them to itself), to read the emulated CodeBuild's queue afterwards."""
    seen: list[emulators.World] = []
    activate = emulators.activate

    def keep(world: emulators.World | None) -> None:
        if world is not None:
            seen.append(world)
        activate(world)

    monkeypatch.setattr(emulators, "activate", keep)
    yield seen


@pytest.mark.slow
@pytest.mark.parametrize(
    ("build_concurrency", "most_queued", "longest_wait_builds"),
    [
        (10, 0, 0),  # the rule: never more builds at once than the account runs; nothing ever queues
        (40, 30, 3),  # 30 wait at a time, each at most ceil(30 / 10) = 3 build lengths (FIFO)
    ],
)
def test_given_500_services_and_an_account_running_10_builds_then_no_build_times_out_in_the_queue(
    tmp_path: Path,
    worlds: list[emulators.World],
    build_concurrency: int,
    most_queued: int,
    longest_wait_builds: int,
) -> None:
    """A whole train of 500 services in five waves on an account whose quota is 10 running builds (6-minute builds,
    the default 480-minute queued timeout). Measured on this machine (against the train at HEAD): about 20 s wall
    each."""
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(_fleet(500, build_concurrency=build_concurrency)))
    scenario = Scenario(
        name="queue-500",
        codebuild=CodeBuildAccount(concurrent_builds=10),
        approvals={"prod": ApprovalAction(decision="approve", after=timedelta(minutes=5))},
    )
    wall = time.perf_counter()
    result = simulate(path, scenario, ROOT)
    wall = time.perf_counter() - wall
    assert result.status == "SUCCEEDED", result.reason
    assert len(result.builds) == 500
    assert {b["status"] for b in result.builds} == {"SUCCEEDED"}, "a build timed out in the queue or failed"
    assert result.builds_throttled == 0  # 30 waiting never fills the queue (50 for a quota of 10)
    (world,) = worlds
    codebuild = world.codebuild
    longest = max(codebuild.queued_seconds(b) for b in codebuild.builds.values())
    assert codebuild.most_queued == most_queued
    assert longest == longest_wait_builds * 6 * MINUTE < 480 * MINUTE
    print(f"\n500 services, quota 10, build_concurrency {build_concurrency}: {wall:.1f} s wall, longest wait {longest}")
