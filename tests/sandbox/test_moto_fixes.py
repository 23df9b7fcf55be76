"""Regression tests for trainctl/sandbox/moto_fixes.py: each fails on plain moto 5.2.x (see MOTO_NOTES.md).

Every test runs on the event-driven virtual clock: nothing here sleeps or polls on the wall clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.harness import ROLE, Sandbox, on_state, sandbox
from trainctl.sandbox.scenario import BuildBehaviour, Scenario

SCENARIO = Scenario(
    builds={
        "staging": {
            "bad": BuildBehaviour(outcome="FAILED"),
            "slow": BuildBehaviour(duration=timedelta(days=1)),
        }
    }
)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    with sandbox(tmp_path, SCENARIO) as sb:
        yield sb


def _call(arn: str) -> dict[str, Any]:
    return {
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


# --- 1. Lambda in-process, beside its state ------------------------------------------------------------------------


def test_given_a_lambda_task_when_it_runs_then_the_real_handler_runs_with_its_environment(box: Sandbox) -> None:
    arn = box.function(
        "probe",
        "import os\nGREETING = os.environ['GREETING']\n"
        "def handler(event, context):\n    return {'said': GREETING + ' ' + event['name']}\n",
        {"GREETING": "hi"},
    )
    result = box.run(_call(arn), {"name": "train"})
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"said": "hi train"}


def test_given_a_handler_that_raises_when_invoked_then_the_error_name_is_the_exception_class(box: Sandbox) -> None:
    arn = box.function(
        "probe",
        "class GateBlocked(Exception):\n    pass\ndef handler(event, context):\n    raise GateBlocked('alarm fired')\n",
    )
    result = box.run(_call(arn))
    assert result["status"] == "FAILED"
    assert result["error"] == "GateBlocked"
    assert "alarm fired" in result["cause"]


def test_given_a_stop_while_a_lambda_runs_when_stopped_then_the_state_ends_now_and_the_invocation_goes_on(
    tmp_path: Path,
) -> None:
    # Scenario `lambdas` are keyed like the state machine's states (function `Call` = state Call).
    with sandbox(tmp_path, Scenario(lambdas={"Call": {"duration": "PT30S"}})) as box:
        marker = tmp_path / "ran"
        body = (
            "import pathlib\ndef handler(event, context):\n"
            f"    pathlib.Path({str(marker)!r}).write_text('x')\n    return {{}}\n"
        )
        arn = box.function("call", body)
        stopped_at: list[float] = []

        def stop() -> None:
            stopped_at.append(box.clock.elapsed)
            box.sfn.stop_execution(executionArn=execution, error="OperatorCancelled", cause="test stop")

        with on_state("Call", stop):
            execution = box.start(_call(arn))
            box.settle()
        described = box.sfn.describe_execution(executionArn=execution)
        assert described["status"] == "ABORTED"
        assert (described["stopDate"] - described["startDate"]).total_seconds() == pytest.approx(0, abs=1)
        assert stopped_at == [0.0]
        assert marker.exists()  # the invocation finished after the stop, 30 virtual seconds in
        assert box.clock.elapsed == pytest.approx(30)


# --- 2. CodeBuild .sync -------------------------------------------------------------------------------------------


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
    box: Sandbox,
) -> None:
    box.world.codebuild.register_project("good-staging", "staging", "good")
    result = box.run(_build_definition("good-staging"))
    assert result["status"] == "SUCCEEDED"
    output = json.loads(result["output"])
    assert output["status"] == "SUCCEEDED"
    assert output["id"].startswith("good-staging:")
    assert box.clock.elapsed == 360  # the default 6-minute build, exactly


def test_given_codebuild_sync_when_the_build_fails_then_the_task_fails_with_states_taskfailed(box: Sandbox) -> None:
    box.world.codebuild.register_project("bad-staging", "staging", "bad")
    result = box.run(_build_definition("bad-staging"))
    assert result["status"] == "FAILED"
    assert result["error"] == "States.TaskFailed"
    assert json.loads(result["cause"])["BuildStatus"] == "FAILED"


def test_given_a_sync_build_when_the_execution_stops_as_it_is_submitted_then_step_functions_stops_the_build(
    box: Sandbox,
) -> None:
    from trainctl.sandbox.observer import observers

    box.world.codebuild.register_project("slow-staging", "staging", "slow")
    arns: list[str] = []

    def stop_on_submit(event_type: str, details: dict[str, Any], arn: str | None) -> None:
        # The hardest moment: the build exists, moto has not polled it once yet.
        if event_type == "TaskSubmitted" and arn:
            box.sfn.stop_execution(executionArn=arn, error="OperatorCancelled", cause="test stop")
            arns.append(arn)

    observers.append(stop_on_submit)
    try:
        box.start(_build_definition("slow-staging"))
        box.settle()
    finally:
        observers.remove(stop_on_submit)
    assert box.sfn.describe_execution(executionArn=arns[0])["status"] == "ABORTED"
    (build,) = box.world.codebuild.builds.values()
    assert build.status == "STOPPED"  # no clean-up ran here: the stop is Step Functions'
    assert box.clock.elapsed == 0  # stopped at once, not after the day-long build


# --- 3. virtual, event-driven time --------------------------------------------------------------------------------


def test_given_a_two_day_wait_when_run_then_it_passes_in_virtual_time(box: Sandbox) -> None:
    definition = {"StartAt": "Bake", "States": {"Bake": {"Type": "Wait", "SecondsPath": "$.s", "End": True}}}
    result = box.run(definition, {"s": 172800})
    assert result["status"] == "SUCCEEDED"
    assert box.clock.elapsed == 172800
    assert (result["stopDate"] - result["startDate"]).total_seconds() == 172800  # dates are virtual too


def test_given_a_wave_of_60_builds_at_concurrency_40_then_it_takes_two_build_lengths(box: Sandbox) -> None:
    for i in range(60):
        box.world.codebuild.register_project(f"svc{i}-staging", "staging", f"svc{i}")
    definition = {
        "StartAt": "Wave",
        "States": {
            "Wave": {
                "Type": "Map",
                "ItemsPath": "$.projects",
                "MaxConcurrency": 40,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Build",
                    "States": {
                        "Build": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::codebuild:startBuild.sync",
                            "Parameters": {"ProjectName.$": "$"},
                            "ResultSelector": {"s.$": "$.Build.BuildStatus"},
                            "End": True,
                        }
                    },
                },
                "End": True,
            }
        },
    }
    result = box.run(definition, {"projects": [f"svc{i}-staging" for i in range(60)]})
    assert result["status"] == "SUCCEEDED"
    assert box.clock.elapsed == 720  # 40 builds 0-6 min, the other 20 6-12 min (AWS: about 12 minutes)


# --- 5 + 6. StopExecution ------------------------------------------------------------------------------------------


def test_given_a_stop_during_a_map_when_stopped_then_the_execution_is_aborted_with_its_cause(box: Sandbox) -> None:
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
    arns: list[str] = []

    def stop() -> None:
        box.sfn.stop_execution(executionArn=arns[0], error="OperatorCancelled", cause="test stop")

    with on_state("Bake", stop, occurrence=2):
        arns.append(box.start(definition, {"items": [1, 2, 3]}))
        box.settle()
    result = box.sfn.describe_execution(executionArn=arns[0])
    assert result["status"] == "ABORTED"
    assert result.get("error") == "OperatorCancelled"
    assert result.get("cause") == "test stop"
    assert box.clock.elapsed == 86400  # stopped as the second item began, not after all three


def test_given_a_stop_right_after_the_start_then_the_execution_is_aborted(box: Sandbox) -> None:
    definition = {"StartAt": "Bake", "States": {"Bake": {"Type": "Wait", "Seconds": 86400, "End": True}}}

    def start_and_stop() -> str:
        machine = box.machine(definition)
        arn = str(box.sfn.start_execution(stateMachineArn=machine, name="e1", input="{}")["executionArn"])
        # An operator cancelling the moment the train started: the environment must exist already (MOTO_NOTES).
        box.sfn.stop_execution(executionArn=arn, error="OperatorCancelled", cause="right away")
        return arn

    arn = box.act(start_and_stop)
    box.settle()
    assert box.sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    assert box.clock.elapsed == 0


# --- 8 + 9 ---------------------------------------------------------------------------------------------------------


def test_given_a_long_history_when_read_newest_first_in_pages_then_pages_follow_the_api_contract(box: Sandbox) -> None:
    definition = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": True}}}
    arn = box.start(definition)
    box.settle()
    sfn = box.sfn
    everything = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    first = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=2)
    rest = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=1000, nextToken=first["nextToken"])
    assert [e["type"] for e in first["events"]] == ["ExecutionSucceeded", "PassStateExited"]
    assert [e["id"] for e in first["events"] + rest["events"]] == [e["id"] for e in reversed(everything)]
    assert "nextToken" not in rest


def test_given_many_tasks_when_the_interpreter_asks_for_clients_then_each_service_and_region_gets_one(
    box: Sandbox,
) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.utils import boto_client

    first = boto_client.boto_client_for(region="us-east-1", service="lambda")
    assert lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda") is first  # the importers' copies
    assert boto_client.boto_client_for(region="eu-west-1", service="lambda") is not first
    assert boto_client.boto_client_for(region="us-east-1", service="codebuild") is not first
    assert first.list_functions()["Functions"] == []  # a cached client still reaches the mock


def test_given_an_invoke_of_a_version_when_it_runs_then_that_version_runs_and_is_reported(box: Sandbox) -> None:
    import boto3

    box.function("versioned", "def handler(event, context):\n    return {'ran': context.function_version}\n")
    lam = boto3.client("lambda")
    version = lam.publish_version(FunctionName="versioned")["Version"]
    answer = box.act(lambda: lam.invoke(FunctionName="versioned", Qualifier=version, Payload=b"{}"))
    assert json.loads(answer["Payload"].read()) == {"ran": version}  # plain moto ran $LATEST
    assert answer["ExecutedVersion"] == version


# --- 11. executions of a version or an alias ------------------------------------------------------------------------


def test_given_an_alias_when_an_execution_starts_on_it_then_the_aliased_version_runs_not_the_latest_definition(
    box: Sandbox,
) -> None:
    sfn = box.sfn

    def create() -> tuple[str, str, str]:
        first = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": {"v": 1}, "End": True}}}
        created = sfn.create_state_machine(name="m", definition=json.dumps(first), roleArn=ROLE, publish=True)
        alias = sfn.create_state_machine_alias(
            name="live",
            routingConfiguration=[{"stateMachineVersionArn": created["stateMachineVersionArn"], "weight": 100}],
        )["stateMachineAliasArn"]
        second = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": {"v": 2}, "End": True}}}
        newer = sfn.update_state_machine(
            stateMachineArn=created["stateMachineArn"], definition=json.dumps(second), publish=True
        )
        on_alias = sfn.start_execution(stateMachineArn=alias, name="on-alias")["executionArn"]
        on_version = sfn.start_execution(stateMachineArn=newer["stateMachineVersionArn"], name="on-v2")["executionArn"]
        return alias, on_alias, on_version

    _, on_alias, on_version = box.act(create)
    box.settle()
    described = sfn.describe_execution(executionArn=on_alias)
    assert json.loads(described["output"]) == {"v": 1}, described  # plain moto: refused
    assert json.loads(sfn.describe_execution(executionArn=on_version)["output"]) == {"v": 2}  # plain: AttributeError


# --- 14. one AWS request at a time ----------------------------------------------------------------------------------


def test_given_concurrent_conditional_puts_when_they_race_then_exactly_one_wins_as_in_dynamodb(box: Sandbox) -> None:
    """moto alone let two of four racing `attribute_not_exists` puts win in ~1 try in 40 (the idempotency record and
    the train lock rest on this). 200 races: without the fix this fails with probability > 99%."""
    import sys
    import threading

    import boto3

    from trainctl.sandbox import vtime

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(
        TableName="race",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    winners: dict[int, list[int]] = {}

    def put(trial: int, who: int, start: threading.Barrier) -> None:
        start.wait()  # a real barrier: all four are running (participants), none waits in virtual time
        try:
            ddb.put_item(
                TableName="race",
                Item={"id": {"S": f"k{trial}"}, "who": {"N": str(who)}},
                ConditionExpression="attribute_not_exists(id)",
            )
            winners.setdefault(trial, []).append(who)
        except ddb.exceptions.ConditionalCheckFailedException:
            pass

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race, if any, shows
    try:
        for trial in range(200):
            start = threading.Barrier(4)
            threads = [vtime.VThread(target=put, args=(trial, who, start)) for who in range(4)]
            for thread in threads:
                thread.start()
            box.settle()
    finally:
        sys.setswitchinterval(interval)

    assert {t: len(w) for t, w in winners.items() if len(w) != 1} == {}
    assert len(winners) == 200


def test_given_a_lambda_that_waits_in_virtual_time_inside_invoke_then_other_requests_go_on(box: Sandbox) -> None:
    """The dispatch lock is given up while its holder waits in virtual time: a handler sleeping inside Invoke (a
    Retry-After) must not stop the rest of the world, nor the clock."""
    import boto3

    from trainctl.sandbox import vtime

    arn = box.function(
        "sleeper",
        "from trainctl.sandbox import vtime\ndef handler(event, context):\n    vtime.current().sleep(3600)\n"
        "    return {'slept': True}\n",
    )
    sqs = boto3.client("sqs", region_name="us-east-1")
    seen: list[str] = []

    def other() -> None:
        vtime.current().sleep(60)  # while the handler sleeps inside Invoke, holding (then giving up) the lock
        seen.append(sqs.create_queue(QueueName="meanwhile")["QueueUrl"])

    box.act(lambda: vtime.spawn(other, "other"))
    result = box.run(_call(arn), {})

    assert result["status"] == "SUCCEEDED" and json.loads(result["output"]) == {"slept": True}
    assert len(seen) == 1 and seen[0].endswith("/meanwhile")


def test_given_an_hmac_key_in_a_template_when_cloudformation_creates_it_then_it_signs_and_verifies(
    box: Sandbox,
) -> None:
    """Fix 15: plain moto creates every template key as ENCRYPT_DECRYPT / SYMMETRIC_DEFAULT, so GenerateMac on the
    break-glass key failed with InvalidKeyUsageException."""
    import boto3

    template = {
        "Resources": {
            "Key": {
                "Type": "AWS::KMS::Key",
                "Properties": {
                    "KeySpec": "HMAC_256",
                    "KeyUsage": "GENERATE_VERIFY_MAC",
                    "KeyPolicy": {"Version": "2012-10-17", "Statement": []},
                },
            }
        }
    }
    cloudformation, kms = boto3.client("cloudformation"), boto3.client("kms")
    box.act(lambda: cloudformation.create_stack(StackName="keys", TemplateBody=json.dumps(template)))
    [key] = cloudformation.list_stack_resources(StackName="keys")["StackResourceSummaries"]

    metadata = kms.describe_key(KeyId=key["PhysicalResourceId"])["KeyMetadata"]
    mac = kms.generate_mac(KeyId=key["PhysicalResourceId"], Message=b"grant", MacAlgorithm="HMAC_SHA_256")["Mac"]
    verified = kms.verify_mac(KeyId=key["PhysicalResourceId"], Message=b"grant", MacAlgorithm="HMAC_SHA_256", Mac=mac)

    assert (metadata["KeySpec"], metadata["KeyUsage"], verified["MacValid"]) == (
        "HMAC_256",
        "GENERATE_VERIFY_MAC",
        True,
    )
