"""Emulated CodeBuild: projects, builds that take virtual time, test reports.

A build is a participant of the virtual clock: it starts when StartBuild is called, runs its scenario duration, and
for a service that deploys Lambda functions (`deploy` in the fleet) its end is the end of its `sam deploy`, which in
the canary stages waits for the CodeDeploy deployments (codedeploy.py). A stopped build ends at once with STOPPED,
but what it started in CloudFormation and CodeDeploy goes on (AWS does not stop a stack update when the build that
asked for it is stopped).

The account's concurrent-build quota (scenario `codebuild.concurrent_builds`; CodeBuild User Guide, "Builds in AWS
CodeBuild"): a build over it waits in phase QUEUED (buildStatus IN_PROGRESS) and starts when a running build ends;
one still queued after its queuedTimeoutInMinutes ends TIMED_OUT, its QUEUED phase TIMED_OUT. At most five times the
quota may wait; StartBuild beyond that is refused with AccountLimitExceededException. AWS says the order in which
queued builds start cannot be predicted; the sandbox starts them first in, first out, so a run is reproducible. A
build whose slot frees at the very instant its queue timeout comes due starts: the timeout is decided only after
everything due at that instant has settled.

Response shapes follow the CodeBuild API reference (StartBuild, BatchGetBuilds, StopBuild, ListBuildsForProject,
BatchGetReports); every answer is checked against botocore's output shape by the router (emulators.py).
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from trainctl.sandbox import vtime
from trainctl.sandbox.accounts import ACCOUNT
from trainctl.sandbox.emulators import ApiError, Route
from trainctl.sandbox.scenario import BuildBehaviour, TestRun

if TYPE_CHECKING:
    from trainctl.sandbox.emulators import World

TERMINAL = ("SUCCEEDED", "FAILED", "FAULT", "STOPPED", "TIMED_OUT")
DEFAULT_QUEUED_TIMEOUT_MINUTES = 480  # CreateProject API reference: queuedTimeoutInMinutes 5-480, default 8 hours
QUEUE_FACTOR = 5  # "The maximum number of builds in a queue is five times the concurrent build limit."


@dataclass
class Build:
    id: str
    arn: str
    project: str
    stage: str
    service: str | None  # None for a stage's test project
    source_version: str | None
    env: dict[str, str]
    start_v: float  # submitted (Build.startTime)
    queued_timeout_minutes: int = DEFAULT_QUEUED_TIMEOUT_MINUTES
    run_v: float | None = None  # left the queue and began to run; None while queued (or if it never ran)
    report_arns: list[str] = field(default_factory=list)
    final: str | None = None  # CodeBuild's buildStatus once the build ended
    end_v: float | None = None
    done: vtime.VEvent = field(default_factory=vtime.VEvent)
    admitted: vtime.VEvent = field(default_factory=vtime.VEvent)  # set when it gets one of the account's slots
    stop_requested: vtime.VEvent = field(default_factory=vtime.VEvent)
    deployments: list[str] = field(default_factory=list)  # ids of the CodeDeploy deployments its deploy started
    failure: str | None = None  # why it failed where the scenario did not say (its deploy was refused)

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
        self.queued_timeouts: dict[str, int] = {}  # project -> its queuedTimeoutInMinutes, when registered with one
        self.environments: dict[str, dict[str, str]] = {}  # project -> its plaintext environment variables
        self.builds: dict[str, Build] = {}
        self.reports: dict[str, Report] = {}
        self.throttles_left: dict[tuple[str, str], int] = {}
        self.start_calls = 0
        self.throttled_calls = 0
        self.running = 0  # builds holding one of the account's concurrent-build slots
        self.queue: deque[Build] = deque()  # builds waiting for a slot, oldest first
        self.most_queued = 0  # the longest the queue ever was
        self._lock = threading.Lock()

    def routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("codebuild", "StartBuild"): self.start_build,
            ("codebuild", "BatchGetBuilds"): self.batch_get_builds,
            ("codebuild", "StopBuild"): self.stop_build,
            ("codebuild", "ListBuildsForProject"): self.list_builds_for_project,
            ("codebuild", "BatchGetReports"): self.batch_get_reports,
        }

    def register_project(
        self,
        project: str,
        stage: str,
        service: str | None,
        queued_timeout_minutes: int | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        """`queued_timeout_minutes`: the project's queuedTimeoutInMinutes (default: the scenario's, 480 unless set)."""
        self.projects[project] = (stage, service)
        self.environments[project] = dict(environment or {})
        if queued_timeout_minutes is not None:
            self.queued_timeouts[project] = queued_timeout_minutes

    @property
    def concurrent_builds(self) -> int | None:
        return self.world.scenario.codebuild.concurrent_builds

    def queued_seconds(self, build: Build) -> float:
        """How long the build waited for a slot (so far, if it still waits)."""
        left = build.run_v if build.run_v is not None else build.end_v
        return (self.world.clock.elapsed if left is None else left) - build.start_v

    def ended(self, build_id: str) -> vtime.VEvent:
        return self.builds[build_id].done

    # --- the API ----------------------------------------------------------------------------------------------

    def start_build(self, params: dict[str, Any]) -> dict[str, Any]:
        project = params["projectName"]
        if project not in self.projects:
            raise ApiError("ResourceNotFoundException", f"Project cannot be found: {self._project_arn(project)}")
        # The build's environment: the project's, each override replacing its namesake (StartBuild,
        # environmentVariablesOverride).
        env = {
            **self.environments.get(project, {}),
            **{v["name"]: v["value"] for v in params.get("environmentVariablesOverride", [])},
        }
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
                    if behaviour.throttle_code == "ThrottlingException":
                        raise ApiError("ThrottlingException", "Rate exceeded")  # CodeBuild API reference, Common Errors
                    # StartBuild over an account limit (CodeBuild API reference, StartBuild, Errors).
                    raise ApiError(
                        "AccountLimitExceededException", "Cannot have more than 20 active builds for the account"
                    )
        build_id = f"{project}:{uuid.uuid4()}"
        queued_timeout = params.get("queuedTimeoutInMinutesOverride") or self.queued_timeouts.get(
            project, self.world.scenario.codebuild.queued_timeout_minutes
        )
        build = Build(
            id=build_id,
            arn=f"arn:aws:codebuild:{self.world.region}:{ACCOUNT}:build/{build_id}",
            project=project,
            stage=stage,
            service=service,
            source_version=params.get("sourceVersion"),
            env=env,
            start_v=self.world.clock.elapsed,
            queued_timeout_minutes=int(queued_timeout),
        )
        limit = self.concurrent_builds
        with self._lock:
            if limit is not None and self.running >= limit and len(self.queue) >= QUEUE_FACTOR * limit:
                self.throttled_calls += 1
                # The queue is full: StartBuild is refused (AccountLimitExceededException, as AWS words it).
                raise ApiError(
                    "AccountLimitExceededException",
                    f"Cannot have more than {QUEUE_FACTOR * limit} builds in queue for the account",
                )
            self.builds[build_id] = build
            if not self.queue and (limit is None or self.running < limit):
                build.run_v = self.world.clock.elapsed
                self.running += 1
            else:
                self.queue.append(build)
                self.most_queued = max(self.most_queued, len(self.queue))
        if build.run_v is not None:
            build.admitted.set()  # nobody waits on it yet
        if service is None:
            work: Callable[[], None] = functools.partial(self._run_tests, build)
        else:
            assert behaviour is not None
            work = functools.partial(self._run_service, build, behaviour)
        vtime.spawn(lambda: self._lifecycle(build, work), f"build:{build_id}")
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

    def _lifecycle(self, build: Build, work: Callable[[], None]) -> None:
        if self._queued(build):
            work()

    def _queued(self, build: Build) -> bool:
        """Wait for a slot: True once the build runs; False if it was stopped or timed out in the queue.

        The timeout wakes as a PERSON does: after every machine due at the same instant settled, so a build whose
        slot frees at exactly queuedTimeoutInMinutes starts instead of timing out (whichever thread ran first)."""
        vtime.current().wait_any(
            (build.admitted, build.stop_requested), build.queued_timeout_minutes * 60.0, klass=vtime.PERSON
        )
        with self._lock:
            if build.final is not None:
                return False  # stopped while queued
            if build.run_v is not None:
                return True
            admitted = self._finish_locked(build, "TIMED_OUT")
        self._announce(build, admitted)
        return False

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
        denied = self._deploy_denied(build)
        if denied is not None:
            build.failure = denied
            self._end(build, "FAILED")
            return
        deploy = self.world.codedeploy.deploy(build)
        if deploy is None:
            self._end(build, "SUCCEEDED")
            return
        # `sam deploy` waits for the stack update, which waits for CodeDeploy; a stop leaves them running.
        vtime.current().wait_any((deploy.finished, build.stop_requested), None)
        if build.final is None:
            self._end(build, "SUCCEEDED" if deploy.succeeded else "FAILED")

    def _deploy_denied(self, build: Build) -> str | None:
        """A stage in another account is deployed through its deploy role (docs/accounts.md, "What the buildspec
        does"): the build's DEPLOY_ROLE_ARN must be a role that exists in the stage's account and whose trust
        policy's sts:ExternalId is the build's DEPLOY_EXTERNAL_ID, or sts:AssumeRole is refused. Returns STS's
        refusal, as the build log would show it; None when the deploy may go ahead."""
        account = self.world.stage_account(build.stage)
        if account == ACCOUNT:
            return None
        role_arn = build.env.get("DEPLOY_ROLE_ARN", "")
        role = f"arn:aws:sts::{ACCOUNT}:assumed-role/codebuild/{build.id}"
        refused = (
            f"An error occurred (AccessDenied) when calling the AssumeRole operation: User: {role} is not authorized "
            f"to perform: sts:AssumeRole on resource: {role_arn or '(no DEPLOY_ROLE_ARN)'}"
        )
        parts = role_arn.split(":")
        if len(parts) != 6 or parts[4] != account or not parts[5].startswith("role/"):
            return refused
        iam = self.world.client("iam", account)
        try:
            trust = iam.get_role(RoleName=parts[5].rsplit("/", 1)[-1])["Role"]["AssumeRolePolicyDocument"]
        except iam.exceptions.NoSuchEntityException:
            return refused
        document = json.loads(trust) if isinstance(trust, str) else trust
        wanted = {
            str(v)
            for statement in document.get("Statement", [])
            for condition in (statement.get("Condition") or {}).values()
            for key, values in condition.items()
            if key.lower() == "sts:externalid"
            for v in (values if isinstance(values, list) else [values])
        }
        return None if build.env.get("DEPLOY_EXTERNAL_ID") in wanted else refused

    def _end(self, build: Build, status: str) -> None:
        with self._lock:
            if build.final is not None:
                return
            admitted = self._finish_locked(build, status)
        self._announce(build, admitted)

    def _finish_locked(self, build: Build, status: str) -> list[Build]:
        """End the build (under the lock); a build that held a slot hands it to the oldest queued ones."""
        now = self.world.clock.elapsed
        build.final, build.end_v = status, now
        if build.run_v is None:
            self.queue.remove(build)
            return []
        self.running -= 1
        limit = self.concurrent_builds
        admitted: list[Build] = []
        while self.queue and (limit is None or self.running < limit):
            waiting = self.queue.popleft()
            waiting.run_v = now
            self.running += 1
            admitted.append(waiting)
        return admitted

    @staticmethod
    def _announce(build: Build, admitted: list[Build]) -> None:
        build.done.set()
        for waiting in admitted:
            waiting.admitted.set()

    # --- shapes -------------------------------------------------------------------------------------------------

    def _describe(self, build: Build) -> dict[str, Any]:
        clock = self.world.clock
        status = build.status
        described: dict[str, Any] = {
            "id": build.id,
            "arn": build.arn,
            "projectName": build.project,
            "buildStatus": status,
            "currentPhase": "COMPLETED" if build.final else "QUEUED" if build.run_v is None else "BUILD",
            "buildComplete": build.final is not None,
            "startTime": _at(clock, build.start_v),
            "phases": self._phases(build),
            "queuedTimeoutInMinutes": build.queued_timeout_minutes,
            "environment": {
                "type": "ARM_CONTAINER",
                "image": "aws/codebuild/amazonlinux-aarch64-standard:3.0",
                "computeType": "BUILD_GENERAL1_SMALL",
                "environmentVariables": [{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in build.env.items()],
            },
            "reportArns": list(build.report_arns),
            "initiator": "release-train",
            # What a real build description also carries (BatchGetBuilds' Build shape): it is why a failed .sync
            # build's cause is ~3-4 KB, and what the train must not copy into its payloads (ADR 0007).
            "source": {
                "type": "CODECOMMIT",
                "location": f"https://git-codecommit.{self.world.region}.amazonaws.com/v1/repos/{build.project}",
                "gitCloneDepth": 1,
                "gitSubmodulesConfig": {"fetchSubmodules": False},
                "buildspec": "buildspec.yml",
                "insecureSsl": False,
            },
            "secondarySources": [],
            "secondarySourceVersions": [],
            "artifacts": {"location": "", "encryptionDisabled": False},
            "cache": {"type": "NO_CACHE"},
            "serviceRole": f"arn:aws:iam::{ACCOUNT}:role/service-role/codebuild-{build.project}-service-role",
            "logs": {
                "groupName": f"/aws/codebuild/{build.project}",
                "streamName": build.id.split(":", 1)[-1],
                "deepLink": "https://console.aws.amazon.com/cloudwatch/home?region="
                f"{self.world.region}#logsV2:log-groups/log-group/$252Faws$252Fcodebuild$252F{build.project}"
                f"/log-events/{build.id.split(':', 1)[-1]}",
                "cloudWatchLogsArn": f"arn:aws:logs:{self.world.region}:{ACCOUNT}:log-group:/aws/codebuild/"
                f"{build.project}:log-stream:{build.id.split(':', 1)[-1]}",
                "cloudWatchLogs": {"status": "ENABLED"},
                "s3Logs": {"status": "DISABLED", "encryptionDisabled": False},
            },
            "timeoutInMinutes": 60,
            "encryptionKey": f"arn:aws:kms:{self.world.region}:{ACCOUNT}:alias/aws/s3",
        }
        if build.source_version:
            described["sourceVersion"] = build.source_version
            described["resolvedSourceVersion"] = build.source_version
        if build.end_v is not None:
            described["endTime"] = _at(clock, build.end_v)
        return described

    def _phases(self, build: Build) -> list[dict[str, Any]]:
        """SUBMITTED, QUEUED, then the build's work as one BUILD phase (the sandbox does not split it into INSTALL,
        PRE_BUILD...), then COMPLETED, which has no status (BatchGetBuilds, BuildPhase)."""
        clock = self.world.clock

        def phase(kind: str, start: float, end: float | None, status: str | None) -> dict[str, Any]:
            shown: dict[str, Any] = {"phaseType": kind, "startTime": _at(clock, start)}
            if status is not None:
                shown["phaseStatus"] = status
            if status == "FAILED" and kind == "BUILD":  # what CodeBuild says of a command that exited non-zero
                shown["contexts"] = [
                    {
                        "statusCode": "COMMAND_EXECUTION_ERROR",
                        "message": "Error while executing command: sam deploy --no-fail-on-empty-changeset. "
                        "Reason: exit status 1",
                    }
                ]
            if end is not None and kind != "COMPLETED":
                shown["endTime"] = _at(clock, end)
                shown["durationInSeconds"] = round(end - start)
            return shown

        phases = [phase("SUBMITTED", build.start_v, build.start_v, "SUCCEEDED")]
        if build.run_v is not None:
            phases.append(phase("QUEUED", build.start_v, build.run_v, "SUCCEEDED"))
            phases.append(phase("BUILD", build.run_v, build.end_v, build.final or "IN_PROGRESS"))
        else:
            phases.append(phase("QUEUED", build.start_v, build.end_v, build.final or "IN_PROGRESS"))
        if build.final is not None and build.end_v is not None:
            phases.append(phase("COMPLETED", build.end_v, None, None))
        return phases

    def _project_arn(self, project: str) -> str:
        return f"arn:aws:codebuild:{self.world.region}:{ACCOUNT}:project/{project}"

    def service_for(self, project: str) -> str | None:
        return self.projects.get(project, ("", None))[1]


def _at(clock: vtime.Scheduler, virtual_seconds: float) -> datetime:
    from datetime import timedelta

    return clock.start + timedelta(seconds=virtual_seconds)
