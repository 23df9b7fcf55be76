"""What a CodeDeploy deployment is deploying, read from GetDeployment's deploymentInfo. Pure.

Lambda: the revision is an AppSpec (JSON or YAML) whose Resources[].<name>.Properties hold Name, Alias,
CurrentVersion, TargetVersion. AWS documents the keys in lower case ("resources", "targetversion") and CloudFormation
writes them capitalised ("Resources", "TargetVersion"): keys are matched case-insensitively.
ECS blue/green: the test endpoint comes from the test listener of loadBalancerInfo.targetGroupPairInfoList.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from release_train.domain.errors import InvalidInput

CHECKS_PREFIX = "/release-train/checks"


@dataclass(frozen=True)
class LambdaTarget:
    deployment_id: str
    function_name: str
    alias: str
    current_version: str | None
    target_version: str

    @property
    def checks_key(self) -> str:
        return self.function_name

    @property
    def base_url(self) -> str | None:
        return None


@dataclass(frozen=True)
class EcsTarget:
    deployment_id: str
    application_name: str
    deployment_group_name: str
    test_listener_arn: str | None
    base_url: str | None = None  # resolved from the test listener by an adapter (ELBv2), when there is one

    @property
    def checks_key(self) -> str:
        return f"ecs/{self.application_name}/{self.deployment_group_name}"


DeploymentTarget = LambdaTarget | EcsTarget


def checks_parameter_name(target: DeploymentTarget, prefix: str = CHECKS_PREFIX) -> str:
    return f"{prefix.rstrip('/')}/{target.checks_key}"


def target_from_deployment(info: dict[str, Any]) -> DeploymentTarget:
    """Turn deploymentInfo (GetDeployment) into the thing to check. Raises InvalidInput when it cannot."""
    deployment_id = str(info.get("deploymentId", "?"))
    source = f"deployment {deployment_id}"
    platform = info.get("computePlatform")
    if platform == "Lambda":
        return _lambda_target(deployment_id, _appspec_content(info, source), source)
    if platform == "ECS":
        return EcsTarget(
            deployment_id=deployment_id,
            application_name=str(info.get("applicationName", "")),
            deployment_group_name=str(info.get("deploymentGroupName", "")),
            test_listener_arn=test_listener_arn(info.get("loadBalancerInfo") or {}),
        )
    raise InvalidInput(source, [f"computePlatform {platform!r} is not supported by the traffic hooks (Lambda, ECS)"])


def test_listener_arn(load_balancer_info: dict[str, Any]) -> str | None:
    for pair in load_balancer_info.get("targetGroupPairInfoList") or []:
        arns = (pair.get("testTrafficRoute") or {}).get("listenerArns") or []
        if arns:
            return str(arns[0])
    return None


def _appspec_content(info: dict[str, Any], source: str) -> str:
    revision = info.get("revision") or {}
    # AppSpecContent is the documented type for Lambda; "String" (RawString) is its deprecated predecessor.
    for key in ("appSpecContent", "string"):
        content = (revision.get(key) or {}).get("content")
        if isinstance(content, str) and content.strip():
            return content
    kind = revision.get("revisionType")
    raise InvalidInput(source, [f"revision ({kind!r}) carries no AppSpec content (appSpecContent.content)"])


def _lambda_target(deployment_id: str, content: str, source: str) -> LambdaTarget:
    try:
        spec = json.loads(content)
    except json.JSONDecodeError:
        try:
            spec = yaml.safe_load(content)
        except yaml.YAMLError as exc:
            raise InvalidInput(source, [f"AppSpec is neither JSON nor YAML: {exc}"]) from exc
    resources = _get(spec, "resources") if isinstance(spec, dict) else None
    if not isinstance(resources, list) or not resources:
        raise InvalidInput(source, ["AppSpec has no Resources list"])
    functions = [
        body
        for entry in resources
        if isinstance(entry, dict)
        for body in entry.values()
        if isinstance(body, dict) and str(_get(body, "type") or "AWS::Lambda::Function") == "AWS::Lambda::Function"
    ]
    if len(functions) != 1:
        raise InvalidInput(source, [f"AppSpec must name exactly one AWS::Lambda::Function, found {len(functions)}"])
    props = _get(functions[0], "properties")
    if not isinstance(props, dict):
        raise InvalidInput(source, ["AppSpec Resources[0] has no Properties"])
    problems = [
        f"Resources[0].Properties.{k} is missing" for k in ("Name", "Alias", "TargetVersion") if not _get(props, k)
    ]
    if problems:
        raise InvalidInput(source, problems)
    current = _get(props, "CurrentVersion")
    return LambdaTarget(
        deployment_id=deployment_id,
        function_name=_function_name(str(_get(props, "Name"))),
        alias=str(_get(props, "Alias")),
        current_version=None if current is None else str(current),
        target_version=str(_get(props, "TargetVersion")),
    )


def _function_name(name: str) -> str:
    # The AppSpec may carry a function ARN; checks are keyed by the bare name.
    return name.split(":")[6] if name.startswith("arn:") and name.count(":") >= 6 else name


def _get(mapping: dict[str, Any], key: str) -> Any:
    wanted = key.lower()
    for k, v in mapping.items():
        if str(k).lower() == wanted:
            return v
    return None
