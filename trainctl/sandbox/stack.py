"""Build the orchestrator stack inside moto from `template.yaml`, so the sandbox runs what would be deployed.

SAM -> CloudFormation with aws-sam-translator (offline), then moto's CloudFormation creates the resources. Function
code never leaves the repository: each function's `CodeUri` folder is remembered and its handler is imported
in-process (see `lambda_runtime`). The state machine is created from the ASL file after substituting
`DefinitionSubstitutions` with the stack's physical ARNs — exactly what CloudFormation does on AWS.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from trainctl.sandbox.lambda_runtime import FunctionSpec, registry

ARTIFACTS = "release-train-sandbox-artifacts"
# Types moto's CloudFormation cannot create; the sandbox reads what it needs of them from the template instead.
_UNSUPPORTED = {
    "AWS::Scheduler::Schedule",
    "AWS::CloudWatch::Alarm",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::Lambda::Permission",
    "AWS::SNS::Subscription",
    "AWS::Lambda::EventInvokeConfig",
}
_PLACEHOLDER_ASL = {"StartAt": "Placeholder", "States": {"Placeholder": {"Type": "Pass", "End": True}}}


@dataclass
class Stack:
    name: str
    root: Path
    resources: dict[str, tuple[str, str]]  # logical id -> (type, physical id)
    state_machine_arn: str
    schedule_input: dict[str, Any]
    schedule_expression: str
    cleanup_rule: dict[str, Any]  # the EventBridge pattern that triggers the clean-up, and its target function
    outputs: dict[str, str] = field(default_factory=dict)

    def physical(self, logical_id: str) -> str:
        return self.resources[logical_id][1]


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def _zip_placeholder() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README", "code runs in-process from the repository; see trainctl/sandbox/lambda_runtime.py")
    return buffer.getvalue()


def create_stack(root: Path, stack_name: str = "release-train", parameters: dict[str, str] | None = None) -> Stack:
    template = yaml_parse((root / "template.yaml").read_text())
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=ARTIFACTS)
    s3.put_object(Bucket=ARTIFACTS, Key="code.zip", Body=_zip_placeholder())

    code_dirs: dict[str, tuple[Path, str]] = {}
    asl_path: Path | None = None
    substitutions: dict[str, Any] = {}
    sm_logical = ""
    for logical_id, resource in template["Resources"].items():
        props = resource.setdefault("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            code_dirs[logical_id] = (root / props["CodeUri"], props["Handler"])
            props["CodeUri"] = f"s3://{ARTIFACTS}/code.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://{ARTIFACTS}/code.zip"
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            sm_logical = logical_id
            asl_path = root / props.pop("DefinitionUri")
            substitutions = props.pop("DefinitionSubstitutions", {})
            props["Definition"] = _PLACEHOLDER_ASL
            props.pop("Logging", None)  # moto has no vended-logs delivery
    if asl_path is None:
        raise ValueError("template.yaml has no AWS::Serverless::StateMachine")

    cfn = transform(template, parameters or {}, _NoManagedPolicies())
    raw_cfn = json.loads(json.dumps(cfn))
    for logical_id in [k for k, v in cfn["Resources"].items() if v["Type"] in _UNSUPPORTED]:
        del cfn["Resources"][logical_id]
    cfn.pop("Conditions", None) if not cfn.get("Conditions") else None

    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(cfn),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    described = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if described["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(f"sandbox stack {described['StackStatus']}: {described.get('StackStatusReason')}")
    resources = {
        r["LogicalResourceId"]: (r["ResourceType"], r["PhysicalResourceId"])
        for r in cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    }

    lam = boto3.client("lambda")
    arns: dict[str, str] = {}
    for logical_id, (code_dir, handler) in code_dirs.items():
        name = resources[logical_id][1]
        config = lam.get_function_configuration(FunctionName=name)
        registry.register(
            FunctionSpec(
                name=name,
                logical_id=logical_id,
                code_dir=code_dir,
                handler=handler,
                environment=config.get("Environment", {}).get("Variables", {}),
                timeout_s=int(config.get("Timeout", 3)),
                memory_mb=int(config.get("MemorySize", 128)),
                arn=config["FunctionArn"],
            )
        )
        arns[logical_id] = config["FunctionArn"]

    # moto's CloudFormation puts state machines where its interpreter does not look: create it through the API,
    # with the name and role CloudFormation gave it.
    definition = _substitute(asl_path.read_text(), substitutions, resources, arns)
    role_logical = f"{sm_logical}Role"
    role_arn = boto3.client("iam").get_role(RoleName=resources[role_logical][1])["Role"]["Arn"]
    sm_name = resources[sm_logical][1].rsplit(":", 1)[-1]
    sm_arn = boto3.client("stepfunctions").create_state_machine(
        name=sm_name, definition=definition, roleArn=role_arn, type="STANDARD"
    )["stateMachineArn"]

    schedule = next(r for r in raw_cfn["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule")
    rule = next(
        (lid, r)
        for lid, r in raw_cfn["Resources"].items()
        if r["Type"] == "AWS::Events::Rule" and "aws.states" in json.dumps(r["Properties"].get("EventPattern", {}))
    )
    target_ref = rule[1]["Properties"]["Targets"][0]["Arn"]
    target_logical = target_ref["Fn::GetAtt"][0] if isinstance(target_ref, dict) else str(target_ref)
    return Stack(
        name=stack_name,
        root=root,
        resources=resources,
        state_machine_arn=sm_arn,
        schedule_input=json.loads(schedule["Properties"]["Target"]["Input"]),
        schedule_expression=_resolve_param(schedule["Properties"]["ScheduleExpression"], template, parameters),
        cleanup_rule={"pattern": rule[1]["Properties"]["EventPattern"], "function": resources[target_logical][1]},
    )


def _resolve_param(value: Any, template: dict[str, Any], parameters: dict[str, str] | None) -> str:
    if isinstance(value, dict) and "Ref" in value:
        name = value["Ref"]
        return (parameters or {}).get(name) or str(template["Parameters"][name].get("Default", ""))
    return str(value)


def _substitute(
    text: str, substitutions: dict[str, Any], resources: dict[str, tuple[str, str]], arns: dict[str, str]
) -> str:
    """`${Name}` -> value, as CloudFormation does for DefinitionSubstitutions (Ref and GetAtt .Arn only here)."""
    values: dict[str, str] = {}
    for key, value in substitutions.items():
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical, attribute = value["Fn::GetAtt"]
            values[key] = arns[logical] if attribute == "Arn" and logical in arns else resources[logical][1]
        elif isinstance(value, dict) and "Ref" in value:
            values[key] = resources[value["Ref"]][1]
        else:
            values[key] = str(value)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"ASL placeholder ${{{name}}} has no DefinitionSubstitutions entry in template.yaml")
        return values[name]

    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", replace, text)
