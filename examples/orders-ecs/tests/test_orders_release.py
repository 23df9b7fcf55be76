"""deploy/orders_release.py against botocore Stubber: the exact requests it makes (CloudFormation outputs -> ECS task
definition -> CodeDeploy deployment) and the AppSpec it sends. Stubber validates requests and canned answers against
botocore's models. No conftest (collected with the repository's tests); deploy/ is put on sys.path."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))

import orders_release as release

STACK = "svc-orders-prod"
FAMILY_ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/svc-orders-prod"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/svc-orders:r-2026-48-0123456789ab"
OUTPUTS = {
    "TaskFamily": STACK,
    "ContainerName": "orders",
    "ContainerPort": "8080",
    "ApplicationName": STACK,
    "DeploymentGroupName": f"{STACK}-orders",
    "PreTrafficHook": "CodeDeployHook_release-train_PreTraffic",
    "PostTrafficHook": "CodeDeployHook_release-train_PostTraffic",
}
CURRENT = {
    "taskDefinitionArn": f"{FAMILY_ARN}:6",
    "family": STACK,
    "revision": 6,
    "status": "ACTIVE",
    "executionRoleArn": "arn:aws:iam::123456789012:role/svc-orders-prod-TaskExecutionRole-1",
    "networkMode": "awsvpc",
    "cpu": "256",
    "memory": "512",
    "requiresCompatibilities": ["FARGATE"],
    "compatibilities": ["EC2", "FARGATE"],
    "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"}],
    "containerDefinitions": [
        {
            "name": "orders",
            "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/svc-orders:bootstrap",
            "essential": True,
            "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
            "environment": [{"name": "VERSION", "value": "bootstrap"}, {"name": "LOG_LEVEL", "value": "info"}],
        }
    ],
}


def _clients() -> tuple[dict[str, Any], dict[str, Stubber]]:
    clients = {n: boto3.client(n, region_name="us-east-1") for n in ("cloudformation", "ecs", "codedeploy")}
    return clients, {n: Stubber(c) for n, c in clients.items()}


def _stack(outputs: dict[str, str]) -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": STACK,
                "CreationTime": "2026-11-01T00:00:00Z",
                "StackStatus": "UPDATE_COMPLETE",
                "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
            }
        ]
    }


def test_given_a_pushed_image_when_released_then_a_task_definition_and_a_deployment_naming_the_hooks_are_made() -> None:
    clients, stubs = _clients()
    stubs["cloudformation"].add_response("describe_stacks", _stack(OUTPUTS), {"StackName": STACK})
    stubs["ecs"].add_response("describe_task_definition", {"taskDefinition": CURRENT}, {"taskDefinition": STACK})
    registered = {k: v for k, v in copy.deepcopy(CURRENT).items() if k not in release._READ_ONLY}
    registered["containerDefinitions"][0]["image"] = IMAGE
    registered["containerDefinitions"][0]["environment"] = [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "VERSION", "value": "r-2026-48-0123456789ab"},
    ]
    stubs["ecs"].add_response(
        "register_task_definition",
        {"taskDefinition": {**registered, "taskDefinitionArn": f"{FAMILY_ARN}:7", "revision": 7}},
        registered,
    )
    expected_appspec = {
        "version": 0.0,
        "Resources": [
            {
                "TargetService": {
                    "Type": "AWS::ECS::Service",
                    "Properties": {
                        "TaskDefinition": f"{FAMILY_ARN}:7",
                        "LoadBalancerInfo": {"ContainerName": "orders", "ContainerPort": 8080},
                    },
                }
            }
        ],
        "Hooks": [
            {"BeforeAllowTraffic": "CodeDeployHook_release-train_PreTraffic"},
            {"AfterAllowTraffic": "CodeDeployHook_release-train_PostTraffic"},
        ],
    }
    sent: dict[str, Any] = {}

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.update(params)

    clients["codedeploy"].meta.events.register("provide-client-params.codedeploy.CreateDeployment", capture)
    stubs["codedeploy"].add_response("create_deployment", {"deploymentId": "d-ECS0000001"})

    with stubs["cloudformation"], stubs["ecs"], stubs["codedeploy"]:
        deployment = release.release(clients, STACK, IMAGE, "r-2026-48", "0123456789abcdef0123")

    assert deployment == "d-ECS0000001"
    assert (sent["applicationName"], sent["deploymentGroupName"]) == (STACK, f"{STACK}-orders")
    assert sent["revision"]["revisionType"] == "AppSpecContent"
    assert json.loads(sent["revision"]["appSpecContent"]["content"]) == expected_appspec
    assert sent["description"] == "release r-2026-48 commit 0123456789abcdef0123"


def test_given_a_stack_without_the_hook_outputs_when_released_then_it_stops_before_registering_anything() -> None:
    clients, stubs = _clients()
    partial = {k: v for k, v in OUTPUTS.items() if not k.endswith("Hook")}
    stubs["cloudformation"].add_response("describe_stacks", _stack(partial), {"StackName": STACK})

    with stubs["cloudformation"], stubs["ecs"], pytest.raises(release.ReleaseError) as caught:
        release.release(clients, STACK, IMAGE, "r-1", "abc")

    assert str(caught.value) == (
        f"stack {STACK} has no output(s) PostTrafficHook, PreTrafficHook: deploy examples/orders-ecs/template.yaml"
    )
    stubs["ecs"].assert_no_pending_responses()


def test_given_no_stage_when_run_then_it_exits_2_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STAGE", raising=False)

    assert release.main(["--image", IMAGE]) == 2
    assert "STAGE, RELEASE_ID and CODEBUILD_RESOLVED_SOURCE_VERSION are required" in capsys.readouterr().err
