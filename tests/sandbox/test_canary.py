"""Prod canary deployments in the sandbox (trainctl/sandbox/codedeploy.py): the real PreTraffic/PostTraffic hooks
run against an emulated CodeDeploy deployment of company-service's read function, in virtual time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from release_train.domain.hook_targets import LambdaTarget, target_from_deployment
from trainctl.sandbox import clock as vclock
from trainctl.sandbox import emulators, moto_fixes
from trainctl.sandbox.codedeploy import CodeDeployEmulator, Deployment
from trainctl.sandbox.runner import SimulationResult, simulate
from trainctl.sandbox.scenario import ApprovalAction, HookBehaviour, Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "examples" / "scenarios"


def _run(name: str) -> SimulationResult:
    return simulate(ROOT / "fleet.yaml", load_scenario(SCENARIOS / f"{name}.yaml"), ROOT)


def _only_deployment(result: SimulationResult) -> dict[str, Any]:
    assert len(result.deployments) == 1, result.deployments
    deployment = result.deployments[0]
    assert deployment["service"] == "company-service"
    assert deployment["function"] == "company-service-prod-read"
    return deployment


def _company_build(result: SimulationResult) -> str:
    prod = next(s for s in result.stages if s["name"] == "prod")
    return str(next(s for s in prod["services"] if s["name"] == "company-service")["build_status"])


def test_canary_succeeds_shifts_10_percent_then_all_and_releases() -> None:
    result = _run("canary-succeeds")
    deployment = _only_deployment(result)
    assert deployment["status"] == "Succeeded"
    assert deployment["deployment_config"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert [h["phase"] for h in deployment["hooks"]] == ["pre_traffic", "post_traffic"]
    assert all(h["status"] == "Succeeded" and h["reports"] == 1 for h in deployment["hooks"])
    target = deployment["target_version"]
    assert deployment["routing_history"][1] == {
        "version": deployment["current_version"],
        "additional_weights": {target: 0.1},
    }
    assert deployment["final_alias"] == {"version": target, "additional_weights": {}}
    assert deployment["virtual_duration_s"] >= 300  # the 5-minute canary wait, in virtual time
    assert result.execution_status == "SUCCEEDED"
    assert _company_build(result) == "SUCCEEDED"


def test_pre_traffic_check_fails_no_traffic_reaches_new_version_and_release_fails() -> None:
    result = _run("canary-pre-traffic-fails")
    deployment = _only_deployment(result)
    assert deployment["status"] == "Failed" and deployment["rolled_back"]
    (pre,) = deployment["hooks"]
    assert pre["phase"] == "pre_traffic" and pre["status"] == "Failed" and pre["reports"] == 1
    check = pre["invocations"][0]["result"]["checks"][0]
    assert check["name"] == "missing-company-is-404" and check["outcome"] == "failed"
    assert deployment["traffic_reached_new_version"] is False
    target = deployment["target_version"]
    assert all(r["version"] != target and target not in r["additional_weights"] for r in deployment["routing_history"])
    assert deployment["final_alias"]["version"] == deployment["current_version"]
    assert _company_build(result) == "FAILED"
    assert result.status == "FAILED" and "company-service" in result.reason


def test_alarm_during_canary_rolls_back() -> None:
    result = _run("canary-alarm-rolls-back")
    deployment = _only_deployment(result)
    assert deployment["status"] == "Failed" and deployment["rolled_back"]
    assert "company-service-prod-read-errors" in deployment["error"]
    assert [h["phase"] for h in deployment["hooks"]] == ["pre_traffic"]  # PostTraffic never ran
    assert deployment["traffic_reached_new_version"] is True  # the 10% canary did get traffic
    assert deployment["final_alias"] == {"version": deployment["current_version"], "additional_weights": {}}
    assert result.status == "FAILED"


def test_hook_whose_dependency_raises_still_reports_failed() -> None:
    result = _run("canary-hook-raises")
    deployment = _only_deployment(result)
    (pre,) = deployment["hooks"]
    assert pre["status"] == "Failed" and pre["reports"] == 1
    outcome = pre["invocations"][0]["result"]
    assert any("ThrottlingException" in reason for reason in outcome["reasons"])
    assert deployment["traffic_reached_new_version"] is False
    assert deployment["status"] == "Failed"
    assert result.status == "FAILED"


def test_duplicate_hook_delivery_is_reported_exactly_once() -> None:
    result = _run("canary-duplicate-delivery")
    deployment = _only_deployment(result)
    assert deployment["status"] == "Succeeded"
    for hook in deployment["hooks"]:
        assert hook["deliveries"] == 2
        assert hook["reports"] == 1
        assert [i["errored"] for i in hook["invocations"]] == [False, False]
    ids = [c["execution_id"] for c in deployment["report_calls"]]
    assert len(ids) == len(set(ids)) == 2
    assert result.execution_status == "SUCCEEDED"


def test_post_traffic_failure_after_full_shift_rolls_back_to_the_old_version() -> None:
    scenario = Scenario(
        approvals={"prod": ApprovalAction()}, hooks={"company-service": HookBehaviour(post_traffic="fail")}
    )
    result = simulate(ROOT / "fleet.yaml", scenario, ROOT)
    deployment = _only_deployment(result)
    assert [(h["phase"], h["status"], h["reports"]) for h in deployment["hooks"]] == [
        ("pre_traffic", "Succeeded", 1),
        ("post_traffic", "Failed", 1),
    ]
    assert deployment["routing_history"][-2]["version"] == deployment["target_version"]  # had all the traffic
    assert deployment["final_alias"] == {"version": deployment["current_version"], "additional_weights": {}}
    assert deployment["status"] == "Failed" and result.status == "FAILED"


# --- the emulated CodeDeploy API ----------------------------------------------------------------------------------


@pytest.fixture
def codedeploy() -> Iterator[tuple[Any, CodeDeployEmulator]]:
    moto_fixes.apply()
    clock = vclock.VirtualClock(datetime(2026, 11, 23, 9, tzinfo=UTC))
    world = emulators.World(Scenario(), clock, "us-east-1")
    emulators.activate(world)
    try:
        with mock_aws():
            emulator = CodeDeployEmulator(Scenario(), clock, ROOT, "pre", "post")
            deployment = Deployment(
                id="d-ABCDEF123",
                service="company-service",
                application="app",
                group="group",
                config="CodeDeployDefault.LambdaCanary10Percent5Minutes",
                function="company-service-prod-read",
                current_version="1",
                target_version="2",
                create_time=0.0,
                status="InProgress",
            )
            deployment.hooks["exec-1"] = "pre_traffic"
            emulator.by_id[deployment.id] = deployment
            yield boto3.client("codedeploy", region_name="us-east-1"), emulator
    finally:
        emulators.activate(None)


def test_get_deployment_has_the_lambda_appspec_shape(codedeploy: tuple[Any, CodeDeployEmulator]) -> None:
    client, _ = codedeploy
    info = client.get_deployment(deploymentId="d-ABCDEF123")["deploymentInfo"]
    assert info["computePlatform"] == "Lambda"
    assert info["deploymentConfigName"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert info["revision"]["revisionType"] == "AppSpecContent"
    target = target_from_deployment(info)
    assert target == LambdaTarget("d-ABCDEF123", "company-service-prod-read", "live", "1", "2")


def test_second_report_for_the_same_hook_execution_is_refused(codedeploy: tuple[Any, CodeDeployEmulator]) -> None:
    client, emulator = codedeploy
    kwargs = {"deploymentId": "d-ABCDEF123", "lifecycleEventHookExecutionId": "exec-1"}
    client.put_lifecycle_event_hook_execution_status(**kwargs, status="Succeeded")
    with pytest.raises(ClientError) as refused:
        client.put_lifecycle_event_hook_execution_status(**kwargs, status="Failed")
    assert refused.value.response["Error"]["Code"] == "LifecycleEventAlreadyCompletedException"
    assert emulator.by_id["d-ABCDEF123"].reports == {"exec-1": "Succeeded"}
    with pytest.raises(ClientError) as unknown:
        client.get_deployment(deploymentId="d-NOPE")
    assert unknown.value.response["Error"]["Code"] == "DeploymentDoesNotExistException"
