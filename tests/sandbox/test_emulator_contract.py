"""Every answer the sandbox's emulators give fits botocore's output shape for its operation.

The router validates each answer before returning it (emulators.validate_output) and raises SandboxDefect when one
does not fit. This test calls every emulated operation through a real boto3 client, so each route is exercised and
validated; a new route without a call here fails `..._every_route_is_walked`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from release_train.domain.fleet import parse_fleet
from tests.sandbox.harness import Sandbox, sandbox
from trainctl.sandbox import emulators
from trainctl.sandbox.emulators import SandboxDefect, validate_output
from trainctl.sandbox.scenario import HookBehaviour, Scenario

ROOT = Path(__file__).resolve().parents[2]
FLEET = parse_fleet((ROOT / "fleet.yaml").read_text())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Sandbox]:
    scenario = Scenario(hooks={"company-service": HookBehaviour(pre_traffic="silent")})
    with sandbox(tmp_path, scenario, FLEET) as box:

        def set_up() -> None:
            w = box.world
            w.codedeploy.prepare(
                ROOT, "CodeDeployHook_release-train_PreTraffic", "CodeDeployHook_release-train_PostTraffic"
            )
            w.codebuild.register_project("train-company-service-prod", "prod", "company-service")
            w.codebuild.register_project("train-e2e-prod", "prod", None)
            w.sources.branches[("company-service", "release")] = "c0ffee"
            w.alarms.create_healthy("prod-errors")
            w.alarms.set_state("prod-errors", "ALARM", "test")

        box.act(set_up)
        yield box


def _walk(box: Sandbox) -> set[tuple[str, str]]:
    """Call each emulated operation once with valid input; return the (service, operation) pairs called."""
    codebuild, codedeploy = boto3.client("codebuild"), boto3.client("codedeploy")
    called: set[tuple[str, str]] = set()

    def call(service: str, operation: str, fn: Callable[[], Any]) -> Any:
        called.add((service, operation))
        return box.act(fn)

    build = call(
        "codebuild",
        "StartBuild",
        lambda: codebuild.start_build(projectName="train-company-service-prod", sourceVersion="c0ffee"),
    )["build"]
    tests = call("codebuild", "StartBuild", lambda: codebuild.start_build(projectName="train-e2e-prod"))["build"]
    box.clock.run_until(6 * 60 + 1)  # the service build deploys; its deployments wait in the PreTraffic hook
    call("codebuild", "BatchGetBuilds", lambda: codebuild.batch_get_builds(ids=[build["id"], tests["id"], "nope:1"]))
    call("codebuild", "ListBuildsForProject", lambda: codebuild.list_builds_for_project(projectName="train-e2e-prod"))
    report_arns = box.world.codebuild.builds[tests["id"]].report_arns
    call("codebuild", "BatchGetReports", lambda: codebuild.batch_get_reports(reportArns=[*report_arns, "arn:x"]))
    call("codebuild", "StopBuild", lambda: codebuild.stop_build(id=tests["id"]))

    deployment_id = box.world.codebuild.builds[build["id"]].deployments[0]
    info = call("codedeploy", "GetDeployment", lambda: codedeploy.get_deployment(deploymentId=deployment_id))[
        "deploymentInfo"
    ]
    call(
        "codedeploy",
        "GetApplicationRevision",
        lambda: codedeploy.get_application_revision(applicationName=info["applicationName"], revision=info["revision"]),
    )
    call("codedeploy", "ListDeployments", lambda: codedeploy.list_deployments(includeOnlyStatuses=["InProgress"]))
    targets = call(
        "codedeploy", "ListDeploymentTargets", lambda: codedeploy.list_deployment_targets(deploymentId=deployment_id)
    )
    call(
        "codedeploy",
        "BatchGetDeploymentTargets",
        lambda: codedeploy.batch_get_deployment_targets(deploymentId=deployment_id, targetIds=targets["targetIds"]),
    )
    (execution_id,) = box.world.codedeploy.deployments[deployment_id].hooks
    call(
        "codedeploy",
        "PutLifecycleEventHookExecutionStatus",
        lambda: codedeploy.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status="Failed"
        ),
    )
    other = box.world.codebuild.builds[build["id"]].deployments[1]
    call("codedeploy", "StopDeployment", lambda: codedeploy.stop_deployment(deploymentId=other))

    call(
        "codecommit",
        "GetBranch",
        lambda: boto3.client("codecommit").get_branch(repositoryName="company-service", branchName="release"),
    )
    call(
        "cloudwatch",
        "DescribeAlarmHistory",
        lambda: boto3.client("cloudwatch").describe_alarm_history(AlarmName="prod-errors"),
    )
    box.settle()
    return called


def test_given_every_emulated_operation_when_called_then_each_answer_fits_its_output_shape(world: Sandbox) -> None:
    called = _walk(world)
    assert called == set(world.world.routes), "an emulated route is not walked here"


def test_given_an_answer_with_a_member_aws_does_not_send_then_the_sandbox_refuses_to_give_it() -> None:
    with pytest.raises(SandboxDefect, match="BuildStatus"):
        validate_output("codebuild", "BatchGetBuilds", {"builds": [{"id": "p:1", "BuildStatus": "SUCCEEDED"}]})
    with pytest.raises(SandboxDefect, match="content"):
        # GetDeployment's revision carries no `contentt`; a typo in an emulator must not pass unnoticed
        validate_output(
            "codedeploy",
            "GetDeployment",
            {"deploymentInfo": {"revision": {"appSpecContent": {"contentt": "{}"}}}},
        )
    validate_output("codedeploy", "GetDeployment", {"deploymentInfo": {"deploymentId": "d-1"}})  # a fitting one


@pytest.mark.parametrize(
    ("body", "stray"),
    [
        # an error code AWS does not have (the Lambda emulation once answered DEPLOYMENT_STOPPED)
        ({"deploymentInfo": {"errorInformation": {"code": "DEPLOYMENT_STOPPED"}}}, "errorInformation.code"),
        ({"deploymentInfo": {"status": "Rolledback"}}, "deploymentInfo.status"),  # in a list's item, too:
        (
            {"deploymentInfo": {"autoRollbackConfiguration": {"events": ["DEPLOYMENT_FAILURE", "ALARM"]}}},
            "events[1]",
        ),
    ],
)
def test_given_an_answer_with_a_value_outside_an_enum_then_the_sandbox_refuses_to_give_it(
    body: dict[str, Any], stray: str
) -> None:
    # botocore's validator ignores enums (clients accept newer values); the sandbox must not invent one
    with pytest.raises(SandboxDefect, match=stray.replace("[", r"\[").replace("]", r"\]")):
        validate_output("codedeploy", "GetDeployment", body)


def test_given_enum_values_the_model_names_then_the_answer_passes() -> None:
    validate_output(
        "codedeploy",
        "GetDeployment",
        {
            "deploymentInfo": {
                "status": "Stopped",
                "errorInformation": {"code": "MANUAL_STOP", "message": "stopped"},
                "autoRollbackConfiguration": {"events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"]},
            }
        },
    )


def test_given_an_emulator_answering_out_of_shape_when_called_then_the_caller_sees_a_sandbox_defect(
    world: Sandbox,
) -> None:
    world.world.routes[("codecommit", "GetBranch")] = lambda params: {"branch": {"commitID": "c0ffee"}}
    with pytest.raises(SandboxDefect, match="commitID"):
        boto3.client("codecommit").get_branch(repositoryName="company-service", branchName="release")
    assert emulators.active() is world.world


def test_given_an_error_the_emulators_raise_then_it_reaches_the_caller_as_a_client_error(world: Sandbox) -> None:
    with pytest.raises(ClientError) as missing:
        boto3.client("codecommit").get_branch(repositoryName="company-service", branchName="main")
    assert missing.value.response["Error"]["Code"] == "BranchDoesNotExistException"
