"""Emulated AWS APIs that moto lacks or gets wrong for a release train: CodeBuild, CodeCommit branches, alarm history.

They answer at the botocore `before-call` event, after botocore has validated the request against the real API
model, so a call the sandbox accepts is a call AWS would accept. Responses have the real API's shape and casing.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import botocore.handlers
from botocore.awsrequest import AWSResponse, HTTPHeaders

from trainctl.sandbox.clock import VirtualClock
from trainctl.sandbox.scenario import BuildBehaviour, Scenario

ACCOUNT = "123456789012"


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class Build:
    id: str
    arn: str
    project: str
    source_version: str | None
    env: dict[str, str]
    start_v: float
    duration_s: float
    outcome: str
    report_arns: list[str] = field(default_factory=list)
    stopped_at_v: float | None = None
    deployment: Any = None  # set when a prod build drives an emulated CodeDeploy deployment

    def status(self, now_v: float) -> str:
        if self.stopped_at_v is not None:
            return "STOPPED"
        return self.outcome if now_v >= self.start_v + self.duration_s else "IN_PROGRESS"


@dataclass
class Report:
    arn: str
    build_id: str
    passed: int
    failed: int


class World:
    """Everything the emulated services know. One per simulation."""

    def __init__(self, scenario: Scenario, clock: VirtualClock, region: str) -> None:
        self.scenario, self.clock, self.region = scenario, clock, region
        self.projects: dict[str, str] = {}  # project -> stage ("tests" projects map to their stage too)
        self.test_projects: set[str] = set()
        self.builds: dict[str, Build] = {}
        self.reports: dict[str, Report] = {}
        self.branches: dict[tuple[str, str], str] = {}
        self.alarm_history: dict[str, list[tuple[datetime, str, str]]] = {}  # name -> (time, old, new)
        self.throttles_left: dict[tuple[str, str], int] = {}
        self.start_calls = 0
        self.throttled_calls = 0
        self._lock = threading.Lock()
        self.on_build_start: list[Any] = []  # callbacks(build) — the CodeDeploy emulation hooks in here

    # --- CodeBuild ------------------------------------------------------------------------------------------------

    def _service_of(self, build_env: dict[str, str], project: str) -> str:
        return build_env.get("SERVICE") or project

    def start_build(self, params: dict[str, Any]) -> dict[str, Any]:
        project = params["projectName"]
        if project not in self.projects:
            raise ApiError("ResourceNotFoundException", f"Project cannot be found: {self._project_arn(project)}")
        env = {v["name"]: v["value"] for v in params.get("environmentVariablesOverride", [])}
        stage = env.get("STAGE", self.projects[project])
        with self._lock:
            self.start_calls += 1
            service = self.service_for(project, stage)
            key = (stage, service)
            behaviour = self._behaviour(project, stage, service)
            left = self.throttles_left.setdefault(
                key, behaviour.throttled if isinstance(behaviour, BuildBehaviour) else 0
            )
            if left > 0:
                self.throttles_left[key] = left - 1
                self.throttled_calls += 1
                raise ApiError(
                    "AccountLimitExceededException", "Cannot have more than 20 active builds for the account"
                )
        build_id = f"{project}:{uuid.uuid4()}"
        if project in self.test_projects:
            run = self.scenario.tests.get(stage)
            passed, failed = (run.passed, run.failed) if run else (120, 0)
            duration = run.duration.total_seconds() if run else 600.0
            outcome = "FAILED" if failed else "SUCCEEDED"
            reports = []
            if run is None or run.report:
                arn = f"arn:aws:codebuild:{self.region}:{ACCOUNT}:report/{project}-tests:{uuid.uuid4()}"
                self.reports[arn] = Report(arn, build_id, passed, failed)
                reports.append(arn)
        else:
            assert isinstance(behaviour, BuildBehaviour)
            duration, outcome, reports = behaviour.duration.total_seconds(), behaviour.outcome, []
        build = Build(
            id=build_id,
            arn=f"arn:aws:codebuild:{self.region}:{ACCOUNT}:build/{build_id}",
            project=project,
            source_version=params.get("sourceVersion"),
            env=env,
            start_v=self.clock.elapsed,
            duration_s=duration,
            outcome=outcome,
            report_arns=reports,
        )
        with self._lock:
            self.builds[build_id] = build
        for callback in self.on_build_start:
            callback(build, stage, self.service_for(project, stage))
        return {"build": self._describe(build)}

    def service_for(self, project: str, stage: str) -> str:
        return self._project_services.get((project, stage), project)

    _project_services: dict[tuple[str, str], str] = {}

    def register_project(self, project: str, stage: str, service: str | None) -> None:
        self.projects[project] = stage
        if service is None:
            self.test_projects.add(project)
        else:
            self._project_services = {**self._project_services, (project, stage): service}

    def _behaviour(self, project: str, stage: str, service: str) -> BuildBehaviour | None:
        return None if project in self.test_projects else self.scenario.build(stage, service)

    def batch_get_builds(self, params: dict[str, Any]) -> dict[str, Any]:
        found = [self._describe(self.builds[i]) for i in params["ids"] if i in self.builds]
        missing = [i for i in params["ids"] if i not in self.builds]
        return {"builds": found, "buildsNotFound": missing}

    def stop_build(self, params: dict[str, Any]) -> dict[str, Any]:
        build = self.builds.get(params["id"])
        if build is None:
            raise ApiError("ResourceNotFoundException", f"Build {params['id']} not found")
        if build.status(self.clock.elapsed) == "IN_PROGRESS":
            build.stopped_at_v = self.clock.elapsed
        return {"build": self._describe(build)}

    def list_builds_for_project(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["projectName"] not in self.projects:
            raise ApiError("ResourceNotFoundException", f"Project cannot be found: {params['projectName']}")
        ids = [
            b.id for b in sorted(self.builds.values(), key=lambda b: -b.start_v) if b.project == params["projectName"]
        ]
        return {"ids": ids}

    def batch_get_reports(self, params: dict[str, Any]) -> dict[str, Any]:
        reports = []
        for arn in params["reportArns"]:
            report = self.reports.get(arn)
            if report is None:
                continue
            build = self.builds[report.build_id]
            done = build.status(self.clock.elapsed) != "IN_PROGRESS"
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
        return {"reports": reports, "reportsNotFound": [a for a in params["reportArns"] if a not in self.reports]}

    def seconds_left(self, build_id: str) -> float:
        build = self.builds[build_id]
        if build.stopped_at_v is not None:
            return 0.0
        return max(0.0, build.start_v + build.duration_s - self.clock.elapsed)

    def _describe(self, build: Build) -> dict[str, Any]:
        now_v = self.clock.elapsed
        status = build.status(now_v)
        start = self.clock.start.timestamp() + build.start_v
        described: dict[str, Any] = {
            "id": build.id,
            "arn": build.arn,
            "projectName": build.project,
            "buildStatus": status,
            "currentPhase": "COMPLETED" if status != "IN_PROGRESS" else "BUILD",
            "buildComplete": status != "IN_PROGRESS",
            "startTime": datetime.fromtimestamp(start, self.clock.start.tzinfo),
            "environment": {
                "type": "ARM_CONTAINER",
                "image": "aws/codebuild/amazonlinux-aarch64-standard:3.0",
                "computeType": "BUILD_GENERAL1_SMALL",
                "environmentVariables": [{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in build.env.items()],
            },
            "reportArns": build.report_arns,
            "initiator": "release-train",
        }
        if build.source_version:
            described["sourceVersion"] = build.source_version
            described["resolvedSourceVersion"] = build.source_version
        if status != "IN_PROGRESS":
            end = build.stopped_at_v if build.stopped_at_v is not None else build.start_v + build.duration_s
            described["endTime"] = datetime.fromtimestamp(self.clock.start.timestamp() + end, self.clock.start.tzinfo)
        return described

    def _project_arn(self, project: str) -> str:
        return f"arn:aws:codebuild:{self.region}:{ACCOUNT}:project/{project}"

    # --- CodeCommit, CloudWatch -----------------------------------------------------------------------------------

    def get_branch(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (params["repositoryName"], params["branchName"])
        if key not in self.branches:
            if not any(repo == key[0] for repo, _ in self.branches):
                raise ApiError("RepositoryDoesNotExistException", f"{key[0]} does not exist")
            raise ApiError("BranchDoesNotExistException", f"Branch {key[1]} does not exist in {key[0]}")
        return {"branch": {"branchName": key[1], "commitId": self.branches[key]}}

    def record_alarm(self, name: str, old: str, new: str) -> None:
        self.alarm_history.setdefault(name, []).append((self.clock.now(), old, new))

    def describe_alarm_history(self, params: dict[str, Any]) -> dict[str, Any]:
        start, end = params.get("StartDate"), params.get("EndDate")
        items = []
        for at, old, new in self.alarm_history.get(params.get("AlarmName", ""), []):
            if (start and at < start) or (end and at > end):
                continue
            items.append(
                {
                    "AlarmName": params["AlarmName"],
                    "AlarmType": "MetricAlarm",
                    "Timestamp": at,
                    "HistoryItemType": "StateUpdate",
                    "HistorySummary": f"Alarm updated from {old} to {new}",
                    "HistoryData": json.dumps(
                        {"version": "1.0", "oldState": {"stateValue": old}, "newState": {"stateValue": new}}
                    ),
                }
            )
        return {"AlarmHistoryItems": items}


_ROUTES = {
    ("codebuild", "StartBuild"): World.start_build,
    ("codebuild", "BatchGetBuilds"): World.batch_get_builds,
    ("codebuild", "StopBuild"): World.stop_build,
    ("codebuild", "ListBuildsForProject"): World.list_builds_for_project,
    ("codebuild", "BatchGetReports"): World.batch_get_reports,
    ("codecommit", "GetBranch"): World.get_branch,
    ("cloudwatch", "DescribeAlarmHistory"): World.describe_alarm_history,
}
extra_routes: dict[tuple[str, str], Any] = {}  # other emulators (CodeDeploy) add theirs: (service, op) -> fn(params)

_active: World | None = None


def activate(world: World | None) -> None:
    global _active
    _active = world


def active() -> World | None:
    return _active


def _remember_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context["sandbox_api_params"] = dict(params)


def _answer(model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
    world = _active
    if world is None:
        return None
    key = (model.service_model.service_name, model.name)
    route = _ROUTES.get(key)
    handler = extra_routes.get(key)
    if route is None and handler is None:
        return None
    params = context.get("sandbox_api_params", {})
    try:
        if route is not None:
            body = route(world, params)
        else:
            assert handler is not None
            body = handler(params)
    except ApiError as exc:
        error = {
            "Error": {"Code": exc.code, "Message": exc.message},
            "ResponseMetadata": {"HTTPStatusCode": exc.status, "RequestId": str(uuid.uuid4())},
        }
        return AWSResponse("https://sandbox.local", exc.status, HTTPHeaders(), None), error
    body.setdefault("ResponseMetadata", {"HTTPStatusCode": 200, "RequestId": str(uuid.uuid4())})
    return AWSResponse("https://sandbox.local", 200, HTTPHeaders(), None), body


_INSTALLED = False


def install() -> None:
    """Hook into every botocore session created from now on (moto does the same for its own backends)."""
    global _INSTALLED
    if _INSTALLED:
        return
    botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build", _remember_params))
    botocore.handlers.BUILTIN_HANDLERS.append(("before-call", _answer))
    _INSTALLED = True
