"""The clean-up finds a release's running ECS deployments by application and deployment group (no AppSpec read),
against botocore Stubber and the GetDeployment ECS fixture (tests/fixtures/aws, shaped as AWS answers)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.stub import Stubber

from release_train.adapters.deployments import IN_FLIGHT, Deployments
from release_train.domain.fleet import ecs_deployment_key
from tests.fixtures import aws_fixture

SINCE = datetime(2026, 11, 30, 9, tzinfo=UTC)
LISTENERS = {
    "PROD_LISTENER_ARN": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/0123456789abcdef/1",
    "TEST_LISTENER_ARN": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/0123456789abcdef/2",
}


def _ecs(deployment_id: str, application: str | None = None) -> dict[str, Any]:
    answer = aws_fixture("codedeploy", "GetDeployment", "ecs", DEPLOYMENT_ID=deployment_id, **LISTENERS)
    if application is not None:
        answer["deploymentInfo"]["applicationName"] = application
    return answer


def test_given_running_ecs_deployments_then_only_the_named_group_s_is_found_without_reading_its_appspec() -> None:
    client = boto3.client("codedeploy", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.add_response(
        "list_deployments",
        {"deployments": ["d-ECS000001", "d-ECS000002"]},
        {"includeOnlyStatuses": IN_FLIGHT, "createTimeRange": {"start": SINCE}},
    )
    stubber.add_response("get_deployment", _ecs("d-ECS000001"), {"deploymentId": "d-ECS000001"})
    stubber.add_response("get_deployment", _ecs("d-ECS000002", "AppECS-other"), {"deploymentId": "d-ECS000002"})
    key = ecs_deployment_key("AppECS-web-cluster-web", "DgpECS-web-cluster-web")

    with stubber:
        found = Deployments(client).in_flight([key, "some-function"], SINCE)

    assert found == {"d-ECS000001": "ecs/AppECS-web-cluster-web/DgpECS-web-cluster-web"}
    stubber.assert_no_pending_responses()  # no GetApplicationRevision: the group names the deployment
