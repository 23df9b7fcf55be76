"""The hook adapters against botocore Stubber (where exact parameters matter) and moto (SSM, ELBv2).

Stubber checks both sides against botocore's model: the request parameters the adapter sends, and the canned answer
(tests/fixtures/aws) against the operation's output shape.
"""

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
from release_train.domain.hook_targets import EcsTarget, LambdaTarget
from release_train.hooks import ReportResult
from tests.fixtures import aws_fixture

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
    answer = aws_fixture("codedeploy", "PutLifecycleEventHookExecutionStatus", "reported", EXECUTION_ID="exec-1")
    stubber.add_response("put_lifecycle_event_hook_execution_status", answer, PUT)

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
    answer = aws_fixture("lambda", "Invoke", "function_error")
    body = answer["Payload"].encode()
    answer["Payload"] = StreamingBody(io.BytesIO(body), len(body))  # boto3 hands the payload out as a stream
    with Stubber(client) as stubber:
        stubber.add_response(
            "invoke",
            answer,
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


def test_given_a_lambda_deployment_when_read_then_the_appspec_is_fetched_by_its_sha256_and_parsed(
    codedeploy: tuple[LazyClient, Stubber],
) -> None:
    client, stubber = codedeploy
    deployment = aws_fixture("codedeploy", "GetDeployment", "lambda", DEPLOYMENT_ID="d-1")
    info = deployment["deploymentInfo"]
    stubber.add_response("get_deployment", deployment, {"deploymentId": "d-1"})
    # GetDeployment's appSpecContent.content is always null (API_GetDeployment.html): ask GetApplicationRevision.
    stubber.add_response(
        "get_application_revision",
        aws_fixture("codedeploy", "GetApplicationRevision", "lambda", DEPLOYMENT_ID="d-1"),
        {
            "applicationName": info["applicationName"],
            "revision": {
                "revisionType": "AppSpecContent",
                "appSpecContent": {"sha256": info["revision"]["appSpecContent"]["sha256"]},
            },
        },
    )

    target = CodeDeployDeployments(client).target("d-1")

    assert target == LambdaTarget("d-1", "company-svc-create", "live", "1", "2")


def test_given_a_revision_codedeploy_cannot_find_when_read_then_the_error_propagates(
    codedeploy: tuple[LazyClient, Stubber],
) -> None:
    client, stubber = codedeploy
    stubber.add_response("get_deployment", aws_fixture("codedeploy", "GetDeployment", "lambda", DEPLOYMENT_ID="d-1"))
    stubber.add_client_error("get_application_revision", "RevisionDoesNotExistException")

    with pytest.raises(Exception, match="RevisionDoesNotExistException"):
        CodeDeployDeployments(client).target("d-1")


def _load_balancer_with_test_listener() -> tuple[str, str]:
    """moto ELBv2: a load balancer with an HTTP listener on 8080. Returns (listener ARN, DNS name)."""
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
    return listener["ListenerArn"], balancer["DNSName"]


def test_given_an_ecs_deployment_with_a_test_listener_when_read_then_its_base_url_comes_from_elbv2() -> None:
    with mock_aws():
        listener_arn, dns_name = _load_balancer_with_test_listener()
        codedeploy = boto3.client("codedeploy")
        deployment = aws_fixture(
            "codedeploy",
            "GetDeployment",
            "ecs",
            DEPLOYMENT_ID="d-2",
            PROD_LISTENER_ARN=listener_arn,
            TEST_LISTENER_ARN=listener_arn,
        )
        with Stubber(codedeploy) as stubber:
            stubber.add_response("get_deployment", deployment, {"deploymentId": "d-2"})

            target = CodeDeployDeployments(LazyClient("codedeploy", client=codedeploy)).target("d-2")

            stubber.assert_no_pending_responses()  # no GetApplicationRevision: an ECS target needs no AppSpec

    assert isinstance(target, EcsTarget)
    assert target.base_url == f"http://{dns_name}:8080"


def test_given_an_ecs_deployment_without_load_balancer_info_when_read_then_the_groups_test_listener_is_used() -> None:
    with mock_aws():
        listener_arn, dns_name = _load_balancer_with_test_listener()
        codedeploy = boto3.client("codedeploy")
        listeners = {"PROD_LISTENER_ARN": listener_arn, "TEST_LISTENER_ARN": listener_arn}
        with Stubber(codedeploy) as stubber:
            stubber.add_response(
                "get_deployment",
                aws_fixture("codedeploy", "GetDeployment", "ecs_without_load_balancer_info", DEPLOYMENT_ID="d-3"),
                {"deploymentId": "d-3"},
            )
            stubber.add_response(
                "get_deployment_group",
                aws_fixture("codedeploy", "GetDeploymentGroup", "ecs", **listeners),
                {"applicationName": "AppECS-web-cluster-web", "deploymentGroupName": "DgpECS-web-cluster-web"},
            )

            target = CodeDeployDeployments(LazyClient("codedeploy", client=codedeploy)).target("d-3")

    assert isinstance(target, EcsTarget)
    assert (target.test_listener_arn, target.base_url) == (listener_arn, f"http://{dns_name}:8080")
