"""The real hook handlers (functions/*/app.py) end to end against moto + a fake CodeDeploy + a loopback server.

Every test asserts what CodeDeploy saw: the status, and that it was reported exactly once (or not at all).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from release_train.domain.checks import HttpObservation
from release_train.hook_lambda import HookAlreadyInProgress
from tests.conftest import FakeLambdaContext, load_event
from tests.fixtures import aws_fixture
from tests.unit.hooks.conftest import FUNCTION, FakeCodeDeploy, Loopback, create_state_machine, load_hook, put_checks
from trainctl.sandbox import vtime

PASS_MACHINE = {"StartAt": "Ok", "States": {"Ok": {"Type": "Pass", "Result": {"ok": True}, "End": True}}}
FAIL_MACHINE = {"StartAt": "No", "States": {"No": {"Type": "Fail", "Error": "SmokeFailed", "Cause": "bad"}}}


def _lambda_deployment(aws: FakeCodeDeploy, event_file: str) -> dict[str, Any]:
    event = load_event(event_file)
    aws.add_deployment(event["DeploymentId"])
    return event


def test_given_passing_invoke_http_and_express_checks_when_pre_traffic_runs_then_succeeded_is_reported_once(
    aws: FakeCodeDeploy, loopback: Loopback, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    machine = create_state_machine("smoke-ok", PASS_MACHINE)
    put_checks(FUNCTION, "checks_passing.json", BASE_URL=loopback.base_url, STATE_MACHINE_ARN=machine)

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.reports == [
        {
            "deploymentId": event["DeploymentId"],
            "lifecycleEventHookExecutionId": event["LifecycleEventHookExecutionId"],
            "status": "Succeeded",
        }
    ]
    assert [c["outcome"] for c in result["checks"]] == ["passed", "passed", "passed"]


def test_given_a_lambda_deployment_when_a_hook_runs_then_its_appspec_comes_from_get_application_revision(
    aws: FakeCodeDeploy, lambda_context: FakeLambdaContext
) -> None:
    # GetDeployment's appSpecContent.content is always null (API_GetDeployment.html): the fixture carries the sha256.
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_failing_invoke.json")
    deployment = aws_fixture("codedeploy", "GetDeployment", "lambda", DEPLOYMENT_ID=event["DeploymentId"])
    revision = deployment["deploymentInfo"]["revision"]
    assert "content" not in revision["appSpecContent"]

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.revision_requests == [
        {"applicationName": deployment["deploymentInfo"]["applicationName"], "revision": revision}
    ]
    assert result["target"] == "lambda:company-svc-create:live 1 -> 2"


def test_given_an_appspec_revision_codedeploy_cannot_find_when_pre_traffic_runs_then_failed_is_reported_once(
    aws: FakeCodeDeploy, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    aws.revisions.clear()

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Failed"]
    assert "RevisionDoesNotExistException" in result["reasons"][0]


def test_given_a_failing_invoke_check_when_pre_traffic_runs_then_failed_is_reported_once(
    aws: FakeCodeDeploy, lambda_context: FakeLambdaContext
) -> None:
    # The checked function answers with its event (conftest._echo_invoke): no statusCode, so "expect 400" fails.
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_failing_invoke.json")

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Failed"]
    assert result["reasons"] == ["create-company: statusCode is None, expected 400"]


def test_given_a_target_version_that_raises_when_pre_traffic_runs_then_failed_is_reported_with_its_error(
    aws: FakeCodeDeploy, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_raising_invoke.json")

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Failed"]
    assert result["reasons"] == [
        'create-company: function error (Unhandled): {"errorType": "Exception", "errorMessage": "KeyError: \'name\'"}'
    ]


def test_given_a_failing_http_check_when_pre_traffic_runs_then_failed_is_reported_once(
    aws: FakeCodeDeploy, loopback: Loopback, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_failing_http.json", BASE_URL=loopback.base_url)

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Failed"]
    assert result["reasons"] == ["broken: HTTP 500, expected 200"]


def test_given_an_express_workflow_that_fails_when_pre_traffic_runs_then_failed_is_reported_once(
    aws: FakeCodeDeploy, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(
        FUNCTION, "checks_failing_express.json", STATE_MACHINE_ARN=create_state_machine("smoke-no", FAIL_MACHINE)
    )

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Failed"]
    assert result["reasons"] == ["workflow: execution FAILED (SmokeFailed: bad)"]


def test_given_no_check_parameter_when_pre_traffic_runs_then_failed_is_reported_once(
    aws: FakeCodeDeploy, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Failed"]
    assert "no checks declared for 'company-svc-create'" in result["reasons"][0]


def test_given_an_invalid_check_config_when_pre_traffic_runs_then_failed_is_reported_naming_the_field(
    aws: FakeCodeDeploy, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_invalid.json")

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Failed"]
    assert "pre_traffic.0.invoke.expect.status_code: Input should be a valid integer" in result["reasons"][0]


def test_given_codedeploy_errors_on_get_deployment_when_pre_traffic_runs_then_failed_is_reported_once(
    aws: FakeCodeDeploy, lambda_context: FakeLambdaContext
) -> None:
    aws.get_error = "ThrottlingException"  # an exception inside the hook, after the event was understood
    event = load_event("pre_traffic/lambda_deployment.json")

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Failed"]
    assert result["reasons"][0].startswith("hook error: ThrottlingException: An error occurred (ThrottlingException)")


@contextmanager
def _virtual_time() -> Iterator[vtime.Scheduler]:
    """The hook's time budget, per-check timeouts and a slow endpoint on the sandbox's event-driven clock: what happens
    depends on virtual seconds only, never on how busy the machine is."""
    from release_train import hooks

    clock = vtime.Scheduler(datetime(2026, 11, 23, 9, tzinfo=UTC))
    vtime.activate(clock)
    try:
        with vtime.swapped({hooks: {"threading": vtime.threading_shim, "time": vtime.time_shim}}):
            yield clock
    finally:
        vtime.activate(None)
        clock.close()


def _slow_requests(hook: Any, slow_s: float) -> None:
    """`/slow` answers after `slow_s` virtual seconds; anything else at once."""

    def request(method: str, url: str, headers: Any, body: Any, timeout_s: float) -> HttpObservation:
        if url.endswith("/slow"):
            vtime.current().sleep(slow_s)
        return HttpObservation(status=200, body=b'{"status": "ok"}', latency_ms=0.0)

    hook.runtime.service.http.request = request


def _run(clock: vtime.Scheduler, at: float, call: Any) -> dict[str, Any]:
    """Run `call` in a participant of the clock at virtual second `at`; the box holds its result or its error."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:
            box["error"] = exc

    with clock.holding():
        clock.schedule(at, run, f"invocation@{at}", vtime.MACHINE)
    return box


def test_given_a_check_slower_than_the_budget_when_pre_traffic_runs_then_failed_is_reported_before_the_budget_ends(
    aws: FakeCodeDeploy, lambda_context: FakeLambdaContext
) -> None:
    # remaining 1.8 s - safety margin 1 s (HOOK_SAFETY_MARGIN_MS in the fixture) = 0.8 s for checks; /slow takes 2 s.
    lambda_context.remaining_ms = 1_800
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_slow_http.json", BASE_URL="http://127.0.0.1:9")
    hook = load_hook("pre_traffic")

    with _virtual_time() as clock:
        _slow_requests(hook, slow_s=2.0)
        box = _run(clock, 0.0, lambda: hook.handler(event, lambda_context))
        clock.wait_idle(real_timeout=120)

    # Reported (once, Failed) at the end of the budget, with both checks cut off rather than answered.
    assert aws.statuses() == ["Failed"]
    assert [c["outcome"] for c in box["result"]["checks"]] == ["timed_out", "timed_out"]


def test_given_less_time_left_than_the_safety_margin_when_pre_traffic_runs_then_no_check_runs_and_failed_is_reported(
    aws: FakeCodeDeploy, loopback: Loopback, lambda_context: FakeLambdaContext
) -> None:
    lambda_context.remaining_ms = 900  # below the 1 s safety margin
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_failing_http.json", BASE_URL=loopback.base_url)

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Failed"]
    assert result["checks"][0]["reasons"] == ["time budget exhausted before the check ran"]
    assert loopback.hits["/broken"] == 0


def test_given_a_duplicate_delivery_when_pre_traffic_runs_again_then_nothing_is_run_or_reported_twice(
    aws: FakeCodeDeploy, loopback: Loopback, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_failing_http.json", BASE_URL=loopback.base_url)
    hook = load_hook("pre_traffic")
    first = hook.handler(event, lambda_context)

    second = hook.handler(dict(event), lambda_context)

    assert aws.statuses() == ["Failed"]
    assert loopback.hits["/broken"] == 1
    assert second == first


def test_given_a_duplicate_delivery_to_a_new_cold_start_when_it_runs_then_the_stored_result_answers(
    aws: FakeCodeDeploy, loopback: Loopback, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_failing_http.json", BASE_URL=loopback.base_url)
    load_hook("pre_traffic").handler(event, lambda_context)

    load_hook("pre_traffic").handler(event, lambda_context)  # another execution environment: only DynamoDB is shared

    assert aws.statuses() == ["Failed"]
    assert loopback.hits["/broken"] == 1


def test_given_a_duplicate_arriving_while_the_first_still_runs_when_it_runs_then_it_fails_without_reporting(
    aws: FakeCodeDeploy, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_slow_http.json", BASE_URL="http://127.0.0.1:9")
    first_hook, second_hook = load_hook("pre_traffic"), load_hook("pre_traffic")

    with _virtual_time() as clock:
        _slow_requests(first_hook, slow_s=2.0)
        first = _run(clock, 0.0, lambda: first_hook.handler(event, FakeLambdaContext()))
        reports_while_running: list[Any] = []
        second = _run(
            clock, 1.0, lambda: (reports_while_running.extend(aws.reports), second_hook.handler(event, lambda_context))
        )
        clock.wait_idle(real_timeout=120)

    assert isinstance(second.get("error"), HookAlreadyInProgress)  # 1 s in: the first is inside its 2-second check
    assert reports_while_running == []
    assert first["result"]["status"] == "Succeeded"
    assert aws.statuses() == ["Succeeded"]


def test_given_a_first_attempt_that_crashed_mid_way_when_lambda_retries_then_it_runs_and_reports_once(
    aws: FakeCodeDeploy, loopback: Loopback, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_failing_http.json", BASE_URL=loopback.base_url)
    crashed = load_hook("pre_traffic")

    class SandboxKilled(BaseException):  # a Lambda timeout / OOM: no except clause of ours runs
        pass

    def die(*_: Any, **__: Any) -> Any:
        raise SandboxKilled

    class TimingOutContext(FakeLambdaContext):
        # 60 s when the hook sizes its budget, then ~0: the INPROGRESS record's expiry (Lambda timeout) is now.
        def get_remaining_time_in_millis(self) -> int:
            self.remaining_ms, remaining = 1, self.remaining_ms
            return remaining

    monkeypatch.setattr(crashed.runtime.service.http, "request", die)
    with pytest.raises(SandboxKilled):
        crashed.handler(event, TimingOutContext())
    time.sleep(0.01)

    load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Failed"]
    assert loopback.hits["/broken"] == 1


def test_given_codedeploy_says_already_completed_when_pre_traffic_reports_then_the_hook_ends_quietly(
    aws: FakeCodeDeploy, loopback: Loopback, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    aws.completed.add(event["LifecycleEventHookExecutionId"])  # e.g. an operator stopped the deployment
    put_checks(FUNCTION, "checks_failing_http.json", BASE_URL=loopback.base_url)

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert len(aws.reports) == 1
    assert result["report"] == "already_completed"


def test_given_codedeploy_rejects_the_report_when_pre_traffic_reports_then_the_invocation_fails_for_a_retry(
    aws: FakeCodeDeploy, loopback: Loopback, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    aws.put_error = "InternalFailure"
    put_checks(FUNCTION, "checks_failing_http.json", BASE_URL=loopback.base_url)

    with pytest.raises(Exception, match="InternalFailure"):
        load_hook("pre_traffic").handler(event, lambda_context)

    assert len(aws.reports) == 1  # the one attempt; no second report in the same invocation


def test_given_the_awslabs_sample_event_when_pre_traffic_runs_then_it_reports_for_that_execution_id(
    aws: FakeCodeDeploy, loopback: Loopback, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/codedeploy_lifecycle_event_awslabs.json")
    put_checks(FUNCTION, "checks_failing_http.json", BASE_URL=loopback.base_url)

    load_hook("pre_traffic").handler(event, lambda_context)

    assert [(r["deploymentId"], r["lifecycleEventHookExecutionId"]) for r in aws.reports] == [
        ("d-deploymentId", event["LifecycleEventHookExecutionId"])
    ]


def test_given_an_event_without_execution_id_when_pre_traffic_runs_then_it_raises_and_reports_nothing(
    aws: FakeCodeDeploy, lambda_context: FakeLambdaContext
) -> None:
    hook = load_hook("pre_traffic")

    with pytest.raises(Exception, match="LifecycleEventHookExecutionId"):
        hook.handler(load_event("pre_traffic/missing_execution_id.json"), lambda_context)

    assert aws.reports == []


def test_given_no_idempotency_table_configured_when_pre_traffic_runs_then_failed_is_reported_once(
    aws: FakeCodeDeploy, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IDEMPOTENCY_TABLE")
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Failed"]
    assert result["reasons"] == ["hook misconfigured: IDEMPOTENCY_TABLE is not set"]


def test_given_failing_pre_checks_and_passing_post_checks_when_post_traffic_runs_then_succeeded_is_reported_once(
    aws: FakeCodeDeploy, loopback: Loopback, lambda_context: FakeLambdaContext
) -> None:
    event = _lambda_deployment(aws, "post_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_post_only_passes.json", BASE_URL=loopback.base_url)

    load_hook("post_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Succeeded"]
    assert loopback.hits["/broken"] == 0


def test_given_a_failed_check_when_the_hook_ends_then_metrics_record_the_outcome_and_duration(
    aws: FakeCodeDeploy, loopback: Loopback, lambda_context: FakeLambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    event = _lambda_deployment(aws, "pre_traffic/lambda_deployment.json")
    put_checks(FUNCTION, "checks_failing_http.json", BASE_URL=loopback.base_url)
    hook = load_hook("pre_traffic")
    capsys.readouterr()

    hook.handler(event, lambda_context)

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(emf) == 1
    names = {m["Name"] for m in emf[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {"CheckFailed", "HookFailed", "HookDuration"}
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ReleaseTrain"
    assert emf[0]["Hook"] == "pre_traffic"


# --- ECS blue/green: the console's AppECS/DgpECS names, the AppSpec fetched as for Lambda, the test listener from ELBv2


def _ecs_load_balancer(aws: FakeCodeDeploy, loopback: Loopback) -> str:
    """ELBv2 answers from tests/fixtures/aws/elbv2 (host/path rules, default 404), pointed at the loopback server:
    DNS name 127.0.0.1, an HTTP listener on its port (TLS on real sockets: test_http_check_tls.py)."""
    import boto3
    from botocore.awsrequest import AWSResponse

    from tests.fixtures import checked_answer

    listener_arn = (
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/orders-internal/50dc6c495c0c9188/f2"
    )
    port = int(loopback.base_url.rsplit(":", 1)[1])
    listeners = aws_fixture("elbv2", "DescribeListeners", "https_test_listener", TEST_LISTENER_ARN=listener_arn)
    listener = listeners["Listeners"][0]
    listener.update(Protocol="HTTP", Port=port)
    del listener["Certificates"], listener["SslPolicy"]
    balancers = aws_fixture("elbv2", "DescribeLoadBalancers", "internal")
    balancers["LoadBalancers"][0]["DNSName"] = "127.0.0.1"
    answers = {
        "DescribeListeners": listeners,
        "DescribeLoadBalancers": balancers,
        "DescribeRules": aws_fixture("elbv2", "DescribeRules", "host_and_path"),
    }
    events: Any = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
    for operation, answer in answers.items():
        parsed = checked_answer("elbv2", operation, answer)
        events.register(
            f"before-call.elastic-load-balancing-v2.{operation}",
            lambda parsed=parsed, **_: (AWSResponse("https://fake", 200, {}, None), parsed),  # type: ignore[arg-type]
        )
    return listener_arn


def test_given_an_ecs_deployment_when_pre_traffic_runs_then_checks_go_through_the_test_listener_by_its_rules(
    aws: FakeCodeDeploy, loopback: Loopback, lambda_context: FakeLambdaContext
) -> None:
    import boto3

    event = load_event("pre_traffic/ecs_deployment.json")
    listener_arn = _ecs_load_balancer(aws, loopback)
    aws.add_deployment(event["DeploymentId"], "ecs", PROD_LISTENER_ARN="prod", TEST_LISTENER_ARN=listener_arn)
    checks = {
        "pre_traffic": [
            {"kind": "http", "name": "routed", "request": {"path": "/health", "host": "orders.example.com"}},
            {"kind": "http", "name": "unrouted", "request": {"path": "/admin", "host": "orders.example.com"}},
        ]
    }
    boto3.client("ssm").put_parameter(
        Name="/release-train/checks/ecs/AppECS-web-cluster-web/DgpECS-web-cluster-web",
        Type="String",
        Value=json.dumps(checks),
    )

    result = load_hook("pre_traffic").handler(event, lambda_context)

    assert aws.statuses() == ["Failed"]
    assert [(c["name"], c["outcome"]) for c in result["checks"]] == [("routed", "passed"), ("unrouted", "error")]
    assert "host 'orders.example.com' path '/admin' matches no rule of the test listener" in result["reasons"][0]
    assert loopback.hits == {"/health": 1}  # the unrouted check never left the hook
    assert len(aws.revision_requests) == 1  # the ECS AppSpec, fetched by its sha256 as for Lambda
    assert result["target"] == (
        "ecs:AppECS-web-cluster-web/DgpECS-web-cluster-web task=arn:aws:ecs:us-east-1:123456789012:task-definition/"
        f"orders:7 test={loopback.base_url}"
    )
