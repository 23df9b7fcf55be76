"""Regression tests for trainctl/sandbox/moto_fixes.py: each fails on plain moto 5.2.x (see MOTO_NOTES.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from trainctl.sandbox import clock as vclock
from trainctl.sandbox import emulators, moto_fixes
from trainctl.sandbox.lambda_runtime import FunctionSpec, registry
from trainctl.sandbox.scenario import BuildBehaviour, Scenario

ROLE = "arn:aws:iam::123456789012:role/sfn"


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[dict[str, Any]]:
    moto_fixes.apply()
    clock = vclock.VirtualClock(datetime(2026, 11, 23, 9, tzinfo=UTC), scale=1e-5)
    world = emulators.World(Scenario(builds={"staging": {"bad": BuildBehaviour(outcome="FAILED")}}), clock, "us-east-1")
    vclock.activate(clock)
    emulators.activate(world)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        yield {
            "sfn": boto3.client("stepfunctions", region_name="us-east-1"),
            "clock": clock,
            "world": world,
            "tmp": tmp_path,
        }
    vclock.activate(None)
    emulators.activate(None)
    registry.reset()


def _run(
    sfn: Any, definition: dict[str, Any], payload: dict[str, Any] | None = None, stop_when: Any = None
) -> dict[str, Any]:
    arn = sfn.create_state_machine(name=f"m{time.monotonic_ns()}", definition=json.dumps(definition), roleArn=ROLE)[
        "stateMachineArn"
    ]
    execution = sfn.start_execution(stateMachineArn=arn, name="e1", input=json.dumps(payload or {}))["executionArn"]
    for _ in range(3000):
        described = sfn.describe_execution(executionArn=execution)
        if stop_when and described["status"] == "RUNNING" and stop_when(sfn, execution):
            sfn.stop_execution(executionArn=execution, error="OperatorCancelled", cause="test stop")
            stop_when = None
        if described["status"] != "RUNNING":
            return dict(described)
        time.sleep(0.005)
    raise AssertionError("execution did not end")


def _function(tmp: Path, body: str) -> str:
    (tmp / "fn").mkdir(exist_ok=True)
    (tmp / "fn" / "app.py").write_text(body)
    iam = boto3.client("iam", region_name="us-east-1")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam.create_role(RoleName="probe", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    lam = boto3.client("lambda", region_name="us-east-1")
    arn = lam.create_function(
        FunctionName="probe",
        Runtime="python3.13",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": b"x"},
        Environment={"Variables": {"GREETING": "hi"}},
    )["FunctionArn"]
    registry.register(FunctionSpec("probe", "Probe", tmp / "fn", "app.handler", {"GREETING": "hi"}, 30, 128, arn))
    return str(arn)


def test_given_a_lambda_task_when_it_runs_then_the_real_handler_runs_with_its_environment(aws: dict[str, Any]) -> None:
    arn = _function(
        aws["tmp"],
        "import os\nGREETING = os.environ['GREETING']\n"
        "def handler(event, context):\n    return {'said': GREETING + ' ' + event['name']}\n",
    )
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": arn, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "End": True,
            }
        },
    }
    result = _run(aws["sfn"], definition, {"name": "train"})
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"said": "hi train"}


def test_given_a_handler_that_raises_when_invoked_then_the_error_name_is_the_exception_class(
    aws: dict[str, Any],
) -> None:
    arn = _function(
        aws["tmp"],
        "class GateBlocked(Exception):\n    pass\ndef handler(event, context):\n    raise GateBlocked('alarm fired')\n",
    )
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": arn, "Payload.$": "$"},
                "End": True,
            }
        },
    }
    result = _run(aws["sfn"], definition)
    assert result["status"] == "FAILED"
    assert result["error"] == "GateBlocked"
    assert "alarm fired" in result["cause"]


def _build_definition(project: str) -> dict[str, Any]:
    return {
        "StartAt": "Build",
        "States": {
            "Build": {
                "Type": "Task",
                "Resource": "arn:aws:states:::codebuild:startBuild.sync",
                "Parameters": {
                    "ProjectName": project,
                    "SourceVersion": "abc123",
                    "EnvironmentVariablesOverride": [{"Name": "STAGE", "Type": "PLAINTEXT", "Value": "staging"}],
                },
                "ResultSelector": {"id.$": "$.Build.Id", "status.$": "$.Build.BuildStatus"},
                "End": True,
            }
        },
    }


def test_given_codebuild_sync_when_the_build_succeeds_then_the_task_waits_for_it_and_returns_the_build(
    aws: dict[str, Any],
) -> None:
    aws["world"].register_project("good-staging", "staging", "good")
    result = _run(aws["sfn"], _build_definition("good-staging"))
    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])
    assert output["status"] == "SUCCEEDED"
    assert output["id"].startswith("good-staging:")
    assert aws["clock"].elapsed >= 360  # the default 6-minute build passed in virtual time


def test_given_codebuild_sync_when_the_build_fails_then_the_task_fails_with_states_taskfailed(
    aws: dict[str, Any],
) -> None:
    aws["world"].register_project("bad-staging", "staging", "bad")
    result = _run(aws["sfn"], _build_definition("bad-staging"))
    assert result["status"] == "FAILED"
    assert result["error"] == "States.TaskFailed"
    assert json.loads(result["cause"])["BuildStatus"] == "FAILED"


def test_given_a_two_day_wait_when_run_then_it_passes_in_virtual_time(aws: dict[str, Any]) -> None:
    definition = {"StartAt": "Bake", "States": {"Bake": {"Type": "Wait", "SecondsPath": "$.s", "End": True}}}
    # Without the fix the Wait lasts two real days: _run gives up after a few seconds and fails the test.
    result = _run(aws["sfn"], definition, {"s": 172800})
    assert result["status"] == "SUCCEEDED"
    assert aws["clock"].elapsed == pytest.approx(172800)


def test_given_a_stop_during_a_map_when_stopped_then_the_execution_is_aborted_with_its_cause(
    aws: dict[str, Any],
) -> None:
    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 1,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Bake",
                    "States": {"Bake": {"Type": "Wait", "Seconds": 86400, "End": True}},
                },
                "End": True,
            }
        },
    }
    result = _run(aws["sfn"], definition, {"items": [1, 2, 3]}, stop_when=lambda sfn, arn: True)
    assert result["status"] == "ABORTED"
    assert result.get("error") == "OperatorCancelled"
    assert result.get("cause") == "test stop"


def test_given_a_sync_build_when_the_execution_stops_as_it_is_submitted_then_step_functions_stops_the_build(
    aws: dict[str, Any],
) -> None:
    from trainctl.sandbox.observer import observers

    world = aws["world"]
    world.scenario = Scenario(builds={"staging": {"slow": BuildBehaviour(duration=timedelta(days=1))}})
    world.register_project("slow-staging", "staging", "slow")
    sfn = aws["sfn"]

    def stop_on_submit(event_type: str, details: dict[str, Any]) -> None:
        # The hardest moment: the build exists, moto has not polled it once yet.
        if event_type == "TaskSubmitted":
            arn = sfn.list_executions(stateMachineArn=machine)["executions"][0]["executionArn"]
            sfn.stop_execution(executionArn=arn, error="OperatorCancelled", cause="test stop")

    machine = sfn.create_state_machine(
        name="stopper", definition=json.dumps(_build_definition("slow-staging")), roleArn=ROLE
    )["stateMachineArn"]
    observers.append(stop_on_submit)
    try:
        execution = sfn.start_execution(stateMachineArn=machine, name="e1", input="{}")["executionArn"]
        for _ in range(2000):
            if sfn.describe_execution(executionArn=execution)["status"] != "RUNNING":
                break
            time.sleep(0.005)
    finally:
        observers.remove(stop_on_submit)
    assert sfn.describe_execution(executionArn=execution)["status"] == "ABORTED"
    (build,) = world.builds.values()
    assert build.status(aws["clock"].elapsed) == "STOPPED"  # no clean-up ran here: the stop is Step Functions'


def test_given_a_long_history_when_read_newest_first_in_pages_then_pages_follow_the_api_contract(
    aws: dict[str, Any],
) -> None:
    definition = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": True}}}
    sfn = aws["sfn"]
    _run(sfn, definition)
    arn = sfn.list_executions(stateMachineArn=sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"])[
        "executions"
    ][0]["executionArn"]
    everything = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    first = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=2)
    rest = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=1000, nextToken=first["nextToken"])
    assert [e["type"] for e in first["events"]] == ["ExecutionSucceeded", "PassStateExited"]
    assert [e["id"] for e in first["events"] + rest["events"]] == [e["id"] for e in reversed(everything)]
    assert "nextToken" not in rest


def test_given_many_tasks_when_the_interpreter_asks_for_clients_then_each_service_and_region_gets_one(
    aws: dict[str, Any],
) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.utils import boto_client

    first = boto_client.boto_client_for(region="us-east-1", service="lambda")
    assert lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda") is first  # the importers' copies
    assert boto_client.boto_client_for(region="eu-west-1", service="lambda") is not first
    assert boto_client.boto_client_for(region="us-east-1", service="codebuild") is not first
    # A cached client still reaches the mock (and is the one the next task gets).
    assert first.list_functions()["Functions"] == []
