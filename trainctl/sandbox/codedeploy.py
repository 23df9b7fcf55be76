"""Emulated CodeDeploy canary deployments for the prod stage (issue "Traffic hooks").

When a prod build starts for a service with canary functions (CANARY_SERVICES: data, one entry per example service),
this does what `sam deploy` + CodeDeploy do for ONE of its functions, inside moto and in virtual time:

1. the function exists in moto Lambda (version 1 = the running release, alias `live` -> 1) and runs the example
   service's real handler code in-process (lambda_runtime.registry);
2. the new version is published (the target) and its checks are written to SSM (/release-train/checks/<function>),
   taken from the example template's parameter;
3. a deployment record answers `codedeploy:GetDeployment` (real shape: computePlatform Lambda, AppSpec content with
   Name/Alias/CurrentVersion/TargetVersion) and takes `PutLifecycleEventHookExecutionStatus` (once per hook execution;
   a second report raises LifecycleEventAlreadyCompletedException, as AWS does);
4. the real PreTraffic hook runs in-process; if it reported Succeeded, the alias shifts per the deployment config
   (canary 10% -> wait -> 100%) with virtual waits, rolling back on a scenario alarm (`during: canary`); then the
   real PostTraffic hook runs. A Failed (or missing) report at any hook rolls back (alias back on the old version).

The deployment runs synchronously inside StartBuild (the build *is* `sam deploy`); the build's outcome and duration
follow it: a failed/rolled-back deployment makes the build FAILED, so the prod wave fails.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import threading
import traceback
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from samtranslator.yaml_helper import yaml_parse

from trainctl.sandbox import emulators
from trainctl.sandbox.clock import VirtualClock
from trainctl.sandbox.emulators import ApiError, Build
from trainctl.sandbox.lambda_runtime import FunctionSpec, registry
from trainctl.sandbox.scenario import HookBehaviour, Scenario

CANARY_STAGE = "prod"
ALIAS = "live"


@dataclass(frozen=True)
class CanaryService:
    """Which example service dir holds a fleet service's code, and which of its functions the sandbox canaries."""

    example_dir: str  # relative to the repository root
    function: str  # logical id in the example template
    checks: str  # logical id of its checks parameter (AWS::SSM::Parameter)
    table: str  # logical id of the DynamoDB table the function reads (TABLE_NAME)
    deployment_config: str = "CodeDeployDefault.LambdaCanary10Percent5Minutes"


CANARY_SERVICES: dict[str, CanaryService] = {
    "company-service": CanaryService(
        example_dir="examples/company-service",
        function="ReadCompanyFunction",
        checks="ReadCompanyChecks",
        table="CompanyTable",
    ),
}

# Predefined Lambda configs: the traffic steps (weight of the new version, then virtual seconds to wait).
DEPLOYMENT_CONFIGS: dict[str, list[tuple[float, float]]] = {
    "CodeDeployDefault.LambdaAllAtOnce": [],
    "CodeDeployDefault.LambdaCanary10Percent5Minutes": [(0.1, 300)],
    "CodeDeployDefault.LambdaCanary10Percent10Minutes": [(0.1, 600)],
    "CodeDeployDefault.LambdaCanary10Percent15Minutes": [(0.1, 900)],
    "CodeDeployDefault.LambdaCanary10Percent30Minutes": [(0.1, 1800)],
    "CodeDeployDefault.LambdaLinear10PercentEvery1Minute": [(i / 10, 60) for i in range(1, 10)],
}


@dataclass
class Deployment:
    id: str
    service: str
    application: str
    group: str
    config: str
    function: str
    current_version: str
    target_version: str
    create_time: float
    status: str = "Created"  # Created | InProgress | Succeeded | Failed | Stopped
    complete_time: float | None = None
    hooks: dict[str, str] = field(default_factory=dict)  # execution id -> phase
    reports: dict[str, str] = field(default_factory=dict)  # execution id -> Succeeded | Failed
    report_calls: list[dict[str, Any]] = field(default_factory=list)
    failing_phase: str | None = None  # GetDeployment errors while this hook phase runs (`raise`)
    active_phase: str | None = None
    error: str | None = None
    rolled_back: bool = False

    def appspec(self) -> str:
        return json.dumps(
            {
                "version": 0.0,
                "Resources": [
                    {
                        self.function: {
                            "Type": "AWS::Lambda::Function",
                            "Properties": {
                                "Name": self.function,
                                "Alias": ALIAS,
                                "CurrentVersion": self.current_version,
                                "TargetVersion": self.target_version,
                            },
                        }
                    }
                ],
                "Hooks": [
                    {"BeforeAllowTraffic": "PreTraffic"},
                    {"AfterAllowTraffic": "PostTraffic"},
                ],
            }
        )


class CodeDeployEmulator:
    """One per simulation: created by the runner once the sandbox stack exists."""

    def __init__(
        self,
        scenario: Scenario,
        clock: VirtualClock,
        root: Path,
        pre_traffic_function: str,
        post_traffic_function: str,
        services: dict[str, CanaryService] | None = None,
    ) -> None:
        self.scenario, self.clock, self.root = scenario, clock, root
        self.hook_functions = {"pre_traffic": pre_traffic_function, "post_traffic": post_traffic_function}
        self.services = CANARY_SERVICES if services is None else services
        self.by_id: dict[str, Deployment] = {}
        self.deployments: list[dict[str, Any]] = []  # the runner reports these (SimulationResult.deployments)
        self._lock = threading.Lock()
        emulators.extra_routes[("codedeploy", "GetDeployment")] = self.get_deployment
        emulators.extra_routes[("codedeploy", "PutLifecycleEventHookExecutionStatus")] = self.put_hook_status

    # --- the CodeDeploy API ---------------------------------------------------------------------------------------

    def _deployment(self, deployment_id: str) -> Deployment:
        deployment = self.by_id.get(deployment_id)
        if deployment is None:
            raise ApiError("DeploymentDoesNotExistException", f"The deployment {deployment_id} could not be found")
        return deployment

    def get_deployment(self, params: dict[str, Any]) -> dict[str, Any]:
        d = self._deployment(params["deploymentId"])
        if d.failing_phase is not None and d.failing_phase == d.active_phase:
            raise ApiError("ThrottlingException", "Rate exceeded (sandbox scenario: hook dependency fails)")
        content = d.appspec()
        start = self.clock.start.timestamp()
        tz = self.clock.start.tzinfo
        info: dict[str, Any] = {
            "applicationName": d.application,
            "deploymentGroupName": d.group,
            "deploymentConfigName": d.config,
            "deploymentId": d.id,
            "revision": {
                "revisionType": "AppSpecContent",
                "appSpecContent": {"content": content, "sha256": hashlib.sha256(content.encode()).hexdigest()},
            },
            "status": d.status,
            "createTime": datetime.fromtimestamp(start + d.create_time, tz),
            "creator": "user",
            "computePlatform": "Lambda",
            "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            "autoRollbackConfiguration": {
                "enabled": True,
                "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"],
            },
        }
        if d.complete_time is not None:
            info["completeTime"] = datetime.fromtimestamp(start + d.complete_time, tz)
        if d.error:
            info["errorInformation"] = {"code": "HEALTH_CONSTRAINTS", "message": d.error}
        return {"deploymentInfo": info}

    def put_hook_status(self, params: dict[str, Any]) -> dict[str, Any]:
        d = self._deployment(params["deploymentId"])
        execution_id = params.get("lifecycleEventHookExecutionId", "")
        status = params.get("status")
        with self._lock:
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
            if execution_id in d.reports:
                raise ApiError(
                    "LifecycleEventAlreadyCompletedException",
                    f"The lifecycle event {execution_id} has already completed",
                )
            d.reports[execution_id] = str(status)
        return {"lifecycleEventHookExecutionId": execution_id}

    # --- a prod build = sam deploy + a CodeDeploy deployment ------------------------------------------------------

    def on_build_start(self, build: Build, stage: str, service: str) -> None:
        spec = self.services.get(service)
        if stage != CANARY_STAGE or spec is None:
            return
        try:
            record = self._deploy(build, service, spec, self.scenario.hooks.get(service) or HookBehaviour())
        except Exception as exc:  # a sandbox defect: visible in the result, and the build fails (never a false pass)
            record = {
                "service": service,
                "build_id": build.id,
                "status": "SandboxError",
                "error": "".join(traceback.format_exception(exc)[-6:]),
            }
        self.deployments.append(record)
        build.deployment = record
        elapsed = self.clock.elapsed - build.start_v
        build.duration_s = max(build.duration_s, elapsed)
        if record["status"] != "Succeeded":
            build.outcome = "FAILED"

    def _deploy(self, build: Build, service: str, spec: CanaryService, behaviour: HookBehaviour) -> dict[str, Any]:
        lam, ssm, dynamodb = boto3.client("lambda"), boto3.client("ssm"), boto3.client("dynamodb")
        template = yaml_parse((self.root / spec.example_dir / "template.yaml").read_text())
        stack_name = f"{service}-{CANARY_STAGE}"
        table_name = f"{stack_name}-table"
        function_name, current, target = self._publish(lam, dynamodb, template, spec, stack_name, table_name)
        ssm.put_parameter(
            Name=f"/release-train/checks/{function_name}",
            Type="String",
            Value=self._checks(template, spec, stack_name),
            Overwrite=True,
        )
        d = Deployment(
            id=f"d-{uuid.uuid4().hex[:9].upper()}",
            service=service,
            application=f"{stack_name}-ServerlessDeploymentApplication",
            group=f"{stack_name}-{spec.function}DeploymentGroup",
            config=spec.deployment_config,
            function=function_name,
            current_version=current,
            target_version=target,
            create_time=self.clock.elapsed,
        )
        self.by_id[d.id] = d
        d.status = "InProgress"
        routing: list[dict[str, Any]] = [self._routing(lam, function_name)]
        hook_results: list[dict[str, Any]] = []

        ok = self._hook(d, "pre_traffic", behaviour, hook_results, dynamodb, table_name)
        if ok:
            ok = self._shift(d, lam, service, routing)
        if ok:
            ok = self._hook(d, "post_traffic", behaviour, hook_results, dynamodb, table_name)
        if not ok:
            lam.update_alias(FunctionName=function_name, Name=ALIAS, FunctionVersion=current, RoutingConfig={})
            routing.append(self._routing(lam, function_name))
            d.rolled_back = True
            d.status = "Failed"
        else:
            d.status = "Succeeded"
        d.complete_time = self.clock.elapsed
        final = self._routing(lam, function_name)
        return {
            "service": service,
            "function": function_name,
            "deployment_id": d.id,
            "deployment_config": d.config,
            "build_id": build.id,
            "status": d.status,
            "rolled_back": d.rolled_back,
            "error": d.error,
            "current_version": current,
            "target_version": target,
            "hooks": hook_results,
            "report_calls": list(d.report_calls),
            "routing_history": routing,
            "final_alias": final,
            "traffic_reached_new_version": any(_weight(r, target) > 0 for r in routing),
            "virtual_duration_s": round(d.complete_time - d.create_time, 3),
        }

    def _publish(
        self,
        lam: Any,
        dynamodb: Any,
        template: dict[str, Any],
        spec: CanaryService,
        stack_name: str,
        table_name: str,
    ) -> tuple[str, str, str]:
        """The running release (version 1, alias live -> 1), then `sam deploy` publishes the new version."""
        resource = template["Resources"][spec.function]["Properties"]
        function_name = f"{stack_name}-{_verb(resource['Handler'])}"
        code_dir = self.root / spec.example_dir / str(template.get("Globals", {}).get("Function", {}).get("CodeUri"))
        env = {"TABLE_NAME": table_name, "POWERTOOLS_SERVICE_NAME": f"{stack_name}"}
        if table_name not in dynamodb.list_tables()["TableNames"]:
            dynamodb.create_table(
                TableName=table_name,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            )
        try:
            lam.get_function(FunctionName=function_name)
        except lam.exceptions.ResourceNotFoundException:
            iam = boto3.client("iam")
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
            role = iam.create_role(RoleName=f"{function_name}-role", AssumeRolePolicyDocument=json.dumps(trust))[
                "Role"
            ]["Arn"]
            lam.create_function(
                FunctionName=function_name,
                Runtime="python3.13",
                Role=role,
                Handler=resource["Handler"],
                Code={"ZipFile": _zip()},
                Environment={"Variables": env},
                Timeout=10,
                MemorySize=256,
            )
            first = lam.publish_version(FunctionName=function_name)["Version"]
            lam.create_alias(FunctionName=function_name, Name=ALIAS, FunctionVersion=first)
        config = lam.get_function_configuration(FunctionName=function_name)
        # Handlers read their environment when called (repository.table()); in-process, that is os.environ.
        # runner._sandbox_env restores the environment after the simulation.
        os.environ.update(env)
        if str(code_dir) not in sys.path:
            sys.path.insert(0, str(code_dir))  # the handler imports its own package (company_api.repository)
        registry.register(
            FunctionSpec(
                name=function_name,
                logical_id=f"{stack_name}-{spec.function}".replace("-", "_"),
                code_dir=code_dir,
                handler=resource["Handler"],
                environment=env,
                timeout_s=10,
                memory_mb=256,
                arn=config["FunctionArn"],
            )
        )
        current = str(lam.get_alias(FunctionName=function_name, Name=ALIAS)["FunctionVersion"])
        # A new release: new code (a changed description stands for it), published as the target version.
        lam.update_function_configuration(FunctionName=function_name, Description=f"release {uuid.uuid4().hex[:8]}")
        target = str(lam.publish_version(FunctionName=function_name)["Version"])
        return function_name, current, target

    def _checks(self, template: dict[str, Any], spec: CanaryService, stack_name: str) -> str:
        """The example's checks parameter, resolved for the sandbox.

        pre_traffic is the template's (invoke checks on the target version). The sandbox has no API Gateway to call,
        so post_traffic (http checks on the API in the template) re-runs the invoke checks on the target version.
        """
        value = template["Resources"][spec.checks]["Properties"]["Value"]
        text = value["Fn::Sub"] if isinstance(value, dict) else str(value)
        for name, replacement in {
            "${CompanyApi}": "sandbox-api",
            "${AWS::Region}": "us-east-1",
            "${AWS::URLSuffix}": "amazonaws.com",
            "${Stage}": CANARY_STAGE,
            "${AWS::StackName}": stack_name,
        }.items():
            text = text.replace(name, replacement)
        suite = json.loads(text)
        suite["post_traffic"] = [{**c, "name": f"post-{c['name']}"} for c in suite.get("pre_traffic", [])]
        return json.dumps(suite)

    def _hook(
        self,
        d: Deployment,
        phase: str,
        behaviour: HookBehaviour,
        results: list[dict[str, Any]],
        dynamodb: Any,
        table_name: str,
    ) -> bool:
        mode = getattr(behaviour, phase)
        execution_id = str(uuid.uuid4())
        d.hooks[execution_id] = phase
        d.active_phase = phase
        if mode == "raise":
            d.failing_phase = phase
        if mode == "fail":
            # The function's dependency is gone: its table does not exist, so the target version errors.
            dynamodb.delete_table(TableName=table_name)
        event = {"DeploymentId": d.id, "LifecycleEventHookExecutionId": execution_id}
        deliveries = 2 if behaviour.duplicate_delivery else 1
        invocations = []
        try:
            for _ in range(deliveries):
                payload, errored = registry.invoke(self.hook_functions[phase], event)
                invocations.append({"errored": errored, "result": json.loads(payload)})
        finally:
            d.active_phase = None
            d.failing_phase = None
        status = d.reports.get(execution_id)
        results.append(
            {
                "phase": phase,
                "execution_id": execution_id,
                "deliveries": deliveries,
                "status": status or "NoReport",
                "reports": sum(1 for c in d.report_calls if c["execution_id"] == execution_id),
                "invocations": invocations,
            }
        )
        if status != "Succeeded":
            d.error = f"{phase} hook reported {status or 'nothing'}"
            return False
        return True

    def _shift(self, d: Deployment, lam: Any, service: str, routing: list[dict[str, Any]]) -> bool:
        alarms = [
            a
            for a in self.scenario.alarms
            if a.during == "canary" and a.service == service and a.stage in (CANARY_STAGE, "*")
        ]
        cloudwatch = boto3.client("cloudwatch")
        world = emulators.active()
        for weight, wait in DEPLOYMENT_CONFIGS.get(d.config, []):
            lam.update_alias(
                FunctionName=d.function,
                Name=ALIAS,
                FunctionVersion=d.current_version,
                RoutingConfig={"AdditionalVersionWeights": {d.target_version: weight}},
            )
            routing.append(self._routing(lam, d.function))
            for alarm in alarms:
                cloudwatch.set_alarm_state(AlarmName=alarm.name, StateValue="ALARM", StateReason="scenario: canary")
                if world is not None:
                    world.record_alarm(alarm.name, "OK", "ALARM")
            self.clock.sleep(wait)
            if alarms:
                firing = [
                    a["AlarmName"]
                    for a in cloudwatch.describe_alarms(AlarmNames=[a.name for a in alarms])["MetricAlarms"]
                    if a["StateValue"] == "ALARM"
                ]
                for alarm in alarms:
                    if alarm.recovers:
                        cloudwatch.set_alarm_state(
                            AlarmName=alarm.name, StateValue="OK", StateReason="scenario: recovered"
                        )
                        if world is not None:
                            world.record_alarm(alarm.name, "ALARM", "OK")
                if firing:
                    d.error = f"alarm(s) {', '.join(firing)} in ALARM during the traffic shift"
                    return False
        lam.update_alias(FunctionName=d.function, Name=ALIAS, FunctionVersion=d.target_version, RoutingConfig={})
        routing.append(self._routing(lam, d.function))
        return True

    @staticmethod
    def _routing(lam: Any, function_name: str) -> dict[str, Any]:
        alias = lam.get_alias(FunctionName=function_name, Name=ALIAS)
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return {
            "version": str(alias["FunctionVersion"]),
            "additional_weights": {k: float(v) for k, v in weights.items()},
        }


def _weight(routing: dict[str, Any], version: str) -> float:
    if routing["version"] == version:
        return 1.0 - float(sum(w for v, w in routing["additional_weights"].items() if v != version))
    return float(routing["additional_weights"].get(version, 0.0))


def _verb(handler: str) -> str:
    """company_api.handlers.read -> read (the example names each function <stack>-<verb>)."""
    return handler.rsplit(".", 1)[-1]


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README", "code runs in-process from the repository; see trainctl/sandbox/lambda_runtime.py")
    return buffer.getvalue()
