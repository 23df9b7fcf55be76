"""template.yaml as CloudFormation: SAM-transformed offline (like trainctl/sandbox/stack.py), intrinsics resolved with
stand-in values, so IAM statements can be compared with ARNs."""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from tests.conftest import ROOT

TEMPLATE = ROOT / "template.yaml"
ASL = ROOT / "statemachines" / "release_train.asl.json"
PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")
PARTITION, REGION, ACCOUNT, STACK = "aws", "us-east-1", "123456789012", "rt"


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


@cache
def sam_template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml_parse(TEMPLATE.read_text())
    return loaded


@cache
def _transformed() -> str:
    template = copy.deepcopy(sam_template())
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://artifacts/code.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = "s3://artifacts/layer.zip"
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            props["Definition"] = json.loads((ROOT / props.pop("DefinitionUri")).read_text())
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)  # samtranslator asks boto for the region
    return json.dumps(transform(template, {}, _NoManagedPolicies()))


def cfn_template() -> dict[str, Any]:
    """The CloudFormation the SAM transform produces (a fresh copy each call)."""
    loaded: dict[str, Any] = json.loads(_transformed())
    return loaded


@dataclass(frozen=True)
class Statement:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]  # resolved ARNs, possibly with wildcards

    def grants(self, action: str, arn: str) -> bool:
        return action in self.actions and any(fnmatch.fnmatchcase(arn, pattern) for pattern in self.resources)


_NO_VALUE = object()  # Ref AWS::NoValue: the list item or property is left out


class Resolver:
    """Evaluates the intrinsics IAM policies use, with stand-ins for the account and physical names.

    Parameters take their defaults unless `parameters` overrides them (as `sam deploy --parameter-overrides` does);
    Conditions are evaluated from them, so `Fn::If` picks its branch and `AWS::NoValue` drops list items.
    """

    def __init__(self, cfn: dict[str, Any], parameters: dict[str, str] | None = None) -> None:
        self._cfn = cfn
        self._params = {k: str(v.get("Default", "")) for k, v in cfn.get("Parameters", {}).items()}
        unknown = set(parameters or {}) - set(self._params)
        assert not unknown, f"no such template parameters: {unknown}"
        self._params.update(parameters or {})
        self._pseudo = {
            "AWS::Partition": PARTITION,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": STACK,
            "AWS::URLSuffix": "amazonaws.com",
        }

    def name(self, logical_id: str) -> str:
        """The physical name: an explicit name property, else `<stack>-<logical id>` (as CloudFormation does)."""
        resource = self._cfn["Resources"][logical_id]
        props = resource.get("Properties", {})
        for key in ("FunctionName", "StateMachineName", "Name", "TableName", "BucketName", "TopicName"):
            if key in props:
                return str(self.resolve(props[key]))
        return f"{STACK}-{logical_id}"

    def arn(self, logical_id: str) -> str:
        kind = self._cfn["Resources"][logical_id]["Type"]
        name = self.name(logical_id)
        prefix = f"arn:{PARTITION}"
        return {
            "AWS::Lambda::Function": f"{prefix}:lambda:{REGION}:{ACCOUNT}:function:{name}",
            "AWS::DynamoDB::Table": f"{prefix}:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
            "AWS::SNS::Topic": f"{prefix}:sns:{REGION}:{ACCOUNT}:{name}",
            "AWS::S3::Bucket": f"{prefix}:s3:::{name}",
            "AWS::StepFunctions::StateMachine": f"{prefix}:states:{REGION}:{ACCOUNT}:stateMachine:{name}",
            "AWS::Logs::LogGroup": f"{prefix}:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
            "AWS::IAM::Role": f"{prefix}:iam::{ACCOUNT}:role/{name}",
            "AWS::SQS::Queue": f"{prefix}:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::KMS::Key": f"{prefix}:kms:{REGION}:{ACCOUNT}:key/{name}",
        }[kind]

    def ref(self, target: str) -> str:
        if target in self._pseudo:
            return self._pseudo[target]
        if target in self._params:
            return self._params[target]
        resource = self._cfn["Resources"][target]
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind in {"AWS::SNS::Topic", "AWS::StepFunctions::StateMachine"}:
            return self.arn(target)  # Ref of these is the ARN
        # AutoPublishAlias: a version's Ref is its qualified ARN (version 1 stands in), an alias's too (its name).
        if kind == "AWS::Lambda::Version":
            return f"{self.arn(props['FunctionName']['Ref'])}:1"
        if kind == "AWS::Lambda::Alias":
            return f"{self.arn(props['FunctionName']['Ref'])}:{props['Name']}"
        if kind == "AWS::StepFunctions::StateMachineVersion":
            return f"{self.arn(props['StateMachineArn']['Ref'])}:1"
        if kind == "AWS::StepFunctions::StateMachineAlias":
            version = self.ref(props["DeploymentPreference"]["StateMachineVersionArn"]["Ref"])
            return f"{version.rsplit(':', 1)[0]}:{props['Name']}"
        return self.name(target)

    def get_att(self, target: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arn(target)
        if attribute in {"TopicName", "Name", "QueueName"}:
            return self.name(target)
        raise KeyError(f"{target}.{attribute}")

    def condition(self, name: str) -> bool:
        return self._truth(self._cfn["Conditions"][name])

    def _truth(self, value: Any) -> bool:
        ((key, arg),) = value.items()
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            left, right = (self.resolve(a) for a in arg)
            return bool(str(left) == str(right))
        if key == "Fn::Not":
            return not self._truth(arg[0])
        if key == "Fn::And":
            return all(self._truth(a) for a in arg)
        if key == "Fn::Or":
            return any(self._truth(a) for a in arg)
        raise KeyError(f"condition function {key}")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not _NO_VALUE}
        ((key, arg),) = value.items()
        if key == "Ref" and arg == "AWS::NoValue":
            return _NO_VALUE
        if key == "Ref":
            return self.ref(arg)
        if key == "Fn::If":
            name, when_true, when_false = arg
            return self.resolve(when_true if self.condition(name) else when_false)
        if key == "Fn::GetAtt":
            target, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self.get_att(target, attribute)
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
            return self.sub(text, variables)
        if key == "Fn::Join":
            return arg[0].join(str(self.resolve(v)) for v in arg[1])
        return {k: self.resolve(v) for k, v in value.items()}

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return PLACEHOLDER.sub(one, text)


def role_statements(
    cfn: dict[str, Any], role_logical_id: str, parameters: dict[str, str] | None = None
) -> list[Statement]:
    resolver = Resolver(cfn, parameters)
    statements = []
    for policy in cfn["Resources"][role_logical_id]["Properties"].get("Policies", []):
        for raw in policy["PolicyDocument"]["Statement"]:
            if raw.get("Effect") != "Allow":
                continue
            actions = raw["Action"] if isinstance(raw["Action"], list) else [raw["Action"]]
            resources = resolver.resolve(raw["Resource"])
            resources = resources if isinstance(resources, list) else [resources]
            statements.append(Statement(str(raw.get("Sid", "")), tuple(actions), tuple(str(r) for r in resources)))
    return statements


def key_policy_statements(
    cfn: dict[str, Any], role_logical_id: str, parameters: dict[str, str] | None = None
) -> list[Statement]:
    """What KMS key policies of the stack allow this role by name (a key policy grants without any IAM policy: "Key
    policies in AWS KMS"); in a key policy `Resource: "*"` is the key itself."""
    resolver = Resolver(cfn, parameters)
    role_arn = resolver.arn(role_logical_id)
    statements = []
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::KMS::Key":
            continue
        for raw in resource["Properties"]["KeyPolicy"]["Statement"]:
            principals = resolver.resolve(raw.get("Principal", {}).get("AWS", []))
            principals = principals if isinstance(principals, list) else [principals]
            if raw.get("Effect") == "Allow" and role_arn in principals:
                actions = raw["Action"] if isinstance(raw["Action"], list) else [raw["Action"]]
                statements.append(Statement(str(raw.get("Sid", "")), tuple(actions), (resolver.arn(logical_id),)))
    return statements


def roles(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == "AWS::IAM::Role"}


def repo_path(relative: str) -> Path:
    return ROOT / relative
