"""What a CodeDeploy deployment is deploying, read from GetDeployment's deploymentInfo. Pure.

Lambda: the revision is an AppSpec (JSON or YAML) whose Resources[].<name>.Properties hold Name, Alias,
CurrentVersion, TargetVersion. AWS documents the keys in lower case ("resources", "targetversion") and CloudFormation
writes them capitalised ("Resources", "TargetVersion"): keys are matched case-insensitively.
GetDeployment never carries the AppSpec itself, only its sha256: "The content property of the appSpecContent object
in the returned revision is always null. Use GetApplicationRevision and the sha256 property [...] to get the content"
(https://docs.aws.amazon.com/codedeploy/latest/APIReference/API_GetDeployment.html). `appspec_revision_to_fetch`
says what to ask GetApplicationRevision for; the adapter asks and passes the content to `target_from_deployment`.
ECS blue/green: the AppSpec is fetched the same way (Resources[].TargetService: Type AWS::ECS::Service, Properties
TaskDefinition and LoadBalancerInfo.ContainerName/ContainerPort, https://docs.aws.amazon.com/codedeploy/latest/userguide/
reference-appspec-file-structure-resources.html); the test endpoint comes from the test listener of
loadBalancerInfo.targetGroupPairInfoList, and an adapter resolves it (ELBv2) to a base URL and its listener rules.
"""

from __future__ import annotations

import json
import re
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
class EcsService:
    """The AppSpec's TargetService: what the replacement task set runs and which container the target groups reach."""

    task_definition: str
    container_name: str
    container_port: int


@dataclass(frozen=True)
class ListenerRule:
    """One ELBv2 listener rule, reduced to what decides whether a check's request reaches the service.

    priority: "1".."50000", or "default" (the listener's default rule). action: the type of the terminal action
    (forward, fixed-response, redirect); authenticate-* actions come before it in Order. other_conditions: condition
    fields a check cannot be judged against (http-header, query-string, source-ip, regex values...).
    """

    priority: str
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    action: str = "forward"
    other_conditions: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        return self.priority == "default"


@dataclass(frozen=True)
class EcsTarget:
    deployment_id: str
    application_name: str
    deployment_group_name: str
    test_listener_arn: str | None
    base_url: str | None = None  # resolved from the test listener by an adapter (ELBv2), when there is one
    service: EcsService | None = None  # from the AppSpec, when the deployment's revision carries one
    listener_rules: tuple[ListenerRule, ...] = ()  # the test listener's rules (DescribeRules), default rule included

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
    """What to ask GetApplicationRevision for, or None when nothing needs fetching: a revision that already carries
    its content (not AWS's GetDeployment, which never does, but a caller that resolved it already), another compute
    platform, or an ECS revision kept in S3 (its AppSpec is descriptive only: the checks key and the test listener
    come from the deployment). Raises InvalidInput when a Lambda AppSpec cannot be located."""
    platform = info.get("computePlatform")
    if platform not in ("Lambda", "ECS"):
        return None
    revision = info.get("revision") or {}
    if appspec_content(revision) is not None:
        return None
    kind = revision.get("revisionType")
    if platform == "ECS" and kind != "AppSpecContent":
        return None
    source = f"deployment {info.get('deploymentId', '?')}"
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
        content = appspec or appspec_content(info.get("revision") or {})
        return EcsTarget(
            deployment_id=deployment_id,
            application_name=str(info.get("applicationName", "")),
            deployment_group_name=str(info.get("deploymentGroupName", "")),
            test_listener_arn=test_listener_arn(info.get("loadBalancerInfo") or {}),
            service=None if content is None else _ecs_service(content, source),
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


def _resources(content: str, source: str, default_type: str) -> list[dict[str, Any]]:
    """The AppSpec's Resources entries of `default_type` (an entry without Type is taken to be one)."""
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
    return [
        body
        for entry in resources
        if isinstance(entry, dict)
        for body in entry.values()
        if isinstance(body, dict) and str(_get(body, "type") or default_type) == default_type
    ]


def _ecs_service(content: str, source: str) -> EcsService:
    services = _resources(content, source, "AWS::ECS::Service")
    if len(services) != 1:
        raise InvalidInput(source, [f"AppSpec must name exactly one AWS::ECS::Service, found {len(services)}"])
    props = _get(services[0], "properties")
    if not isinstance(props, dict):
        raise InvalidInput(source, ["AppSpec TargetService has no Properties"])
    balancer = _get(props, "LoadBalancerInfo")
    balancer = balancer if isinstance(balancer, dict) else {}
    values = {
        "TaskDefinition": _get(props, "TaskDefinition"),
        "LoadBalancerInfo.ContainerName": _get(balancer, "ContainerName"),
        "LoadBalancerInfo.ContainerPort": _get(balancer, "ContainerPort"),
    }
    problems = [f"TargetService.Properties.{k} is missing" for k, v in values.items() if v in (None, "")]
    port = values["LoadBalancerInfo.ContainerPort"]
    if port not in (None, "") and not str(port).isdigit():
        problems.append(f"TargetService.Properties.LoadBalancerInfo.ContainerPort is not a port: {port!r}")
    if problems:
        raise InvalidInput(source, problems)
    return EcsService(str(values["TaskDefinition"]), str(values["LoadBalancerInfo.ContainerName"]), int(str(port)))


def _lambda_target(deployment_id: str, content: str, source: str) -> LambdaTarget:
    functions = _resources(content, source, "AWS::Lambda::Function")
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


# ---------------------------------------------------------------------------------------------------------------
# ELBv2 listener rules: which rule a check's request selects
# ---------------------------------------------------------------------------------------------------------------
# "Rules are evaluated in priority order, from the lowest value to the highest value. The default rule is evaluated
# last." A condition with several values matches any of them; a rule matches when all its conditions do. host-header
# is case-insensitive, path-pattern case-sensitive and applied to the path only (not the query string); both take
# the wildcards * (0 or more characters) and ? (exactly one). (ELB user guide, "Listener rules" and "Condition types
# for listener rules", https://docs.aws.amazon.com/elasticloadbalancing/latest/application/rule-condition-types.html)


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.IGNORECASE if ignore_case else 0)


def _rule_matches(rule: ListenerRule, host: str, path: str) -> bool:
    if rule.other_conditions:
        return False  # the request would need more than a host and a path: a check cannot claim it matches
    if rule.hosts and not any(_wildcard(h, ignore_case=True).fullmatch(host) for h in rule.hosts):
        return False
    return not rule.paths or any(_wildcard(p, ignore_case=False).fullmatch(path) for p in rule.paths)


def select_rule(rules: tuple[ListenerRule, ...], host: str, path: str) -> ListenerRule | None:
    """The rule ELBv2 would apply to a request for `host` and `path`; None when no rule (not even a default) is
    known."""
    ordered = sorted((r for r in rules if not r.is_default), key=lambda r: int(r.priority))
    for rule in [*ordered, *(r for r in rules if r.is_default)]:
        if rule.is_default or _rule_matches(rule, host, path):
            return rule
    return None


def route_problem(rules: tuple[ListenerRule, ...], host: str, path: str) -> str | None:
    """Why a request for `host` + `path` on the test listener would not reach the service, or None when it would."""
    rule = select_rule(rules, host, path)
    if rule is None or rule.action == "forward":
        return None
    skipped = [r.priority for r in rules if r.other_conditions]
    note = f" (rules {', '.join(skipped)} need more than a host and a path and were not evaluated)" if skipped else ""
    if rule.is_default:
        return (
            f"host {host!r} path {path!r} matches no rule of the test listener; its default action is"
            f" {rule.action}, not forward{note}: give the check the host (request.host) or path a rule routes"
        )
    return f"host {host!r} path {path!r} selects test listener rule {rule.priority}, whose action is {rule.action}"


def listener_rule(rule: dict[str, Any]) -> ListenerRule:
    """An ELBv2 DescribeRules `Rule` (botocore elbv2 model) -> ListenerRule."""
    hosts: list[str] = []
    paths: list[str] = []
    other: list[str] = []
    for condition in rule.get("Conditions") or []:
        field_name = str(condition.get("Field", ""))
        if condition.get("RegexValues"):
            other.append(f"{field_name} (regex)")
        elif field_name == "host-header":
            hosts += (condition.get("HostHeaderConfig") or {}).get("Values") or condition.get("Values") or []
        elif field_name == "path-pattern":
            paths += (condition.get("PathPatternConfig") or {}).get("Values") or condition.get("Values") or []
        else:
            other.append(field_name)
    actions = sorted(rule.get("Actions") or [], key=lambda a: int(a.get("Order", 0)))
    return ListenerRule(
        priority=str(rule.get("Priority", "default")),
        hosts=tuple(hosts),
        paths=tuple(paths),
        action=str(actions[-1]["Type"]) if actions else "forward",
        other_conditions=tuple(other),
    )
