"""Emulated CodeDeploy for Lambda: what `sam deploy` with `AutoPublishAlias` + `DeploymentPreference` does.

Every fleet service with a `deploy` block has its functions in moto's Lambda from the start (version 1 = the running
release, its alias on it). When the service's build reaches its deploy step:
- outside its canary stages, the new version is published and the alias moves to it at once;
- in a canary stage, each function gets a CodeDeploy deployment that runs on the virtual clock beside the build
  (a participant of its own): BeforeAllowTraffic hook -> traffic steps of the deployment configuration (with the
  scenario's canary alarms) -> AfterAllowTraffic hook -> Succeeded; a Failed or missing hook report, an alarm or a
  StopDeployment rolls the alias back. The build ends when all its deployments ended (CloudFormation waits for them);
  when one fails, CloudFormation rolls the stack back, so the aliases of its siblings return to their old versions.

The hooks are the stack's real PreTraffic/PostTraffic functions, invoked asynchronously as CodeDeploy does (Lambda
retries a failed async invocation twice, after 1 and 2 minutes), and they read the deployment through this API.
Function code: an example service's real handlers where `examples/*/template.yaml` defines the function (matched by
its stack name in the example's samconfig.toml), a stand-in (`standin_function.py`) otherwise.

API shapes follow the CodeDeploy API reference. Where it says more than the model can: GetDeployment's
`revision.appSpecContent.content` "is always null. Use GetApplicationRevision and the sha256 property" (GetDeployment);
a second status report for one hook execution raises LifecycleEventAlreadyCompletedException
(PutLifecycleEventHookExecutionStatus); a hook that does not report within one hour fails the deployment
(CodeDeploy User Guide, "AppSpec 'hooks' section for an AWS Lambda deployment").
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import threading
import tomllib
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from samtranslator.yaml_helper import yaml_parse

from trainctl.sandbox import vtime
from trainctl.sandbox.accounts import ACCOUNT
from trainctl.sandbox.emulators import ApiError, Route
from trainctl.sandbox.lambda_runtime import FunctionSpec, registry
from trainctl.sandbox.scenario import HookBehaviour

if TYPE_CHECKING:
    from release_train.domain.fleet import Service
    from trainctl.sandbox.codebuild import Build
    from trainctl.sandbox.emulators import World

HOOK_LIMIT_S = 3600.0
# CodeDeploy takes a few seconds to roll an alias back; the status changes when it is done, never at the instant of
# the StopDeployment or the failure, so whoever polls it sees the same thing whatever ran first.
ROLLBACK_S = 5.0
ASYNC_RETRY_DELAYS_S = (60.0, 120.0)  # Lambda's async retries (template: EventInvokeConfig MaximumRetryAttempts 2)
STANDIN = Path(__file__).parent

# The traffic steps of each predefined Lambda configuration: (weight of the new version, seconds until the next step).
DEPLOYMENT_CONFIGS: dict[str, list[tuple[float, float]]] = {
    "CodeDeployDefault.LambdaAllAtOnce": [],
    **{f"CodeDeployDefault.LambdaCanary10Percent{m}Minutes": [(0.1, m * 60.0)] for m in (5, 10, 15, 30)},
    "CodeDeployDefault.LambdaLinear10PercentEvery1Minute": [(i / 10, 60.0) for i in range(1, 10)],
    **{
        f"CodeDeployDefault.LambdaLinear10PercentEvery{m}Minutes": [(i / 10, m * 60.0) for i in range(1, 10)]
        for m in (2, 3, 10)
    },
}


@dataclass
class Site:
    """One deployed function of one service in one stage."""

    service: str
    stage: str
    function: str
    alias: str
    stack: str
    checks: dict[str, Any]
    example: tuple[Path, str, dict[str, str]] | None = None  # code dir, handler, environment
    account: str = ACCOUNT  # the stage's account: the function, its alias and its deployments live there


@dataclass
class Deployment:
    id: str
    site: Site
    application: str
    group: str
    config: str
    current_version: str
    target_version: str
    appspec: str
    create_v: float
    status: str = "Created"
    complete_v: float | None = None
    error: str | None = None
    error_code: str = "HOOK_EXECUTION_FAILURE"  # ErrorInformation.code, one of botocore's ErrorCode enum
    rolled_back: bool = False
    rolled_back_by_stack: bool = False
    hooks: dict[str, str] = field(default_factory=dict)  # execution id -> phase
    reports: dict[str, str] = field(default_factory=dict)  # execution id -> Succeeded | Failed
    reported: dict[str, vtime.VEvent] = field(default_factory=dict)
    report_calls: list[dict[str, Any]] = field(default_factory=list)
    hook_results: list[dict[str, Any]] = field(default_factory=list)
    routing: list[dict[str, Any]] = field(default_factory=list)
    failing_phase: str | None = None
    stop_requested: vtime.VEvent = field(default_factory=vtime.VEvent)
    stop_rollback: bool = True
    finished: vtime.VEvent = field(default_factory=vtime.VEvent)
    build_id: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.appspec.encode()).hexdigest()


@dataclass
class DeployRun:
    """One build's deploy step: its deployments, and whether the stack update they belong to succeeded."""

    deployments: list[Deployment]
    finished: vtime.VEvent = field(default_factory=vtime.VEvent)
    succeeded: bool = False


class CodeDeploy:
    def __init__(self, world: World) -> None:
        self.world = world
        self.sites: dict[tuple[str, str], list[Site]] = {}  # (service, stage) -> its functions
        self.deployments: dict[str, Deployment] = {}
        self.revisions: dict[tuple[str, str, str], str] = {}  # (account, application, sha256) -> AppSpec content
        self.hook_functions: dict[str, str] = {}  # "pre_traffic"/"post_traffic" -> the stack's function name
        self.running: dict[str, str] = {}
        self._lock = threading.Lock()

    def routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("codedeploy", "GetDeployment"): self.get_deployment,
            ("codedeploy", "GetApplicationRevision"): self.get_application_revision,
            ("codedeploy", "PutLifecycleEventHookExecutionStatus"): self.put_hook_status,
            ("codedeploy", "StopDeployment"): self.stop_deployment,
            ("codedeploy", "ListDeployments"): self.list_deployments,
            ("codedeploy", "ListDeploymentTargets"): self.list_deployment_targets,
            ("codedeploy", "BatchGetDeploymentTargets"): self.batch_get_deployment_targets,
        }

    # --- set-up: the functions as the last release left them -------------------------------------------------

    def prepare(self, root: Path, pre_traffic: str, post_traffic: str, running: dict[str, str] | None = None) -> None:
        """Create every declared function as the last release left it; `running`: service -> the commit it runs
        (its version 1 names it in its description, as a version the buildspec published does)."""
        self.running = running or {}
        fleet = self.world.fleet
        if fleet is None:
            return
        self.hook_functions = {"pre_traffic": pre_traffic, "post_traffic": post_traffic}
        examples = _ExampleFunctions(root)
        for service in fleet.services:
            if service.deploy is None:
                continue
            canary_stages = fleet.canary_stages(service)
            for stage in fleet.stages:
                sites = [
                    self._site(service, stage.name, name, examples, stage.name in canary_stages, stage.account)
                    for name in fleet.functions_for(service, stage.name)
                ]
                self.sites[(service.name, stage.name)] = sites

    def _site(
        self, service: Service, stage: str, name: str, examples: _ExampleFunctions, canary: bool, account: str | None
    ) -> Site:
        deploy = service.lambda_deploy  # functions_for names functions of Lambda deploys only
        assert deploy is not None
        example = examples.find(name)
        stack = example.stack if example else f"svc-{service.name}-{stage}"
        checks = example.checks if example else _standin_checks()
        site = Site(service.name, stage, name, deploy.alias, stack, checks, account=account or ACCOUNT)
        lam = self.world.client("lambda", account)
        environment: dict[str, str] = {}
        if example is not None:
            environment = example.environment(self.world.client("dynamodb", account))
            site.example = (example.code_dir, example.handler, environment)
            if canary:
                import os
                import sys

                # The example's handlers read their environment when called; in-process that is os.environ (the
                # runner restores it). Only canary stages invoke functions (the hooks' checks).
                os.environ.update(environment)
                if str(example.code_dir) not in sys.path:
                    sys.path.insert(0, str(example.code_dir))
        role = _lambda_role(self.world.client("iam", account), name)
        arn = lam.create_function(
            FunctionName=name,
            Runtime="python3.13",
            Role=role,
            Handler=example.handler if example else "standin_function.handler",
            Code={"ZipFile": _zip()},
            Environment={"Variables": environment},
            Timeout=10,
            MemorySize=256,
        )["FunctionArn"]
        first = _publish(lam, name, self.running.get(service.name))
        lam.create_alias(FunctionName=name, Name=site.alias, FunctionVersion=first)
        code_dir, handler = (example.code_dir, example.handler) if example else (STANDIN, "standin_function.handler")
        registry.register(
            FunctionSpec(
                name=name,
                logical_id=f"Fleet_{name}".replace("-", "_"),
                code_dir=code_dir,
                handler=handler,
                environment=environment,
                timeout_s=10,
                memory_mb=256,
                arn=arn,
                account=site.account,
            )
        )
        return site

    # --- a build's deploy step --------------------------------------------------------------------------------

    def deploy(self, build: Build) -> DeployRun | None:
        fleet = self.world.fleet
        if fleet is None or build.service is None:
            return None
        ecs = self.world.ecs.deploy(build)  # an ECS service's blue/green deployment (ecs.py)
        if ecs is not None:
            return ecs
        sites = self.sites.get((build.service, build.stage))
        if not sites:
            return None
        service = fleet.service(build.service)
        assert service.deploy is not None
        lam = self.world.client("lambda", sites[0].account)
        if build.stage not in fleet.canary_stages(service):
            for site in sites:
                target = _publish(lam, site.function, build.source_version)
                lam.update_alias(FunctionName=site.function, Name=site.alias, FunctionVersion=target, RoutingConfig={})
            run = DeployRun([], succeeded=True)
            run.finished.set()
            return run
        deployments = [self._create(site, service.deploy.deployment_config, build) for site in sites]
        run = DeployRun(deployments)
        build.deployments.extend(d.id for d in deployments)
        vtime.spawn(lambda: self._stack_update(run), f"stack-update:{build.id}")
        return run

    def _create(self, site: Site, config: str, build: Build) -> Deployment:
        lam, ssm = self.world.client("lambda", site.account), self.world.client("ssm", site.account)
        current = str(lam.get_alias(FunctionName=site.function, Name=site.alias)["FunctionVersion"])
        target = _publish(lam, site.function, build.source_version)
        ssm.put_parameter(
            Name=f"/release-train/checks/{site.function}", Type="String", Value=json.dumps(site.checks), Overwrite=True
        )
        logical = "".join(part.title() for part in site.function.replace(site.stack, "").split("-") if part)
        appspec = json.dumps(
            {
                "version": 0.0,
                "Resources": [
                    {
                        f"{logical}Function": {
                            "Type": "AWS::Lambda::Function",
                            "Properties": {
                                "Name": site.function,
                                "Alias": site.alias,
                                "CurrentVersion": current,
                                "TargetVersion": target,
                            },
                        }
                    }
                ],
                "Hooks": [
                    {"BeforeAllowTraffic": self.hook_functions.get("pre_traffic", "")},
                    {"AfterAllowTraffic": self.hook_functions.get("post_traffic", "")},
                ],
            }
        )
        deployment = Deployment(
            id=f"d-{uuid.uuid4().hex[:9].upper()}",
            site=site,
            application=f"{site.stack}-ServerlessDeploymentApplication",
            group=f"{site.stack}-{logical}FunctionDeploymentGroup",
            config=config,
            current_version=current,
            target_version=target,
            appspec=appspec,
            create_v=self.world.clock.elapsed,
            build_id=build.id,
        )
        with self._lock:
            self.deployments[deployment.id] = deployment
            self.revisions[(site.account, deployment.application, deployment.sha256)] = appspec
        return deployment

    def _stack_update(self, run: DeployRun) -> None:
        """CloudFormation updates the aliases together (one deployment each) and waits for all of them."""
        threads = [vtime.spawn(functools.partial(self._run, d), f"deployment:{d.id}") for d in run.deployments]
        for thread in threads:
            thread.join()
        run.succeeded = all(d.status == "Succeeded" for d in run.deployments)
        if not run.succeeded:
            # The stack update failed: CloudFormation rolls the stack back, aliases that moved go back too.
            for d in run.deployments:
                if d.status == "Succeeded":
                    self._point(self.world.client("lambda", d.site.account), d, d.current_version)
                    d.rolled_back_by_stack = True
        run.finished.set()

    # --- one deployment in virtual time ----------------------------------------------------------------------

    def _run(self, d: Deployment) -> None:
        lam = self.world.client("lambda", d.site.account)
        d.status = "InProgress"
        d.routing.append(_routing(lam, d.site.function, d.site.alias))
        behaviour = self._behaviour(d.site)
        ok = self._hook(d, "pre_traffic", behaviour)
        if ok:
            ok = self._shift(d, lam)
        if ok:
            ok = self._hook(d, "post_traffic", behaviour)
        stopped = d.stop_requested.is_set()
        if ok and not stopped:
            d.status = "Succeeded"
        else:
            if not stopped or d.stop_rollback:
                vtime.current().sleep(ROLLBACK_S)
                self._point(lam, d, d.current_version)
                d.rolled_back = True
            d.status = "Stopped" if stopped else "Failed"
        d.complete_v = self.world.clock.elapsed
        d.finished.set()

    def _behaviour(self, site: Site) -> HookBehaviour:
        hooks = self.world.scenario.hooks
        return hooks.get(site.function) or hooks.get(site.service) or HookBehaviour()

    def _hook(self, d: Deployment, phase: str, behaviour: HookBehaviour) -> bool:
        if getattr(behaviour, phase) == "fail":
            registry.break_version(
                d.site.function, d.target_version, "the new version cannot reach its dependencies", d.site.account
            )
        return run_hook(d, phase, behaviour, self.hook_functions[phase], d.site.account, self._lock)

    def _shift(self, d: Deployment, lam: Any) -> bool:
        world = self.world
        alarms = [
            a.name
            for a in world.scenario.alarms
            if a.during == "canary" and a.service in (d.site.service, d.site.function) and a.stage == d.site.stage
        ]
        for weight, wait in DEPLOYMENT_CONFIGS[d.config]:
            lam.update_alias(
                FunctionName=d.site.function,
                Name=d.site.alias,
                FunctionVersion=d.current_version,
                RoutingConfig={"AdditionalVersionWeights": {d.target_version: weight}},
            )
            d.routing.append(_routing(lam, d.site.function, d.site.alias))
            for name in alarms:
                world.alarms.set_state(
                    name, "ALARM", "scenario: errors on the new version during the canary", d.site.account
                )
            if d.stop_requested.wait(wait):
                d.error, d.error_code = "stopped while traffic was shifting", "MANUAL_STOP"
                return False
            firing = world.alarms.firing(alarms, d.site.account)
            for alarm in world.scenario.alarms:
                if alarm.name in alarms and alarm.recovers:
                    world.alarms.set_state(alarm.name, "OK", "scenario: recovered", d.site.account)
            if firing:
                d.error = f"alarm(s) {', '.join(firing)} in ALARM during the traffic shift"
                d.error_code = "ALARM_ACTIVE"
                return False
        self._point(lam, d, d.target_version)
        return True

    def _point(self, lam: Any, d: Deployment, version: str) -> None:
        lam.update_alias(FunctionName=d.site.function, Name=d.site.alias, FunctionVersion=version, RoutingConfig={})
        d.routing.append(_routing(lam, d.site.function, d.site.alias))

    # --- the CodeDeploy API ---------------------------------------------------------------------------------------

    def _deployment(self, deployment_id: str) -> Deployment:
        deployment = self.deployments.get(deployment_id)
        if deployment is None or deployment.site.account != self.world.caller():  # another account's is not found
            raise ApiError("DeploymentDoesNotExistException", f"The deployment {deployment_id} could not be found")
        return deployment

    def get_deployment(self, params: dict[str, Any]) -> dict[str, Any]:
        if (ecs := self.world.ecs.route("GetDeployment", params)) is not None:
            return ecs
        d = self._deployment(params["deploymentId"])
        maybe_throttle(d)
        return {"deploymentInfo": deployment_info(d, self.world.clock.start, "Lambda")}

    # A Lambda deployment has one target, its function's alias (the target id's form, function:alias, is an inference:
    # the API reference does not spell it out). LambdaTarget.status and LifecycleEvent.status follow botocore's enums;
    # a hook that never reported is Failed, as CodeDeploy marks a lifecycle event whose hook timed out.
    _TARGET_STATUS: ClassVar[dict[str, str]] = {
        "Created": "Pending",
        "InProgress": "InProgress",
        "Succeeded": "Succeeded",
        "Failed": "Failed",
        "Stopped": "Failed",
    }
    _LIFECYCLE_EVENT: ClassVar[dict[str, str]] = {
        "pre_traffic": "BeforeAllowTraffic",
        "post_traffic": "AfterAllowTraffic",
    }

    @staticmethod
    def _target_id(d: Deployment) -> str:
        return f"{d.site.function}:{d.site.alias}"

    def list_deployment_targets(self, params: dict[str, Any]) -> dict[str, Any]:
        if (ecs := self.world.ecs.route("ListDeploymentTargets", params)) is not None:
            return ecs
        return {"targetIds": [self._target_id(self._deployment(params["deploymentId"]))]}

    def batch_get_deployment_targets(self, params: dict[str, Any]) -> dict[str, Any]:
        if (ecs := self.world.ecs.route("BatchGetDeploymentTargets", params)) is not None:
            return ecs
        d = self._deployment(params["deploymentId"])
        target = {
            "deploymentId": d.id,
            "targetId": self._target_id(d),
            "status": self._TARGET_STATUS.get(d.status, "Unknown"),
            "lifecycleEvents": [
                {
                    "lifecycleEventName": self._LIFECYCLE_EVENT[h["phase"]],
                    "status": h["status"] if h["status"] in {"Succeeded", "Failed"} else "Failed",
                }
                for h in d.hook_results
            ],
            "lambdaFunctionInfo": {
                "functionName": d.site.function,
                "functionAlias": d.site.alias,
                "currentVersion": d.current_version,
                "targetVersion": d.target_version,
            },
        }
        wanted = params.get("targetIds") or []
        return {
            "deploymentTargets": [
                {"deploymentTargetType": "LambdaTarget", "lambdaTarget": target}
                for tid in wanted
                if tid == target["targetId"]
            ]
        }

    def get_application_revision(self, params: dict[str, Any]) -> dict[str, Any]:
        if (ecs := self.world.ecs.route("GetApplicationRevision", params)) is not None:
            return ecs
        application = params["applicationName"]
        mine = [d for d in self.deployments.values() if d.site.account == self.world.caller()]
        if not any(d.application == application for d in mine):
            raise ApiError("ApplicationDoesNotExistException", f"No application found for name: {application}")
        revision = params["revision"]
        sha = (revision.get("appSpecContent") or {}).get("sha256")
        content = self.revisions.get((self.world.caller(), application, str(sha)))
        if revision.get("revisionType") != "AppSpecContent" or content is None:
            raise ApiError("RevisionDoesNotExistException", "No application revision found for revision")
        for d in mine:
            if d.application == application and d.sha256 == sha:
                maybe_throttle(d)
        registered = self.world.clock.now()
        return {
            "applicationName": application,
            "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": content, "sha256": sha}},
            "revisionInfo": {
                "description": "Application revision registered by Deployment ID",
                "deploymentGroups": sorted({d.group for d in mine if d.application == application}),
                "firstUsedTime": registered,
                "lastUsedTime": registered,
                "registerTime": registered,
            },
        }

    def put_hook_status(self, params: dict[str, Any]) -> dict[str, Any]:
        if (ecs := self.world.ecs.route("PutLifecycleEventHookExecutionStatus", params)) is not None:
            return ecs
        return record_hook_status(self._deployment(params["deploymentId"]), params, self._lock)

    def stop_deployment(self, params: dict[str, Any]) -> dict[str, Any]:
        if (ecs := self.world.ecs.route("StopDeployment", params)) is not None:
            return ecs
        return request_stop(self._deployment(params["deploymentId"]), params)

    def list_deployments(self, params: dict[str, Any]) -> dict[str, Any]:
        wanted = set(params.get("includeOnlyStatuses") or [])
        window = params.get("createTimeRange") or {}  # TimeRange: a null start or end is open-ended
        start = self.world.clock.start
        ids = [
            d.id
            for d in sorted(self.deployments.values(), key=lambda x: (x.create_v, x.id))
            if d.site.account == self.world.caller()
            and (not params.get("applicationName") or d.application == params["applicationName"])
            and (not params.get("deploymentGroupName") or d.group == params["deploymentGroupName"])
            and (not wanted or d.status in wanted)
            and (window.get("start") is None or start + timedelta(seconds=d.create_v) >= window["start"])
            and (window.get("end") is None or start + timedelta(seconds=d.create_v) <= window["end"])
        ]
        ecs = self.world.ecs.route("ListDeployments", params) or {}  # the ECS deployments (ecs.py) too
        return {"deployments": ids + list(ecs.get("deployments", []))}

    # --- what the runner reports --------------------------------------------------------------------------------

    def report(self) -> list[dict[str, Any]]:
        out = []
        for d in sorted(self.deployments.values(), key=lambda x: (x.create_v, x.site.function)):
            final = d.routing[-1] if d.routing else None
            out.append(
                {
                    "service": d.site.service,
                    "stage": d.site.stage,
                    "account": d.site.account,
                    "function": d.site.function,
                    "deployment_id": d.id,
                    "deployment_config": d.config,
                    "build_id": d.build_id,
                    "status": d.status,
                    "rolled_back": d.rolled_back,
                    "rolled_back_by_stack": d.rolled_back_by_stack,
                    "error": d.error,
                    "current_version": d.current_version,
                    "target_version": d.target_version,
                    "hooks": d.hook_results,
                    "report_calls": list(d.report_calls),
                    "routing_history": d.routing,
                    "final_alias": final,
                    "traffic_reached_new_version": any(_weight(r, d.target_version) > 0 for r in d.routing),
                    "virtual_duration_s": round((d.complete_v or self.world.clock.elapsed) - d.create_v, 3),
                }
            )
        return out


# --- helpers -------------------------------------------------------------------------------------------------------


class HookedDeployment(Protocol):
    """What a deployment with lifecycle hooks keeps (a Lambda one here, an ECS one in ecs.py)."""

    id: str
    hooks: dict[str, str]
    reported: dict[str, vtime.VEvent]
    reports: dict[str, str]
    report_calls: list[dict[str, Any]]
    hook_results: list[dict[str, Any]]
    failing_phase: str | None
    stop_requested: vtime.VEvent
    stop_rollback: bool
    finished: vtime.VEvent
    error: str | None
    error_code: str


class DeploymentRecord(HookedDeployment, Protocol):
    """What GetDeployment describes of a deployment, Lambda or ECS."""

    status: str
    config: str
    create_v: float
    complete_v: float | None

    @property
    def application(self) -> str: ...

    @property
    def group(self) -> str: ...

    @property
    def sha256(self) -> str: ...


def deployment_info(d: DeploymentRecord, start: datetime, platform: str) -> dict[str, Any]:
    """GetDeployment's DeploymentInfo as both compute platforms share it (a deployment `sam deploy` or a buildspec
    created with the group's automatic rollback); the ECS emulation adds its load balancer and blue/green parts."""
    info: dict[str, Any] = {
        "applicationName": d.application,
        "deploymentGroupName": d.group,
        "deploymentConfigName": d.config,
        "deploymentId": d.id,
        # GetDeployment: "The content property of the appSpecContent object in the returned revision is always
        # null" -- botocore drops a null member, so the parsed answer has only the sha256.
        "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": d.sha256}},
        "status": d.status,
        "createTime": start + timedelta(seconds=d.create_v),
        "startTime": start + timedelta(seconds=d.create_v),
        "creator": "user",
        "computePlatform": platform,
        "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        "autoRollbackConfiguration": {
            "enabled": True,
            "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"],
        },
    }
    if d.complete_v is not None:
        info["completeTime"] = start + timedelta(seconds=d.complete_v)
    if d.error:
        info["errorInformation"] = {"code": d.error_code, "message": d.error}
    return info


def maybe_throttle(d: HookedDeployment) -> None:
    """A scenario whose hook `raise`s: the hook's reads of its deployment are throttled while that hook runs."""
    if d.failing_phase is not None:
        raise ApiError("ThrottlingException", "Rate exceeded (sandbox scenario: the hook's dependency fails)")


def run_hook(
    d: HookedDeployment, phase: str, behaviour: HookBehaviour, function: str, account: str, lock: threading.Lock
) -> bool:
    """One lifecycle hook: CodeDeploy invokes the hook function asynchronously in the deployment's own account
    (docs/accounts.md; Lambda retries a failed async invocation), then waits for its report up to the hook limit.
    True when it reported Succeeded; otherwise the deployment's error says why."""
    mode = getattr(behaviour, phase)
    execution_id = str(uuid.uuid4())
    reported = vtime.VEvent()
    with lock:
        d.hooks[execution_id] = phase
        d.reported[execution_id] = reported
    if mode == "raise":
        d.failing_phase = phase
    invocations: list[dict[str, Any]] = []
    deliveries = 0
    if mode != "silent":
        event = {"DeploymentId": d.id, "LifecycleEventHookExecutionId": execution_id}
        deliveries = 2 if behaviour.duplicate_delivery else 1
        for n in range(deliveries):
            vtime.spawn(lambda: _invoke_async(function, event, invocations, account), f"hook:{phase}:{d.id}:{n}")
    vtime.current().wait_any((reported, d.stop_requested), HOOK_LIMIT_S)
    d.failing_phase = None
    status = d.reports.get(execution_id)
    d.hook_results.append(
        {
            "phase": phase,
            "execution_id": execution_id,
            "deliveries": deliveries,
            "status": status or "NoReport",
            "reports": sum(1 for c in d.report_calls if c["execution_id"] == execution_id),
            "invocations": invocations,
        }
    )
    if d.stop_requested.is_set() and status is None:
        d.error, d.error_code = f"stopped during the {phase} hook", "MANUAL_STOP"
        return False
    if status != "Succeeded":
        d.error = f"{phase} hook reported {status}" if status else f"{phase} hook did not report within 1 hour"
        d.error_code = "HOOK_EXECUTION_FAILURE"
        return False
    return True


def record_hook_status(d: HookedDeployment, params: dict[str, Any], lock: threading.Lock) -> dict[str, Any]:
    """PutLifecycleEventHookExecutionStatus: a second report for one hook execution, or one after the deployment
    ended, raises LifecycleEventAlreadyCompletedException (API reference)."""
    execution_id = params.get("lifecycleEventHookExecutionId", "")
    status = params.get("status")
    with lock:
        d.report_calls.append({"execution_id": execution_id, "status": status})
        if execution_id not in d.hooks:
            raise ApiError(
                "InvalidLifecycleEventHookExecutionIdException",
                f"The lifecycle event hook execution ID {execution_id} is not valid",
            )
        if status not in ("Succeeded", "Failed"):
            raise ApiError(
                "InvalidLifecycleEventHookExecutionStatusException", f"Invalid hook execution status: {status}"
            )
        if execution_id in d.reports or d.finished.is_set():
            raise ApiError(
                "LifecycleEventAlreadyCompletedException",
                f"The lifecycle event {execution_id} has already completed",
            )
        d.reports[execution_id] = str(status)
    d.reported[execution_id].set()
    return {"lifecycleEventHookExecutionId": execution_id}


def request_stop(d: HookedDeployment, params: dict[str, Any]) -> dict[str, Any]:
    """StopDeployment: the deployment rolls back (unless autoRollbackEnabled is false) once its run sees the stop."""
    if d.finished.is_set():
        raise ApiError("DeploymentAlreadyCompletedException", f"The deployment {d.id} has already completed")
    d.stop_rollback = bool(params.get("autoRollbackEnabled", True))
    d.stop_requested.set()
    return {"status": "Pending", "statusMessage": "Stopping deployment"}


def _invoke_async(function: str, event: dict[str, Any], log: list[dict[str, Any]], account: str) -> None:
    for attempt, delay in enumerate((0.0, *ASYNC_RETRY_DELAYS_S)):
        vtime.current().sleep(delay)
        payload, errored = registry.invoke(function, event, account=account)
        log.append({"attempt": attempt + 1, "errored": errored, "result": json.loads(payload)})
        if not errored:
            return


def _publish(lam: Any, function: str, commit: str | None) -> str:
    """`sam deploy` with AutoPublishAlias: new code (a description naming the commit stands for it) -> a version."""
    # The example's buildspec passes the commit to SAM's VersionDescription ("release <id> commit <sha>").
    lam.update_function_configuration(FunctionName=function, Description=f"commit {commit}" if commit else "")
    return str(lam.publish_version(FunctionName=function)["Version"])


def _routing(lam: Any, function: str, alias: str) -> dict[str, Any]:
    described = lam.get_alias(FunctionName=function, Name=alias)
    weights = (described.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return {
        "version": str(described["FunctionVersion"]),
        "additional_weights": {k: float(v) for k, v in weights.items()},
    }


def _weight(routing: dict[str, Any], version: str) -> float:
    if routing["version"] == version:
        return 1.0 - float(sum(w for v, w in routing["additional_weights"].items() if v != version))
    return float(routing["additional_weights"].get(version, 0.0))


def _standin_checks() -> dict[str, Any]:
    smoke = {"kind": "invoke", "name": "smoke", "payload": {"path": "/health"}, "expect": {"status_code": 200}}
    return {"version": 1, "pre_traffic": [smoke], "post_traffic": [{**smoke, "name": "post-smoke"}]}


def _lambda_role(iam: Any, function: str) -> str:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    name = f"{function}-role"[:64]
    try:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])
    except iam.exceptions.NoSuchEntityException:
        return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"])


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README", "code runs in-process from the repository; see trainctl/sandbox/lambda_runtime.py")
    return buffer.getvalue()


# --- example services: their real code for the functions they define ---------------------------------------------


@dataclass
class _ExampleFunction:
    stack: str
    code_dir: Path
    handler: str
    env: dict[str, Any]
    checks: dict[str, Any]
    tables: dict[str, dict[str, Any]]

    def environment(self, dynamodb: Any) -> dict[str, str]:
        """Template environment with `!Ref <Table>` resolved to a table created in moto for this stack."""
        resolved: dict[str, str] = {}
        for key, value in self.env.items():
            if isinstance(value, dict) and "Ref" in value and value["Ref"] in self.tables:
                resolved[key] = self._table(dynamodb, value["Ref"])
            elif isinstance(value, str | int | float):
                resolved[key] = str(value)
        return resolved

    def _table(self, dynamodb: Any, logical: str) -> str:
        name = f"{self.stack}-{logical}"
        if name not in dynamodb.list_tables()["TableNames"]:
            props = self.tables[logical]
            dynamodb.create_table(
                TableName=name,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=props["AttributeDefinitions"],
                KeySchema=props["KeySchema"],
            )
        return name


class _ExampleFunctions:
    """Functions defined by `examples/*/template.yaml`, by the physical name they get in each config-env's stack."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._templates = sorted((root / "examples").glob("*/template.yaml"))

    def find(self, function: str) -> _ExampleFunction | None:
        for template_path in self._templates:
            samconfig = template_path.parent / "samconfig.toml"
            if not samconfig.exists():
                continue
            config = tomllib.loads(samconfig.read_text())
            stacks = {
                env: str(((body.get("deploy") or {}).get("parameters") or {}).get("stack_name", ""))
                for env, body in config.items()
                if isinstance(body, dict)
            }
            for env, stack in stacks.items():
                if stack and function.startswith(f"{stack}-"):
                    found = self._load(template_path, stack, env, function)
                    if found is not None:
                        return found
        return None

    def _load(self, path: Path, stack: str, env: str, function: str) -> _ExampleFunction | None:
        template = yaml_parse(path.read_text())
        resources = template.get("Resources", {})
        globals_fn = (template.get("Globals") or {}).get("Function") or {}
        suffix = function.removeprefix(f"{stack}-")
        tables = {k: v["Properties"] for k, v in resources.items() if v.get("Type") == "AWS::DynamoDB::Table"}
        for _logical, resource in resources.items():
            props = resource.get("Properties") or {}
            name = props.get("FunctionName")
            if resource.get("Type") != "AWS::Serverless::Function" or _sub(name) != f"${{AWS::StackName}}-{suffix}":
                continue
            code_uri = props.get("CodeUri") or globals_fn.get("CodeUri")
            env_vars = {
                **((globals_fn.get("Environment") or {}).get("Variables") or {}),
                **((props.get("Environment") or {}).get("Variables") or {}),
            }
            return _ExampleFunction(
                stack=stack,
                code_dir=path.parent / str(code_uri),
                handler=str(props.get("Handler")),
                env=env_vars,
                checks=self._checks(resources, stack, suffix, stage=env),
                tables=tables,
            )
        return None

    @staticmethod
    def _checks(resources: dict[str, Any], stack: str, suffix: str, stage: str) -> dict[str, Any]:
        """The example's checks parameter for the function, resolved for the sandbox. The sandbox has no API
        Gateway, so post_traffic (http checks against the API) re-runs the pre_traffic invoke checks."""
        for resource in resources.values():
            props = resource.get("Properties") or {}
            if resource.get("Type") != "AWS::SSM::Parameter" or not _sub(props.get("Name")).endswith(
                f"${{AWS::StackName}}-{suffix}"
            ):
                continue
            text = _sub(props.get("Value"))
            for name, value in {
                "${CompanyApi}": "sandbox-api",
                "${AWS::Region}": "us-east-1",
                "${AWS::URLSuffix}": "amazonaws.com",
                "${Stage}": stage,
                "${AWS::StackName}": stack,
            }.items():
                text = text.replace(name, value)
            suite: dict[str, Any] = json.loads(text)
            suite["post_traffic"] = [{**c, "name": f"post-{c['name']}"} for c in suite.get("pre_traffic", [])]
            return suite
        return _standin_checks()


def _sub(value: Any) -> str:
    if isinstance(value, dict) and "Fn::Sub" in value:
        inner = value["Fn::Sub"]
        return str(inner[0] if isinstance(inner, list) else inner)
    return str(value or "")


__all__ = ["ACCOUNT", "DEPLOYMENT_CONFIGS", "CodeDeploy", "DeployRun", "Deployment"]
