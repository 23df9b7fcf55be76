"""examples/orders-ecs (linted in test_example_templates_lint.py): wired to release-train's hooks
the way the hooks read an ECS deployment: the checks parameter where they look, checks that pass their schema and
name the host the listener's certificate is for, an AppSpec (as the buildspec's deploy/orders_release.py writes it)
that their parser reads, and a blue/green deployment group with a test listener and alarm rollback."""

from __future__ import annotations

import importlib.util
import re
import threading
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from cfnlint.decode import cfn_yaml

from release_train.adapters.check_runners import HttpRequester
from release_train.domain.checks import CheckSuite, HookPhase, HookStatus, HttpCheck, parse_check_suite
from release_train.domain.hook_targets import (
    EcsService,
    EcsTarget,
    ListenerRule,
    checks_parameter_name,
    route_problem,
    target_from_deployment,
)
from release_train.hooks import HookRequest, RawChecks, ReportResult, TrafficHookService
from tests.conftest import ROOT

SERVICE = ROOT / "examples" / "orders-ecs"
TEMPLATE = SERVICE / "template.yaml"
TRAIN_TEMPLATE = ROOT / "template.yaml"
STACK = "svc-orders-prod"  # the fleet's naming convention: svc-<service>-<stage>
HOST = "orders.internal.example.com"


@cache
def _template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return loaded


def _resource(name: str) -> dict[str, Any]:
    properties: dict[str, Any] = _template()["Resources"][name]["Properties"]
    return properties


def _sub(text: str) -> str:
    stand_ins = {"AWS::StackName": STACK, "ServiceHost": HOST, "ChecksParameterPrefix": "/release-train/checks"}
    return re.sub(r"\$\{([^}]+)\}", lambda m: stand_ins[m.group(1)], text)


def _suite() -> CheckSuite:
    return parse_check_suite(_sub(_resource("OrdersChecks")["Value"]["Fn::Sub"]), "OrdersChecks")


def _release_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("orders_release", SERVICE / "deploy" / "orders_release.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_given_the_deployment_group_when_named_then_its_checks_parameter_is_where_the_hooks_look() -> None:
    application = _sub(_resource("Application")["ApplicationName"]["Fn::Sub"])
    group = _sub(_resource("DeploymentGroup")["DeploymentGroupName"]["Fn::Sub"])
    target = EcsTarget("d-1", application, group, test_listener_arn=None)

    assert _sub(_resource("OrdersChecks")["Name"]["Fn::Sub"]) == checks_parameter_name(target)
    assert application.startswith("svc-")  # inside the hooks' default IAM scope (FleetNamePrefix, ADR 0005)
    assert "OrdersChecks" in _template()["Resources"]["Service"]["DependsOn"]  # written before the first deployment


def test_given_the_published_checks_when_parsed_like_the_hooks_do_then_test_listener_checks_name_the_service_host() -> (
    None
):
    suite = _suite()
    pre = suite.checks_for(HookPhase.PRE_TRAFFIC)
    post = suite.checks_for(HookPhase.POST_TRAFFIC)

    assert pre and post
    # Through the test listener (a path on the load balancer): the certificate is for ServiceHost, so the check
    # must present that name (SNI, Host, verification).
    assert all(isinstance(c, HttpCheck) and c.request.path and c.request.host == HOST for c in pre)
    assert all(isinstance(c, HttpCheck) and c.request.url == f"https://{HOST}/health" for c in post)


def test_given_the_test_listener_when_its_default_rule_is_read_then_every_path_check_reaches_the_service() -> None:
    listener = _resource("TestListener")
    [action] = listener["DefaultActions"]
    rules = (ListenerRule("default", action=action["Type"]),)

    assert (listener["Protocol"], listener["Port"]) == ("HTTPS", 8443)
    for check in _suite().checks_for(HookPhase.PRE_TRAFFIC):
        assert isinstance(check, HttpCheck)
        assert route_problem(rules, str(check.request.host), str(check.request.path)) is None


def test_given_the_pre_traffic_checks_when_run_by_the_hooks_against_the_example_app_then_they_pass() -> None:
    """The published pre_traffic checks, run by the hooks' service against the real app on a loopback port standing
    in for the test listener (plain HTTP here: TLS by name is tested in tests/unit/hooks/test_http_check_tls.py)."""
    spec = importlib.util.spec_from_file_location("orders_app", SERVICE / "app" / "orders_app.py")
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    server = app.serve(0, "test")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    target = EcsTarget("d-1", STACK, f"{STACK}-orders", "arn:l", base_url, None, (ListenerRule("default"),))
    text = _sub(_resource("OrdersChecks")["Value"]["Fn::Sub"])

    class One:
        def target(self, deployment_id: str) -> EcsTarget:
            return target

        def load(self, checks_key: str) -> RawChecks:
            return RawChecks("OrdersChecks", text)

        def report(self, deployment_id: str, execution_id: str, status: HookStatus) -> ReportResult:
            return ReportResult.REPORTED

    one = One()
    service = TrafficHookService(one, one, one, None, HttpRequester(), None)  # type: ignore[arg-type]
    try:
        outcome = service.handle(HookRequest("d-1", "e-1", HookPhase.PRE_TRAFFIC), 60_000, 5_000)
    finally:
        server.shutdown()
        server.server_close()

    assert (outcome.status, outcome.reasons) == (HookStatus.SUCCEEDED, ())
    assert [r.name for r in outcome.results] == ["health-on-test-listener", "rejects-an-order-without-id"]


def test_given_the_appspec_the_buildspec_writes_when_the_hooks_parse_it_then_they_find_the_service_container() -> None:
    service = _resource("Service")
    [balancer] = service["LoadBalancers"]
    arn = "arn:aws:ecs:us-east-1:123456789012:task-definition/svc-orders-prod:7"
    content = _release_module().appspec(
        arn, balancer["ContainerName"], balancer["ContainerPort"], "CodeDeployHook_rt_PreTraffic", "post"
    )
    info = {"deploymentId": "d-1", "computePlatform": "ECS", "applicationName": STACK, "deploymentGroupName": "g"}

    target = target_from_deployment(info, content)

    assert isinstance(target, EcsTarget)
    assert target.service == EcsService(arn, "orders", 8080)


def test_given_the_hooks_the_service_names_when_resolved_then_they_are_the_train_stacks_exports() -> None:
    outputs = _template()["Outputs"]
    train_exports = {
        o["Export"]["Name"]["Fn::Sub"] for o in cfn_yaml.load(str(TRAIN_TEMPLATE))["Outputs"].values() if "Export" in o
    }

    for key, export in (("PreTrafficHook", "PreTrafficFunctionName"), ("PostTrafficHook", "PostTrafficFunctionName")):
        assert outputs[key]["Value"] == {"Fn::ImportValue": {"Fn::Sub": f"${{TrainStackName}}-{export}"}}
        assert f"${{AWS::StackName}}-{export}" in train_exports


def test_given_the_deployment_group_when_read_then_it_is_blue_green_with_a_test_listener_and_alarm_rollback() -> None:
    group = _resource("DeploymentGroup")
    [pair] = group["LoadBalancerInfo"]["TargetGroupPairInfoList"]

    assert _resource("Service")["DeploymentController"] == {"Type": "CODE_DEPLOY"}
    assert group["DeploymentStyle"] == {"DeploymentType": "BLUE_GREEN", "DeploymentOption": "WITH_TRAFFIC_CONTROL"}
    assert pair["ProdTrafficRoute"] == {"ListenerArns": [{"Ref": "ProductionListener"}]}
    assert pair["TestTrafficRoute"] == {"ListenerArns": [{"Ref": "TestListener"}]}
    assert len(pair["TargetGroups"]) == 2
    assert group["AutoRollbackConfiguration"]["Events"] == ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]
    assert {a["Name"]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]} == {"BlueErrorsAlarm", "GreenErrorsAlarm"}


def test_given_the_buildspec_when_read_then_it_tests_pushes_and_deploys_through_the_release_script() -> None:
    text = (SERVICE / "buildspec.yml").read_text()

    assert text.index("pytest tests") < text.index("docker push") < text.index("deploy/orders_release.py")
    assert Path(SERVICE / "Dockerfile").read_text().count("USER nobody") == 1
