"""Regression tests for moto_fixes 6, 7 and 10: task tokens behave as Step Functions' API reference says.

SendTaskSuccess / SendTaskFailure: "TaskTimedOut: The task token has either expired or the task associated with the
token has already been closed"; "InvalidToken: The provided token is not valid". Plain moto accepts an answer after
the timeout and after the execution stopped, overwrites a first answer with a second, drops SendTaskFailure's cause,
and keeps waiting for the token after a StopExecution.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.sandbox.harness import Sandbox, on_state, sandbox

TIMEOUT = 86400


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    with sandbox(tmp_path) as sb:
        yield sb


def _approval(box: Sandbox) -> tuple[dict[str, Any], Path]:
    """A task that hands its token to a Lambda (which writes it down) and waits for the answer, at most a day."""
    token_file = box.tmp / "token"
    arn = box.function(
        "keeper",
        "import pathlib\ndef handler(event, context):\n"
        f"    pathlib.Path({str(token_file)!r}).write_text(event['token'])\n"
        "    return {}\n",
    )
    definition = {
        "StartAt": "RequestApproval",
        "States": {
            "RequestApproval": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": arn, "Payload": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": TIMEOUT,
                "Catch": [
                    {"ErrorEquals": ["ApprovalRejected"], "ResultPath": "$.error", "Next": "Rejected"},
                    {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "TimedOut"},
                ],
                "End": True,
            },
            "Rejected": {"Type": "Pass", "End": True},
            "TimedOut": {"Type": "Pass", "End": True},
        },
    }
    return definition, token_file


def _code(call: Any) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


def test_given_a_task_waiting_for_a_token_when_it_is_failed_with_a_cause_then_the_catch_sees_that_cause(
    box: Sandbox,
) -> None:
    definition, token_file = _approval(box)
    answered: list[str] = []

    def reject() -> None:
        box.sfn.send_task_failure(
            taskToken=token_file.read_text(), error="ApprovalRejected", cause="rejected by bob: launch moved"
        )
        answered.append("yes")

    with on_state("RequestApproval", reject):
        arn = box.start(definition)
        box.settle()
    described = box.sfn.describe_execution(executionArn=arn)
    assert answered == ["yes"]
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["error"] == {
        "Error": "ApprovalRejected",
        "Cause": "rejected by bob: launch moved",
    }


def test_given_the_timeout_passed_when_the_approver_answers_then_step_functions_refuses_with_task_timed_out(
    box: Sandbox,
) -> None:
    definition, token_file = _approval(box)
    arn = box.start(definition)
    box.settle()  # nobody answers: the day passes
    described = box.sfn.describe_execution(executionArn=arn)
    assert json.loads(described["output"])["error"]["Error"] == "States.Timeout"
    assert box.clock.elapsed == TIMEOUT
    token = token_file.read_text()
    assert _code(lambda: box.sfn.send_task_success(taskToken=token, output="{}")) == "TaskTimedOut"
    assert _code(lambda: box.sfn.send_task_failure(taskToken=token, error="X", cause="late")) == "TaskTimedOut"


def test_given_a_token_already_answered_when_a_second_answer_comes_then_it_is_refused_and_the_first_stands(
    box: Sandbox,
) -> None:
    definition, token_file = _approval(box)
    answers: list[str] = []

    def two_approvers() -> None:
        token = token_file.read_text()
        box.sfn.send_task_success(taskToken=token, output=json.dumps({"by": "alice"}))
        answers.append(_code(lambda: box.sfn.send_task_failure(taskToken=token, error="ApprovalRejected", cause="bob")))

    with on_state("RequestApproval", two_approvers):
        arn = box.start(definition)
        box.settle()
    assert answers == ["TaskTimedOut"]
    described = box.sfn.describe_execution(executionArn=arn)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"by": "alice"}


def test_given_a_stop_while_waiting_for_a_token_then_the_execution_ends_at_once_and_the_token_is_dead(
    box: Sandbox,
) -> None:
    definition, token_file = _approval(box)
    arns: list[str] = []

    def cancel() -> None:
        box.sfn.stop_execution(executionArn=arns[0], error="OperatorCancelled", cause="not this week")

    with on_state("RequestApproval", cancel):
        arns.append(box.start(definition))
        box.settle()
    described = box.sfn.describe_execution(executionArn=arns[0])
    assert described["status"] == "ABORTED"
    assert box.clock.elapsed == 0  # plain moto waits out the day-long timeout first
    token = token_file.read_text()
    assert _code(lambda: box.sfn.send_task_success(taskToken=token, output="{}")) == "TaskTimedOut"


def test_given_a_token_nobody_issued_then_the_answer_is_invalid_token(box: Sandbox) -> None:
    assert _code(lambda: box.sfn.send_task_success(taskToken="not-a-token", output="{}")) == "InvalidToken"
