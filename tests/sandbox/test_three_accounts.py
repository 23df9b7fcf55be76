"""A fleet whose stages live in their own AWS accounts (docs/accounts.md), end to end in the sandbox: the train in the
tools account (moto's default), staging in 222222222222, prod in 333333333333, Lambda services and an ECS one, each
target account with accounts/target-account.yaml deployed, the projects from the generated template. Every read and
move of a stage goes through that account; nothing of a stage exists in the tools account."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from release_train.domain.fleet import parse_fleet
from trainctl.sandbox import accounts
from trainctl.sandbox.runner import open_world, simulate
from trainctl.sandbox.scenario import Scenario, load_scenario

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FLEET_PATH = ROOT / "examples" / "fleets" / "three-accounts.yaml"
SCENARIOS = ROOT / "examples" / "scenarios"
TOOLS, STAGING, PROD = "123456789012", "222222222222", "333333333333"
REGION = "us-east-1"


def _client(service: str, account: str) -> Any:
    return accounts.session_for(account, REGION).client(service, region_name=REGION)


def test_the_example_three_account_fleet_names_two_target_accounts() -> None:
    fleet = parse_fleet(FLEET_PATH.read_text())
    assert {s.name: s.account for s in fleet.stages} == {"staging": STAGING, "prod": PROD}
    assert all(s.deploy_role and f":{s.account}:role/" in s.deploy_role for s in fleet.stages)


def test_a_train_across_three_accounts_reads_and_moves_each_stage_in_its_own_account() -> None:
    with open_world(FLEET_PATH, load_scenario(SCENARIOS / "happy-path.yaml"), ROOT) as run:
        result = run.run(time.perf_counter())
        assert result.status == "SUCCEEDED", result.reason

        # The canaries ran in prod's account, with that account's hooks; the tools account's hooks never ran.
        assert result.deployments
        assert {d["account"] for d in result.deployments} == {PROD}
        assert all(d["status"] == "Succeeded" for d in result.deployments)
        assert result.invocations.get("PreTrafficFunction@" + PROD, 0) == len(result.deployments)
        assert result.invocations.get("PostTrafficFunction@" + PROD, 0) == len(result.deployments)
        assert "PreTrafficFunction" not in result.invocations
        assert "PostTrafficFunction" not in result.invocations

        # The ECS service's blue/green canary ran in prod's account too: its cluster is there, its hooks checked the
        # replacement task set through the test listener, and production ends on it.
        (ecs,) = [d for d in result.deployments if d.get("platform") == "ECS"]
        assert (ecs["service"], ecs["account"], ecs["status"]) == ("payments", PROD, "Succeeded")
        assert ecs["requests"]["green"] > 0 and ecs["traffic_reached_new_version"]
        assert "svc-payments-prod" in str(_client("ecs", PROD).list_clusters()["clusterArns"])
        assert "svc-payments-prod" not in str(boto3.client("ecs").list_clusters()["clusterArns"])

        # RecordWave read the aliases through the train role: the versions exist only in the stage accounts.
        for stage, account in (("staging", STAGING), ("prod", PROD)):
            detail = result.live_detail[stage]["company-service"]
            assert detail["how"] == "aliases", detail
            name = f"svc-company-{stage}-read"
            assert detail["functions"][name] == "2"
            assert _client("lambda", account).get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "2"
            with pytest.raises(ClientError) as missing:
                boto3.client("lambda").get_alias(FunctionName=name, Name="live")  # the tools account has none
            assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"

        # The emulated CodeDeploy answers each account for its own deployments only.
        deployment = result.deployments[0]["deployment_id"]
        found = _client("codedeploy", PROD).get_deployment(deploymentId=deployment)["deploymentInfo"]
        assert found["status"] == "Succeeded"
        for other in (TOOLS, STAGING):
            with pytest.raises(ClientError) as elsewhere:
                _client("codedeploy", other).get_deployment(deploymentId=deployment)
            assert elsewhere.value.response["Error"]["Code"] == "DeploymentDoesNotExistException"
        assert deployment in _client("codedeploy", PROD).list_deployments()["deployments"]
        assert deployment not in boto3.client("codedeploy").list_deployments()["deployments"]

        # The gate read each stage's alarms in the stage's account.
        prod_gate = next(g for g in result.gates if g["stage"] == "prod")
        assert [a["name"] for a in prod_gate["evidence"]["alarms"]] == ["prod-errors"]
        assert _client("cloudwatch", PROD).describe_alarms(AlarmNames=["prod-errors"])["MetricAlarms"]
        assert not boto3.client("cloudwatch").describe_alarms(AlarmNames=["prod-errors"])["MetricAlarms"]

        # The builds ran in the tools account from the generated projects, which name each stage's deploy role.
        for build in result.builds:
            assert f":{TOOLS}:build/" in run.world.codebuild.builds[build["id"]].arn
        staging_build = next(b for b in run.world.codebuild.builds.values() if b.stage == "staging" and b.service)
        assert staging_build.env["DEPLOY_ROLE_ARN"] == f"arn:aws:iam::{STAGING}:role/release-train-deploy"
        assert staging_build.env["DEPLOY_EXTERNAL_ID"] == "release-train-sandbox"


def test_an_alarm_in_prods_account_during_the_bake_blocks_the_gate_even_after_another_train_in_this_process() -> None:
    # A train before it in the same process: the functions' clients for the stage accounts (cached per container by
    # release_train.wiring) must not outlive that train's moto, or they would read the tools account instead.
    assert simulate(FLEET_PATH, load_scenario(SCENARIOS / "happy-path.yaml"), ROOT).status == "SUCCEEDED"
    result = simulate(FLEET_PATH, load_scenario(SCENARIOS / "prod-alarm-during-bake.yaml"), ROOT)
    assert result.status == "BLOCKED", result.reason
    prod_gate = next(g for g in result.gates if g["stage"] == "prod")
    # the alarm exists only in prod's account: the gate could only have seen it fire there
    fired = {a["name"]: a["fired_during_bake"] for a in prod_gate["evidence"]["alarms"]}
    assert fired["prod-checkout-5xx"] is True


def test_a_canary_alarm_in_prods_account_rolls_the_alias_back_there() -> None:
    result = simulate(FLEET_PATH, load_scenario(SCENARIOS / "canary-alarm-rolls-back.yaml"), ROOT)
    assert result.status == "FAILED", result.reason
    (read,) = [d for d in result.deployments if d["function"] == "svc-company-prod-read"]
    assert read["account"] == PROD
    assert read["status"] == "Failed" and read["rolled_back"]
    assert read["final_alias"]["version"] == read["current_version"]
    assert "svc-company-prod-read-errors" in (read["error"] or "")


def test_a_stage_whose_deploy_role_is_not_in_its_account_fails_its_builds_with_sts_refusal(tmp_path: Path) -> None:
    fleet = yaml.safe_load(FLEET_PATH.read_text())
    # A role the target stack does not create: sts:AssumeRole is refused, so `sam deploy` never runs.
    fleet["stages"][0]["deploy_role"] = f"arn:aws:iam::{STAGING}:role/no-such-deploy-role"
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    result = simulate(path, Scenario(changed="all"), ROOT)
    assert result.status == "FAILED", result.reason
    staging_builds = [b for b in result.builds if b["stage"] == "staging" and b["kind"] == "service"]
    assert staging_builds and all(b["status"] == "FAILED" for b in staging_builds)
    assert all("not authorized to perform: sts:AssumeRole" in b["failure"] for b in staging_builds)
    assert all("no-such-deploy-role" in b["failure"] for b in staging_builds)
    assert not [b for b in result.builds if b["stage"] == "prod"]  # nothing went on to prod


def test_a_fleet_naming_an_account_the_stack_does_not_allow_is_refused_before_anything_runs() -> None:
    scenario = Scenario(parameters={"AllowedTargetAccounts": STAGING, "TargetAccountExternalId": "x-sandbox"})
    with pytest.raises(Exception) as refused:
        simulate(FLEET_PATH, scenario, ROOT)
    assert PROD in str(refused.value)
    assert "AllowedTargetAccounts" in str(refused.value)


def test_a_cancel_during_the_canary_stops_the_deployments_in_prods_account() -> None:
    result = simulate(FLEET_PATH, load_scenario(SCENARIOS / "cancel-during-canary.yaml"), ROOT)
    assert result.status == "CANCELLED", result.reason
    assert result.deployments and {d["account"] for d in result.deployments} == {PROD}
    assert result.cleanup is not None
    stopped = result.cleanup["stopped_deployments"]
    # CleanupExecution found them through prod's train role: they exist in no other account
    assert sorted(stopped.values()) == ["Stopped"] * len(stopped)
    assert {key.split()[1] for key in stopped} == {d["deployment_id"] for d in result.deployments}


def test_on_prod_failure_rollback_points_the_aliases_back_in_prods_account() -> None:
    with open_world(FLEET_PATH, load_scenario(SCENARIOS / "prod-alarm-rolls-back.yaml"), ROOT) as run:
        result = run.run(time.perf_counter())
        assert result.status == "BLOCKED", result.reason
        prod_lambda = _client("lambda", PROD)
        for deployment in (d for d in result.deployments if d.get("platform") != "ECS"):
            assert deployment["status"] == "Succeeded"  # the canary itself passed; the bake's alarm came after
            alias = prod_lambda.get_alias(FunctionName=deployment["function"], Name="live")
            assert alias["FunctionVersion"] == deployment["current_version"]  # RecordFailure put it back, there
        assert "company-service" not in result.reason.split("services:")[-1]
