"""`trainctl fleet projects`: the CloudFormation template of every CodeBuild project the train starts.

The template is checked by the tools AWS users check theirs with (cfn-lint, `sam validate --lint`), its names against
the fleet model the train resolves them with (LoadWave starts `Fleet.project_for`, RunTests the stage's test_project),
and in the sandbox: the projects it declares are created in the CodeBuild emulator and the train's own Build state
starts them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import lint
from click.testing import CliRunner

from release_train.domain.fleet import parse_fleet
from tests.conftest import ROOT
from tests.unit.large_fleet import github_fleet
from trainctl.cli import main
from trainctl.projects import logical_id, register_projects

FLEET = ROOT / "fleet.yaml"
TESTS_SOURCE = ("--tests-codecommit", "acme-e2e")
ASL = ROOT / "statemachines"
SAM = ROOT / ".venv-sam" / "bin" / "sam"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["fleet", "projects", *args])
    return result.exit_code, result.stdout, result.stderr


def _generate(fleet_text: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """The template of a fleet file with this text, generated as the example's is (test projects from acme-e2e)."""
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_text)
    code, stdout, stderr = _run(str(path), *TESTS_SOURCE)
    assert (code, stderr) == (0, ""), stderr
    return stdout, yaml.safe_load(stdout)


def _of_type(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in doc["Resources"].items() if r["Type"] == kind}


def _projects(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Project name -> its Properties."""
    return {r["Properties"]["Name"]: r["Properties"] for r in _of_type(doc, "AWS::CodeBuild::Project").values()}


def _statements(doc: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """Every statement of the managed policies attached to the role."""
    arns = doc["Resources"][role_id]["Properties"]["ManagedPolicyArns"]
    return [s for ref in arns for s in doc["Resources"][ref["Ref"]]["Properties"]["PolicyDocument"]["Statement"]]


def _example_dict() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(FLEET.read_text())
    return raw


@pytest.fixture(scope="module")
def example() -> tuple[str, dict[str, Any]]:
    code, stdout, stderr = _run(str(FLEET), *TESTS_SOURCE)
    assert (code, stderr) == (0, ""), stderr
    return stdout, yaml.safe_load(stdout)


# --- the tools a platform team checks templates with -----------------------------------------------------------


def test_given_the_example_fleet_then_its_template_passes_cfn_lint(example: tuple[str, dict[str, Any]]) -> None:
    text, _ = example
    assert [str(m) for m in lint(text, regions=["us-east-1"])] == []


def test_cfn_lint_checks_the_codebuild_property_names_against_its_resource_spec(
    example: tuple[str, dict[str, Any]],
) -> None:
    # The check above could pass by checking nothing: a misspelt property must fail it.
    text, _ = example
    broken = text.replace("QueuedTimeoutInMinutes:\n        Ref:", "QueuedTimeout:\n        Ref:", 1)
    assert broken != text
    assert any("QueuedTimeout" in str(m) for m in lint(broken, regions=["us-east-1"]))


@pytest.mark.slow  # 8-14 s measured: an external tool, near the 20 s bound on shared cores
@pytest.mark.sam
@pytest.mark.skipif(not SAM.exists(), reason="the SAM CLI venv (.venv-sam) is not installed")
def test_given_the_example_fleet_then_sam_validate_lint_passes(
    example: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    template = tmp_path / "projects.yaml"
    template.write_text(example[0])
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run(
        [str(SAM), "validate", "--lint", "-t", str(template)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


# --- what the train starts ---------------------------------------------------------------------------------------


def test_one_project_per_service_and_stage_named_as_the_train_starts_it_plus_the_test_projects(
    example: tuple[str, dict[str, Any]],
) -> None:
    _, doc = example
    fleet = parse_fleet(FLEET.read_text())
    expected = {fleet.project_for(s, st.name) for s in fleet.services for st in fleet.stages}
    expected |= {st.test_project for st in fleet.stages if st.test_project}
    assert len(expected) == len(fleet.services) * len(fleet.stages) + 2
    assert set(_projects(doc)) == expected
    assert "train-company-service-staging" in expected and "train-e2e-prod" in expected


def test_every_project_sets_stage_and_leaves_release_id_to_the_trains_startbuild(
    example: tuple[str, dict[str, Any]],
) -> None:
    _, doc = example
    fleet = parse_fleet(FLEET.read_text())
    for service in fleet.services:
        for stage in fleet.stages:
            props = _projects(doc)[fleet.project_for(service, stage.name)]
            env = {v["Name"]: v for v in props["Environment"]["EnvironmentVariables"]}
            assert env["STAGE"] == {"Name": "STAGE", "Type": "PLAINTEXT", "Value": stage.name}
            assert env["DEPLOY_ROLE_ARN"]["Value"] == {"Ref": f"{stage.name.capitalize()}DeployRoleArn"}
            assert "RELEASE_ID" not in env
    # ...because every StartBuild of the train passes it (and STAGE) itself.
    for path in ASL.glob("*.asl.json"):
        for match in re.finditer(r'"EnvironmentVariablesOverride": \[(.*?)\]', path.read_text(), re.S):
            names = {o["Name"] for o in json.loads(f"[{match.group(1)}]")}
            assert names == {"STAGE", "RELEASE_ID"}, path


def test_each_stage_deploys_through_its_own_deploy_role_parameter_assumed_by_its_build_role(
    example: tuple[str, dict[str, Any]],
) -> None:
    _, doc = example
    assert {p for p in doc["Parameters"] if p.endswith("DeployRoleArn")} == {
        "StagingDeployRoleArn",
        "ProdDeployRoleArn",
    }
    statements = _statements(doc, "ProdBuildRole")
    assume = [s for s in statements if s["Action"] == "sts:AssumeRole"]
    assert assume == [
        {
            "Sid": "AssumeDeployRole",
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": [{"Ref": "ProdDeployRoleArn"}],
        }
    ]
    test_role = _statements(doc, "ProdTestRole")
    assert not [s for s in test_role if s["Action"] == "sts:AssumeRole"]  # tests never get deploy rights


def test_no_role_grants_a_wildcard_action_and_logs_go_only_to_the_roles_own_log_groups(
    example: tuple[str, dict[str, Any]],
) -> None:
    _, doc = example
    roles = _of_type(doc, "AWS::IAM::Role")
    assert set(roles) == {"StagingBuildRole", "StagingTestRole", "ProdBuildRole", "ProdTestRole"}
    for role in roles.values():
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "codebuild.amazonaws.com"}
        assert trust["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"].endswith(":project/train-*")
        assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    group_name = {k: r["Properties"]["LogGroupName"] for k, r in _of_type(doc, "AWS::Logs::LogGroup").items()}
    assert {str(r["Properties"]["RetentionInDays"]) for r in _of_type(doc, "AWS::Logs::LogGroup").values()} == {
        "{'Ref': 'LogRetentionDays'}"
    }
    for role_id in roles:
        statements = _statements(doc, role_id)
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all("*" not in a for a in actions if isinstance(a, str)), role_id
        (logs,) = [s for s in statements if s["Sid"] == "OwnLogs"]
        prefix = logs["Resource"][0]["Fn::Sub"].split(":log-group:")[1].removesuffix("*:log-stream:*")
        reachable = {name for name in group_name.values() if name.startswith(prefix)}
        own = {
            group_name[p["LogsConfig"]["CloudWatchLogs"]["GroupName"]["Ref"]]
            for p in _projects(doc).values()
            if p["ServiceRole"] == {"Fn::GetAtt": [role_id, "Arn"]}
        }
        assert own and reachable == own, role_id


def test_test_projects_write_to_their_own_report_group_named_under_the_prefix(
    example: tuple[str, dict[str, Any]],
) -> None:
    _, doc = example
    groups = _of_type(doc, "AWS::CodeBuild::ReportGroup")
    assert sorted(g["Properties"]["Name"] for g in groups.values()) == [
        "train-e2e-prod-reports",
        "train-e2e-staging-reports",
    ]
    for group_id, group in groups.items():
        assert group["Properties"]["Type"] == "TEST" and group["Properties"]["DeleteReports"] is True
        owner = group["Properties"]["Name"].removesuffix("-reports")
        env = {v["Name"]: v["Value"] for v in _projects(doc)[owner]["Environment"]["EnvironmentVariables"]}
        assert env["REPORT_GROUP_ARN"] == {"Fn::GetAtt": [group_id, "Arn"]}
    # The gate (EvaluateGate) may read report-group/${ProjectPrefix}*; the builds' own groups are <project>-<name>.
    statements = _statements(doc, "StagingBuildRole")
    (reports,) = [s for s in statements if s["Sid"] == "OwnReportGroups"]
    assert all(":report-group/train-" in r["Fn::Sub"] for r in reports["Resource"])


def test_timeouts_retention_and_image_are_parameters_within_codebuilds_ranges(
    example: tuple[str, dict[str, Any]],
) -> None:
    _, doc = example
    params = doc["Parameters"]
    assert (params["QueuedTimeoutInMinutes"]["MinValue"], params["QueuedTimeoutInMinutes"]["MaxValue"]) == (5, 480)
    assert (params["TimeoutInMinutes"]["MinValue"], params["TimeoutInMinutes"]["MaxValue"]) == (5, 2160)
    assert params["BuildArchitecture"]["AllowedValues"] == ["amd64", "arm64"]
    assert doc["Mappings"]["Images"]["arm64"]["Type"] == "ARM_CONTAINER"
    assert doc["Mappings"]["Images"]["amd64"]["Type"] == "LINUX_CONTAINER"
    for props in _projects(doc).values():
        assert props["QueuedTimeoutInMinutes"] == {"Ref": "QueuedTimeoutInMinutes"}
        assert props["TimeoutInMinutes"] == {"Ref": "TimeoutInMinutes"}
        assert props["Environment"]["Image"] == {"Fn::FindInMap": ["Images", {"Ref": "BuildArchitecture"}, "Image"]}


# --- sources -----------------------------------------------------------------------------------------------------


def test_a_codecommit_service_builds_from_its_repository_url_in_the_stacks_region(
    example: tuple[str, dict[str, Any]],
) -> None:
    _, doc = example
    props = _projects(doc)["train-company-service-prod"]
    assert props["Source"] == {
        "Type": "CODECOMMIT",
        "Location": {"Fn::Sub": "https://git-codecommit.${AWS::Region}.${AWS::URLSuffix}/v1/repos/company-service"},
        "BuildSpec": "buildspec.yml",
    }
    assert props["SourceVersion"] == "release"
    statements = _statements(doc, "ProdBuildRole")
    (pull,) = [s for s in statements if s["Sid"] == "SourceRead"]
    assert pull["Action"] == ["codecommit:GitPull"]
    assert {"Fn::Sub": "arn:${AWS::Partition}:codecommit:${AWS::Region}:${AWS::AccountId}:company-service"} in pull[
        "Resource"
    ]


def test_a_github_service_builds_through_the_connection_parameter(example: tuple[str, dict[str, Any]]) -> None:
    _, doc = example
    props = _projects(doc)["train-orders-staging"]
    assert props["Source"] == {
        "Type": "GITHUB",
        "Location": "https://github.com/acme/orders.git",
        "Auth": {"Type": "CODECONNECTIONS", "Resource": {"Ref": "GitHubConnectionArn"}},
        "BuildSpec": "buildspec.yml",
    }
    pattern = doc["Parameters"]["GitHubConnectionArn"]["AllowedPattern"]
    assert re.match(
        pattern, "arn:aws:codeconnections:us-east-1:123456789012:connection/0123abcd-0123-0123-0123-0123456789ab"
    )
    assert re.match(
        pattern, "arn:aws:codestar-connections:eu-west-1:123456789012:connection/0123abcd-0123-0123-0123-0123456789ab"
    )
    assert not re.match(pattern, "arn:aws:secretsmanager:us-east-1:123456789012:secret:release-train/x")


def test_a_codecommit_only_fleet_asks_for_no_connection(tmp_path: Path) -> None:
    raw = _example_dict()
    raw["services"] = [s for s in raw["services"] if "codecommit" in s["source"]]
    _, doc = _generate(yaml.safe_dump(raw), tmp_path)
    assert "GitHubConnectionArn" not in doc["Parameters"]
    assert "GitHubConnection" not in json.dumps(doc)


def test_the_test_projects_may_come_from_github(tmp_path: Path) -> None:
    code, stdout, stderr = _run(str(FLEET), "--tests-github", "acme/e2e", "--tests-branch", "release")
    assert (code, stderr) == (0, "")
    props = _projects(yaml.safe_load(stdout))["train-e2e-staging"]
    assert props["Source"]["Location"] == "https://github.com/acme/e2e.git"
    assert props["SourceVersion"] == "release"


# --- deterministic, so removing a service removes its projects ------------------------------------------------


def test_the_same_fleet_makes_the_same_bytes(example: tuple[str, dict[str, Any]]) -> None:
    assert _run(str(FLEET), *TESTS_SOURCE)[1] == example[0]


def test_given_a_service_removed_then_exactly_its_resources_go_and_no_other_changes(
    example: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    _, before = example
    raw = _example_dict()
    raw["services"] = [s for s in raw["services"] if s["name"] != "catalog"]
    _, after = _generate(yaml.safe_dump(raw), tmp_path)
    gone = set(before["Resources"]) - set(after["Resources"])
    assert gone == {
        logical_id(kind, f"train-catalog-{stage}") for kind in ("Project", "Logs") for stage in ("staging", "prod")
    }
    assert set(after["Resources"]) <= set(before["Resources"])
    changed = {k for k in after["Resources"] if after["Resources"][k] != before["Resources"][k]}
    # The build roles' policies no longer reach catalog's repository and report groups.
    assert changed == {"StagingBuildRolePolicy1", "ProdBuildRolePolicy1"}
    assert "catalog" not in json.dumps(after)


def test_logical_ids_are_valid_and_distinct_for_names_that_differ_only_in_dashes_underscores_or_case() -> None:
    names = ["train-a-b-staging", "train-a_b-staging", "train-ab-staging", "Train-AB-staging", "t" * 255]
    ids = [logical_id("Project", n) for n in names]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9]{1,255}", i) for i in ids), ids
    assert logical_id("Project", "train-a_b-staging") == logical_id("Project", "train-a_b-staging")


def test_project_names_with_underscores_make_a_template_cfn_lint_accepts(tmp_path: Path) -> None:
    raw = _example_dict()
    raw["services"] = [{"name": "a-b", "source": {"codecommit": "a_b"}, "project": "train-{service}_{stage}"}]
    text, doc = _generate(yaml.safe_dump(raw), tmp_path)
    assert set(_projects(doc)) == {"train-a-b_staging", "train-a-b_prod", "train-e2e-staging", "train-e2e-prod"}
    assert [str(m) for m in lint(text, regions=["us-east-1"])] == []


# --- refusals: exit 2, the rule named, nothing written ----------------------------------------------------------


def test_given_a_project_outside_the_prefix_then_refused_naming_the_field_and_the_rule(tmp_path: Path) -> None:
    raw = _example_dict()
    raw["services"][1]["project"] = "legacy-{service}-{stage}"
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(raw))
    out = tmp_path / "projects.yaml"
    code, stdout, stderr = _run(str(fleet), *TESTS_SOURCE, "-o", str(out))
    assert code == 2 and stdout == ""
    assert "services[1].project (staging): 'legacy-identity-staging' does not start with ProjectPrefix 'train-'" in (
        " ".join(stderr.split())
    )
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists()


def test_given_another_prefix_then_the_fleets_train_projects_are_refused(tmp_path: Path) -> None:
    code, stdout, stderr = _run(str(FLEET), *TESTS_SOURCE, "--prefix", "rt-")
    assert code == 2 and stdout == ""
    assert "'train-e2e-prod' does not start with ProjectPrefix 'rt-'" in " ".join(stderr.split())


def test_given_an_invalid_prefix_then_refused(tmp_path: Path) -> None:
    code, _, stderr = _run(str(FLEET), *TESTS_SOURCE, "--prefix", "-x*")
    assert code == 2 and "--prefix: '-x*' is not a ProjectPrefix" in stderr


def test_given_test_projects_but_no_source_for_them_then_refused_naming_the_options(tmp_path: Path) -> None:
    code, stdout, stderr = _run(str(FLEET))
    assert code == 2 and stdout == ""
    assert "stages[0].test_project: 'train-e2e-staging' needs a source: pass --tests-codecommit REPO" in " ".join(
        stderr.split()
    )


def test_given_two_sources_or_a_bad_repository_for_the_tests_then_refused() -> None:
    code, _, stderr = _run(str(FLEET), "--tests-codecommit", "a", "--tests-github", "o/r")
    assert code == 2 and "give one source" in stderr
    code, _, stderr = _run(str(FLEET), "--tests-github", "not a repo")
    assert code == 2 and stderr.startswith("error: --tests-github: ") and "'not a repo'" in stderr
    code, _, stderr = _run(str(FLEET), "--tests-codecommit", "e2e", "--tests-branch", "a..b")
    assert code == 2 and "--tests-branch: 'a..b' is not a git branch name" in stderr


def test_given_two_stages_that_would_share_a_parameter_name_then_refused(tmp_path: Path) -> None:
    raw = _example_dict()
    raw["stages"].insert(0, {"name": "qa1"})
    raw["stages"].insert(0, {"name": "qa-1"})
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(raw))
    code, stdout, stderr = _run(str(fleet), *TESTS_SOURCE)
    assert code == 2 and stdout == ""
    assert "stages: ['qa-1', 'qa1'] make the same parameter name Qa1DeployRoleArn" in " ".join(stderr.split())


def test_given_a_test_project_whose_report_group_name_would_be_too_long_then_refused(tmp_path: Path) -> None:
    raw = _example_dict()
    raw["stages"][0]["test_project"] = "train-" + "e" * 117  # 123 characters: a valid project, but +"-reports" is 131
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(raw))
    code, _, stderr = _run(str(fleet), *TESTS_SOURCE)
    assert code == 2 and "longer than CodeBuild's 128 characters" in " ".join(stderr.split())


def test_given_o_json_as_if_it_were_output_then_refused_rather_than_writing_a_file_named_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["fleet", "projects", str(FLEET), *TESTS_SOURCE, "-o", "json"])
    assert result.exit_code == 2 and "not a format" in result.stderr


def test_given_an_invalid_fleet_then_refused_with_the_fleets_own_message(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("fleet: x\nservices: []\n")
    code, _, stderr = _run(str(fleet), *TESTS_SOURCE)
    assert code == 2 and "services" in stderr and "Traceback" not in stderr


def test_given_more_grants_than_one_policy_holds_then_they_are_split_across_policies_each_under_iams_limit(
    tmp_path: Path,
) -> None:
    from trainctl.projects import MAX_POLICY, policy_size

    raw = github_fleet(services=100, stages=2)
    _, doc = _generate(yaml.safe_dump(raw), tmp_path)
    arns = doc["Resources"]["Stage0BuildRole"]["Properties"]["ManagedPolicyArns"]
    assert 2 <= len(arns) <= 10
    for ref in arns:
        assert policy_size(doc["Resources"][ref["Ref"]]["Properties"]["PolicyDocument"]) <= MAX_POLICY
    granted = [
        r["Fn::Sub"]
        for s in _statements(doc, "Stage0BuildRole")
        if s["Sid"] == "OwnReportGroups"
        for r in s["Resource"]
    ]
    expected = sorted(f"report-group/{p}-*" for p in _projects(doc) if p.endswith("-stage-0"))
    assert sorted(g.split(":")[-1] for g in granted) == expected and len(expected) == 100


def test_given_a_fleet_over_cloudformations_resource_limit_then_refused_naming_the_quota(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(github_fleet(services=130, stages=2)))
    code, stdout, stderr = _run(str(fleet))
    line = " ".join(stderr.split())
    assert code == 2 and stdout == ""
    assert "over CloudFormation's 500 per template" in line and "with --output-dir DIR" in line


def test_given_o_file_then_the_template_is_written_there_and_stdout_stays_empty(
    example: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "projects.yaml"
    code, stdout, stderr = _run(str(FLEET), *TESTS_SOURCE, "-o", str(out))
    assert code == 0 and stdout == ""
    assert "wrote 14 projects of fleet acme-shop" in stderr
    assert out.read_text() == example[0]


# --- the sandbox creates the projects from the template --------------------------------------------------------


def test_the_sandbox_creates_the_templates_projects_and_the_trains_build_state_starts_them(
    example: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    from tests.sandbox.harness import sandbox
    from tests.sandbox.test_codebuild_throttle_name import _build_state
    from trainctl.sandbox.scenario import Scenario

    _, doc = example
    state = {k: v for k, v in _build_state().items() if k not in ("Catch", "Next")}
    definition = {"StartAt": "Build", "States": {"Build": {**state, "End": True}}}
    with sandbox(tmp_path, Scenario()) as box:
        created = box.act(lambda: register_projects(box.world.codebuild, doc, {"QueuedTimeoutInMinutes": "30"}))
        assert set(created) == set(_projects(doc))
        assert box.world.codebuild.projects["train-orders-prod"] == ("prod", "orders")
        assert box.world.codebuild.projects["train-e2e-staging"] == ("staging", None)
        assert box.world.codebuild.queued_timeouts["train-orders-prod"] == 30
        done = box.run(
            definition, {"project": "train-orders-prod", "commit": "c0ffee", "stage": "prod", "release_id": "r1"}
        )
        arn = box.start(
            definition, {"project": "train-legacy-prod", "commit": "c0ffee", "stage": "prod", "release_id": "r1"}
        )
        box.settle()
        events = box.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    # A project the template does not declare does not exist: StartBuild's ResourceNotFoundException, as AWS names it.
    assert [e["taskFailedEventDetails"]["error"] for e in events if e["type"] == "TaskFailed"] == [
        "CodeBuild.ResourceNotFoundException"
    ]
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"])["build"]["status"] == "SUCCEEDED"


# --- a stage in another account (docs/accounts.md) ----------------------------------------------------------------

PROD_ACCOUNT = "333333333333"
PROD_DEPLOY_ROLE = f"arn:aws:iam::{PROD_ACCOUNT}:role/release-train-deploy"


def _cross_account_fleet() -> str:
    raw = _example_dict()
    raw["stages"][-1] |= {"account": PROD_ACCOUNT, "deploy_role": PROD_DEPLOY_ROLE}
    return yaml.safe_dump(raw)


def test_given_a_stage_naming_its_deploy_role_then_its_builds_assume_that_role_and_no_parameter_asks_for_it(
    tmp_path: Path,
) -> None:
    text, doc = _generate(_cross_account_fleet(), tmp_path)
    fleet = parse_fleet(_cross_account_fleet())
    prod, staging = fleet.stages[-1].name, fleet.stages[0].name

    assert {p for p in doc["Parameters"] if p.endswith("DeployRoleArn")} == {f"{staging.capitalize()}DeployRoleArn"}
    assert doc["Parameters"]["TargetAccountExternalId"]["Type"] == "String"
    assume = [s for s in _statements(doc, f"{prod.capitalize()}BuildRole") if s["Action"] == "sts:AssumeRole"]
    assert assume == [
        {"Sid": "AssumeDeployRole", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": [PROD_DEPLOY_ROLE]}
    ]
    for service in fleet.services:
        env = {
            v["Name"]: v["Value"]
            for v in _projects(doc)[fleet.project_for(service, prod)]["Environment"]["EnvironmentVariables"]
        }
        assert env["DEPLOY_ROLE_ARN"] == PROD_DEPLOY_ROLE
        assert env["DEPLOY_EXTERNAL_ID"] == {"Ref": "TargetAccountExternalId"}
        staging_env = _projects(doc)[fleet.project_for(service, staging)]["Environment"]["EnvironmentVariables"]
        assert {v["Name"] for v in staging_env} == {"STAGE", "SERVICE", "DEPLOY_ROLE_ARN"}
    assert [str(m) for m in lint(text, regions=["us-east-1"])] == []


def test_given_no_stage_naming_a_deploy_role_then_no_external_id_is_asked_for(
    example: tuple[str, dict[str, Any]],
) -> None:
    _, doc = example

    assert "TargetAccountExternalId" not in doc["Parameters"]


# --- fleets beyond one template: a parent and its children (--output-dir) ---------------------------------------


def _nested(fleet_text: str, tmp_path: Path, *args: str) -> tuple[Path, dict[str, str]]:
    """Write the fleet, run --output-dir, and return the directory and its files' texts."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_text)
    out = tmp_path / "out"
    code, stdout, stderr = _run(str(path), *TESTS_SOURCE, "--output-dir", str(out), *args)
    assert (code, stdout) == (0, ""), stderr
    return out, {f.name: f.read_text() for f in sorted(out.iterdir())}


def _bench_fleet(services: int, stages: int = 2) -> dict[str, Any]:
    """bench/train_bench.py's fleet: CodeCommit sources, one repository per service, test projects in each stage."""
    doc: dict[str, Any] = {
        "fleet": f"bench-{services}",
        "defaults": {"approvers": ["arn:aws:iam::123456789012:role/ReleaseManager"]},
        "stages": [
            *(
                {"name": f"stage-{k}", "bake": "PT1H", "test_project": f"train-e2e-stage-{k}"}
                for k in range(stages - 1)
            ),
            {"name": "prod", "bake": "PT1H", "test_project": "train-e2e-prod", "approval": {"required": True}},
        ],
        "services": [
            {"name": f"svc-{i:04d}", "source": {"codecommit": f"svc-{i:04d}", "branch": "release"}, "wave": 1 + i % 5}
            for i in range(services)
        ],
    }
    return doc


def _load(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 7 MB
    return doc


def _all_projects(texts: dict[str, str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for text in texts.values():
        found |= _projects(_load(text))
    return found


def test_given_output_dir_then_the_parent_names_each_child_by_a_local_path_and_together_they_hold_every_project(
    example: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    _, single = example
    out, texts = _nested(FLEET.read_text(), tmp_path)
    parent = yaml.safe_load(texts["projects.yaml"])
    stacks = _of_type(parent, "AWS::CloudFormation::Stack")
    assert sorted(s["Properties"]["TemplateURL"] for s in stacks.values()) == sorted(
        f"./{name}" for name in texts if name != "projects.yaml"
    )
    # The same projects as the single template, property for property, but for how a child names its role.
    merged = _all_projects(texts)
    assert set(merged) == set(_projects(single))
    for name, props in merged.items():
        expected = dict(_projects(single)[name])
        role = expected.pop("ServiceRole")["Fn::GetAtt"][0]
        got = dict(props)
        assert got.pop("ServiceRole") in ({"Fn::GetAtt": [role, "Arn"]}, {"Ref": f"{role}Arn"})
        assert got == expected, name
    # The roles, their policies and the test projects stay in the parent: one role per stage, as in one template.
    assert set(_of_type(parent, "AWS::IAM::Role")) == {
        "StagingBuildRole",
        "StagingTestRole",
        "ProdBuildRole",
        "ProdTestRole",
    }
    assert set(_projects(parent)) == {"train-e2e-staging", "train-e2e-prod"}
    for stack in stacks.values():
        child = yaml.safe_load(texts[stack["Properties"]["TemplateURL"].removeprefix("./")])
        # Every parameter a child declares, its parent passes; the roles by their ARNs.
        assert set(stack["Properties"]["Parameters"]) == set(child["Parameters"])
        assert stack["Properties"]["Parameters"]["ProdBuildRoleArn"] == {"Fn::GetAtt": ["ProdBuildRole", "Arn"]}
        assert not _of_type(child, "AWS::IAM::Role") and not _of_type(child, "AWS::IAM::ManagedPolicy")
    assert list(out.iterdir())


def test_given_output_dir_then_cfn_lint_passes_the_parent_and_every_child(tmp_path: Path) -> None:
    _, texts = _nested(FLEET.read_text(), tmp_path)
    assert len(texts) > 2
    for name, text in texts.items():
        assert [str(m) for m in lint(text, regions=["us-east-1"])] == [], name
    # The parent passes only because each Stack opts out of W3002 ("only works with package"), which is the point.
    bare = texts["projects.yaml"].replace("ignore_checks:\n          - W3002", "ignore_checks: []")
    assert bare != texts["projects.yaml"]
    assert {m.rule.id for m in lint(bare, regions=["us-east-1"])} == {"W3002"}


@pytest.mark.sam
@pytest.mark.skipif(not SAM.exists(), reason="the SAM CLI venv (.venv-sam) is not installed")
def test_given_output_dir_then_sam_validate_lint_passes_the_parent(tmp_path: Path) -> None:
    out, _ = _nested(FLEET.read_text(), tmp_path)  # ~2.5 s measured
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run(
        [str(SAM), "validate", "--lint", "-t", "projects.yaml"],
        capture_output=True,
        text=True,
        env=env,
        cwd=out,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


def test_given_a_service_added_then_only_its_child_and_the_parents_policies_change(tmp_path: Path) -> None:
    raw = _bench_fleet(150)
    _, before = _nested(yaml.safe_dump(raw), tmp_path / "before")
    raw["services"].insert(0, {"name": "aaa-new", "source": {"codecommit": "aaa-new", "branch": "release"}, "wave": 1})
    _, after = _nested(yaml.safe_dump(raw), tmp_path / "after")
    changed = {name for name in after if after[name] != before.get(name)}
    home = next(n for n, t in after.items() if n != "projects.yaml" and "train-aaa-new-prod" in t)
    assert changed <= {"projects.yaml", home}
    # No project moved: every other project is in the same child as before (a move would fail the update: the new
    # child creates the project before the old one deletes it).
    where = {
        tag: {p: name for name, text in files.items() for p in _projects(yaml.safe_load(text))}
        for tag, files in (("before", before), ("after", after))
    }
    assert {p: n for p, n in where["after"].items() if "aaa-new" not in p} == where["before"]
    parent_before, parent_after = yaml.safe_load(before["projects.yaml"]), yaml.safe_load(after["projects.yaml"])
    differs = {
        k for k in parent_after["Resources"] if parent_after["Resources"][k] != parent_before["Resources"].get(k)
    }
    assert differs and all(k.startswith(("Stage0BuildRolePolicy", "ProdBuildRolePolicy", "Projects")) for k in differs)


def test_given_a_child_left_empty_then_its_file_is_removed_and_other_files_are_kept(tmp_path: Path) -> None:
    raw = _example_dict()
    out, before = _nested(yaml.safe_dump(raw), tmp_path)
    (out / "notes.yaml").write_text("mine\n")
    (out / "projects-99.yaml").write_text("not generated\n")
    catalog = next(n for n, t in before.items() if n != "projects.yaml" and "train-catalog-prod" in t)
    raw["services"] = [s for s in raw["services"] if s["name"] != "catalog"]
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(raw))
    code, _, stderr = _run(str(tmp_path / "fleet.yaml"), *TESTS_SOURCE, "--output-dir", str(out))
    assert code == 0, stderr
    left = {f.name for f in out.iterdir()}
    assert catalog not in left and {"notes.yaml", "projects-99.yaml", "projects.yaml"} <= left
    assert catalog not in (out / "projects.yaml").read_text()


def test_given_o_and_output_dir_together_then_refused(tmp_path: Path) -> None:
    code, _, stderr = _run(str(FLEET), *TESTS_SOURCE, "-o", str(tmp_path / "p.yaml"), "--output-dir", str(tmp_path))
    assert code == 2 and "give one" in stderr and not (tmp_path / "p.yaml").exists()


@pytest.fixture(scope="module")
def bench_2000(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bench")
    (tmp / "fleet.yaml").write_text(yaml.safe_dump(_bench_fleet(2000)))
    code, _, stderr = _run(str(tmp / "fleet.yaml"), *TESTS_SOURCE, "--output-dir", str(tmp / "out"))
    assert code == 0, stderr
    assert "grant name prefixes instead" in stderr  # 2,000 repositories: one ARN each would not fit
    return {f.name: f.read_text() for f in sorted((tmp / "out").iterdir())}


def test_given_2000_services_then_every_template_is_within_cloudformations_limits(bench_2000: dict[str, str]) -> None:
    from trainctl.projects import MAX_RESOURCES, MAX_TEMPLATE_BYTES

    assert len(_all_projects(bench_2000)) == 2000 * 2 + 2
    for name, text in bench_2000.items():
        doc = _load(text)
        assert len(doc["Resources"]) <= MAX_RESOURCES and len(text.encode()) <= MAX_TEMPLATE_BYTES, name
        assert len(doc.get("Parameters", {})) <= 200 and len(doc.get("Outputs", {})) <= 200, name
    assert [str(m) for m in lint(bench_2000["projects-01.yaml"], regions=["us-east-1"])] == []


def test_given_2000_services_then_one_role_a_stage_reaches_every_own_repository_and_report_group_and_no_more(
    bench_2000: dict[str, str],
) -> None:
    import fnmatch

    from trainctl.projects import MAX_POLICIES_PER_ROLE, MAX_POLICY, policy_size

    parent = _load(bench_2000["projects.yaml"])
    assert set(_of_type(parent, "AWS::IAM::Role")) == {
        "Stage0BuildRole",
        "Stage0TestRole",
        "ProdBuildRole",
        "ProdTestRole",
    }
    assert parent["Metadata"]["ReleaseTrain"]["CompactedGrants"] == {"ProdBuildRole": 7, "Stage0BuildRole": 7}
    for role_id, stage, other in (("ProdBuildRole", "prod", "stage-0"), ("Stage0BuildRole", "stage-0", "prod")):
        arns = parent["Resources"][role_id]["Properties"]["ManagedPolicyArns"]
        assert len(arns) <= MAX_POLICIES_PER_ROLE
        for ref in arns:
            assert policy_size(parent["Resources"][ref["Ref"]]["Properties"]["PolicyDocument"]) <= MAX_POLICY
        statements = _statements(parent, role_id)

        def granted(statements: list[dict[str, Any]], sid: str) -> list[str]:
            return [
                r["Fn::Sub"].rsplit(":", 1)[1]
                for s in statements
                if s["Sid"] == sid and s["Effect"] == "Allow"
                for r in s["Resource"]
                if "Fn::Sub" in r
            ]

        reports, repos = granted(statements, "OwnReportGroups"), granted(statements, "SourceRead")
        assert len(repos) == 200 and "svc-000*" in repos  # 2,000 ARNs would not fit; 200 prefixes do
        for i in range(2000):
            assert any(fnmatch.fnmatchcase(f"svc-{i:04d}", p) for p in repos)
            own = f"report-group/train-svc-{i:04d}-{stage}-unit"
            assert any(fnmatch.fnmatchcase(own, p) for p in reports), own
            theirs = f"report-group/train-svc-{i:04d}-{other}-unit"
            assert not any(fnmatch.fnmatchcase(theirs, p) for p in reports), theirs
        # The gate's evidence stays out of reach whatever a prefix matches.
        (deny,) = [s for s in statements if s["Effect"] == "Deny"]
        assert deny["Sid"] == "NotTheTestReports" and "codebuild:BatchPutTestCases" in deny["Action"]
        assert {r["Fn::GetAtt"][0] for r in deny["Resource"]} == {
            logical_id("Reports", "train-e2e-prod"),
            logical_id("Reports", "train-e2e-stage-0"),
        }


def test_given_a_fleet_too_large_even_for_children_then_refused_naming_the_quota(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(_bench_fleet(2000, stages=10)))
    code, stdout, stderr = _run(str(fleet), *TESTS_SOURCE, "--output-dir", str(tmp_path / "out"))
    line = " ".join(stderr.split())
    assert code == 2 and stdout == "" and not (tmp_path / "out").exists()
    assert "over CloudFormation's 500 per template" in line and "with 10 stages" in line


def test_the_sandbox_registers_a_large_fleets_projects_from_the_parent_and_its_children() -> None:
    from release_train.domain.fleet import Fleet
    from trainctl.projects import register_stack, sandbox_templates

    class Registry:
        def __init__(self) -> None:
            self.projects: dict[str, tuple[str, str | None, int | None]] = {}

        def register_project(
            self,
            project: str,
            stage: str,
            service: str | None,
            queued_timeout_minutes: int | None = None,
            environment: Mapping[str, str] | None = None,
        ) -> None:
            self.projects[project] = (stage, service, queued_timeout_minutes)

    parsed = Fleet.model_validate(_bench_fleet(2000))
    doc, children = sandbox_templates(parsed, "train-", "release-train-tests")
    assert len(children) > 1  # 4,002 projects are beyond one template
    registry = Registry()
    created = register_stack(registry, doc, children, {"QueuedTimeoutInMinutes": "30"})
    assert len(created) == len(set(created)) == 2000 * 2 + 2
    assert set(registry.projects) == {p for _, p in parsed.projects()}
    assert registry.projects["train-svc-1234-prod"] == ("prod", "svc-1234", 30)  # the parent's value reached a child
    assert registry.projects["train-e2e-prod"] == ("prod", None, 30)
