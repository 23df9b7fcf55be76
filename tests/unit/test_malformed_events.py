"""Malformed events for every handler: exactly one error that names the field, raised before anything is written.

Each case runs the real handler module under moto, on a ledger where release 2026-W48 is planned (so a handler that
got past its input would write), and checks: one InvalidEvent (HookEventInvalid for the CodeDeploy hooks) whose
message names the field; the ledger table scan unchanged; no AWS call at all (no SNS publish, StartBuild,
SendTaskSuccess...), except the ledger reads needed to learn that a stage or service is not in the release.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from moto import mock_aws

from release_train.adapters import aws
from release_train.adapters.ledger import Ledger
from release_train.domain.fleet import Service
from release_train.domain.release import ExecutionInput
from release_train.events import (
    MAX_WAVE,
    RELEASE_ID,
    CleanupExecutionEvent,
    EvaluateGateEvent,
    FinalizeReleaseEvent,
    InvalidEvent,
    LoadWaveEvent,
    PlanReleaseEvent,
    RecordChunkEvent,
    RecordFailureEvent,
    RequestApprovalEvent,
    parse_event,
    record_wave_model,
)
from release_train.hook_lambda import HookEventInvalid
from tests.conftest import EVENTS, ROOT, FakeLambdaContext, load_event
from tests.unit.adapters.ledger_table import all_items, create_ledger_table
from tests.unit.test_handlers import BUCKET, TOPIC, handler_module, planned

MODELS: dict[str, Any] = {
    "plan_release": PlanReleaseEvent,
    "load_wave": LoadWaveEvent,
    "record_wave": RecordChunkEvent,  # the richest of RecordWave's three payloads (record_wave_model)
    "evaluate_gate": EvaluateGateEvent,
    "request_approval": RequestApprovalEvent,
    "finalize_release": FinalizeReleaseEvent,
    "record_failure": RecordFailureEvent,
    "cleanup_execution": CleanupExecutionEvent,
}
# Valid events for the planned release (stages staging and prod; api rides): each case breaks exactly one thing.
VALID: dict[str, dict[str, Any]] = {
    "plan_release": load_event("plan_release/schedule.json"),
    "load_wave": {"release_id": "2026-W48", "stage": "staging", "wave": 1},
    "record_wave": load_event("record_wave/staging_wave1_chunk0_succeeded.json"),
    "evaluate_gate": load_event("evaluate_gate/staging_no_test_report.json"),
    "request_approval": load_event("request_approval/prod.json"),
    "finalize_release": load_event("finalize_release/release.json"),
    "record_failure": load_event("record_failure/gate_blocked.json"),
    "cleanup_execution": load_event("cleanup_execution/execution_aborted.json"),
}
FAILED_BUILD = load_event("record_wave/staging_wave1_chunk0_failed.json")["results"][0]
HOOK = load_event("pre_traffic/lambda_deployment.json")
# What a service may read before it refuses a stage or service the release does not have (the release, its fleet).
LEDGER_READS = {("dynamodb", op) for op in ("GetItem", "Query", "BatchGetItem")}


@dataclass(frozen=True)
class Case:
    function: str
    name: str
    event: Any
    field: str  # the path the message must name
    reads_ledger: bool = False  # refused by the service after reading the release (unknown stage or service)

    @property
    def id(self) -> str:
        return f"{self.function}-{self.name}"


def _with(function: str, path: str, value: Any) -> dict[str, Any]:
    """VALID[function] with the value at `path` (dots; [i] for list items) replaced, or removed if value is _GONE."""
    event = copy.deepcopy(VALID[function]) if function in VALID else copy.deepcopy(HOOK)
    keys: list[str | int] = [int(k) if k.isdigit() else k for k in re.split(r"\.|\[(\d+)\]", path) if k]
    parent: Any = event
    for key in keys[:-1]:
        parent = parent[key]
    if value is _GONE:
        del parent[keys[-1]]
    else:
        parent[keys[-1]] = value
    return event


_GONE = object()
ARN = "arn:aws:states:us-east-1:123456789012:execution:ReleaseTrain-release-train:2026-W48-schedule"

REQUIRED = {
    "plan_release": ["input", "execution_arn", "execution_name"],
    "load_wave": ["release_id", "stage", "wave"],
    "record_wave": ["release_id", "stage", "wave", "chunk", "results", "results[0].service", "results[0].build_id"],
    "evaluate_gate": ["release_id", "stage", "stage.name"],
    "request_approval": ["release_id", "stage", "task_token"],
    "finalize_release": ["release_id"],
    "record_failure": ["release_id", "outcome", "error", "error.Error", "execution_arn"],
    "cleanup_execution": ["source", "detail-type", "detail", "detail.executionArn", "detail.status"],
}


def _cases() -> list[Case]:
    cases: list[Case] = []
    for function, valid in VALID.items():
        cases += [
            Case(function, "null", None, "event"),
            Case(function, "a-list", [valid], "event"),
            Case(function, "a-string", json.dumps(valid), "event"),
        ]
        cases += [Case(function, f"missing-{p}", _with(function, p, _GONE), p) for p in REQUIRED[function]]
    cases += [
        # wrong types
        Case("plan_release", "execution-arn-number", _with("plan_release", "execution_arn", 12345), "execution_arn"),
        Case("load_wave", "release-id-number", _with("load_wave", "release_id", 48), "release_id"),
        Case("load_wave", "stage-object", _with("load_wave", "stage", {"name": "staging"}), "stage"),
        Case("load_wave", "wave-string", _with("load_wave", "wave", "1"), "wave"),
        Case("load_wave", "wave-float", _with("load_wave", "wave", 1.5), "wave"),
        Case("load_wave", "wave-bool", _with("load_wave", "wave", True), "wave"),
        Case("load_wave", "wave-null", _with("load_wave", "wave", None), "wave"),
        Case("record_wave", "results-object", _with("record_wave", "results", {"api": "SUCCEEDED"}), "results"),
        Case("record_wave", "result-a-string", _with("record_wave", "results[0]", "api"), "results[0]"),
        Case("evaluate_gate", "stage-a-string", _with("evaluate_gate", "stage", "staging"), "stage"),
        Case("evaluate_gate", "tests-a-list", _with("evaluate_gate", "tests", ["b:1"]), "tests"),
        Case("request_approval", "task-token-number", _with("request_approval", "task_token", 7), "task_token"),
        Case("record_failure", "error-a-string", _with("record_failure", "error", "GateBlocked"), "error"),
        Case("record_failure", "cause-an-object", _with("record_failure", "error.Cause", {"a": 1}), "error.Cause"),
        Case("cleanup_execution", "detail-a-string", _with("cleanup_execution", "detail", "{}"), "detail"),
        # values out of range or of the wrong form
        Case("load_wave", "wave-0", _with("load_wave", "wave", 0), "wave"),
        Case("load_wave", "wave-over-fleet-max", _with("load_wave", "wave", MAX_WAVE + 1), "wave"),
        Case("load_wave", "release-id-path", _with("load_wave", "release_id", "../2026-W48"), "release_id"),
        Case("load_wave", "release-id-empty", _with("load_wave", "release_id", ""), "release_id"),
        Case("load_wave", "stage-uppercase", _with("load_wave", "stage", "Prod"), "stage"),
        Case("record_wave", "results-empty", _with("record_wave", "results", []), "results"),
        Case(
            "record_wave", "status-running", _with("record_wave", "results[0].status", "RUNNING"), "results[0].status"
        ),
        Case("record_wave", "status-missing", _with("record_wave", "results[0].status", _GONE), "results[0].status"),
        Case(
            "record_wave",
            "failed-without-error",
            {**VALID["record_wave"], "results": [{k: v for k, v in FAILED_BUILD.items() if k != "error"}]},
            "results[0].error",
        ),
        Case(
            "record_wave",
            "build-id-no-project",
            _with("record_wave", "results[0].build_id", "xyz"),
            "results[0].build_id",
        ),
        Case("record_failure", "outcome-succeeded", _with("record_failure", "outcome", "SUCCEEDED"), "outcome"),
        Case(
            "record_failure",
            "execution-arn-not-arn",
            _with("record_failure", "execution_arn", "2026-W48"),
            "execution_arn",
        ),
        Case(
            "cleanup_execution",
            "status-succeeded",
            _with("cleanup_execution", "detail.status", "SUCCEEDED"),
            "detail.status",
        ),
        Case(
            "cleanup_execution",
            "status-running",
            _with("cleanup_execution", "detail.status", "RUNNING"),
            "detail.status",
        ),
        Case("cleanup_execution", "another-source", _with("cleanup_execution", "source", "aws.codebuild"), "source"),
        Case(
            "cleanup_execution",
            "another-detail-type",
            _with("cleanup_execution", "detail-type", "Scheduled Event"),
            "detail-type",
        ),
        # oversized strings
        Case("plan_release", "execution-name-81", _with("plan_release", "execution_name", "n" * 81), "execution_name"),
        Case(
            "plan_release",
            "execution-arn-257",
            _with("plan_release", "execution_arn", ARN + "x" * 200),
            "execution_arn",
        ),
        Case("load_wave", "release-id-65", _with("load_wave", "release_id", "r" * 65), "release_id"),
        Case("load_wave", "stage-64", _with("load_wave", "stage", "s" * 64), "stage"),
        Case("record_wave", "service-64", _with("record_wave", "results[0].service", "s" * 64), "results[0].service"),
        Case("evaluate_gate", "stage-name-1mb", _with("evaluate_gate", "stage.name", "s" * 2**20), "stage.name"),
        Case("request_approval", "task-token-2049", _with("request_approval", "task_token", "t" * 2049), "task_token"),
        Case("finalize_release", "release-id-1mb", _with("finalize_release", "release_id", "r" * 2**20), "release_id"),
        Case("record_failure", "error-257", _with("record_failure", "error.Error", "E" * 257), "error.Error"),
        Case("record_failure", "cause-32769", _with("record_failure", "error.Cause", "c" * 32769), "error.Cause"),
        Case(
            "cleanup_execution", "cause-32769", _with("cleanup_execution", "detail.cause", "c" * 32769), "detail.cause"
        ),
        # keys the state machine never passes (payloads the ASL builds key by key)
        Case("load_wave", "unknown-key", {**VALID["load_wave"], "waves": [1]}, "waves"),
        Case("request_approval", "unknown-key", {**VALID["request_approval"], "token": "x"}, "token"),
        # names the release does not have: refused by the service after reading the release, before any write
        Case("load_wave", "unknown-stage", _with("load_wave", "stage", "qa"), "stage", reads_ledger=True),
        Case("record_wave", "unknown-stage", _with("record_wave", "stage", "qa"), "stage", reads_ledger=True),
        Case(
            "record_wave",
            "unknown-service",
            _with("record_wave", "results[0].service", "billing"),
            "results[0].service",
            reads_ledger=True,
        ),
        Case(
            "evaluate_gate",
            "unknown-stage",
            _with("evaluate_gate", "stage.name", "qa"),
            "stage.name",
            reads_ledger=True,
        ),
        Case("request_approval", "unknown-stage", _with("request_approval", "stage", "qa"), "stage", reads_ledger=True),
    ]
    return cases


CASES = _cases()
HOOK_CASES = [
    Case(hook, name, event, where)
    for hook in ("pre_traffic", "post_traffic")
    for name, event, where in [
        ("null", None, "object"),
        ("a-list", [HOOK], "object"),
        ("empty", {}, "DeploymentId"),
        (
            "missing-execution-id",
            _with("pre_traffic", "LifecycleEventHookExecutionId", _GONE),
            "LifecycleEventHookExecutionId",
        ),
        ("deployment-id-number", _with("pre_traffic", "DeploymentId", 12345), "DeploymentId"),
        (
            "execution-id-empty",
            _with("pre_traffic", "LifecycleEventHookExecutionId", ""),
            "LifecycleEventHookExecutionId",
        ),
    ]
]


@dataclass
class World:
    table: Any
    calls: list[tuple[str, str]] = field(default_factory=list)

    def scan(self) -> list[str]:
        # repr: boto3's Binary (the pinned fleet's parts) has a str() that returns bytes
        return sorted(json.dumps(item, sort_keys=True, default=repr) for item in all_items(self.table))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with mock_aws():
        aws.client.cache_clear()  # clients are cached per process: build them inside this mock
        table = create_ledger_table()
        topic = boto3.client("sns", region_name="us-east-1").create_topic(Name=TOPIC)["TopicArn"]
        env = {"LEDGER_TABLE": table.name, "TOPIC_ARN": topic, "CONFIG_BUCKET": BUCKET, "IDEMPOTENCY_TABLE": "hooks"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        planned(Ledger(table))
        state = World(table)
        original = BaseClient._make_api_call

        def recorded(client: Any, operation: str, params: dict[str, Any]) -> Any:
            state.calls.append((client.meta.service_model.service_name, operation))
            return original(client, operation, params)

        monkeypatch.setattr(BaseClient, "_make_api_call", recorded)
        yield state
        aws.client.cache_clear()


def _names(message: str, path: str) -> bool:
    return re.search(rf"(?:: |; ){re.escape(path)}: ", message) is not None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_given_a_malformed_event_when_the_handler_runs_then_one_invalid_event_names_the_field_and_nothing_is_written(
    case: Case, world: World
) -> None:
    module = handler_module(case.function)
    before = world.scan()
    world.calls.clear()

    with pytest.raises(InvalidEvent) as caught:
        module.handler(copy.deepcopy(case.event), FakeLambdaContext(function_name=case.function))

    message = str(caught.value)
    assert type(caught.value) is InvalidEvent
    assert message.startswith(f"{MODELS[case.function].event_name} event is invalid: ")
    assert len(caught.value.problems) == 1, message
    assert _names(message, case.field), message
    assert len(message) < 400  # an oversized value is described, never echoed
    calls = set(world.calls)
    assert calls <= LEDGER_READS if case.reads_ledger else calls == set(), world.calls
    world.calls.clear()
    assert world.scan() == before


@pytest.mark.parametrize("case", HOOK_CASES, ids=[c.id for c in HOOK_CASES])
def test_given_a_malformed_codedeploy_event_when_a_hook_runs_then_hook_event_invalid_names_it_and_nothing_is_called(
    case: Case, world: World
) -> None:
    module = handler_module(case.function)
    world.calls.clear()

    with pytest.raises(HookEventInvalid) as caught:
        module.handler(copy.deepcopy(case.event), FakeLambdaContext(function_name=case.function))

    assert case.field in str(caught.value)
    assert world.calls == []


@pytest.mark.parametrize("function", ["load_wave", "record_wave", "evaluate_gate", "request_approval"])
def test_given_a_stage_the_release_does_not_have_when_the_handler_runs_then_it_is_refused_naming_the_stages(
    function: str, world: World
) -> None:
    event = _with(function, "stage.name" if function == "evaluate_gate" else "stage", "production")
    before = world.scan()

    with pytest.raises(InvalidEvent) as caught:
        handler_module(function).handler(event, FakeLambdaContext(function_name=function))

    assert "unknown stage 'production' (release 2026-W48 has stages staging, prod)" in str(caught.value)
    assert world.scan() == before


@pytest.mark.parametrize("function", sorted(MODELS))
def test_given_the_sample_events_when_parsed_then_each_is_valid_for_its_handler(function: str) -> None:
    samples = sorted((EVENTS / function).glob("*.json"))

    assert samples
    for sample in samples:
        event = json.loads(sample.read_text())
        parse_event(record_wave_model(event) if function == "record_wave" else MODELS[function], event)


def test_given_the_execution_input_schema_then_release_ids_and_waves_are_bounded_alike() -> None:
    release_id = ExecutionInput.model_json_schema()["properties"]["release_id"]["anyOf"][0]

    assert (release_id["pattern"], Service.model_json_schema()["properties"]["wave"]["maximum"]) == (
        RELEASE_ID,
        MAX_WAVE,
    )


def _tasks(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        yield name, state
        for nested in [state.get("ItemProcessor"), *state.get("Branches", [])]:
            if nested:
                yield from _tasks(nested["States"])


def test_given_the_asl_then_no_lambda_task_retries_an_invalid_event() -> None:
    # Retrying the same malformed event cannot succeed: only Lambda's own transient errors are retried.
    asl = json.loads((ROOT / "statemachines" / "release_train.asl.json").read_text())
    retried = {
        (name, error)
        for name, state in _tasks(asl["States"])
        if str(state.get("Resource", "")).startswith("arn:aws:states:::lambda:invoke")
        for retry in state.get("Retry", [])
        for error in retry["ErrorEquals"]
    }

    assert retried
    assert {e for _, e in retried} & {"States.ALL", "States.TaskFailed", "Lambda.Unknown", "InvalidEvent"} == set()
