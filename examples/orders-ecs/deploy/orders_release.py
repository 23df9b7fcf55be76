"""Deploy one image of orders-ecs to one stage: register a task definition, start a CodeDeploy blue/green
deployment whose AppSpec names release-train's shared hooks, wait for it. Run by buildspec.yml after the image push.

Everything it needs comes from the service stack's outputs (svc-orders-<STAGE>), the hooks' names included (the
stack imports them from the train stack's exports). The new task definition is the family's latest revision with the
new image: CPU, memory and roles stay defined by the stack. Usage: python deploy/orders_release.py --image <uri:tag>
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

# Fields of DescribeTaskDefinition's taskDefinition that RegisterTaskDefinition does not take (botocore ecs model:
# taskDefinitionArn, revision, status, ... are read-only).
_READ_ONLY = {
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "deleteRequestedAt",
}


class ReleaseError(Exception):
    """A precondition of the release is not met: one line, naming what to fix."""


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    wanted = {"TaskFamily", "ContainerName", "ContainerPort", "ApplicationName", "DeploymentGroupName"}
    wanted |= {"PreTrafficHook", "PostTrafficHook"}
    missing = sorted(wanted - outputs.keys())
    if missing:
        raise ReleaseError(
            f"stack {stack} has no output(s) {', '.join(missing)}: deploy examples/orders-ecs/template.yaml"
        )
    return outputs


def register_task_definition(ecs: Any, family: str, container: str, image: str, version: str) -> str:
    """The family's latest revision with `image` (and VERSION) in `container`; returns the new revision's ARN."""
    current = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    request = {k: v for k, v in current.items() if k not in _READ_ONLY}
    names = [c["name"] for c in request["containerDefinitions"]]
    if container not in names:
        raise ReleaseError(f"task definition {family} has no container {container!r} (it has {names})")
    for definition in request["containerDefinitions"]:
        if definition["name"] == container:
            definition["image"] = image
            env = [e for e in definition.get("environment", []) if e["name"] != "VERSION"]
            definition["environment"] = [*env, {"name": "VERSION", "value": version}]
    arn: str = ecs.register_task_definition(**request)["taskDefinition"]["taskDefinitionArn"]
    return arn


def appspec(task_definition_arn: str, container: str, port: int, pre_hook: str, post_hook: str) -> str:
    """The ECS AppSpec (CodeDeploy user guide, "AppSpec 'resources' section for Amazon ECS deployments" and "'hooks'
    section"): BeforeAllowTraffic runs when the test listener already reaches the replacement task set,
    AfterAllowTraffic when production traffic does."""
    spec = {
        "version": 0.0,
        "Resources": [
            {
                "TargetService": {
                    "Type": "AWS::ECS::Service",
                    "Properties": {
                        "TaskDefinition": task_definition_arn,
                        "LoadBalancerInfo": {"ContainerName": container, "ContainerPort": port},
                    },
                }
            }
        ],
        "Hooks": [{"BeforeAllowTraffic": pre_hook}, {"AfterAllowTraffic": post_hook}],
    }
    return json.dumps(spec, separators=(",", ":"))


def create_deployment(codedeploy: Any, outputs: dict[str, str], content: str, description: str) -> str:
    answer = codedeploy.create_deployment(
        applicationName=outputs["ApplicationName"],
        deploymentGroupName=outputs["DeploymentGroupName"],
        revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": content}},
        description=description[:1000],
    )
    deployment_id: str = answer["deploymentId"]
    return deployment_id


def release(clients: dict[str, Any], stack: str, image: str, release_id: str, commit: str) -> str:
    outputs = stack_outputs(clients["cloudformation"], stack)
    container = outputs["ContainerName"]
    arn = register_task_definition(
        clients["ecs"], outputs["TaskFamily"], container, image, f"{release_id}-{commit[:12]}"
    )
    content = appspec(
        arn, container, int(outputs["ContainerPort"]), outputs["PreTrafficHook"], outputs["PostTrafficHook"]
    )
    return create_deployment(clients["codedeploy"], outputs, content, f"release {release_id} commit {commit}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="the pushed image, <repository uri>:<tag>")
    parser.add_argument("--no-wait", action="store_true", help="return once the deployment is created")
    args = parser.parse_args(argv)
    stage, release_id = os.environ.get("STAGE", ""), os.environ.get("RELEASE_ID", "")
    commit = os.environ.get("CODEBUILD_RESOLVED_SOURCE_VERSION", "")
    if not (stage and release_id and commit):
        print("STAGE, RELEASE_ID and CODEBUILD_RESOLVED_SOURCE_VERSION are required", file=sys.stderr)
        return 2
    import boto3

    clients: dict[str, Any] = {name: boto3.client(name) for name in ("cloudformation", "ecs", "codedeploy")}
    try:
        deployment_id = release(clients, f"svc-orders-{stage}", args.image, release_id, commit)
    except ReleaseError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"deployment {deployment_id} started")
    if not args.no_wait:
        # 15 s polls, 120 of them: a canary of 10 % for 5 minutes plus both hooks fits well inside 30 minutes.
        clients["codedeploy"].get_waiter("deployment_successful").wait(deploymentId=deployment_id)
        print(f"deployment {deployment_id} succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
