"""The example service's template as one of its config-envs deploys it, for tests: the template parameters each
samconfig.toml config-env gives, and the intrinsic functions `AWS::LanguageExtensions` resolves in a resource's
DeletionPolicy/UpdateReplacePolicy (Fn::If over the template's Conditions: Fn::Equals, Fn::Or, Fn::And, Fn::Not,
Ref, Condition). An intrinsic outside that set fails the test rather than be guessed.
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/function-refs-in-policy-attributes.html"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from cfnlint.decode import cfn_yaml

from tests.conftest import ROOT

SERVICE = ROOT / "examples" / "company-service"
TEMPLATE = SERVICE / "template.yaml"


def template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return loaded


def parameters(env: str) -> dict[str, str]:
    """The template's parameter values under a config-env: its defaults, then the config-env's overrides."""
    config = tomllib.loads((SERVICE / "samconfig.toml").read_text())
    text = config[env]["deploy"]["parameters"]["parameter_overrides"]
    defaults = {name: str(spec.get("Default", "")) for name, spec in template()["Parameters"].items()}
    return defaults | dict(re.findall(r'(\w+)="?([^"\s]*)"?', text))


def resolve(node: Any, values: dict[str, str], conditions: dict[str, Any]) -> Any:
    if isinstance(node, dict) and len(node) == 1:
        [(function, argument)] = node.items()
        if function == "Ref":
            return values[argument]
        if function == "Condition":
            return resolve(conditions[argument], values, conditions)
        if function == "Fn::If":
            name, when_true, when_false = argument
            return resolve(
                when_true if resolve(conditions[name], values, conditions) else when_false, values, conditions
            )
        if function == "Fn::Equals":
            left, right = (resolve(a, values, conditions) for a in argument)
            return left == right
        if function == "Fn::Or":
            return any(resolve(a, values, conditions) for a in argument)
        if function == "Fn::And":
            return all(resolve(a, values, conditions) for a in argument)
        if function == "Fn::Not":
            return not resolve(argument[0], values, conditions)
        raise AssertionError(f"{function}: not resolved by this stand-in for AWS::LanguageExtensions")
    return node


def resource_as_deployed(logical_id: str, env: str) -> dict[str, Any]:
    """The resource with its DeletionPolicy and UpdateReplacePolicy resolved for the config-env's stage."""
    loaded = template()
    resource = dict(loaded["Resources"][logical_id])
    values, conditions = parameters(env), loaded.get("Conditions", {})
    for attribute in ("DeletionPolicy", "UpdateReplacePolicy"):
        if attribute in resource:
            resource[attribute] = resolve(resource[attribute], values, conditions)
    return resource
