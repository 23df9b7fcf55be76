"""Step Functions reads and approval answers (Stubber: exact parameters)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from release_train.adapters.executions import Executions

EXEC = "arn:aws:states:us-east-1:123456789012:execution:ReleaseTrain-rt:2026-W48"
SM = "arn:aws:states:us-east-1:123456789012:stateMachine:ReleaseTrain-rt"
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def stubbed() -> Iterator[tuple[Executions, Stubber]]:
    client = boto3.client("stepfunctions", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield Executions(client), stubber
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(("status", "running"), [("RUNNING", True), ("ABORTED", False), ("SUCCEEDED", False)])
def test_given_an_execution_status_when_asked_if_running_then_only_running_is_running(
    stubbed: tuple[Executions, Stubber], status: str, running: bool
) -> None:
    executions, stubber = stubbed
    stubber.add_response(
        "describe_execution",
        {"executionArn": EXEC, "stateMachineArn": SM, "status": status, "startDate": T0},
        {"executionArn": EXEC},
    )

    assert executions.is_running(EXEC) is running


def test_given_an_execution_that_does_not_exist_when_asked_if_running_then_it_is_not(
    stubbed: tuple[Executions, Stubber],
) -> None:
    executions, stubber = stubbed
    stubber.add_client_error("describe_execution", "ExecutionDoesNotExist", "gone")

    assert executions.is_running(EXEC) is False


def test_given_a_history_when_asked_for_the_failed_state_then_the_failure_handlers_are_skipped(
    stubbed: tuple[Executions, Stubber],
) -> None:
    executions, stubber = stubbed
    events = [
        {"timestamp": T0, "type": "TaskStateEntered", "id": 9, "stateEnteredEventDetails": {"name": "RecordFailure"}},
        {"timestamp": T0, "type": "TaskFailed", "id": 8},
        {"timestamp": T0, "type": "TaskStateEntered", "id": 7, "stateEnteredEventDetails": {"name": "EvaluateGate"}},
    ]
    stubber.add_response(
        "get_execution_history", {"events": events}, {"executionArn": EXEC, "reverseOrder": True, "maxResults": 100}
    )

    assert executions.last_entered_state(EXEC) == "EvaluateGate"


def test_given_a_task_token_when_approved_then_send_task_success_carries_the_output_as_json(
    stubbed: tuple[Executions, Stubber],
) -> None:
    executions, stubber = stubbed
    stubber.add_response(
        "send_task_success", {}, {"taskToken": "tok", "output": '{"approved_by": "alice", "reason": "ok"}'}
    )

    executions.approve("tok", {"approved_by": "alice", "reason": "ok"})


def test_given_a_task_token_when_rejected_then_send_task_failure_carries_the_error_name(
    stubbed: tuple[Executions, Stubber],
) -> None:
    executions, stubber = stubbed
    stubber.add_response(
        "send_task_failure", {}, {"taskToken": "tok", "error": "ApprovalRejected", "cause": "superseded by 2026-W49"}
    )

    executions.reject("tok", "ApprovalRejected", "superseded by 2026-W49")
