"""The hook adapters against botocore Stubber (where exact parameters matter) and moto (SSM, ELBv2).

Stubber checks both sides against botocore's model: the request parameters the adapter sends, and the canned answer
(tests/fixtures/aws) against the operation's output shape.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

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
from release_train.domain.hook_targets import EcsService, EcsTarget, LambdaTarget, ListenerRule
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


def _revision_request(deployment: dict[str, Any]) -> dict[str, Any]:
    """GetApplicationRevision's parameters for a deployment: its application, its AppSpec's sha256."""
    info = deployment["deploymentInfo"]
    sha256 = info["revision"]["appSpecContent"]["sha256"]
    return {
        "applicationName": info["applicationName"],
        "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": sha256}},
    }


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
            stubber.add_response(
                "get_application_revision",
                aws_fixture("codedeploy", "GetApplicationRevision", "ecs", DEPLOYMENT_ID="d-2"),
                _revision_request(deployment),
            )

            target = CodeDeployDeployments(LazyClient("codedeploy", client=codedeploy)).target("d-2")

            stubber.assert_no_pending_responses()

    assert isinstance(target, EcsTarget)
    assert target.base_url == f"http://{dns_name}:8080"
    assert target.listener_rules == (ListenerRule("default", action="forward"),)  # moto's DescribeRules
    assert target.service is not None and target.service.container_name == "orders"


def test_given_an_ecs_deployment_without_load_balancer_info_when_read_then_the_groups_test_listener_is_used() -> None:
    with mock_aws():
        listener_arn, dns_name = _load_balancer_with_test_listener()
        codedeploy = boto3.client("codedeploy")
        listeners = {"PROD_LISTENER_ARN": listener_arn, "TEST_LISTENER_ARN": listener_arn}
        with Stubber(codedeploy) as stubber:
            deployment = aws_fixture(
                "codedeploy", "GetDeployment", "ecs_without_load_balancer_info", DEPLOYMENT_ID="d-3"
            )
            stubber.add_response("get_deployment", deployment, {"deploymentId": "d-3"})
            stubber.add_response(
                "get_application_revision",
                aws_fixture("codedeploy", "GetApplicationRevision", "ecs", DEPLOYMENT_ID="d-3"),
                _revision_request(deployment),
            )
            stubber.add_response(
                "get_deployment_group",
                aws_fixture("codedeploy", "GetDeploymentGroup", "ecs", **listeners),
                {"applicationName": "AppECS-web-cluster-web", "deploymentGroupName": "DgpECS-web-cluster-web"},
            )

            target = CodeDeployDeployments(LazyClient("codedeploy", client=codedeploy)).target("d-3")

    assert isinstance(target, EcsTarget)
    assert (target.test_listener_arn, target.base_url) == (listener_arn, f"http://{dns_name}:8080")


TEST_LISTENER = (
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/orders-internal/50dc6c495c0c9188/f2f7dc8efc522ab2"
)


def test_given_an_https_test_listener_with_rules_when_read_then_every_elbv2_answer_shapes_the_target() -> None:
    """Real ECS shapes end to end: the console's AppECS/DgpECS names, the AppSpec from GetApplicationRevision, an HTTPS
    test listener with host/path rules on an internal ALB; Stubber checks each request and each canned answer."""
    codedeploy = boto3.client("codedeploy", region_name="us-east-1")
    elbv2 = boto3.client("elbv2", region_name="us-east-1")
    deployment = aws_fixture(
        "codedeploy",
        "GetDeployment",
        "ecs",
        DEPLOYMENT_ID="d-4",
        PROD_LISTENER_ARN="p",
        TEST_LISTENER_ARN=TEST_LISTENER,
    )
    listeners = aws_fixture("elbv2", "DescribeListeners", "https_test_listener", TEST_LISTENER_ARN=TEST_LISTENER)
    balancers = aws_fixture("elbv2", "DescribeLoadBalancers", "internal")
    balancer_arn = balancers["LoadBalancers"][0]["LoadBalancerArn"]
    with Stubber(codedeploy) as cd, Stubber(elbv2) as lb:
        cd.add_response("get_deployment", deployment, {"deploymentId": "d-4"})
        cd.add_response(
            "get_application_revision",
            aws_fixture("codedeploy", "GetApplicationRevision", "ecs", DEPLOYMENT_ID="d-4"),
            _revision_request(deployment),
        )
        lb.add_response("describe_listeners", listeners, {"ListenerArns": [TEST_LISTENER]})
        lb.add_response("describe_load_balancers", balancers, {"LoadBalancerArns": [balancer_arn]})
        lb.add_response(
            "describe_rules", aws_fixture("elbv2", "DescribeRules", "host_and_path"), {"ListenerArn": TEST_LISTENER}
        )

        target = CodeDeployDeployments(
            LazyClient("codedeploy", client=codedeploy), LazyClient("elbv2", client=elbv2)
        ).target("d-4")

        cd.assert_no_pending_responses()
        lb.assert_no_pending_responses()

    assert target == EcsTarget(
        deployment_id="d-4",
        application_name="AppECS-web-cluster-web",
        deployment_group_name="DgpECS-web-cluster-web",
        test_listener_arn=TEST_LISTENER,
        base_url="https://internal-orders-internal-1234567890.us-east-1.elb.amazonaws.com:8443",
        service=EcsService("arn:aws:ecs:us-east-1:123456789012:task-definition/orders:7", "orders", 8080),
        listener_rules=(
            ListenerRule("10", ("orders.example.com",), ("/orders*", "/health"), "forward"),
            ListenerRule("20", (), (), "forward", ("http-header",)),
            ListenerRule("default", (), (), "fixed-response"),
        ),
    )


def test_given_moto_listener_rules_when_read_then_host_and_path_conditions_and_priorities_survive() -> None:
    """moto's ELBv2 (what the sandbox would serve) answers DescribeRules in a shape listener_rule reads."""
    with mock_aws():
        listener_arn, _ = _load_balancer_with_test_listener()
        elbv2 = boto3.client("elbv2")
        listener = elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
        elbv2.create_rule(
            ListenerArn=listener_arn,
            Priority=10,
            Conditions=[
                {"Field": "host-header", "HostHeaderConfig": {"Values": ["orders.example.com"]}},
                {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/orders*"]}},
            ],
            Actions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}],
        )
        codedeploy = boto3.client("codedeploy")
        deployment = aws_fixture(
            "codedeploy",
            "GetDeployment",
            "ecs",
            DEPLOYMENT_ID="d-5",
            PROD_LISTENER_ARN="p",
            TEST_LISTENER_ARN=listener_arn,
        )
        with Stubber(codedeploy) as stubber:
            stubber.add_response("get_deployment", deployment, {"deploymentId": "d-5"})
            stubber.add_response(
                "get_application_revision",
                aws_fixture("codedeploy", "GetApplicationRevision", "ecs", DEPLOYMENT_ID="d-5"),
                _revision_request(deployment),
            )

            target = CodeDeployDeployments(LazyClient("codedeploy", client=codedeploy)).target("d-5")

    assert isinstance(target, EcsTarget)
    assert listener["DefaultActions"][0]["Type"] == "forward"
    assert set(target.listener_rules) == {
        ListenerRule("10", ("orders.example.com",), ("/orders*",), "fixed-response"),
        ListenerRule("default", action="forward"),
    }
