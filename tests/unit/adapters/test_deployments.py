"""The clean-up's CodeDeploy reads against botocore Stubber: every request and canned answer is checked against
botocore's model, and the answers are the fixtures (tests/fixtures/aws), shaped as AWS answers."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from release_train.adapters.deployments import IN_FLIGHT, Deployments
from tests.fixtures import aws_fixture

SINCE = datetime(2026, 11, 30, 9, tzinfo=UTC)
OURS = "d-OURS00001"
THEIRS = "d-THEIRS001"
FUNCTION = "company-svc-create"  # the AppSpec in the GetApplicationRevision fixture names it


def _client() -> tuple[object, Stubber]:
    client = boto3.client("codedeploy", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def _expect_ours(stubber: Stubber) -> None:
    info = aws_fixture("codedeploy", "GetDeployment", "lambda", DEPLOYMENT_ID=OURS)
    stubber.add_response("get_deployment", info, {"deploymentId": OURS})
    revision = aws_fixture("codedeploy", "GetApplicationRevision", "lambda", DEPLOYMENT_ID=OURS)
    stubber.add_response(
        "get_application_revision",
        revision,
        {"applicationName": info["deploymentInfo"]["applicationName"], "revision": info["deploymentInfo"]["revision"]},
    )


def test_given_another_teams_deployment_the_role_may_not_read_when_listing_then_it_is_skipped_not_fatal() -> None:
    client, stubber = _client()
    stubber.add_response(
        "list_deployments",
        {"deployments": [THEIRS, OURS]},
        {"includeOnlyStatuses": IN_FLIGHT, "createTimeRange": {"start": SINCE}},
    )
    # IAM scopes GetDeployment to the fleet's applications (ADR 0005): AWS answers AccessDeniedException.
    stubber.add_client_error("get_deployment", "AccessDeniedException", "not authorized", 400, {"deploymentId": THEIRS})
    _expect_ours(stubber)

    with stubber:
        found = Deployments(client).in_flight([FUNCTION], SINCE)

    assert found == {OURS: FUNCTION}
    stubber.assert_no_pending_responses()


def test_given_a_throttled_read_when_listing_then_the_error_is_raised_for_a_retry() -> None:
    client, stubber = _client()
    stubber.add_response("list_deployments", {"deployments": [OURS]})
    stubber.add_client_error("get_deployment", "ThrottlingException", "slow down", 400)

    with stubber, pytest.raises(Exception, match="ThrottlingException"):
        Deployments(client).in_flight([FUNCTION], SINCE)
