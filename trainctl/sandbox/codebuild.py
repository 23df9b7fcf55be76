"""Emulated CodeBuild: projects, builds that take virtual time, test reports.

A build is a participant of the virtual clock: it starts when StartBuild is called, runs its scenario duration, and
for a service that deploys Lambda functions (`deploy` in the fleet) its end is the end of its `sam deploy`, which in
the canary stages waits for the CodeDeploy deployments (codedeploy.py). A stopped build ends at once with STOPPED,
but what it started in CloudFormation and CodeDeploy goes on (AWS does not stop a stack update when the build that
asked for it is stopped).

Response shapes follow the CodeBuild API reference (StartBuild, BatchGetBuilds, StopBuild, ListBuildsForProject,
BatchGetReports); every answer is checked against botocore's output shape by the router (emulators.py).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from trainctl.sandbox import vtime
from trainctl.sandbox.emulators import ACCOUNT, ApiError, Route
from trainctl.sandbox.scenario import BuildBehaviour, TestRun

if TYPE_CHECKING:
    from trainctl.sandbox.emulators import World

TERMINAL = ("SUCCEEDED", "FAILED", "FAULT", "STOPPED", "TIMED_OUT")


@dataclass
class Build:
    id: str
    arn: str
    project: str
    stage: str
    service: str | None  # None for a stage's test project
    source_version: str | None
    env: dict[str, str]
    start_v: float
    report_arns: list[str] = field(default_factory=list)
    final: str | None = None  # CodeBuild's buildStatus once the build ended
    end_v: float | None = None
    done: vtime.VEvent = field(default_factory=vtime.VEvent)
    stop_requested: vtime.VEvent = field(default_factory=vtime.VEvent)
    deployments: list[str] = field(default_factory=list)  # ids of the CodeDeploy deployments its deploy started

    @property
    def status(self) -> str:
        return self.final or "IN_PROGRESS"

    @property
    def kind(self) -> str:
        return "test" if self.service is None else "service"


@dataclass
class Report:
    arn: str
    build_id: str
    passed: int
    failed: int


class CodeBuild:
    def __init__(self, world: World) -> None:
        self.world = world
        self.projects: dict[str, tuple[str, str | None]] = {}  # project -> (stage, service or None for tests)
        self.builds: dict[str, Build] = {}
        self.reports: dict[str, Report] = {}
        self.throttles_left: dict[tuple[str, str], int] = {}
        self.start_calls = 0
        self.throttled_calls = 0
        self._lock = threading.Lock()

    def routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("codebuild", "StartBuild"): self.start_build,
            ("codebuild", "BatchGetBuilds"): self.batch_get_builds,
            ("codebuild", "StopBuild"): self.stop_build,
            ("codebuild", "ListBuildsForProject"): self.list_builds_for_project,
            ("codebuild", "BatchGetReports"): self.batch_get_reports,
        }

    def register_project(self, project: str, stage: str, service: str | None) -> None:
        self.projects[project] = (stage, service)

    def ended(self, build_id: str) -> vtime.VEvent:
        return self.builds[build_id].done

    # --- the API ----------------------------------------------------------------------------------------------

    def start_build(self, params: dict[str, Any]) -> dict[str, Any]:
        project = params["projectName"]
        if project not in self.projects:
            raise ApiError("ResourceNotFoundException", f"Project cannot be found: {self._project_arn(project)}")
        env = {v["name"]: v["value"] for v in params.get("environmentVariablesOverride", [])}
        stage, service = self.projects[project]
        stage = env.get("STAGE", stage)
        behaviour = self.world.scenario.build(stage, service) if service is not None else None
        with self._lock:
            self.start_calls += 1
            if behaviour is not None and service is not None:
                key = (stage, service)
                left = self.throttles_left.setdefault(key, behaviour.throttled)
                if left > 0:
                    self.throttles_left[key] = left - 1
                    self.throttled_calls += 1
                    # StartBuild over the account's concurrent-build quota (CodeBuild API reference, Errors).
                    raise ApiError(
                        "AccountLimitExceededException", "Cannot have more than 20 active builds for the account"
                    )
        build_id = f"{project}:{uuid.uuid4()}"
        build = Build(
            id=build_id,
            arn=f"arn:aws:codebuild:{self.world.region}:{ACCOUNT}:build/{build_id}",
            project=project,
            stage=stage,
            service=service,
            source_version=params.get("sourceVersion"),
            env=env,
            start_v=self.world.clock.elapsed,
        )
        with self._lock:
            self.builds[build_id] = build
        if service is None:
            vtime.spawn(lambda: self._run_tests(build), f"build:{build_id}")
        else:
            assert behaviour is not None
            vtime.spawn(lambda: self._run_service(build, behaviour), f"build:{build_id}")
        return {"build": self._describe(build)}

    def batch_get_builds(self, params: dict[str, Any]) -> dict[str, Any]:
        found = [self._describe(self.builds[i]) for i in params["ids"] if i in self.builds]
        missing = [i for i in params["ids"] if i not in self.builds]
        # The model gives buildsNotFound a minimum length of 1: an empty list is left out.
        return {"builds": found, **({"buildsNotFound": missing} if missing else {})}

    def stop_build(self, params: dict[str, Any]) -> dict[str, Any]:
        build = self.builds.get(params["id"])
        if build is None:
            raise ApiError("ResourceNotFoundException", f"Build {params['id']} not found")
        if build.final is None:
            self._end(build, "STOPPED")
            build.stop_requested.set()
        return {"build": self._describe(build)}

    def list_builds_for_project(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["projectName"] not in self.projects:
            raise ApiError("ResourceNotFoundException", f"Project cannot be found: {params['projectName']}")
        newest_first = sorted(self.builds.values(), key=lambda b: (-b.start_v, b.id))
        ids = [b.id for b in newest_first if b.project == params["projectName"]]
        return {"ids": ids} if ids else {}  # `ids` has a minimum length of 1 in the model: none is left out

    def batch_get_reports(self, params: dict[str, Any]) -> dict[str, Any]:
        reports = []
        for arn in params["reportArns"]:
            report = self.reports.get(arn)
            if report is None:
                continue
            build = self.builds[report.build_id]
            done = build.final is not None
            counts = {"SUCCEEDED": report.passed, "FAILED": report.failed} if done else {}
            reports.append(
                {
                    "arn": arn,
                    "type": "TEST",
                    "name": arn.rsplit("/", 1)[-1],
                    "reportGroupArn": arn.rsplit(":", 1)[0].replace(":report/", ":report-group/"),
                    "executionId": build.arn,
                    "status": ("FAILED" if report.failed else "SUCCEEDED") if done else "INCOMPLETE",
                    "testSummary": {"total": sum(counts.values()), "statusCounts": counts, "durationInNanoSeconds": 0},
                }
            )
        missing = [a for a in params["reportArns"] if a not in self.reports]
        return {"reports": reports, **({"reportsNotFound": missing} if missing else {})}

    # --- builds in virtual time -------------------------------------------------------------------------------

    def _run_tests(self, build: Build) -> None:
        run = self.world.scenario.tests.get(build.stage) or TestRun()
        passed, failed = run.passed, run.failed
        if run.report:
            arn = f"arn:aws:codebuild:{self.world.region}:{ACCOUNT}:report/{build.project}-tests:{uuid.uuid4()}"
            self.reports[arn] = Report(arn, build.id, passed, failed)
            build.report_arns.append(arn)
        if build.stop_requested.wait(run.duration.total_seconds()):
            return  # stopped: already ended STOPPED
        self._end(build, "FAILED" if failed else "SUCCEEDED")

    def _run_service(self, build: Build, behaviour: BuildBehaviour) -> None:
        """Build and package for the scenario's duration, then (if it succeeded) deploy and wait for the deploy."""
        assert build.service is not None
        if build.stop_requested.wait(behaviour.duration.total_seconds()):
            return
        if behaviour.outcome != "SUCCEEDED":
            self._end(build, behaviour.outcome)
            return
        deploy = self.world.codedeploy.deploy(build)
        if deploy is None:
            self._end(build, "SUCCEEDED")
            return
        # `sam deploy` waits for the stack update, which waits for CodeDeploy; a stop leaves them running.
        vtime.current().wait_any((deploy.finished, build.stop_requested), None)
        if build.final is None:
            self._end(build, "SUCCEEDED" if deploy.succeeded else "FAILED")

    def _end(self, build: Build, status: str) -> None:
        with self._lock:
            if build.final is not None:
                return
            build.final, build.end_v = status, self.world.clock.elapsed
        build.done.set()

    # --- shapes -------------------------------------------------------------------------------------------------

    def _describe(self, build: Build) -> dict[str, Any]:
        clock = self.world.clock
        status = build.status
        described: dict[str, Any] = {
            "id": build.id,
            "arn": build.arn,
            "projectName": build.project,
            "buildStatus": status,
            "currentPhase": "COMPLETED" if build.final else "BUILD",
            "buildComplete": build.final is not None,
            "startTime": _at(clock, build.start_v),
            "environment": {
                "type": "ARM_CONTAINER",
                "image": "aws/codebuild/amazonlinux-aarch64-standard:3.0",
                "computeType": "BUILD_GENERAL1_SMALL",
                "environmentVariables": [{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in build.env.items()],
            },
            "reportArns": list(build.report_arns),
            "initiator": "release-train",
        }
        if build.source_version:
            described["sourceVersion"] = build.source_version
            described["resolvedSourceVersion"] = build.source_version
        if build.end_v is not None:
            described["endTime"] = _at(clock, build.end_v)
        return described

    def _project_arn(self, project: str) -> str:
        return f"arn:aws:codebuild:{self.world.region}:{ACCOUNT}:project/{project}"

    def service_for(self, project: str) -> str | None:
        return self.projects.get(project, ("", None))[1]


def _at(clock: vtime.Scheduler, virtual_seconds: float) -> datetime:
    from datetime import timedelta

    return clock.start + timedelta(seconds=virtual_seconds)
