"""The hook adapters against botocore Stubber (where exact parameters matter) and moto (SSM, ELBv2)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from release_train.adapters.check_runners import LambdaInvoker
from release_train.adapters.checks_store import SsmChecksSource
from release_train.adapters.codedeploy import CodeDeployDeployments, CodeDeployStatusReporter
from release_train.adapters.hook_clients import LazyClient
from release_train.domain.checks import HookStatus
from release_train.domain.hook_targets import EcsTarget
from release_train.hooks import ReportResult

PUT = {"deploymentId": "d-1", "lifecycleEventHookExecutionId": "exec-1", "status": "Failed"}


@pytest.fixture
def codedeploy() -> Iterator[tuple[LazyClient, Stubber]]:
    client = boto3.client("codedeploy", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield LazyClient("codedeploy", client=client), stubber
        stubber.assert_no_pending_responses()


def test_given_a_verdict_when_reported_then_codedeploy_gets_exactly_these_parameters(
    codedeploy: tuple[LazyClient, Stubber],
) -> None:
    client, stubber = codedeploy
    stubber.add_response("put_lifecycle_event_hook_execution_status", {"lifecycleEventHookExecutionId": "exec-1"}, PUT)

    result = CodeDeployStatusReporter(client).report("d-1", "exec-1", HookStatus.FAILED)

    assert result is ReportResult.REPORTED


def test_given_codedeploy_already_has_a_status_when_reported_then_already_completed_is_returned(
    codedeploy: tuple[LazyClient, Stubber],
) -> None:
    client, stubber = codedeploy
    stubber.add_client_error(
        "put_lifecycle_event_hook_execution_status", "LifecycleEventAlreadyCompletedException", expected_params=PUT
    )

    assert CodeDeployStatusReporter(client).report("d-1", "exec-1", HookStatus.FAILED) is ReportResult.ALREADY_COMPLETED


def test_given_another_codedeploy_error_when_reported_then_it_propagates(
    codedeploy: tuple[LazyClient, Stubber],
) -> None:
    client, stubber = codedeploy
    stubber.add_client_error("put_lifecycle_event_hook_execution_status", "DeploymentDoesNotExistException")

    with pytest.raises(Exception, match="DeploymentDoesNotExistException"):
        CodeDeployStatusReporter(client).report("d-1", "exec-1", HookStatus.FAILED)


def test_given_a_function_error_when_invoked_then_the_observation_carries_it_and_the_payload() -> None:
    client = boto3.client("lambda", region_name="us-east-1")
    body = b'{"errorMessage": "boom", "errorType": "KeyError"}'
    with Stubber(client) as stubber:
        stubber.add_response(
            "invoke",
            {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "ExecutedVersion": "7",
                "Payload": StreamingBody(io.BytesIO(body), len(body)),
            },
            {"FunctionName": "svc-a", "Qualifier": "7", "InvocationType": "RequestResponse", "Payload": b"{}"},
        )

        seen = LambdaInvoker(LazyClient("lambda", client=client)).invoke("svc-a", "7", b"{}", timeout_s=5)

    assert (seen.function_error, seen.payload, seen.executed_version) == ("Unhandled", body, "7")


def test_given_no_parameter_for_a_target_when_checks_are_loaded_then_none_is_returned() -> None:
    with mock_aws():
        assert SsmChecksSource().load("svc-nobody") is None


def test_given_a_parameter_under_a_custom_prefix_when_checks_are_loaded_then_its_source_is_named() -> None:
    with mock_aws():
        boto3.client("ssm").put_parameter(Name="/rt/checks/svc-a", Type="String", Value="{}")

        loaded = SsmChecksSource(prefix="/rt/checks/").load("svc-a")

    assert loaded is not None and (loaded.source, loaded.text) == ("ssm:/rt/checks/svc-a", "{}")


def test_given_an_ecs_deployment_with_a_test_listener_when_read_then_its_base_url_comes_from_elbv2() -> None:
    with mock_aws():
        ec2 = boto3.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"][
                "SubnetId"
            ]
            for i, az in enumerate("ab")
        ]
        elbv2 = boto3.client("elbv2")
        balancer = elbv2.create_load_balancer(Name="web", Subnets=subnets)["LoadBalancers"][0]
        group = elbv2.create_target_group(Name="web-green", Protocol="HTTP", Port=8080, VpcId=vpc)["TargetGroups"][0]
        listener = elbv2.create_listener(
            LoadBalancerArn=balancer["LoadBalancerArn"],
            Protocol="HTTP",
            Port=8080,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}],
        )["Listeners"][0]
        codedeploy = boto3.client("codedeploy")
        info = {
            "deploymentId": "d-2",
            "computePlatform": "ECS",
            "applicationName": "web",
            "deploymentGroupName": "web-prod",
            "loadBalancerInfo": {
                "targetGroupPairInfoList": [{"testTrafficRoute": {"listenerArns": [listener["ListenerArn"]]}}]
            },
        }
        with Stubber(codedeploy) as stubber:
            stubber.add_response("get_deployment", {"deploymentInfo": info}, {"deploymentId": "d-2"})

            target = CodeDeployDeployments(LazyClient("codedeploy", client=codedeploy)).target("d-2")

    assert isinstance(target, EcsTarget)
    assert target.base_url == f"http://{balancer['DNSName']}:8080"
