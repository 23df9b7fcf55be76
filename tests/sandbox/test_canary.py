"""Canary deployments in the sandbox (trainctl/sandbox/codedeploy.py): every function a fleet service declares
shifts through an emulated CodeDeploy deployment beside its build, with the real PreTraffic/PostTraffic hooks, in
virtual time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from release_train.domain.fleet import parse_fleet
from tests.sandbox.harness import Sandbox, sandbox
from trainctl.sandbox.codedeploy import ROLLBACK_S
from trainctl.sandbox.runner import SimulationResult, simulate
from trainctl.sandbox.scenario import ApprovalAction, HookBehaviour, Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "examples" / "scenarios"
FLEET = parse_fleet((ROOT / "fleet.yaml").read_text())
COMPANY = [f"svc-company-prod-{verb}" for verb in ("create", "read", "update", "delete")]
ORDERS = "svc-orders-prod-api"


def _run(name: str) -> SimulationResult:
    return simulate(ROOT / "fleet.yaml", load_scenario(SCENARIOS / f"{name}.yaml"), ROOT)


@pytest.fixture(scope="module")
def succeeded() -> SimulationResult:
    return _run("canary-succeeds")


def _deployment(result: SimulationResult, function: str) -> dict[str, Any]:
    (found,) = [d for d in result.deployments if d["function"] == function]
    return found


def _why(deployment: dict[str, Any]) -> str:
    """A failed deployment's hook invocations: what each check said (the report names it when an assertion fails)."""
    return json.dumps({"error": deployment.get("error"), "hooks": deployment["hooks"]}, default=str)[:6000]


def _prod_build(result: SimulationResult, service: str) -> dict[str, Any]:
    (build,) = [b for b in result.builds if b["stage"] == "prod" and b["service"] == service]
    return build


def test_given_services_that_declare_functions_when_prod_deploys_then_each_function_gets_a_deployment(
    succeeded: SimulationResult,
) -> None:
    declared = {
        name for s in FLEET.services for stage in FLEET.canary_stages(s) for name in FLEET.functions_for(s, stage)
    }
    assert {d["function"] for d in succeeded.deployments} == declared == {*COMPANY, ORDERS}
    assert {d["stage"] for d in succeeded.deployments} == {"prod"}  # the default canary stage is the last one
    assert succeeded.status == "SUCCEEDED"


def test_given_a_canary_configuration_then_10_percent_shifts_for_5_minutes_then_all(
    succeeded: SimulationResult,
) -> None:
    deployment = _deployment(succeeded, "svc-company-prod-read")
    assert deployment["status"] == "Succeeded"
    assert deployment["deployment_config"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert [(h["phase"], h["status"], h["reports"]) for h in deployment["hooks"]] == [
        ("pre_traffic", "Succeeded", 1),
        ("post_traffic", "Succeeded", 1),
    ]
    target, current = deployment["target_version"], deployment["current_version"]
    assert list(deployment["routing_history"]) == [
        {"version": current, "additional_weights": {}},
        {"version": current, "additional_weights": {target: 0.1}},
        {"version": target, "additional_weights": {}},
    ]
    assert deployment["virtual_duration_s"] == 300


def test_given_a_linear_configuration_then_traffic_moves_10_percent_a_minute(succeeded: SimulationResult) -> None:
    deployment = _deployment(succeeded, ORDERS)
    weights = [r["additional_weights"].get(deployment["target_version"], 0.0) for r in deployment["routing_history"]]
    assert weights[1:-1] == pytest.approx([i / 10 for i in range(1, 10)])
    assert deployment["virtual_duration_s"] == 540


def test_given_a_deploy_then_the_build_ends_when_its_deployments_end(succeeded: SimulationResult) -> None:
    build = _prod_build(succeeded, "company-service")
    assert set(build["deployments"]) == {_deployment(succeeded, f)["deployment_id"] for f in COMPANY}
    started = build["started_at"]
    assert (started, build["ended_at"]) == (started, _plus(started, 6 * 60 + 300))  # build 6 min, then the canary


def test_given_a_pre_traffic_check_failing_then_no_traffic_reaches_it_and_the_stack_rolls_back() -> None:
    result = _run("canary-pre-traffic-fails")
    read = _deployment(result, "svc-company-prod-read")
    assert read["status"] == "Failed" and read["rolled_back"]
    (pre,) = read["hooks"]
    assert pre["phase"] == "pre_traffic" and pre["status"] == "Failed" and pre["reports"] == 1
    check = pre["invocations"][0]["result"]["checks"][0]
    assert check["name"] == "missing-company-is-404" and check["outcome"] == "failed"
    assert read["traffic_reached_new_version"] is False
    for sibling in (f for f in COMPANY if f != "svc-company-prod-read"):
        other = _deployment(result, sibling)
        assert other["status"] == "Succeeded", _why(other)
        assert other["rolled_back_by_stack"]
        assert other["final_alias"] == {"version": other["current_version"], "additional_weights": {}}
    assert _prod_build(result, "company-service")["status"] == "FAILED"
    assert result.status == "FAILED" and "company-service" in result.reason


def test_given_an_alarm_during_the_canary_then_codedeploy_rolls_back() -> None:
    result = _run("canary-alarm-rolls-back")
    read = _deployment(result, "svc-company-prod-read")
    assert read["status"] == "Failed" and read["rolled_back"]
    assert "svc-company-prod-read-errors" in read["error"]
    assert [h["phase"] for h in read["hooks"]] == ["pre_traffic"]  # PostTraffic never ran
    assert read["traffic_reached_new_version"] is True  # the 10% canary did get traffic
    assert read["final_alias"] == {"version": read["current_version"], "additional_weights": {}}
    assert result.status == "FAILED"


def test_given_the_hooks_dependency_raising_then_the_hook_still_reports_failed() -> None:
    result = _run("canary-hook-raises")
    read = _deployment(result, "svc-company-prod-read")
    (pre,) = read["hooks"]
    assert pre["status"] == "Failed" and pre["reports"] == 1
    outcome = pre["invocations"][0]["result"]
    assert any("ThrottlingException" in reason for reason in outcome["reasons"])
    assert read["traffic_reached_new_version"] is False
    assert result.status == "FAILED"


def test_given_duplicate_hook_delivery_then_each_hook_execution_is_reported_exactly_once() -> None:
    result = _run("canary-duplicate-delivery")
    for function in COMPANY:
        deployment = _deployment(result, function)
        assert deployment["status"] == "Succeeded", _why(deployment)
        for hook in deployment["hooks"]:
            assert hook["deliveries"] == 2
            assert hook["reports"] == 1, _why(deployment)
        ids = [c["execution_id"] for c in deployment["report_calls"]]
        assert len(ids) == len(set(ids)) == 2
    assert result.execution_status == "SUCCEEDED"


def test_given_a_silent_hook_then_codedeploy_fails_the_deployment_after_the_hour() -> None:
    result = _run("canary-hook-silent")
    api = _deployment(result, ORDERS)
    assert [(h["phase"], h["status"], h["deliveries"]) for h in api["hooks"]] == [
        ("pre_traffic", "Succeeded", 1),
        ("post_traffic", "NoReport", 0),
    ]
    assert api["status"] == "Failed" and "did not report within 1 hour" in api["error"]
    assert api["virtual_duration_s"] == 540 + 3600 + ROLLBACK_S
    assert api["final_alias"]["version"] == api["current_version"]
    assert _prod_build(result, "orders")["status"] == "FAILED"
    assert result.status == "FAILED"


def test_given_post_traffic_failing_after_the_full_shift_then_the_alias_returns_to_the_old_version() -> None:
    scenario = Scenario(
        approvals={"prod": ApprovalAction()}, hooks={"svc-company-prod-read": HookBehaviour(post_traffic="fail")}
    )
    result = simulate(ROOT / "fleet.yaml", scenario, ROOT)
    read = _deployment(result, "svc-company-prod-read")
    assert [(h["phase"], h["status"], h["reports"]) for h in read["hooks"]] == [
        ("pre_traffic", "Succeeded", 1),
        ("post_traffic", "Failed", 1),
    ]
    assert read["routing_history"][-2]["version"] == read["target_version"]  # had all the traffic
    assert read["final_alias"] == {"version": read["current_version"], "additional_weights": {}}
    assert read["status"] == "Failed" and result.status == "FAILED"


@pytest.mark.slow
def test_given_a_cancel_while_the_canary_shifts_when_run_20_times_then_every_run_tells_the_same_story() -> None:
    first: dict[str, object] | None = None
    for run in range(20):
        result = _run("cancel-during-canary")
        story: dict[str, object] = {
            "status": result.status,
            "reason": result.reason,
            "virtual_duration_s": result.virtual_duration_s,
            "builds": sorted((b["project"], b["status"], b["started_at"], b["ended_at"]) for b in result.builds),
            "deployments": sorted(
                (d["function"], d["status"], json.dumps(d["final_alias"]), d["virtual_duration_s"])
                for d in result.deployments
            ),
        }
        if first is None:
            first = story
        # Name what differs (the whole stories are too long for pytest's assertion report).
        differs = {k: {"first": first[k], f"run {run}": v} for k, v in story.items() if v != first[k]}
        assert differs == {}, [_why(d) for d in result.deployments if d["status"] == "Failed"]
    assert first is not None and first["status"] == "CANCELLED"


# --- the emulated CodeDeploy API ----------------------------------------------------------------------------------


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[tuple[Sandbox, str]]:
    """A company-service prod deployment waiting in its PreTraffic hook (no hook function exists to answer)."""
    scenario = Scenario(hooks={"company-service": HookBehaviour(pre_traffic="silent")})
    with sandbox(tmp_path, scenario, FLEET) as box:

        def deploy() -> str:
            world = box.world
            world.codedeploy.prepare(ROOT, "CodeDeployHook_release-train_PreTraffic", "CodeDeployHook_x_PostTraffic")
            world.codebuild.register_project("train-company-service-prod", "prod", "company-service")
            build = world.codebuild.start_build(
                {"projectName": "train-company-service-prod", "sourceVersion": "c0ffee"}
            )
            return str(build["build"]["id"])

        build_id = box.act(deploy)
        box.clock.run_until(6 * 60 + 1)
        deployment = box.world.codebuild.builds[build_id].deployments[1]  # svc-company-prod-read
        yield box, deployment


def test_get_deployment_leaves_the_appspec_content_out_as_aws_does(deployed: tuple[Sandbox, str]) -> None:
    _, deployment_id = deployed
    info = boto3.client("codedeploy").get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert info["computePlatform"] == "Lambda"
    assert info["status"] == "InProgress"
    assert info["revision"]["revisionType"] == "AppSpecContent"
    assert set(info["revision"]["appSpecContent"]) == {"sha256"}  # "content ... is always null" (GetDeployment)


def test_get_application_revision_serves_the_appspec_by_its_sha256(deployed: tuple[Sandbox, str]) -> None:
    _, deployment_id = deployed
    client = boto3.client("codedeploy")
    info = client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    revision = client.get_application_revision(applicationName=info["applicationName"], revision=info["revision"])
    content = revision["revision"]["appSpecContent"]["content"]
    (resource,) = json.loads(content)["Resources"]
    props = next(iter(resource.values()))["Properties"]
    assert props["Name"] == "svc-company-prod-read" and props["Alias"] == "live"
    assert (props["CurrentVersion"], props["TargetVersion"]) == ("1", "2")
    with pytest.raises(ClientError) as unknown:
        client.get_application_revision(
            applicationName=info["applicationName"],
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"sha256": "0" * 64}},
        )
    assert unknown.value.response["Error"]["Code"] == "RevisionDoesNotExistException"


def test_second_report_for_the_same_hook_execution_is_refused(deployed: tuple[Sandbox, str]) -> None:
    box, deployment_id = deployed
    client = boto3.client("codedeploy")
    (execution_id,) = box.world.codedeploy.deployments[deployment_id].hooks
    kwargs = {"deploymentId": deployment_id, "lifecycleEventHookExecutionId": execution_id}
    box.act(lambda: client.put_lifecycle_event_hook_execution_status(**kwargs, status="Succeeded"))
    with pytest.raises(ClientError) as refused:
        client.put_lifecycle_event_hook_execution_status(**kwargs, status="Failed")
    assert refused.value.response["Error"]["Code"] == "LifecycleEventAlreadyCompletedException"
    with pytest.raises(ClientError) as unknown:
        client.get_deployment(deploymentId="d-NOPE")
    assert unknown.value.response["Error"]["Code"] == "DeploymentDoesNotExistException"


def test_stop_deployment_with_rollback_puts_the_alias_back(deployed: tuple[Sandbox, str]) -> None:
    box, deployment_id = deployed
    client = boto3.client("codedeploy")
    answer = box.act(lambda: client.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True))
    assert answer["status"] == "Pending"
    box.settle()
    info = client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert info["status"] == "Stopped"
    alias = boto3.client("lambda").get_alias(FunctionName="svc-company-prod-read", Name="live")
    assert alias["FunctionVersion"] == "1"
    with pytest.raises(ClientError) as done:
        client.stop_deployment(deploymentId=deployment_id)
    assert done.value.response["Error"]["Code"] == "DeploymentAlreadyCompletedException"


def _plus(iso: str, seconds: int) -> str:
    from datetime import datetime, timedelta

    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
