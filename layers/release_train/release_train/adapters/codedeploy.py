"""CodeDeploy (and, for ECS blue/green, ELBv2) behind the hook's DeploymentReader and StatusReporter ports."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from release_train.adapters.hook_clients import LazyClient, error_code
from release_train.domain.checks import HookStatus
from release_train.domain.hook_targets import (
    DeploymentTarget,
    EcsTarget,
    appspec_content,
    appspec_revision_to_fetch,
    listener_rule,
    target_from_deployment,
    test_listener_arn,
)
from release_train.hooks import ReportResult


class CodeDeployDeployments:
    """GetDeployment (+ GetApplicationRevision for the AppSpec) -> DeploymentTarget. For ECS, resolves the test
    listener to a base URL.

    GetDeployment's revision names the AppSpec by its sha256 only; GetApplicationRevision returns its content (Lambda
    and ECS alike). ECS: deploymentInfo.loadBalancerInfo is used when GetDeployment returns it, else the deployment
    group's (GetDeploymentGroup). The listener's port/protocol (DescribeListeners), its rules (DescribeRules) and the
    load balancer's DNS name (DescribeLoadBalancers) come from ELBv2.
    """

    def __init__(self, codedeploy: LazyClient | None = None, elbv2: LazyClient | None = None) -> None:
        self._codedeploy = codedeploy or LazyClient("codedeploy")
        self._elbv2 = elbv2 or LazyClient("elbv2")

    def target(self, deployment_id: str) -> DeploymentTarget:
        codedeploy = self._codedeploy.get()
        info: dict[str, Any] = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        appspec: str | None = None
        wanted = appspec_revision_to_fetch(info)
        if wanted is not None:
            # GetDeployment: "The content property of the appSpecContent object in the returned revision is always
            # null. Use GetApplicationRevision and the sha256 property [...]" (API_GetDeployment.html).
            answer = codedeploy.get_application_revision(
                applicationName=wanted.application_name, revision=wanted.revision
            )
            appspec = appspec_content(answer.get("revision") or {})
        target = target_from_deployment(info, appspec)
        if isinstance(target, EcsTarget):
            return self._with_test_endpoint(target)
        return target

    def _with_test_endpoint(self, target: EcsTarget) -> EcsTarget:
        listener_arn = target.test_listener_arn
        if listener_arn is None:
            group = self._codedeploy.get().get_deployment_group(
                applicationName=target.application_name, deploymentGroupName=target.deployment_group_name
            )["deploymentGroupInfo"]
            listener_arn = test_listener_arn(group.get("loadBalancerInfo") or {})
        if listener_arn is None:
            return target  # no test listener: only absolute-url checks can run
        elbv2 = self._elbv2.get()
        listener = elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
        balancer = elbv2.describe_load_balancers(LoadBalancerArns=[listener["LoadBalancerArn"]])["LoadBalancers"][0]
        scheme = "https" if listener.get("Protocol") in ("HTTPS", "TLS") else "http"
        base_url = f"{scheme}://{balancer['DNSName']}:{listener['Port']}"
        # The listener's rules (its default rule included) decide where a check's host and path are routed.
        pages = elbv2.get_paginator("describe_rules").paginate(ListenerArn=listener_arn)
        rules = tuple(listener_rule(rule) for page in pages for rule in page["Rules"])
        return replace(target, test_listener_arn=listener_arn, base_url=base_url, listener_rules=rules)


class CodeDeployStatusReporter:
    def __init__(self, codedeploy: LazyClient | None = None) -> None:
        self._codedeploy = codedeploy or LazyClient("codedeploy")

    def report(self, deployment_id: str, execution_id: str, status: HookStatus) -> ReportResult:
        client = self._codedeploy.get()
        try:
            client.put_lifecycle_event_hook_execution_status(
                deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status=status.value
            )
        except Exception as exc:
            # Matched by error code, never by message text.
            if error_code(exc) == "LifecycleEventAlreadyCompletedException":
                return ReportResult.ALREADY_COMPLETED
            raise
        return ReportResult.REPORTED
