"""Regression test for moto_fixes 7: SendTaskFailure keeps its cause (MOTO_NOTES note 11).

Plain moto 5.2.x passes only the error to the interpreter, so a Catch sees no Cause: a rejected approval would reach the
ledger as "ApprovalRejected: " without the approver's reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from trainctl.sandbox import clock as vclock
from trainctl.sandbox import moto_fixes
from trainctl.sandbox.lambda_runtime import FunctionSpec, registry

REGION = "us-east-1"


@pytest.fixture
def sfn() -> Iterator[Any]:
    moto_fixes.apply()
    vclock.activate(vclock.VirtualClock(datetime(2026, 11, 23, 9, tzinfo=UTC), scale=1e-5))
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        yield boto3.client("stepfunctions", region_name=REGION)
    vclock.activate(None)
    registry.reset()


def _token_keeper(tmp: Path) -> str:
    """A Lambda that writes the task token it receives to a file (the approver reads it from there)."""
    code = tmp / "keeper"
    code.mkdir()
    (code / "app.py").write_text(
        "import os, pathlib\n"
        "TOKEN_FILE = pathlib.Path(os.environ['TOKEN_FILE'])\n"
        "def handler(event, context):\n"
        "    TOKEN_FILE.write_text(event['token'])\n"
        "    return {}\n"
    )
    env = {"TOKEN_FILE": str(tmp / "token")}
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:*"}]}
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="keeper", AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]
    arn = boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="keeper",
        Runtime="python3.13",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": b"x"},
        Environment={"Variables": env},
    )["FunctionArn"]
    registry.register(FunctionSpec("keeper", "Keeper", code, "app.handler", env, 30, 128, arn))
    return str(arn)


def test_given_a_task_waiting_for_a_token_when_it_is_failed_with_a_cause_then_the_catch_sees_that_cause(
    sfn: Any, tmp_path: Path
) -> None:
    definition = {
        "StartAt": "RequestApproval",
        "States": {
            "RequestApproval": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": _token_keeper(tmp_path), "Payload": {"token.$": "$$.Task.Token"}},
                "Catch": [{"ErrorEquals": ["ApprovalRejected"], "ResultPath": "$.error", "Next": "Rejected"}],
                "End": True,
            },
            "Rejected": {"Type": "Pass", "End": True},
        },
    }
    machine = sfn.create_state_machine(
        name="approval", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name="e1", input="{}")["executionArn"]
    token_file = tmp_path / "token"
    for _ in range(2000):
        if token_file.exists():
            break
        time.sleep(0.005)

    sfn.send_task_failure(
        taskToken=token_file.read_text(), error="ApprovalRejected", cause="rejected by bob: launch moved"
    )

    for _ in range(2000):
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.005)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["error"] == {
        "Error": "ApprovalRejected",
        "Cause": "rejected by bob: launch moved",
    }
