"""The pure checks domain: parsing declared checks, judging observations, JSON subsets, the time budget, targets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from release_train.domain.checks import (
    CheckOutcome,
    ExpressCheck,
    ExpressObservation,
    HookPhase,
    HttpCheck,
    HttpObservation,
    InvokeCheck,
    InvokeObservation,
    TimeBudget,
    json_subset_mismatches,
    judge_express,
    judge_http,
    judge_invoke,
    parse_check_suite,
)
from release_train.domain.errors import InvalidInput
from release_train.domain.hook_targets import (
    AppSpecRevision,
    EcsService,
    EcsTarget,
    LambdaTarget,
    ListenerRule,
    appspec_content,
    appspec_revision_to_fetch,
    checks_parameter_name,
    listener_rule,
    route_problem,
    select_rule,
    target_from_deployment,
)
from tests.fixtures import aws_fixture
from tests.unit.hooks.conftest import data_text

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:svc-smoke"


def _problems(raw: object) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        parse_check_suite(json.dumps(raw), "ssm:/release-train/checks/fn")
    return caught.value.problems


def _invoke(**expect: object) -> InvokeCheck:
    return InvokeCheck.model_validate({"kind": "invoke", "name": "probe", "expect": expect})


def _seen(payload: object, error: str | None = None, ms: float = 10.0) -> InvokeObservation:
    return InvokeObservation(function_error=error, payload=json.dumps(payload).encode(), duration_ms=ms)


# --- parsing ------------------------------------------------------------------------------------------------------


def test_given_a_suite_with_every_kind_when_parsed_then_each_phase_keeps_its_checks_in_order() -> None:
    suite = parse_check_suite(data_text("checks_passing.json", BASE_URL="https://x", STATE_MACHINE_ARN=ARN), "t")

    assert [c.kind for c in suite.checks_for(HookPhase.PRE_TRAFFIC)] == ["invoke", "http", "stepfunctions-express"]
    assert [c.name for c in suite.checks_for(HookPhase.POST_TRAFFIC)] == ["health-after"]


def test_given_a_wrong_type_deep_in_a_check_when_parsed_then_the_problem_names_the_field_path() -> None:
    problems = _problems(
        {"pre_traffic": [{"kind": "http", "name": "h", "request": {"path": "/x"}, "expect": {"status": "ok"}}]}
    )

    assert problems == [
        "pre_traffic.0.http.expect.status: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_given_an_unknown_key_when_parsed_then_it_is_rejected_rather_than_ignored() -> None:
    problems = _problems({"pre_traffic": [{"kind": "invoke", "name": "p", "expect": {"statuscode": 200}}]})

    assert problems == ["pre_traffic.0.invoke.expect.statuscode: Extra inputs are not permitted"]


def test_given_an_unknown_check_kind_when_parsed_then_the_problem_lists_the_known_kinds() -> None:
    problems = _problems({"post_traffic": [{"kind": "ping", "name": "p"}]})

    assert len(problems) == 1
    assert problems[0].startswith("post_traffic.0: Input tag 'ping' found using 'kind' does not match")


def test_given_an_http_check_with_both_url_and_path_when_parsed_then_it_is_rejected() -> None:
    problems = _problems(
        {"pre_traffic": [{"kind": "http", "name": "h", "request": {"url": "https://a", "path": "/b"}}]}
    )

    assert problems == [
        "pre_traffic.0.http.request: Value error, give exactly one of 'url' (absolute) or 'path' "
        "(joined to the suite's base_url)"
    ]


def test_given_two_checks_with_one_name_when_parsed_then_the_duplicate_is_reported() -> None:
    check = {"kind": "invoke", "name": "same"}

    problems = _problems({"pre_traffic": [check, check]})

    assert problems == ["(root): Value error, pre_traffic: duplicate check names ['same']"]


def test_given_text_that_is_not_json_when_parsed_then_the_position_is_reported() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON: Expecting value at line 1 column 1"):
        parse_check_suite("pre_traffic: []", "ssm:/x")


# --- judging ------------------------------------------------------------------------------------------------------


def test_given_a_function_error_when_an_invoke_is_judged_then_it_fails_with_the_error_payload() -> None:
    result = judge_invoke(_invoke(), _seen({"errorMessage": "boom"}, error="Unhandled"))

    assert result.outcome is CheckOutcome.FAILED
    assert result.reasons == ('function error (Unhandled): {"errorMessage": "boom"}',)


def test_given_no_expectations_and_no_error_when_an_invoke_is_judged_then_it_passes_even_without_json() -> None:
    seen = InvokeObservation(function_error=None, payload=b"plain text", duration_ms=5.0)

    assert judge_invoke(_invoke(), seen).passed


def test_given_the_expected_status_code_and_body_when_an_invoke_is_judged_then_it_passes() -> None:
    payload = {"statusCode": 404, "body": json.dumps({"statusCode": 404, "message": "company x not found"})}

    result = judge_invoke(_invoke(status_code=404, body_json_subset={"statusCode": 404}), _seen(payload))

    assert result.passed


def test_given_a_slower_invoke_than_allowed_when_judged_then_it_fails_on_duration() -> None:
    result = judge_invoke(_invoke(max_duration_ms=100), _seen({}, ms=250.4))

    assert result.reasons == ("took 250 ms, more than max_duration_ms 100",)


def test_given_a_body_that_is_not_json_when_body_subset_is_expected_then_it_fails_saying_so() -> None:
    result = judge_invoke(_invoke(body_json_subset={"a": 1}), _seen({"statusCode": 200, "body": "<html>"}))

    assert result.reasons == ("response body is not JSON: '<html>'",)


def test_given_a_wrong_status_and_a_slow_answer_when_http_is_judged_then_both_reasons_are_given() -> None:
    check = HttpCheck.model_validate(
        {"kind": "http", "name": "h", "request": {"path": "/"}, "expect": {"status": 200, "max_latency_ms": 50}}
    )

    result = judge_http(check, HttpObservation(status=503, body=b"", latency_ms=80))

    assert result.reasons == ("HTTP 503, expected 200", "latency 80 ms, more than max_latency_ms 50")


def test_given_a_succeeded_execution_with_other_output_when_express_is_judged_then_it_fails_on_output() -> None:
    check = ExpressCheck.model_validate(
        {
            "kind": "stepfunctions-express",
            "name": "w",
            "state_machine_arn": ARN,
            "expect": {"output_json_subset": {"ok": True}},
        }
    )

    result = judge_express(check, ExpressObservation("SUCCEEDED", '{"ok": false}', None, None), 12.0)

    assert result.reasons == ("$.ok: expected true, got false",)


def test_given_a_timed_out_execution_when_express_is_judged_then_it_fails() -> None:
    check = ExpressCheck.model_validate({"kind": "stepfunctions-express", "name": "w", "state_machine_arn": ARN})

    result = judge_express(check, ExpressObservation("TIMED_OUT", None, None, None), 12.0)

    assert result.reasons == ("execution TIMED_OUT",)


# --- JSON subset --------------------------------------------------------------------------------------------------


def test_given_extra_keys_in_the_actual_object_when_subset_is_checked_then_they_are_allowed() -> None:
    assert json_subset_mismatches({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3}, "$") == []


def test_given_a_missing_nested_key_when_subset_is_checked_then_its_path_is_reported() -> None:
    assert json_subset_mismatches({"a": {"b": 1}}, {"a": {}}, "$") == ["$.a.b: missing"]


def test_given_true_expected_and_one_received_when_subset_is_checked_then_they_differ() -> None:
    assert json_subset_mismatches({"flag": True}, {"flag": 1}, "$") == ["$.flag: expected true, got 1"]


def test_given_arrays_of_different_length_when_subset_is_checked_then_the_lengths_are_reported() -> None:
    assert json_subset_mismatches([1, 2], [1, 2, 3], "$.items") == ["$.items: expected 2 items, got 3"]


def test_given_arrays_when_subset_is_checked_then_elements_are_compared_in_order() -> None:
    assert json_subset_mismatches([{"id": 1}, {"id": 2}], [{"id": 2}, {"id": 1}], "$") == [
        "$[0].id: expected 1, got 2",
        "$[1].id: expected 2, got 1",
    ]


# --- time budget --------------------------------------------------------------------------------------------------


def test_given_a_budget_when_started_then_the_safety_margin_is_kept_back() -> None:
    assert TimeBudget.start(now_ms=0, remaining_ms=30_000, safety_margin_ms=10_000).remaining_ms(0) == 20_000


def test_given_less_time_than_the_margin_when_started_then_the_budget_is_empty_not_negative() -> None:
    assert TimeBudget.start(now_ms=0, remaining_ms=5_000, safety_margin_ms=10_000).remaining_ms(0) == 0


def test_given_a_check_timeout_longer_than_what_is_left_when_allowed_then_it_gets_what_is_left() -> None:
    budget = TimeBudget.start(now_ms=1_000, remaining_ms=30_000, safety_margin_ms=10_000)

    assert budget.allowance_ms(now_ms=16_000, requested_ms=10_000) == 5_000


def test_given_a_check_timeout_shorter_than_what_is_left_when_allowed_then_it_gets_its_timeout() -> None:
    budget = TimeBudget.start(now_ms=0, remaining_ms=30_000, safety_margin_ms=10_000)

    assert budget.allowance_ms(now_ms=0, requested_ms=2_000) == 2_000


# --- deployment targets -------------------------------------------------------------------------------------------


def _deployment(case: str = "lambda") -> dict[str, Any]:
    """deploymentInfo as GetDeployment answers: the AppSpec named by its sha256, never its content."""
    info: dict[str, Any] = aws_fixture("codedeploy", "GetDeployment", case, DEPLOYMENT_ID="d-1")["deploymentInfo"]
    return info


def _appspec(case: str = "lambda") -> str:
    """The AppSpec GetApplicationRevision returns for that deployment."""
    content = appspec_content(aws_fixture("codedeploy", "GetApplicationRevision", case)["revision"])
    assert content is not None
    return content


def test_given_a_lambda_deployment_when_its_appspec_is_located_then_it_is_asked_for_by_sha256() -> None:
    info = _deployment()

    wanted = appspec_revision_to_fetch(info)

    assert wanted == AppSpecRevision(
        "svc-company-prod-ServerlessDeploymentApplication-1A2B3C4D5E6F",
        {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": info["revision"]["appSpecContent"]["sha256"]}},
    )


def test_given_a_legacy_string_revision_when_its_appspec_is_located_then_it_is_asked_for_with_its_own_type() -> None:
    info = {**_deployment(), "revision": {"revisionType": "String", "string": {"sha256": "ab12"}}}

    wanted = appspec_revision_to_fetch(info)

    assert wanted is not None and wanted.revision == {"revisionType": "String", "string": {"sha256": "ab12"}}


def test_given_a_revision_without_sha256_when_its_appspec_is_located_then_the_missing_field_is_named() -> None:
    info = {**_deployment(), "revision": {"revisionType": "AppSpecContent", "appSpecContent": {}}}

    with pytest.raises(InvalidInput, match=r"needs applicationName and appSpecContent\.sha256"):
        appspec_revision_to_fetch(info)


def test_given_an_ecs_deployment_when_its_appspec_is_located_then_it_is_asked_for_by_its_sha256_as_for_lambda() -> None:
    info = _deployment("ecs")

    assert appspec_revision_to_fetch(info) == AppSpecRevision(
        "AppECS-web-cluster-web",
        {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": info["revision"]["appSpecContent"]["sha256"]}},
    )


def test_given_an_ecs_revision_kept_in_s3_when_its_appspec_is_located_then_nothing_is_fetched() -> None:
    s3 = {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "appspec.yaml", "bundleType": "YAML"}}

    assert appspec_revision_to_fetch({**_deployment("ecs"), "revision": s3}) is None


def test_given_an_ecs_appspec_when_read_then_the_task_definition_and_container_are_found() -> None:
    target = target_from_deployment(_deployment("ecs"), _appspec("ecs"))

    assert isinstance(target, EcsTarget)
    assert target.service == EcsService("arn:aws:ecs:us-east-1:123456789012:task-definition/orders:7", "orders", 8080)


def test_given_a_yaml_ecs_appspec_without_container_port_when_read_then_the_missing_field_is_named() -> None:
    content = """
version: 0.0
Resources:
  - TargetService:
      Type: AWS::ECS::Service
      Properties:
        TaskDefinition: arn:aws:ecs:us-east-1:123456789012:task-definition/orders:7
        LoadBalancerInfo:
          ContainerName: orders
"""
    with pytest.raises(InvalidInput, match=r"LoadBalancerInfo\.ContainerPort is missing"):
        target_from_deployment(_deployment("ecs"), content)


def test_given_an_ecs_appspec_naming_a_lambda_function_when_read_then_it_is_refused() -> None:
    with pytest.raises(InvalidInput, match="exactly one AWS::ECS::Service, found 0"):
        target_from_deployment(_deployment("ecs"), _appspec("lambda"))


def test_given_a_revision_that_already_carries_its_content_when_located_then_nothing_is_fetched() -> None:
    # Not what AWS's GetDeployment answers; what a caller that resolved the AppSpec already may pass.
    info = {**_deployment(), "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"content": _appspec()}}}

    assert appspec_revision_to_fetch(info) is None
    assert target_from_deployment(info) == LambdaTarget("d-1", "company-svc-create", "live", "1", "2")


def test_given_get_deployment_alone_when_a_lambda_target_is_read_then_it_fails_naming_get_application_revision() -> (
    None
):
    with pytest.raises(InvalidInput, match="fetch it with GetApplicationRevision"):
        target_from_deployment(_deployment())


def test_given_a_cloudformation_appspec_when_read_then_the_function_and_versions_are_found() -> None:
    assert target_from_deployment(_deployment(), _appspec()) == LambdaTarget(
        "d-1", "company-svc-create", "live", "1", "2"
    )


def test_given_a_lowercase_yaml_appspec_with_a_function_arn_when_read_then_the_bare_name_is_used() -> None:
    case = "lambda_documented_appspec"

    assert target_from_deployment(_deployment(case), _appspec(case)) == LambdaTarget("d-1", "svc-a", "live", "3", "4")


def test_given_an_appspec_without_target_version_when_read_then_the_missing_field_is_named() -> None:
    content = json.dumps(
        {"Resources": [{"F": {"Type": "AWS::Lambda::Function", "Properties": {"Name": "f", "Alias": "live"}}}]}
    )

    with pytest.raises(InvalidInput, match=r"Resources\[0\]\.Properties\.TargetVersion is missing"):
        target_from_deployment(_deployment(), content)


def test_given_an_ecs_deployment_when_read_then_the_test_listener_and_checks_key_are_found() -> None:
    info = aws_fixture(
        "codedeploy", "GetDeployment", "ecs", DEPLOYMENT_ID="d-2", PROD_LISTENER_ARN="prod", TEST_LISTENER_ARN="test"
    )["deploymentInfo"]

    target = target_from_deployment(info)

    assert target == EcsTarget("d-2", "AppECS-web-cluster-web", "DgpECS-web-cluster-web", "test", service=None)
    assert checks_parameter_name(target) == "/release-train/checks/ecs/AppECS-web-cluster-web/DgpECS-web-cluster-web"


def test_given_a_server_deployment_when_read_then_it_is_rejected_as_unsupported() -> None:
    with pytest.raises(InvalidInput, match="computePlatform 'Server' is not supported"):
        target_from_deployment({"deploymentId": "d-3", "computePlatform": "Server"})


# --- ELBv2 listener rules ------------------------------------------------------------------------------------------


def _rules() -> tuple[ListenerRule, ...]:
    """The test listener of tests/fixtures/aws/elbv2/DescribeRules/host_and_path.json, as the adapter reads it."""
    return tuple(listener_rule(r) for r in aws_fixture("elbv2", "DescribeRules", "host_and_path")["Rules"])


def test_given_described_rules_when_read_then_conditions_and_terminal_actions_are_kept() -> None:
    assert _rules() == (
        ListenerRule("10", ("orders.example.com",), ("/orders*", "/health"), "forward"),
        ListenerRule("20", (), (), "forward", ("http-header",)),
        ListenerRule("default", (), (), "fixed-response"),
    )


@pytest.mark.parametrize(
    ("host", "path", "priority"),
    [
        ("orders.example.com", "/health", "10"),
        ("ORDERS.Example.com", "/orders/42", "10"),  # host-header is case-insensitive
        ("orders.example.com", "/Orders/42", "default"),  # path-pattern is not
        ("orders.example.com", "/healthz", "default"),  # a pattern without * matches the whole path only
        ("internal-orders-1.elb.amazonaws.com", "/health", "default"),
    ],
)
def test_given_host_and_path_rules_when_a_request_is_routed_then_elbv2s_rule_is_selected(
    host: str, path: str, priority: str
) -> None:
    rule = select_rule(_rules(), host, path)

    assert rule is not None and rule.priority == priority


def test_given_rules_in_any_order_when_routed_then_the_lowest_priority_number_wins() -> None:
    rules = (
        ListenerRule("default", action="fixed-response"),
        ListenerRule("30", paths=("/*",), action="forward"),
        ListenerRule("5", paths=("/h?alth",), action="redirect"),
    )

    assert [select_rule(rules, "x", p).priority for p in ("/health", "/other")] == ["5", "30"]  # type: ignore[union-attr]


def test_given_a_request_no_rule_routes_when_checked_then_the_problem_names_host_path_and_the_fix() -> None:
    problem = route_problem(_rules(), "internal-orders-1.elb.amazonaws.com", "/health")

    assert problem is not None
    assert "matches no rule of the test listener; its default action is fixed-response" in problem
    assert "rules 20 need more than a host and a path" in problem
    assert "request.host" in problem


def test_given_a_request_a_rule_forwards_when_checked_then_there_is_no_problem() -> None:
    assert route_problem(_rules(), "orders.example.com", "/orders") is None
    assert route_problem((), "anything", "/") is None  # rules unknown (no test listener): nothing to judge


def test_given_a_rule_that_does_not_forward_when_selected_then_the_problem_names_it() -> None:
    rules = (ListenerRule("7", paths=("/old*",), action="redirect"), ListenerRule("default", action="forward"))

    assert (
        route_problem(rules, "h", "/old/x")
        == "host 'h' path '/old/x' selects test listener rule 7, whose action is redirect"
    )


# --- http check host ------------------------------------------------------------------------------------------------


def test_given_an_http_check_with_a_host_when_parsed_then_it_is_kept() -> None:
    check = HttpCheck.model_validate(
        {"kind": "http", "name": "h", "request": {"path": "/", "host": "orders.example.com"}}
    )

    assert check.request.host == "orders.example.com"


@pytest.mark.parametrize(
    ("request_", "problem"),
    [
        ({"path": "/", "host": "https://orders.example.com"}, "pre_traffic.0.http.request.host: String should match"),
        ({"path": "/", "host": "orders.example.com:8443"}, "pre_traffic.0.http.request.host: String should match"),
        (
            {"path": "/", "host": "orders.example.com", "headers": {"host": "x"}},
            "give the host once: 'host' (also used for TLS) instead of a Host header",
        ),
    ],
)
def test_given_a_bad_host_when_parsed_then_the_field_and_fix_are_named(request_: dict[str, Any], problem: str) -> None:
    problems = _problems({"pre_traffic": [{"kind": "http", "name": "h", "request": request_}]})

    assert len(problems) == 1 and problem in problems[0]
