"""The two Step Functions hard limits in the sandbox (trainctl/sandbox/limits.py), and how `trainctl simulate --json`
reports them. Each limit test fails on plain moto 5.2.x: moto counts `bytes < 262,144` (exactly 256 KiB fails), lets
`States.ALL` catch States.DataLimitExceeded, never checks an input, and never caps a history.

AWS: service quotas ("Maximum input or output size for a task, state, or execution: 256 KiB"; "Maximum execution
history size: 25,000 events"), error handling (States.DataLimitExceeded, a terminal error `States.ALL` cannot catch)
and best practices ("Avoid reaching the history quota": event 25,000 is ExecutionSucceeded or the ExecutionFailed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.harness import Sandbox, sandbox
from trainctl.sandbox import limits, runner
from trainctl.sandbox.lambda_runtime import registry
from trainctl.sandbox.runner import SimulationResult, simulate, state_names
from trainctl.sandbox.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 262_144
BIG = "def handler(event, context):\n    return {'a': 'x' * event['n']}\n"


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    with sandbox(tmp_path) as sb:
        yield sb


def _history(box: Sandbox, arn: str) -> list[dict[str, Any]]:
    pages = box.sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    return [event for page in pages for event in page["events"]]


def _finish(box: Sandbox, definition: dict[str, Any], payload: dict[str, Any] | None = None) -> tuple[str, Any]:
    arn = box.start(definition, payload)
    box.settle()
    return arn, box.sfn.describe_execution(executionArn=arn)


# --- 1. payload: 256 KiB --------------------------------------------------------------------------------------------


def _pass_of(value: str) -> dict[str, Any]:
    return {"StartAt": "Big", "States": {"Big": {"Type": "Pass", "Result": {"a": value}, "End": True}}}


def test_given_a_pass_state_output_of_exactly_256_kib_then_it_passes_and_one_byte_more_fails(box: Sandbox) -> None:
    overhead = len('{"a":""}')
    assert box.run(_pass_of("x" * (LIMIT - overhead)))["status"] == "SUCCEEDED"  # plain moto: FAILED (bytes < limit)
    over = box.run(_pass_of("x" * (LIMIT - overhead + 1)))
    assert over["status"] == "FAILED"
    assert over["error"] == "States.DataLimitExceeded"
    assert "'Big'" in over["cause"] and "262,145 bytes" in over["cause"]


def test_given_non_ascii_output_then_its_utf8_bytes_count_not_its_json_escapes(box: Sandbox) -> None:
    # 2 bytes each in UTF-8 (200,008 in all); moto's ASCII-escaped json.dumps counted 6 each.
    assert box.run(_pass_of("é" * 100_000))["status"] == "SUCCEEDED"


def _call(arn: str, catch: list[str] | None = None, retry: list[str] | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": arn, "Payload.$": "$"},
        "End": True,
    }
    if catch:
        call["Catch"] = [{"ErrorEquals": catch, "Next": "Caught"}]
    if retry:
        call["Retry"] = [{"ErrorEquals": retry, "MaxAttempts": 2, "IntervalSeconds": 1}]
    return {"StartAt": "Call", "States": {"Call": call, "Caught": {"Type": "Pass", "End": True}}}


def test_given_a_lambda_result_over_256_kib_and_a_states_all_catch_then_the_execution_fails_uncaught(
    box: Sandbox,
) -> None:
    arn = box.function("big", BIG)
    # The task result wraps the payload (StatusCode, ExecutedVersion): measure that wrapping on a small call first.
    small, _ = _finish(box, _call(arn), {"n": 1})
    (succeeded,) = [e for e in _history(box, small) if e["type"] == "TaskSucceeded"]
    wrapping = limits.payload_bytes(json.loads(succeeded["taskSucceededEventDetails"]["output"])) - 1

    _, at_limit = _finish(box, _call(arn, catch=["States.ALL"]), {"n": LIMIT - wrapping})
    assert at_limit["status"] == "SUCCEEDED"
    assert "Caught" not in json.dumps(_history(box, at_limit["executionArn"]), default=str)

    over_arn, over = _finish(box, _call(arn, catch=["States.ALL"]), {"n": LIMIT - wrapping + 1})
    assert over["status"] == "FAILED"  # plain moto: SUCCEEDED through Caught
    assert over["error"] == "States.DataLimitExceeded"
    assert "'Call'" in over["cause"] and "262,145 bytes" in over["cause"]
    types = [e["type"] for e in _history(box, over_arn)]
    assert "TaskFailed" in types and "TaskSucceeded" not in types and "PassStateEntered" not in types


def test_given_a_states_all_retrier_then_a_data_limit_error_is_not_retried(box: Sandbox) -> None:
    arn = box.function("big", BIG)
    _, result = _finish(box, _call(arn, retry=["States.ALL"]), {"n": 300_000})
    assert result["status"] == "FAILED" and result["error"] == "States.DataLimitExceeded"
    assert registry.invocations["Big"] == 1


def test_given_a_catcher_naming_states_data_limit_exceeded_then_it_catches_it(box: Sandbox) -> None:
    arn = box.function("big", BIG)
    _, result = _finish(box, _call(arn, catch=["States.DataLimitExceeded"]), {"n": 300_000})
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["Error"] == "States.DataLimitExceeded"


def test_given_parameters_that_build_an_input_over_256_kib_then_the_task_fails_before_the_call(box: Sandbox) -> None:
    arn = box.function("big", BIG)
    definition = _call(arn)
    definition["States"]["Call"]["Parameters"] = {"FunctionName": arn, "Payload": {"s.$": "$.s", "t.$": "$.s"}}
    _, result = _finish(box, definition, {"s": "x" * 150_000})  # the state's own input: about 150 KB
    assert result["status"] == "FAILED" and result["error"] == "States.DataLimitExceeded"
    assert "after Parameters" in result["cause"] and "'Call'" in result["cause"]
    assert "Big" not in registry.invocations  # plain moto invokes it, and succeeds


def test_given_a_map_item_selector_building_an_iteration_input_over_256_kib_then_the_map_fails_uncaught(
    box: Sandbox,
) -> None:
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemSelector": {"s.$": "$.s", "t.$": "$.s"},
                "ItemProcessor": {"StartAt": "Inner", "States": {"Inner": {"Type": "Pass", "End": True}}},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    result = box.run(definition, {"items": [1], "s": "x" * 150_000})
    assert result["status"] == "FAILED"
    assert result["error"] == "States.DataLimitExceeded"  # not moto's States.Runtime for a `States.` name
    assert "'Inner' received an input" in result["cause"]


def test_given_a_history_then_the_largest_payload_is_the_task_result_named_by_its_state(box: Sandbox) -> None:
    arn = box.function("big", BIG)
    definition = _call(arn)
    definition["States"]["Call"]["OutputPath"] = "$.StatusCode"  # the state's output is small; the result is not
    execution, _ = _finish(box, definition, {"n": 100_000})
    events = _history(box, execution)
    (succeeded,) = [e for e in events if e["type"] == "TaskSucceeded"]
    result_bytes = limits.payload_bytes(json.loads(succeeded["taskSucceededEventDetails"]["output"]))
    assert limits.largest_payload(events) == {"bytes": result_bytes, "state": "Call"}
    assert result_bytes > 100_000


# --- 2. history: 25,000 events --------------------------------------------------------------------------------------


def _loop(iterations: int) -> dict[str, Any]:
    """4 events per iteration (Choice and Pass, entered and exited) + 8: ExecutionStarted, Init (2), the last Check
    (2), Done (2) and ExecutionSucceeded. No Map: an inline loop is the cheapest way to many events in moto."""
    return {
        "StartAt": "Init",
        "States": {
            "Init": {"Type": "Pass", "Result": {"n": 0}, "Next": "Check"},
            "Check": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericLessThan": iterations, "Next": "Step"}],
                "Default": "Done",
            },
            "Step": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 1)"}, "Next": "Check"},
            "Done": {"Type": "Succeed"},
        },
    }


def _assert_capped(box: Sandbox, arn: str, cap: int) -> None:
    described = box.sfn.describe_execution(executionArn=arn)
    cause = f"The execution reached the maximum number of history events ({cap})."
    assert (described["status"], described["error"], described["cause"]) == ("FAILED", "States.Runtime", cause)
    last, before = box.sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=2)["events"]
    assert (last["id"], last["type"]) == (cap, "ExecutionFailed")
    assert last["executionFailedEventDetails"] == {"error": "States.Runtime", "cause": cause}
    assert before["id"] == cap - 1 and before["type"] != "ExecutionFailed"  # the last event the machine produced


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(limits, "HISTORY_LIMIT", 200)  # the same rule, 125 times cheaper; the real cap is tested below
    return 200


def test_given_a_loop_whose_event_200_is_execution_succeeded_then_it_succeeds_at_the_cap(
    box: Sandbox, small_cap: int
) -> None:
    arn, result = _finish(box, _loop((small_cap - 8) // 4))
    assert result["status"] == "SUCCEEDED"
    events = _history(box, arn)
    assert (len(events), events[-1]["type"]) == (small_cap, "ExecutionSucceeded")


def test_given_a_loop_that_would_pass_the_cap_then_event_200_is_the_execution_failed(
    box: Sandbox, small_cap: int
) -> None:
    arn, _ = _finish(box, _loop((small_cap - 8) // 4 + 1))  # would end at 204 events
    _assert_capped(box, arn, small_cap)
    events = _history(box, arn)
    assert len(events) == small_cap
    assert events[-1]["previousEventId"] == small_cap - 1  # as AWS shows it: the cut follows the last real event


def test_given_a_concurrent_map_with_a_states_all_catch_when_the_history_fills_then_the_cap_ends_it(
    box: Sandbox, small_cap: int
) -> None:
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 10,
                "ItemProcessor": {"StartAt": "Inner", "States": {"Inner": {"Type": "Pass", "End": True}}},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    arn, _ = _finish(box, definition, {"items": list(range(100))})  # about 400 events uncapped
    _assert_capped(box, arn, small_cap)
    events = _history(box, arn)
    assert [e["id"] for e in events] == list(range(1, small_cap + 1))  # ten iterations raced; one took the last slot
    assert not [e for e in events if e.get("stateEnteredEventDetails", {}).get("name") == "Caught"]  # not caught


@pytest.mark.slow  # 20-40 s: two 25,000-event executions (moto rebuilds a JSONPath parser per evaluation)
def test_given_the_real_cap_then_25000_events_ending_in_success_pass_and_one_iteration_more_fails(
    box: Sandbox,
) -> None:
    assert limits.HISTORY_LIMIT == 25_000
    arn, result = _finish(box, _loop((25_000 - 8) // 4))
    assert result["status"] == "SUCCEEDED"
    (last,) = box.sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=1)["events"]
    assert (last["id"], last["type"]) == (25_000, "ExecutionSucceeded")

    arn, _ = _finish(box, _loop((25_000 - 8) // 4 + 1))
    _assert_capped(box, arn, 25_000)


# --- 3. the report: `trainctl simulate --json` ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def happy_path() -> Iterator[tuple[SimulationResult, dict[str, int]]]:
    """The example fleet's happy path, and each execution's history length as GetExecutionHistory pages it (asked
    while the sandbox still exists: the report is built in _Run._result, inside it)."""
    from_api: dict[str, int] = {}
    original = runner._Run._result

    def result_and_history_lengths(self: Any, described: dict[str, Any], wall_start: float) -> SimulationResult:
        result = original(self, described, wall_start)
        pages = self.sfn.get_paginator("get_execution_history")
        for execution in result.executions:
            arn = execution["arn"]
            from_api[arn] = sum(len(page["events"]) for page in pages.paginate(executionArn=arn))
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner._Run, "_result", result_and_history_lengths)
        result = simulate(ROOT / "fleet.yaml", load_scenario(ROOT / "examples/scenarios/happy-path.yaml"), ROOT)
    yield result, from_api


def test_given_the_example_fleet_when_simulated_then_the_json_reports_every_execution_against_the_limits(
    happy_path: tuple[SimulationResult, dict[str, int]],
) -> None:
    result, from_api = happy_path
    doc = json.loads(json.dumps(result.to_json(), default=str))  # what `simulate --json` prints
    executions = doc["executions"]
    assert {e["arn"] for e in executions} == set(from_api)  # every execution of every state machine, children too
    names = state_names(ROOT)
    for execution in executions:
        assert 0 < execution["history_events"] == from_api[execution["arn"]] <= 25_000
        assert 0 < execution["largest_payload"]["bytes"] <= LIMIT
        assert execution["largest_payload"]["state"] in names
    (release,) = doc["fleet_releases"]
    (train,) = [e for e in executions if e["arn"] == release["execution_arn"]]
    assert (train["status"], train["history_events"]) == (doc["execution_status"], doc["history_events"])
