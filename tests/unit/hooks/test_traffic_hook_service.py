"""TrafficHookService with in-memory fakes for every port: what it runs, against what, and within which time."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from release_train.adapters.check_runners import HttpRequester
from release_train.domain.checks import (
    ExpressObservation,
    HookPhase,
    HookStatus,
    HttpObservation,
    InvokeObservation,
)
from release_train.domain.hook_targets import DeploymentTarget, EcsTarget, LambdaTarget, ListenerRule
from release_train.hooks import HookRequest, RawChecks, ReportResult, TrafficHookService
from tests.unit.hooks.conftest import Loopback

LAMBDA = LambdaTarget("d-1", "svc-a", "live", "6", "7")
REQUEST = HookRequest("d-1", "exec-1", HookPhase.PRE_TRAFFIC)


@dataclass
class Fakes:
    target: DeploymentTarget = LAMBDA
    suite: dict[str, Any] | None = None
    invoke_delay_s: float = 0.0
    reports: list[tuple[str, str, HookStatus]] = field(default_factory=list)
    invocations: list[tuple[str, str]] = field(default_factory=list)

    def service(self, http: Any = None) -> TrafficHookService:
        fakes = self

        class Deployments:
            def target(self, deployment_id: str) -> DeploymentTarget:
                return fakes.target

        class Reporter:
            def report(self, deployment_id: str, execution_id: str, status: HookStatus) -> ReportResult:
                fakes.reports.append((deployment_id, execution_id, status))
                return ReportResult.REPORTED

        class Checks:
            def load(self, checks_key: str) -> RawChecks | None:
                return None if fakes.suite is None else RawChecks(f"fake:{checks_key}", json.dumps(fakes.suite))

        class Invoker:
            def invoke(self, function_name: str, qualifier: str, payload: bytes, timeout_s: float) -> InvokeObservation:
                fakes.invocations.append((function_name, qualifier))
                time.sleep(fakes.invoke_delay_s)
                return InvokeObservation(None, payload, 1.0)

        class Express:
            def start_sync(self, state_machine_arn: str, input_json: str, timeout_s: float) -> ExpressObservation:
                return ExpressObservation("SUCCEEDED", input_json, None, None)

        class NoHttp:
            def request(self, *args: Any) -> HttpObservation:
                raise ConnectionError("connection refused")

        return TrafficHookService(Deployments(), Reporter(), Checks(), Invoker(), http or NoHttp(), Express())


def _http_suite(base_url: str | None = "https://declared.example") -> dict[str, Any]:
    return {"base_url": base_url, "pre_traffic": [{"kind": "http", "name": "h", "request": {"path": "/health"}}]}


def test_given_an_invoke_check_when_run_then_the_deployments_target_version_is_invoked() -> None:
    fakes = Fakes(suite={"pre_traffic": [{"kind": "invoke", "name": "i"}]})

    fakes.service().handle(REQUEST, remaining_ms=60_000, safety_margin_ms=5_000)

    assert fakes.invocations == [("svc-a", "7")]


def test_given_an_empty_check_list_for_the_phase_when_run_then_succeeded_is_reported() -> None:
    fakes = Fakes(suite={"pre_traffic": [], "post_traffic": [{"kind": "invoke", "name": "i"}]})

    outcome = fakes.service().handle(REQUEST, remaining_ms=60_000, safety_margin_ms=5_000)

    assert (outcome.status, fakes.reports) == (HookStatus.SUCCEEDED, [("d-1", "exec-1", HookStatus.SUCCEEDED)])


def test_given_a_check_that_hangs_when_run_then_it_times_out_within_its_allowance_and_failed_is_reported() -> None:
    fakes = Fakes(suite={"pre_traffic": [{"kind": "invoke", "name": "i", "timeout_ms": 200}]}, invoke_delay_s=3)

    outcome = fakes.service().handle(REQUEST, remaining_ms=60_000, safety_margin_ms=5_000)

    assert outcome.reasons == ("i: no answer within 200 ms",)
    assert [r[2] for r in fakes.reports] == [HookStatus.FAILED]


def test_given_a_check_whose_adapter_raises_when_run_then_it_is_an_error_and_the_next_check_still_runs() -> None:
    checks = [
        {"kind": "http", "name": "h", "request": {"url": "https://down.example/"}},
        {"kind": "invoke", "name": "i"},
    ]
    fakes = Fakes(suite={"pre_traffic": checks})

    outcome = fakes.service().handle(REQUEST, remaining_ms=60_000, safety_margin_ms=5_000)

    assert [(r.name, r.outcome.value) for r in outcome.results] == [("h", "error"), ("i", "passed")]
    assert outcome.reasons == ("h: ConnectionError: connection refused",)


def test_given_an_ecs_deployment_when_an_http_path_check_runs_then_it_goes_to_the_test_listener(
    loopback: Loopback,
) -> None:
    fakes = Fakes(target=EcsTarget("d-1", "web", "web-prod", "arn:listener", base_url=loopback.base_url))
    fakes.suite = _http_suite("https://declared.example")

    outcome = fakes.service(http=HttpRequester()).handle(REQUEST, remaining_ms=60_000, safety_margin_ms=5_000)

    assert outcome.status is HookStatus.SUCCEEDED
    assert loopback.hits["/health"] == 1


# The ECS test listener of an ALB that routes by host and path (the default rule answers 404 itself).
ROUTED = (
    ListenerRule("10", hosts=("orders.example.com",), paths=("/health", "/orders*"), action="forward"),
    ListenerRule("default", action="fixed-response"),
)


def test_given_listener_rules_when_a_check_names_the_routed_host_then_it_reaches_the_service_with_that_host(
    loopback: Loopback,
) -> None:
    fakes = Fakes(target=EcsTarget("d-1", "AppECS-c-o", "DgpECS-c-o", "arn:l", loopback.base_url, None, ROUTED))
    fakes.suite = {
        "pre_traffic": [{"kind": "http", "name": "h", "request": {"path": "/health", "host": "orders.example.com"}}]
    }

    outcome = fakes.service(http=HttpRequester()).handle(REQUEST, remaining_ms=60_000, safety_margin_ms=5_000)

    assert (outcome.status, loopback.hits["/health"]) == (HookStatus.SUCCEEDED, 1)


@pytest.mark.parametrize(
    ("request_", "host", "path"),
    [
        ({"path": "/health"}, "127.0.0.1", "/health"),
        ({"path": "/admin", "host": "orders.example.com"}, "orders.example.com", "/admin"),
    ],
)
def test_given_listener_rules_when_a_checks_host_and_path_match_no_rule_then_it_says_so_without_a_request(
    loopback: Loopback, request_: dict[str, Any], host: str, path: str
) -> None:
    fakes = Fakes(target=EcsTarget("d-1", "AppECS-c-o", "DgpECS-c-o", "arn:l", loopback.base_url, None, ROUTED))
    fakes.suite = {"pre_traffic": [{"kind": "http", "name": "h", "request": request_}]}

    outcome = fakes.service(http=HttpRequester()).handle(REQUEST, remaining_ms=60_000, safety_margin_ms=5_000)

    assert outcome.status is HookStatus.FAILED
    assert f"host {host!r} path {path!r} matches no rule of the test listener" in outcome.reasons[0]
    assert sum(loopback.hits.values()) == 0


def test_given_an_ecs_deployment_when_an_invoke_check_is_declared_then_it_fails_as_not_applicable() -> None:
    fakes = Fakes(
        target=EcsTarget("d-1", "web", "web-prod", None), suite={"pre_traffic": [{"kind": "invoke", "name": "i"}]}
    )

    outcome = fakes.service().handle(REQUEST, remaining_ms=60_000, safety_margin_ms=5_000)

    assert outcome.reasons == ("i: InvalidInput: i is invalid:\n  - 'invoke' checks need a Lambda deployment",)


def test_given_a_path_check_and_no_base_url_anywhere_when_run_then_it_fails_saying_what_is_missing() -> None:
    fakes = Fakes(suite=_http_suite(base_url=None))

    outcome = fakes.service().handle(REQUEST, remaining_ms=60_000, safety_margin_ms=5_000)

    assert "request.path needs a base_url" in outcome.reasons[0]
