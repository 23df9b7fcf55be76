"""ECS blue/green canaries in the sandbox (trainctl/sandbox/ecs.py): an ECS service of the fleet deploys through an
emulated CodeDeploy deployment over moto's ECS and ELBv2, its task sets running as loopback HTTP servers behind
loopback listeners, with the real PreTraffic/PostTraffic hooks checking the replacement through the test listener."""

from __future__ import annotations

import http.client
import importlib.util
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from release_train.domain.fleet import parse_fleet
from tests.sandbox.harness import Sandbox, sandbox
from trainctl.sandbox import accounts, network
from trainctl.sandbox.ecs import EcsDeployment, EcsDeployments, EcsService
from trainctl.sandbox.emulators import SandboxDefect
from trainctl.sandbox.runner import SimulationResult, open_world
from trainctl.sandbox.scenario import HookBehaviour, OperatorAction, Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
FLEET_PATH = ROOT / "examples" / "fleets" / "mixed-ecs.yaml"
FLEET = parse_fleet(FLEET_PATH.read_text())
SCENARIOS = ROOT / "examples" / "scenarios"
PRE, POST = "CodeDeployHook_release-train_PreTraffic", "CodeDeployHook_release-train_PostTraffic"


@dataclass
class EcsRun:
    """One whole train on the mixed fleet, with what moto and the loopback servers held at its end."""

    result: SimulationResult
    deployment: EcsDeployment
    site: EcsService
    actions: dict[str, list[dict[str, Any]]]  # listener (production/test) -> its DefaultActions in moto at the end
    requests_at_end: dict[str, int]  # task set label -> requests it served during the train
    info: dict[str, Any]  # GetDeployment's deploymentInfo
    targets: dict[str, Any]  # BatchGetDeploymentTargets
    appspec: str  # GetApplicationRevision's content
    listed: list[str]  # ListDeployments of the ECS application
    through_production: dict[str, Any] | None  # GET /health through the production listener, by the LB's DNS name
    hook_functions: dict[str, str]  # the stack's PreTraffic/PostTraffic functions


def _simulate(name: str) -> EcsRun:
    with open_world(FLEET_PATH, load_scenario(SCENARIOS / f"{name}.yaml"), ROOT) as run:
        result = run.run(time.perf_counter())
        ecs: EcsDeployments = run.world.ecs
        (deployment,) = ecs.deployments.values()
        site = deployment.site
        assert site.production is not None and site.test is not None
        elbv2, codedeploy = boto3.client("elbv2"), boto3.client("codedeploy")
        actions = {
            which: elbv2.describe_listeners(ListenerArns=[proxy.listener_arn])["Listeners"][0]["DefaultActions"]
            for which, proxy in (("production", site.production), ("test", site.test))
        }
        requests_at_end = {ts.label: len(ts.server.requests) for ts in (deployment.blue, deployment.green)}
        info = codedeploy.get_deployment(deploymentId=deployment.id)["deploymentInfo"]
        targets = codedeploy.batch_get_deployment_targets(deploymentId=deployment.id, targetIds=[site.target_id])
        revision = codedeploy.get_application_revision(
            applicationName=info["applicationName"], revision=info["revision"]
        )
        listed = codedeploy.list_deployments(
            applicationName=info["applicationName"], deploymentGroupName=info["deploymentGroupName"]
        )["deployments"]
        served = None
        if result.status == "SUCCEEDED":
            connection = http.client.HTTPConnection(site.dns_name, site.production.port, timeout=10)
            connection.request("GET", "/health")
            served = json.loads(connection.getresponse().read())
            connection.close()
        return EcsRun(
            result,
            deployment,
            site,
            actions,
            requests_at_end,
            dict(info),
            dict(targets),
            revision["revision"]["appSpecContent"]["content"],
            listed,
            served,
            dict(ecs.hook_functions),
        )


@pytest.fixture(scope="module")
def ecs_canary_succeeds() -> EcsRun:
    return _simulate("ecs-canary-succeeds")


@pytest.fixture(scope="module")
def ecs_canary_alarm_rolls_back() -> EcsRun:
    return _simulate("ecs-canary-alarm-rolls-back")


def _forwarded(action: dict[str, Any]) -> dict[str, int]:
    """A forward action's target group ARN -> weight (the groups that get traffic)."""
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or [
        {"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}
    ]
    return {g["TargetGroupArn"]: int(g["Weight"]) for g in groups if int(g.get("Weight", 1)) > 0}


def _orders_prod_build(result: SimulationResult) -> dict[str, Any]:
    (build,) = [b for b in result.builds if b["stage"] == "prod" and b["service"] == "orders"]
    return build


# --- a canary that succeeds --------------------------------------------------------------------------------------


def test_given_an_ecs_service_when_its_canary_succeeds_then_the_green_task_set_serves_production(
    ecs_canary_succeeds: EcsRun,
) -> None:
    run = ecs_canary_succeeds
    assert run.result.status == "SUCCEEDED", run.result.reason
    d = run.deployment
    assert d.status == "Succeeded" and not d.rolled_back
    assert run.site.live is d.green and d.blue is not d.green
    # moto's listeners: production and test both forward everything to the replacement's target group.
    assert _forwarded(run.actions["production"][0]) == {d.green.target_group: 100}
    assert _forwarded(run.actions["test"][0]) == {d.green.target_group: 100}
    # And a request by the load balancer's own DNS name reaches the new release (its VERSION: the commit).
    head = load_scenario(SCENARIOS / "ecs-canary-succeeds.yaml").commit("orders", "head")
    assert run.through_production == {"status": "ok", "version": head[:12]}
    assert _orders_prod_build(run.result)["status"] == "SUCCEEDED"
    assert _orders_prod_build(run.result)["deployments"] == [d.id]


def test_given_a_canary_configuration_then_10_percent_of_production_shifts_for_5_minutes_then_all(
    ecs_canary_succeeds: EcsRun,
) -> None:
    d = ecs_canary_succeeds.deployment
    blue, green = (ecs_canary_succeeds.site.target_groups[t.target_group] for t in (d.blue, d.green))
    assert d.routing == [
        {"production": {blue: 1.0}, "test": {blue: 1.0}},
        {"production": {blue: 1.0}, "test": {green: 1.0}},  # AllowTestTraffic, before BeforeAllowTraffic
        {"production": {blue: 0.9, green: 0.1}, "test": {green: 1.0}},
        {"production": {green: 1.0}, "test": {green: 1.0}},
    ]
    assert [e["name"] for e in d.events] == [
        "Install",
        "AllowTestTraffic",
        "BeforeAllowTraffic",
        "AllowTraffic",
        "AfterAllowTraffic",
    ]
    allow = next(e for e in d.events if e["name"] == "AllowTraffic")
    assert allow["end_v"] - allow["start_v"] == 300  # 10 % for 5 virtual minutes
    assert d.config == "CodeDeployDefault.ECSCanary10Percent5Minutes"


def test_given_the_hooks_then_they_called_the_green_server_through_the_test_listener(
    ecs_canary_succeeds: EcsRun,
) -> None:
    run = ecs_canary_succeeds
    d = run.deployment
    assert run.site.test is not None
    test_port = str(run.site.test.port)
    seen = [(r.method, r.path, r.host, r.forwarded_port) for r in d.green.server.requests]
    # Both hooks ran the example's checks (examples/orders-ecs/template.yaml OrdersChecks) on the test listener, with
    # the service's host name as Host.
    expected = [
        ("GET", "/health", "orders.sandbox.internal", test_port),
        ("POST", "/orders", "orders.sandbox.internal", test_port),
    ]
    assert seen[:4] == expected * 2
    assert run.requests_at_end == {"Blue": 0, "Green": 4}  # nothing reached the original task set


def test_given_the_hooks_then_their_reports_are_in_the_deployment(ecs_canary_succeeds: EcsRun) -> None:
    d = ecs_canary_succeeds.deployment
    assert [(h["phase"], h["status"], h["reports"]) for h in d.hook_results] == [
        ("pre_traffic", "Succeeded", 1),
        ("post_traffic", "Succeeded", 1),
    ]
    site = ecs_canary_succeeds.site
    assert site.test is not None
    outcome = d.hook_results[0]["invocations"][0]["result"]
    assert outcome["target"].startswith("ecs:svc-orders-prod/svc-orders-prod-orders task=arn:aws:ecs:")
    assert outcome["target"].endswith(f"test=http://{site.dns_name}:{site.test.port}")  # the test listener's URL
    assert [(c["name"], c["outcome"]) for c in outcome["checks"]] == [
        ("health-on-test-listener", "passed"),
        ("rejects-an-order-without-id", "passed"),
    ]
    (target,) = ecs_canary_succeeds.targets["deploymentTargets"]
    assert target["deploymentTargetType"] == "ECSTarget"
    events = {e["lifecycleEventName"]: e["status"] for e in target["ecsTarget"]["lifecycleEvents"]}
    assert events["BeforeAllowTraffic"] == events["AfterAllowTraffic"] == "Succeeded"
    assert target["ecsTarget"]["targetId"] == "svc-orders-prod:orders"  # <clustername>:<servicename>
    labels = {t["taskSetLabel"]: (t["status"], t["trafficWeight"]) for t in target["ecsTarget"]["taskSetsInfo"]}
    assert labels == {"Blue": ("ACTIVE", 0.0), "Green": ("PRIMARY", 100.0)}


def test_get_deployment_describes_an_ecs_blue_green_deployment_with_documented_fields(
    ecs_canary_succeeds: EcsRun,
) -> None:
    run = ecs_canary_succeeds
    info = run.info
    assert info["computePlatform"] == "ECS"
    assert info["deploymentStyle"] == {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"}
    assert set(info["revision"]["appSpecContent"]) == {"sha256"}  # the content "is always null" (GetDeployment)
    (pair,) = info["loadBalancerInfo"]["targetGroupPairInfoList"]
    assert run.site.test is not None and run.site.production is not None
    assert pair["testTrafficRoute"]["listenerArns"] == [run.site.test.listener_arn]
    assert pair["prodTrafficRoute"]["listenerArns"] == [run.site.production.listener_arn]
    assert (info["applicationName"], info["deploymentGroupName"]) == ("svc-orders-prod", "svc-orders-prod-orders")
    assert run.listed == [run.deployment.id]


def test_the_appspec_is_the_one_the_example_buildspec_writes(ecs_canary_succeeds: EcsRun) -> None:
    spec = importlib.util.spec_from_file_location(
        "orders_release_under_test", ROOT / "examples" / "orders-ecs" / "deploy" / "orders_release.py"
    )
    assert spec is not None and spec.loader is not None
    release = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(release)
    d, hooks = ecs_canary_succeeds.deployment, ecs_canary_succeeds.hook_functions
    expected = release.appspec(d.green.task_definition, "orders", 8080, hooks["pre_traffic"], hooks["post_traffic"])
    assert ecs_canary_succeeds.appspec == expected
    assert d.green.task_definition.endswith("task-definition/svc-orders-prod:2")  # the release's new revision


# --- a canary that alarms ----------------------------------------------------------------------------------------


def test_given_an_alarm_during_the_ecs_canary_then_codedeploy_rolls_back_to_blue_and_the_train_fails(
    ecs_canary_alarm_rolls_back: EcsRun,
) -> None:
    run = ecs_canary_alarm_rolls_back
    d = run.deployment
    assert d.status == "Failed" and d.rolled_back
    assert d.error == "alarm(s) svc-orders-prod-5xx in ALARM during the traffic shift"
    assert run.info["errorInformation"]["code"] == "ALARM_ACTIVE"
    assert _forwarded(run.actions["production"][0]) == {d.blue.target_group: 100}
    assert _forwarded(run.actions["test"][0]) == {d.blue.target_group: 100}
    assert run.site.live is d.blue and d.green in run.site.retired
    assert [h["phase"] for h in d.hook_results] == ["pre_traffic"]  # AfterAllowTraffic never ran
    assert _orders_prod_build(run.result)["status"] == "FAILED"
    # As for a Lambda canary failure: the wave fails, the release FAILED.
    assert run.result.status == "FAILED"
    assert "prod wave 2: 1 of 1 builds failed: orders (FAILED)" in run.result.reason


def test_given_the_rollback_policy_then_the_train_rolls_back_aliases_and_leaves_ecs_to_codedeploy(
    ecs_canary_alarm_rolls_back: EcsRun,
) -> None:
    result = ecs_canary_alarm_rolls_back.result
    rolled = next(e for e in result.events if e["kind"] == "live_after_end")["detail"]["rolled_back"]
    assert sorted(line.split(":")[0] for line in rolled) == sorted(
        f"svc-company-prod-{verb}" for verb in ("create", "read", "update", "delete")
    )
    assert result.live["prod"]["orders"] == "unknown"  # no alias to observe, its build failed: unknown, said so


# --- the emulated API, step by step ------------------------------------------------------------------------------


@pytest.fixture
def waiting(tmp_path: Path) -> Iterator[tuple[Sandbox, EcsDeployment]]:
    """An orders prod deployment waiting in BeforeAllowTraffic (no hook function exists to answer)."""
    scenario = Scenario(hooks={"orders": HookBehaviour(pre_traffic="silent")})
    with sandbox(tmp_path, scenario, FLEET) as box:
        try:

            def deploy() -> str:
                world = box.world
                world.ecs.prepare(ROOT, PRE, POST, {"orders": "a" * 40})
                world.codebuild.register_project("train-orders-prod", "prod", "orders")
                build = world.codebuild.start_build({"projectName": "train-orders-prod", "sourceVersion": "b" * 40})
                return str(build["build"]["id"])

            build_id = box.act(deploy)
            box.clock.run_until(6 * 60 + 120)  # the build's 6 minutes, Install's minute, then the hook wait
            (deployment_id,) = box.world.codebuild.builds[build_id].deployments
            yield box, box.world.ecs.deployments[deployment_id]
        finally:
            box.settle()
            box.world.ecs.stop()


def test_stop_deployment_rolls_the_listeners_back_to_blue(waiting: tuple[Sandbox, EcsDeployment]) -> None:
    box, d = waiting
    assert d.status == "InProgress" and d.green.server.requests == []
    client, elbv2 = boto3.client("codedeploy"), boto3.client("elbv2")
    assert d.site.test is not None and d.site.production is not None
    test_action = elbv2.describe_listeners(ListenerArns=[d.site.test.listener_arn])["Listeners"][0]
    assert _forwarded(test_action["DefaultActions"][0]) == {d.green.target_group: 100}  # the test listener: green
    answer = box.act(lambda: client.stop_deployment(deploymentId=d.id, autoRollbackEnabled=True))
    assert answer["status"] == "Pending"
    box.settle()
    info = client.get_deployment(deploymentId=d.id)["deploymentInfo"]
    assert (info["status"], info["errorInformation"]["code"]) == ("Stopped", "MANUAL_STOP")
    for proxy in (d.site.production, d.site.test):
        action = elbv2.describe_listeners(ListenerArns=[proxy.listener_arn])["Listeners"][0]["DefaultActions"][0]
        assert _forwarded(action) == {d.blue.target_group: 100}
    assert d.rolled_back and d.site.live is d.blue
    with pytest.raises(ClientError) as done:
        client.stop_deployment(deploymentId=d.id)
    assert done.value.response["Error"]["Code"] == "DeploymentAlreadyCompletedException"


def test_a_second_report_for_one_hook_execution_is_refused(waiting: tuple[Sandbox, EcsDeployment]) -> None:
    box, d = waiting
    client = boto3.client("codedeploy")
    (execution_id,) = d.hooks
    kwargs = {"deploymentId": d.id, "lifecycleEventHookExecutionId": execution_id}
    box.act(lambda: client.put_lifecycle_event_hook_execution_status(**kwargs, status="Failed"))
    with pytest.raises(ClientError) as refused:
        client.put_lifecycle_event_hook_execution_status(**kwargs, status="Succeeded")
    assert refused.value.response["Error"]["Code"] == "LifecycleEventAlreadyCompletedException"
    box.settle()
    assert d.status == "Failed" and d.error == "pre_traffic hook reported Failed" and d.rolled_back


def test_list_deployments_names_lambda_and_ecs_deployments_and_unknown_ones_are_not_found(
    waiting: tuple[Sandbox, EcsDeployment],
) -> None:
    _, d = waiting
    client = boto3.client("codedeploy")
    assert client.list_deployments()["deployments"] == [d.id]
    assert client.list_deployments(applicationName="svc-orders-prod", deploymentGroupName="svc-orders-prod-orders")[
        "deployments"
    ] == [d.id]
    assert client.list_deployment_targets(deploymentId=d.id)["targetIds"] == ["svc-orders-prod:orders"]
    with pytest.raises(ClientError) as unknown:
        client.get_deployment(deploymentId="d-NOPE")
    assert unknown.value.response["Error"]["Code"] == "DeploymentDoesNotExistException"


def test_an_invented_field_in_get_deployment_is_refused_by_the_dispatcher(
    waiting: tuple[Sandbox, EcsDeployment], monkeypatch: pytest.MonkeyPatch
) -> None:
    box, d = waiting
    original = EcsDeployments.get_deployment

    def inventive(self: EcsDeployments, deployment: EcsDeployment, params: dict[str, Any]) -> dict[str, Any]:
        answer = original(self, deployment, params)
        answer["deploymentInfo"]["trafficShiftedPercent"] = 10  # not a member of DeploymentInfo
        return answer

    monkeypatch.setattr(EcsDeployments, "get_deployment", inventive)
    with pytest.raises(SandboxDefect, match="trafficShiftedPercent"):
        boto3.client("codedeploy").get_deployment(deploymentId=d.id)
    assert box.world.defects  # the runner fails a simulation on any defect, even one a handler swallowed
    box.world.defects.clear()  # (this sandbox is torn down by the fixture, not by a runner)


def test_the_test_listener_reaches_the_green_server_by_the_load_balancers_dns_name(
    waiting: tuple[Sandbox, EcsDeployment],
) -> None:
    _, d = waiting
    assert d.site.test is not None
    with network.sealed():
        connection = http.client.HTTPConnection(d.site.dns_name, d.site.test.port, timeout=10)
        connection.request("GET", "/health", headers={"Host": "orders.example.com"})
        answer = json.loads(connection.getresponse().read())
        connection.close()
    assert answer == {"status": "ok", "version": "b" * 12}
    assert [(r.path, r.host, r.forwarded_port) for r in d.green.server.requests] == [
        ("/health", "orders.example.com", str(d.site.test.port))
    ]


# --- the network guard -------------------------------------------------------------------------------------------


def test_the_network_guard_still_refuses_a_load_balancer_name_the_sandbox_did_not_create(
    waiting: tuple[Sandbox, EcsDeployment],
) -> None:
    _, d = waiting
    with network.sealed():
        assert {a[4][0] for a in socket.getaddrinfo(d.site.dns_name, 80)} == {"127.0.0.1"}
        for name in ("svc-orders-prod-2.us-east-1.elb.amazonaws.com", "internal-other-1.eu-west-1.elb.amazonaws.com"):
            with pytest.raises(network.SandboxEscape):
                socket.getaddrinfo(name, 80)


def test_a_load_balancer_name_stops_resolving_when_its_simulation_ends(tmp_path: Path) -> None:
    with sandbox(tmp_path, Scenario(), FLEET) as box:
        box.act(lambda: box.world.ecs.prepare(ROOT, PRE, POST))
        names = [site.dns_name for site in box.world.ecs.sites.values()]
        box.world.ecs.stop()
    assert sorted(names) == [
        "svc-orders-prod-1.us-east-1.elb.amazonaws.com",
        "svc-orders-staging-1.us-east-1.elb.amazonaws.com",
    ]
    with network.sealed():
        for name in names:
            with pytest.raises(network.SandboxEscape):
                socket.getaddrinfo(name, 80)


def test_given_a_cancel_during_the_ecs_canary_then_the_clean_up_stops_it_and_codedeploy_rolls_back() -> None:
    # orders' prod build is the third Build of prod (wave 1: company-service, identity); 8 minutes in, its deployment
    # shifts 10 % of production (the build's 6 minutes, Install's minute, then the 5-minute canary step).
    scenario = load_scenario(SCENARIOS / "ecs-canary-succeeds.yaml").model_copy(
        update={
            "operator": [
                OperatorAction(
                    action="cancel", at_state="Build", stage="prod", occurrence=3, after=timedelta(minutes=8)
                )
            ]
        }
    )
    with open_world(FLEET_PATH, scenario, ROOT) as run:
        result = run.run(time.perf_counter())
        (d,) = run.world.ecs.deployments.values()
        assert d.site.production is not None
        action = boto3.client("elbv2").describe_listeners(ListenerArns=[d.site.production.listener_arn])["Listeners"][0]
    assert result.status == "CANCELLED"
    assert {
        "production": {d.site.target_groups[d.blue.target_group]: 0.9, d.site.target_groups[d.green.target_group]: 0.1}
    }.items() <= d.routing[2].items()
    assert (d.status, d.error_code, d.rolled_back) == ("Stopped", "MANUAL_STOP", True)
    assert _forwarded(action["DefaultActions"][0]) == {d.blue.target_group: 100}
    assert result.cleanup is not None
    assert result.cleanup["stopped_deployments"] == {f"ecs/svc-orders-prod/svc-orders-prod-orders {d.id}": "Stopped"}


def test_given_a_bad_release_then_the_pre_traffic_hook_fails_on_the_test_listener_and_production_never_shifts() -> None:
    scenario = load_scenario(SCENARIOS / "ecs-canary-succeeds.yaml").model_copy(
        update={"hooks": {"orders": HookBehaviour(pre_traffic="fail")}}
    )
    with open_world(FLEET_PATH, scenario, ROOT) as run:
        result = run.run(time.perf_counter())
        (d,) = run.world.ecs.deployments.values()
    green = d.site.target_groups[d.green.target_group]
    assert (d.status, d.error, d.rolled_back) == ("Failed", "pre_traffic hook reported Failed", True)
    assert all(green not in r["production"] for r in d.routing)  # no production traffic ever reached it
    assert [r.path for r in d.green.server.requests] == ["/health", "/orders"]  # both checks ran, against green
    checks = d.hook_results[0]["invocations"][0]["result"]["checks"]
    assert [(c["name"], c["outcome"]) for c in checks] == [
        ("health-on-test-listener", "failed"),
        ("rejects-an-order-without-id", "failed"),
    ]
    assert result.status == "FAILED"


@pytest.mark.slow  # a whole train across three accounts, as tests/sandbox/test_three_accounts.py
def test_given_stages_in_their_own_accounts_then_the_ecs_service_and_its_deployment_live_in_the_stage_account(
    tmp_path: Path,
) -> None:
    # The mixed fleet with the stages of examples/fleets/three-accounts.yaml (staging 222222222222, prod 333333333333).
    mixed = yaml.safe_load(FLEET_PATH.read_text())
    mixed["stages"] = yaml.safe_load((ROOT / "examples" / "fleets" / "three-accounts.yaml").read_text())["stages"]
    fleet_path = tmp_path / "mixed-three-accounts.yaml"
    fleet_path.write_text(yaml.safe_dump(mixed))
    prod = "333333333333"
    with open_world(fleet_path, load_scenario(SCENARIOS / "ecs-canary-succeeds.yaml"), ROOT) as run:
        result = run.run(time.perf_counter())
        (d,) = run.world.ecs.deployments.values()
        in_prod = accounts.session_for(prod, "us-east-1").client("ecs", region_name="us-east-1")
        clusters_in_prod = in_prod.list_clusters()["clusterArns"]
        clusters_in_tools = boto3.client("ecs").list_clusters()["clusterArns"]
        codedeploy_in_prod = accounts.session_for(prod, "us-east-1").client("codedeploy", region_name="us-east-1")
        status_in_prod = codedeploy_in_prod.get_deployment(deploymentId=d.id)["deploymentInfo"]["status"]
        with pytest.raises(ClientError) as elsewhere:
            boto3.client("codedeploy").get_deployment(deploymentId=d.id)
    assert result.status == "SUCCEEDED", result.reason
    assert (d.site.account, d.status, status_in_prod) == (prod, "Succeeded", "Succeeded")
    assert clusters_in_prod == [f"arn:aws:ecs:us-east-1:{prod}:cluster/svc-orders-prod"]
    assert clusters_in_tools == []  # nothing of a stage exists in the tools account
    assert elsewhere.value.response["Error"]["Code"] == "DeploymentDoesNotExistException"
    # CodeDeploy invoked the prod account's hooks (4 company-service functions + orders), never the tools account's.
    assert result.invocations.get(f"PreTrafficFunction@{prod}") == 5
    assert "PreTrafficFunction" not in result.invocations
    assert len(d.green.server.requests) == 4
