"""What a CodeDeploy deployment is deploying, read from GetDeployment's deploymentInfo. Pure.

Lambda: the revision is an AppSpec (JSON or YAML) whose Resources[].<name>.Properties hold Name, Alias,
CurrentVersion, TargetVersion. AWS documents the keys in lower case ("resources", "targetversion") and CloudFormation
writes them capitalised ("Resources", "TargetVersion"): keys are matched case-insensitively.
GetDeployment never carries the AppSpec itself, only its sha256: "The content property of the appSpecContent object
in the returned revision is always null. Use GetApplicationRevision and the sha256 property [...] to get the content"
(https://docs.aws.amazon.com/codedeploy/latest/APIReference/API_GetDeployment.html). `appspec_revision_to_fetch`
says what to ask GetApplicationRevision for; the adapter asks and passes the content to `target_from_deployment`.
ECS blue/green: the test endpoint comes from the test listener of loadBalancerInfo.targetGroupPairInfoList (the
AppSpec is not needed, so it is not fetched).
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


@dataclass(frozen=True)
class AppSpecRevision:
    """The GetApplicationRevision request that returns a deployment's AppSpec: its application and its revision
    location, named by the sha256 GetDeployment gives (RevisionLocation: revisionType + appSpecContent|string)."""

    application_name: str
    revision: dict[str, Any]


# RevisionLocation.revisionType -> the member holding {content, sha256}. AppSpecContent is the documented type for
# Lambda and ECS; String (RawString) is its deprecated, Lambda-only predecessor.
_CONTENT_MEMBERS = {"AppSpecContent": "appSpecContent", "String": "string"}


def appspec_revision_to_fetch(info: dict[str, Any]) -> AppSpecRevision | None:
    """What to ask GetApplicationRevision for, or None when nothing needs fetching: an ECS deployment (its target
    comes from loadBalancerInfo), or a revision that already carries its content (not AWS's GetDeployment, which
    never does, but a caller that resolved it already). Raises InvalidInput when the AppSpec cannot be located."""
    if info.get("computePlatform") != "Lambda":
        return None
    revision = info.get("revision") or {}
    if appspec_content(revision) is not None:
        return None
    source = f"deployment {info.get('deploymentId', '?')}"
    kind = revision.get("revisionType")
    member = _CONTENT_MEMBERS.get(str(kind))
    sha256 = (revision.get(member) or {}).get("sha256") if member else None
    application = info.get("applicationName")
    if member is None or not isinstance(sha256, str) or not sha256 or not application:
        needs = f"applicationName and {member or 'appSpecContent'}.sha256"
        raise InvalidInput(source, [f"revision ({kind!r}) names no AppSpec to fetch: needs {needs}"])
    return AppSpecRevision(str(application), {"revisionType": kind, member: {"sha256": sha256}})


def appspec_content(revision: dict[str, Any]) -> str | None:
    """The AppSpec text of a RevisionLocation (GetApplicationRevision's `revision`), or None when it has none."""
    for member in _CONTENT_MEMBERS.values():
        content = (revision.get(member) or {}).get("content")
        if isinstance(content, str) and content.strip():
            return content
    return None


def target_from_deployment(info: dict[str, Any], appspec: str | None = None) -> DeploymentTarget:
    """Turn deploymentInfo (GetDeployment) into the thing to check. Raises InvalidInput when it cannot.

    `appspec`: the Lambda AppSpec, as GetApplicationRevision returned it (see `appspec_revision_to_fetch`); without
    it, the revision in `info` must carry its content.
    """
    deployment_id = str(info.get("deploymentId", "?"))
    source = f"deployment {deployment_id}"
    platform = info.get("computePlatform")
    if platform == "Lambda":
        return _lambda_target(deployment_id, appspec or _appspec_content(info, source), source)
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
    content = appspec_content(revision)
    if content is None:
        kind = revision.get("revisionType")
        why = "GetDeployment never returns it; fetch it with GetApplicationRevision"
        raise InvalidInput(source, [f"revision ({kind!r}) carries no AppSpec content ({why})"])
    return content


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
