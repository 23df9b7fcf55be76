"""accounts/target-account.yaml (docs/accounts.md): valid SAM, its roles' grants derived from the calls the train and
the hooks make (as tests/unit/template/test_iam.py does for template.yaml), trust only the tools account's named roles
with the ExternalId; and the tools stack's sts:AssumeRole grant on those roles."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from tests.conftest import ROOT
from tests.unit.template.cfn import REGION, STACK, Resolver, Statement, cfn_template, role_statements
from tests.unit.template.test_iam import (
    _HOOK_CALLS,
    _LIVE_AND_ROLLBACK,
    ADAPTER_CALLS,
    ALARM,
    FLEET_APPLICATION_ARN,
    FLEET_DEPLOYMENT_GROUP,
    HOOKS_NO_RESOURCE_LEVEL,
    _resource_types,
)

TARGET = ROOT / "accounts" / "target-account.yaml"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
CFN_LINT = ROOT / ".venv" / "bin" / "cfn-lint"
TOOLS = "111111111111"
BUILD_ROLE = f"arn:aws:iam::{TOOLS}:role/rt-codebuild"
FUNCTION_ROLES = f"arn:aws:iam::{TOOLS}:role/rt-LoadWaveFunctionRole-1,arn:aws:iam::{TOOLS}:role/rt-EvaluateGate-2"
PARAMETERS = {
    "ToolsAccountId": TOOLS,
    "ExternalId": "release-train-rt",
    "ToolsBuildRoleArns": BUILD_ROLE,
    "ToolsFunctionRoleArns": FUNCTION_ROLES,
    "DeployPolicyArns": "arn:aws:iam::aws:policy/AWSCloudFormationFullAccess",
}

# The calls the train makes in a stage's account through the train role: the alarm, alias and CodeDeploy adapters.
TRAIN_CALLS = [
    ("alarms", "describe_alarms", ALARM),
    ("alarms", "describe_alarm_history", ALARM),
    ("alarms", "list_tags_for_resource", ALARM),
    *_LIVE_AND_ROLLBACK,
    ("deployments", "list_deployments", FLEET_DEPLOYMENT_GROUP),
    ("deployments", "get_deployment", FLEET_DEPLOYMENT_GROUP),
    ("deployments", "get_application_revision", FLEET_APPLICATION_ARN),
    ("deployments", "stop_deployment", "*"),  # no resource type: only "*" matches
]
ON_ALL_RESOURCES = {
    "TrainRole": {"codedeploy:StopDeployment"},
    "PreTrafficFunctionRole": HOOKS_NO_RESOURCE_LEVEL,
    "PostTrafficFunctionRole": HOOKS_NO_RESOURCE_LEVEL,
}


@cache
def _transformed() -> str:
    template = yaml_parse(TARGET.read_text())
    template = copy.deepcopy(template)
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://artifacts/code.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = "s3://artifacts/layer.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    return json.dumps(transform(template, {}, NoManagedPolicies()))


def _cfn() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(_transformed())
    return loaded


def _statements(role: str, parameters: dict[str, str] | None = None) -> list[Statement]:
    return role_statements(_cfn(), role, {**PARAMETERS, **(parameters or {})})


def _actions(statements: list[Statement]) -> set[str]:
    return {a for s in statements for a in s.actions}


def _calls(calls: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return [(action, arn) for module, op, arn in calls for action in ADAPTER_CALLS[module][op].split("+")]


@pytest.mark.parametrize(("action", "arn"), _calls(TRAIN_CALLS))
def test_given_a_call_the_train_makes_in_a_stage_account_when_the_train_role_is_checked_then_it_is_granted(
    action: str, arn: str
) -> None:
    assert any(s.grants(action, arn) for s in _statements("TrainRole")), f"{action} on {arn}"


def test_given_the_train_role_when_its_actions_are_listed_then_they_are_exactly_the_train_s_cross_account_calls() -> (
    None
):
    assert _actions(_statements("TrainRole")) == {action for action, _ in _calls(TRAIN_CALLS)}


@pytest.mark.parametrize("role", ["PreTrafficFunctionRole", "PostTrafficFunctionRole"])
def test_given_the_target_account_hooks_when_their_roles_are_read_then_they_are_the_tools_stack_hooks_grants(
    role: str,
) -> None:
    """Same scoping as template.yaml's hooks (ADR 0005), with the default and with the ECS console pattern."""
    for extra in ({}, {"HookExtraApplicationPattern": "AppECS-*"}):
        ours = {(s.sid, s.actions, s.resources) for s in _statements(role, extra)}
        tools = {(s.sid, s.actions, s.resources) for s in role_statements(cfn_template(), role, extra)}
        assert ours == tools
    for action, arn in _calls(_HOOK_CALLS):
        assert any(s.grants(action, arn) for s in _statements(role)), f"{role}: {action} on {arn}"


def test_given_the_hooks_when_named_then_codedeploy_s_managed_role_may_invoke_them_under_the_tools_stack_names() -> (
    None
):
    resolver = Resolver(_cfn(), PARAMETERS)
    tools = Resolver(cfn_template())

    for hook in ("PreTrafficFunction", "PostTrafficFunction"):
        assert resolver.name(hook) == tools.name(hook) == f"CodeDeployHook_{STACK}_{hook.removesuffix('Function')}"
    exports = {k: v["Export"] for k, v in _cfn()["Outputs"].items() if "Export" in v}
    assert exports == {k: v["Export"] for k, v in cfn_template()["Outputs"].items() if k in exports}
    assert len(exports) == 4


def _allow_statements() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical_id, resource in _cfn()["Resources"].items():
        for policy in resource.get("Properties", {}).get("Policies", []):
            found += [(logical_id, st) for st in policy["PolicyDocument"]["Statement"] if st.get("Effect") == "Allow"]
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_given_every_allow_statement_when_read_then_no_wildcard_action_and_star_only_where_aws_has_no_resource() -> (
    None
):
    types = _resource_types()
    problems = []
    for logical_id, statement in _allow_statements():
        on_all = "*" in _as_list(statement["Resource"])
        for action in _as_list(statement["Action"]):
            if action == "*" or action.endswith(":*"):
                problems.append((logical_id, action, "wildcard action"))
            if on_all and (types[action.lower()] or action not in ON_ALL_RESOURCES.get(logical_id, set())):
                problems.append((logical_id, action, "on all resources"))

    assert problems == []
    assert {lid for lid, _ in _allow_statements()} == {"TrainRole", "PreTrafficFunctionRole", "PostTrafficFunctionRole"}


def _trust(role: str) -> list[dict[str, Any]]:
    resolved = Resolver(_cfn(), PARAMETERS).resolve(_cfn()["Resources"][role]["Properties"]["AssumeRolePolicyDocument"])
    statements: list[dict[str, Any]] = resolved["Statement"]
    return statements


@pytest.mark.parametrize(
    ("role", "principals"), [("DeployRole", [BUILD_ROLE]), ("TrainRole", FUNCTION_ROLES.split(","))]
)
def test_given_a_role_the_tools_account_assumes_when_its_trust_is_read_then_only_named_roles_with_the_external_id(
    role: str, principals: list[str]
) -> None:
    (statement,) = _trust(role)
    condition = statement["Condition"]

    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{TOOLS}:root"}
    assert statement["Action"] == "sts:AssumeRole"
    # CloudFormation passes a CommaDelimitedList parameter as a list; the stand-in resolver keeps the raw string.
    assert str(condition["ArnEquals"]["aws:PrincipalArn"]).split(",") == principals
    assert condition["StringEquals"] == {"sts:ExternalId": "release-train-rt"}
    assert set(condition) == {"ArnEquals", "StringEquals"}, "no aws:SourceArn: absent in role-to-role AssumeRole"


# --- the tools stack's side: template.yaml -------------------------------------------------------------------------

READERS = ["LoadWaveFunction", "RecordWaveFunction", "EvaluateGateFunction", "RecordFailureFunction"]
READERS += ["CleanupExecutionFunction"]


def _assume_grants(function: str, parameters: dict[str, str]) -> list[Any]:
    cfn = cfn_template()
    resolver = Resolver(cfn, parameters)
    found = []
    for policy in cfn["Resources"][f"{function}Role"]["Properties"]["Policies"]:
        for raw in policy["PolicyDocument"]["Statement"]:
            statement = resolver.resolve(raw)
            if isinstance(statement, dict) and statement.get("Action") == "sts:AssumeRole":
                found.append(statement)
    return found


@pytest.mark.parametrize("function", READERS)
def test_given_no_allowed_target_accounts_when_a_reader_role_is_read_then_it_may_assume_no_role(function: str) -> None:
    assert _assume_grants(function, {}) == []


@pytest.mark.parametrize("function", READERS)
def test_given_allowed_target_accounts_when_a_reader_role_is_read_then_it_may_assume_the_train_role_there_only(
    function: str,
) -> None:
    accounts = "222222222222,333333333333"
    (grant,) = _assume_grants(function, {"AllowedTargetAccounts": accounts})

    assert grant["Resource"] == "arn:aws:iam::*:role/release-train-target"
    # The account wildcard is bounded by the owning account of the role (the resolver leaves Fn::Split unevaluated).
    assert grant["Condition"] == {"StringEquals": {"aws:ResourceAccount": {"Fn::Split": [",", accounts]}}}


def test_given_the_template_parameters_then_the_train_role_name_and_account_list_match_the_target_template() -> None:
    tools = cfn_template()["Parameters"]
    target = _cfn()["Parameters"]

    assert tools["TargetAccountRoleName"]["Default"] == target["TrainRoleName"]["Default"]
    assert tools["TargetAccountRoleName"]["AllowedPattern"] == target["TrainRoleName"]["AllowedPattern"]


# --- the tools AWS users validate templates with -------------------------------------------------------------------


def _run(command: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_given_the_target_template_when_cfn_lint_runs_then_it_reports_nothing() -> None:
    result = _run([str(CFN_LINT), str(TARGET)])

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.sam
@pytest.mark.skipif(not SAM.exists(), reason=f"aws-sam-cli not installed at {SAM}")
def test_given_the_target_template_when_sam_validates_with_lint_then_it_passes() -> None:
    result = _run([str(SAM), "validate", "--lint", "--region", "us-east-1", "--template", str(TARGET)])

    assert result.returncode == 0, result.stdout + result.stderr
