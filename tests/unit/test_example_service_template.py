"""examples/company-service/template.yaml (linted in test_example_templates_lint.py): the checks it publishes are
valid traffic-hook configuration for the functions it deploys, and the hooks it names are the ones the release-train
stack (template.yaml) creates."""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from release_train.domain.checks import CheckSuite, HookPhase, parse_check_suite
from release_train.domain.live import commit_in
from tests.conftest import ROOT
from tests.unit import example_stack

SERVICE = ROOT / "examples" / "company-service"
TEMPLATE = SERVICE / "template.yaml"
TRAIN_TEMPLATE = ROOT / "template.yaml"


def _template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return loaded


def _resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in _template()["Resources"].items() if r["Type"] == kind}


def _published_suites() -> dict[str, CheckSuite]:
    """Each AWS::SSM::Parameter's value, with ${...} replaced by stand-ins, parsed the way the hooks parse it."""
    stand_ins = {"CompanyApi": "abc123", "AWS::Region": "us-east-1", "AWS::URLSuffix": "amazonaws.com", "Stage": "prod"}
    suites = {}
    for name, resource in _resources("AWS::SSM::Parameter").items():
        text = re.sub(r"\$\{([^}]+)\}", lambda m: stand_ins[m.group(1)], resource["Properties"]["Value"]["Fn::Sub"])
        suites[name] = parse_check_suite(text, name)
    return suites


def test_given_the_published_checks_when_parsed_like_the_hooks_do_then_every_function_has_pre_and_post_checks() -> None:
    suites = _published_suites()

    assert set(suites) == {"CreateCompanyChecks", "ReadCompanyChecks", "UpdateCompanyChecks", "DeleteCompanyChecks"}
    assert all(s.checks_for(HookPhase.PRE_TRAFFIC) and s.checks_for(HookPhase.POST_TRAFFIC) for s in suites.values())


def test_given_each_function_when_its_checks_parameter_is_named_then_it_is_where_the_hooks_look() -> None:
    # The hooks read <prefix>/<function name>; the function must also wait for its checks (DependsOn).
    for name, function in _resources("AWS::Serverless::Function").items():
        checks = _template()["Resources"][function["DependsOn"]]
        function_name = function["Properties"]["FunctionName"]["Fn::Sub"]

        assert checks["Properties"]["Name"]["Fn::Sub"] == "${ChecksParameterPrefix}/" + function_name, name


def test_given_each_function_when_deployed_then_it_uses_the_shared_hooks_and_its_version_scoped_alarms() -> None:
    for name, function in _resources("AWS::Serverless::Function").items():
        preference = function["Properties"]["DeploymentPreference"]
        alarms = [a["Ref"] for a in preference["Alarms"]]

        assert preference["Hooks"] == {
            "PreTraffic": {"Fn::ImportValue": {"Fn::Sub": "${TrainStackName}-PreTrafficFunctionName"}},
            "PostTraffic": {"Fn::ImportValue": {"Fn::Sub": "${TrainStackName}-PostTrafficFunctionName"}},
        }
        for alarm in alarms:
            dimensions = {d["Name"] for d in _template()["Resources"][alarm]["Properties"]["Dimensions"]}
            assert dimensions == {"FunctionName", "Resource", "ExecutedVersion"}, (name, alarm)


def test_given_the_example_buildspec_when_read_then_it_tests_before_it_deploys_per_stage() -> None:
    text = Path(SERVICE / "buildspec.yml").read_text()

    assert text.index("pytest tests") < text.index("sam build") < text.index('sam deploy --config-env "$STAGE"')


@pytest.mark.parametrize(("stage", "expected"), [("prod", 0), ("preview", 0), ("qa", 1)])
def test_given_a_stage_when_the_buildspec_checks_it_then_only_one_with_a_config_env_goes_on(
    stage: str, expected: int
) -> None:
    spec = yaml_parse((SERVICE / "buildspec.yml").read_text())
    [guard] = [c for c in spec["phases"]["pre_build"]["commands"] if "tomllib" in c]

    result = subprocess.run(
        ["bash", "-c", guard],
        cwd=SERVICE,
        env={"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "STAGE": stage},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == expected, result.stderr
    if expected:
        assert result.stderr.strip() == "STAGE=qa: samconfig.toml has no [qa.deploy.parameters] parameter_overrides"


@pytest.mark.parametrize("env", ["default", "staging", "prod", "preview"])
def test_given_a_config_env_when_deployed_then_its_per_stage_value_comes_from_its_own_ssm_parameter(env: str) -> None:
    parameters = _template()["Parameters"]
    overrides = _overrides(_samconfig(SERVICE / "samconfig.toml"), env)
    stage = overrides["Stage"]

    assert stage in parameters["Stage"]["AllowedValues"]
    # CloudFormation resolves the value at deploy time: samconfig, the command line and the build log hold a name.
    assert parameters["LogLevel"]["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert overrides["LogLevel"] == f"/company-service/{stage}/log-level"
    assert _template()["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}


def test_given_the_preview_config_env_when_read_then_it_names_no_stack_so_the_workflow_must() -> None:
    preview = _samconfig(SERVICE / "samconfig.toml")["preview"]

    assert "stack_name" not in preview["deploy"]["parameters"]
    assert "global" not in preview  # a shared stack name here would let two PRs deploy over each other


def _deploy_command() -> str:
    """The buildspec's `sam deploy` command, as CodeBuild runs it (a folded YAML scalar is one line)."""
    spec = yaml_parse((SERVICE / "buildspec.yml").read_text())
    commands = [c for c in spec["phases"]["build"]["commands"] if c.startswith("sam deploy")]
    assert len(commands) == 1, commands
    return str(commands[0])


def test_given_the_example_buildspec_when_it_deploys_then_the_release_and_commit_reach_the_stack_and_its_tags() -> None:
    command = _deploy_command()

    # What release-train passes (RELEASE_ID) and what CodeBuild checked out (the resolved source version).
    assert '"ReleaseId=$RELEASE_ID"' in command
    assert '"CommitSha=$COMMIT_SHA"' in command
    assert "CODEBUILD_RESOLVED_SOURCE_VERSION" in (SERVICE / "buildspec.yml").read_text()
    # Command-line overrides replace samconfig.toml's: the config-env's own overrides are passed along.
    assert "$STAGE_PARAMETERS" in command
    assert '"release-train:release-id=$RELEASE_ID"' in command


def test_given_each_function_when_a_version_is_published_then_its_description_names_the_release_and_the_commit() -> (
    None
):
    parameters = _template()["Parameters"]
    for name, function in _resources("AWS::Serverless::Function").items():
        properties = function["Properties"]

        assert properties["VersionDescription"] == {"Fn::Sub": "release ${ReleaseId} commit ${CommitSha}"}, name
        assert properties["AutoPublishCodeSha256"] == {"Ref": "CommitSha"}, name
    # The description a release writes is one release-train reads the commit from (domain/live.py).
    sha = "405844d94a1ab226a96a9708a74107ba43bd23fa"
    assert re.fullmatch(parameters["CommitSha"]["AllowedPattern"], sha)
    assert re.fullmatch(parameters["ReleaseId"]["AllowedPattern"], "2026-W48")
    description = _sub(properties["VersionDescription"], {"ReleaseId": "2026-W48", "CommitSha": sha})
    assert commit_in(description) == sha


def test_given_a_release_and_a_commit_when_transformed_then_each_version_is_named_after_the_commit() -> None:
    template = copy.deepcopy(yaml_parse(TEMPLATE.read_text()))
    template["Globals"]["Function"]["CodeUri"] = "s3://artifacts/code.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    sha = "405844d94a1ab226a96a9708a74107ba43bd23fa"
    cfn = transform(template, {"ReleaseId": "2026-W48", "CommitSha": sha, "Stage": "prod"}, _NoManagedPolicies())
    versions = {k: r for k, r in cfn["Resources"].items() if r["Type"] == "AWS::Lambda::Version"}

    assert len(versions) == 4
    # A new commit is a new version resource (the old one is retained: a rollback points the alias back to it).
    assert all(k.endswith(f"Version{sha[:10]}") and r["DeletionPolicy"] == "Retain" for k, r in versions.items())


# --- the hooks it names are the hooks the train stack creates --------------------------------------------------------


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def _sub(value: Any, variables: dict[str, str]) -> str:
    """A `Fn::Sub` string (or plain string) with every ${name} taken from `variables` (an unknown name fails)."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    assert isinstance(text, str), value
    return re.sub(r"\$\{([^}]+)\}", lambda m: variables[m.group(1)], text)


def _samconfig(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def _overrides(config: dict[str, Any], env: str) -> dict[str, str]:
    text = config.get(env, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
    return dict(re.findall(r'(\w+)="?([^"\s]*)"?', text))


def _example_alias_hooks() -> dict[str, dict[str, Any]]:
    """What SAM makes of the example's DeploymentPreference.Hooks: each alias's CodeDeployLambdaAliasUpdate."""
    template = copy.deepcopy(yaml_parse(TEMPLATE.read_text()))
    template["Globals"]["Function"]["CodeUri"] = "s3://artifacts/code.zip"  # transform offline, as the sandbox does
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    cfn = transform(template, {}, _NoManagedPolicies())
    return {
        logical_id: resource["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
        for logical_id, resource in cfn["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Alias"
    }


def _train_exports(stack_name: str) -> dict[str, str]:
    """Export name -> value of the train stack deployed as `stack_name`, for outputs that Ref a function (Ref of an
    AWS::Serverless::Function is its name, here its FunctionName)."""
    train = cfn_yaml.load(str(TRAIN_TEMPLATE))
    pseudo = {"AWS::StackName": stack_name}
    exports = {}
    for output in train["Outputs"].values():
        if "Export" not in output or "Ref" not in output["Value"]:
            continue
        function = train["Resources"][output["Value"]["Ref"]]
        exports[_sub(output["Export"]["Name"], pseudo)] = _sub(function["Properties"]["FunctionName"], pseudo)
    return exports


@pytest.mark.parametrize("env", ["default", "staging", "prod", "preview"])
def test_given_a_config_env_of_the_example_when_its_hooks_are_resolved_then_they_are_the_functions_the_train_creates(
    env: str,
) -> None:
    example = _template()
    train_stack = _samconfig(ROOT / "samconfig.toml")["prod"]["deploy"]["parameters"]["stack_name"]
    parameters = {name: str(spec.get("Default", "")) for name, spec in example["Parameters"].items()} | _overrides(
        _samconfig(SERVICE / "samconfig.toml"), env
    )
    exports = _train_exports(parameters["TrainStackName"])

    for alias, update in _example_alias_hooks().items():
        hooks = {
            phase: exports.get(_sub(update[key]["Fn::ImportValue"], parameters))
            for phase, key in (("PreTraffic", "BeforeAllowTrafficHook"), ("PostTraffic", "AfterAllowTrafficHook"))
        }

        # The names template.yaml gives PreTrafficFunction / PostTrafficFunction for the train the example rides.
        assert hooks == {
            "PreTraffic": f"CodeDeployHook_{train_stack}_PreTraffic",
            "PostTraffic": f"CodeDeployHook_{train_stack}_PostTraffic",
        }, alias


# --- what a stage keeps when its stack goes, and the secret it reads --------------------------------------------------


def test_given_the_template_when_read_then_language_extensions_runs_before_the_sam_transform() -> None:
    # SAM refuses a DeletionPolicy that is not a string, so LanguageExtensions must resolve it first.
    assert _template()["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]


@pytest.mark.parametrize(
    ("env", "policy"), [("default", "Delete"), ("preview", "Delete"), ("staging", "Retain"), ("prod", "Retain")]
)
def test_given_a_config_env_when_its_stack_is_deleted_or_the_table_replaced_then_only_staging_and_prod_keep_it(
    env: str, policy: str
) -> None:
    table = example_stack.resource_as_deployed("CompanyTable", env)

    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == (policy, policy)


@pytest.mark.parametrize("env", ["default", "staging", "prod", "preview"])
def test_given_a_config_env_when_deployed_then_it_names_its_own_stage_secret_and_never_a_value(env: str) -> None:
    values = example_stack.parameters(env)

    assert values["WebhookSecretName"] == f"company-service/{values['Stage']}/webhook"
    assert re.fullmatch(_template()["Parameters"]["WebhookSecretName"]["AllowedPattern"], values["WebhookSecretName"])


def _roles_statements(parameters: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Each function role's IAM statements after the SAM transform (resources as SAM writes them)."""
    template = copy.deepcopy(yaml_parse(TEMPLATE.read_text()))
    template["Globals"]["Function"]["CodeUri"] = "s3://artifacts/code.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    cfn = transform(template, parameters, _NoManagedPolicies())
    return {
        logical_id: [
            s for policy in resource["Properties"].get("Policies", []) for s in policy["PolicyDocument"]["Statement"]
        ]
        for logical_id, resource in cfn["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role"
    }


def _resolved_sub(node: Any, variables: dict[str, str]) -> str:
    """A (nested) Fn::Sub with every ${name} from `variables` or the Fn::Sub's own map."""
    body = node["Fn::Sub"]
    if isinstance(body, list):
        text, local = body[0], {k: _resolved_sub(v, variables) for k, v in body[1].items()}
        return _sub(text, variables | local)
    return _sub(body, variables)


@pytest.mark.parametrize("env", ["staging", "prod", "preview"])
def test_given_a_stage_when_transformed_then_only_create_may_read_a_secret_and_only_that_stage_secret(env: str) -> None:
    values = example_stack.parameters(env)
    roles = _roles_statements(values)
    arn = "arn:aws:secretsmanager:eu-west-1:111111111111:secret:"

    reading = {
        role: [s for s in statements if any(a.startswith("secretsmanager:") for a in s["Action"])]
        for role, statements in roles.items()
    }
    assert {role for role, found in reading.items() if found} == {"CreateCompanyFunctionRole"}
    [statement] = reading["CreateCompanyFunctionRole"]
    assert statement["Action"] == ["secretsmanager:GetSecretValue"]
    pseudo = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "111111111111"}
    pattern = _resolved_sub(statement["Resource"], pseudo | values)
    # IAM's "?" is one character: the secret's ARN (name, "-", 6 random characters) and nothing else.
    assert fnmatch.fnmatchcase(f"{arn}company-service/{values['Stage']}/webhook-AbC123", pattern)
    for other in (
        f"{arn}company-service/{values['Stage']}/webhook-old-AbC123",
        f"{arn}company-service/{values['Stage']}/webhook2-AbC123",
        f"{arn}company-service/qa/webhook-AbC123",
        f"{arn}company-service/{values['Stage']}/webhook-AbC12",
    ):
        assert not fnmatch.fnmatchcase(other, pattern), other


def test_given_the_functions_when_read_then_only_create_gets_the_secret_name_and_nothing_resolves_a_value() -> None:
    functions = _resources("AWS::Serverless::Function")

    assert functions["CreateCompanyFunction"]["Properties"]["Environment"]["Variables"] == {
        "WEBHOOK_SECRET_NAME": {"Ref": "WebhookSecretName"}
    }
    assert all("Environment" not in f["Properties"] for name, f in functions.items() if name != "CreateCompanyFunction")
    assert "WEBHOOK_SECRET_NAME" not in str(_template()["Globals"])
    # A dynamic reference would put the value into the function's configuration (lambda:GetFunctionConfiguration).
    assert "{{resolve:" not in json.dumps(_template())  # comments aside
