"""CodeBuild reads (Stubber: the exact requests matter for IAM and for finding a release's builds)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from release_train.adapters.codebuild import CodeBuild
from release_train.domain.release import TestEvidence as ReportEvidence  # not a pytest class

REPORT_1 = "arn:aws:codebuild:us-east-1:123456789012:report/train-e2e-staging-reports:1"
REPORT_2 = "arn:aws:codebuild:us-east-1:123456789012:report/train-e2e-staging-junit:2"


@pytest.fixture
def stubbed() -> Iterator[tuple[CodeBuild, Stubber]]:
    client = boto3.client("codebuild", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield CodeBuild(client), stubber
        stubber.assert_no_pending_responses()


def _report(arn: str, counts: dict[str, int]) -> dict[str, Any]:
    summary = {"total": sum(counts.values()), "statusCounts": counts, "durationInNanoSeconds": 1}
    return {"arn": arn, "testSummary": summary}


def _build(build_id: str, status: str, release_id: str | None) -> dict[str, Any]:
    env = [{"name": "STAGE", "value": "staging", "type": "PLAINTEXT"}]
    if release_id:
        env.append({"name": "RELEASE_ID", "value": release_id, "type": "PLAINTEXT"})
    environment = {
        "type": "ARM_CONTAINER",
        "image": "aws/codebuild/amazonlinux-aarch64-standard:3.0",
        "computeType": "BUILD_GENERAL1_SMALL",
        "environmentVariables": env,
    }
    return {"id": build_id, "buildStatus": status, "environment": environment}


# --- test evidence ------------------------------------------------------------------------------------------------


def test_given_a_test_build_with_two_reports_when_read_then_counts_are_summed_across_reports(
    stubbed: tuple[CodeBuild, Stubber],
) -> None:
    codebuild, stubber = stubbed
    stubber.add_response(
        "batch_get_builds", {"builds": [{"id": "e2e:1", "reportArns": [REPORT_1, REPORT_2]}]}, {"ids": ["e2e:1"]}
    )
    stubber.add_response(
        "batch_get_reports",
        {"reports": [_report(REPORT_1, {"SUCCEEDED": 30, "SKIPPED": 2}), _report(REPORT_2, {"SUCCEEDED": 5})]},
        {"reportArns": [REPORT_1, REPORT_2]},
    )

    assert codebuild.test_evidence("e2e:1") == ReportEvidence((REPORT_1, REPORT_2), total=37, passed=37, failed=0)


def test_given_failed_errored_and_unknown_cases_when_read_then_all_count_as_failed(
    stubbed: tuple[CodeBuild, Stubber],
) -> None:
    codebuild, stubber = stubbed
    stubber.add_response(
        "batch_get_builds", {"builds": [{"id": "e2e:1", "reportArns": [REPORT_1]}]}, {"ids": ["e2e:1"]}
    )
    counts = {"SUCCEEDED": 10, "FAILED": 1, "ERROR": 1, "UNKNOWN": 1}
    stubber.add_response("batch_get_reports", {"reports": [_report(REPORT_1, counts)]}, {"reportArns": [REPORT_1]})

    assert codebuild.test_evidence("e2e:1") == ReportEvidence((REPORT_1,), total=13, passed=10, failed=3)


def test_given_a_build_without_reports_when_read_then_there_is_no_evidence(stubbed: tuple[CodeBuild, Stubber]) -> None:
    codebuild, stubber = stubbed
    stubber.add_response("batch_get_builds", {"builds": [{"id": "e2e:1", "reportArns": []}]}, {"ids": ["e2e:1"]})

    assert codebuild.test_evidence("e2e:1") is None


def test_given_an_unknown_build_when_read_then_there_is_no_evidence(stubbed: tuple[CodeBuild, Stubber]) -> None:
    codebuild, stubber = stubbed
    stubber.add_response("batch_get_builds", {"builds": [], "buildsNotFound": ["e2e:9"]}, {"ids": ["e2e:9"]})

    assert codebuild.test_evidence("e2e:9") is None


def test_given_reports_unreadable_when_read_then_the_error_propagates_for_the_gate_to_block(
    stubbed: tuple[CodeBuild, Stubber],
) -> None:
    codebuild, stubber = stubbed
    stubber.add_response(
        "batch_get_builds", {"builds": [{"id": "e2e:1", "reportArns": [REPORT_1]}]}, {"ids": ["e2e:1"]}
    )
    stubber.add_client_error("batch_get_reports", "AccessDeniedException", "no")

    with pytest.raises(codebuild._c.exceptions.ClientError):
        codebuild.test_evidence("e2e:1")


# --- running builds of a release ----------------------------------------------------------------------------------


def test_given_builds_of_this_and_other_releases_when_listed_then_only_this_releases_running_builds(
    stubbed: tuple[CodeBuild, Stubber],
) -> None:
    codebuild, stubber = stubbed
    stubber.add_response(
        "list_builds_for_project",
        {"ids": ["api:3", "api:2"], "nextToken": "page-2"},
        {"projectName": "train-api-staging", "sortOrder": "DESCENDING"},
    )
    stubber.add_response(
        "list_builds_for_project",
        {"ids": ["api:1"]},
        {"projectName": "train-api-staging", "sortOrder": "DESCENDING", "nextToken": "page-2"},
    )
    stubber.add_response(
        "batch_get_builds",
        {
            "builds": [
                _build("api:3", "IN_PROGRESS", "2026-W48"),
                _build("api:2", "SUCCEEDED", "2026-W48"),
                _build("api:1", "IN_PROGRESS", "2026-W47"),
            ]
        },
        {"ids": ["api:3", "api:2", "api:1"]},
    )

    assert codebuild.running_builds_for_release(["train-api-staging"], "2026-W48") == ["api:3"]


def test_given_a_running_build_without_a_release_id_when_listed_then_it_is_not_stopped(
    stubbed: tuple[CodeBuild, Stubber],
) -> None:
    codebuild, stubber = stubbed
    stubber.add_response(
        "list_builds_for_project", {"ids": ["api:9"]}, {"projectName": "train-api-prod", "sortOrder": "DESCENDING"}
    )
    stubber.add_response("batch_get_builds", {"builds": [_build("api:9", "IN_PROGRESS", None)]}, {"ids": ["api:9"]})

    assert codebuild.running_builds_for_release(["train-api-prod"], "2026-W48") == []


def test_given_a_project_that_does_not_exist_when_listed_then_it_is_skipped(stubbed: tuple[CodeBuild, Stubber]) -> None:
    codebuild, stubber = stubbed
    stubber.add_client_error("list_builds_for_project", "ResourceNotFoundException", "no such project")
    stubber.add_response(
        "list_builds_for_project", {"ids": ["web:1"]}, {"projectName": "train-web-prod", "sortOrder": "DESCENDING"}
    )
    stubber.add_response(
        "batch_get_builds", {"builds": [_build("web:1", "IN_PROGRESS", "2026-W48")]}, {"ids": ["web:1"]}
    )

    assert codebuild.running_builds_for_release(["train-gone-prod", "train-web-prod"], "2026-W48") == ["web:1"]


def test_given_a_project_named_twice_when_listed_then_it_is_queried_once(stubbed: tuple[CodeBuild, Stubber]) -> None:
    codebuild, stubber = stubbed
    stubber.add_response("list_builds_for_project", {}, {"projectName": "train-e2e-prod", "sortOrder": "DESCENDING"})

    assert codebuild.running_builds_for_release(["train-e2e-prod", "train-e2e-prod"], "2026-W48") == []


def test_given_a_build_id_when_stopped_then_stop_build_is_called_with_it(stubbed: tuple[CodeBuild, Stubber]) -> None:
    codebuild, stubber = stubbed
    stubber.add_response("stop_build", {"build": {"id": "api:3", "buildStatus": "STOPPED"}}, {"id": "api:3"})

    codebuild.stop("api:3")
