"""Each non-hook handler, imported with the function's environment under moto, fed its events/<function>/*.json."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from release_train.adapters import aws
from release_train.adapters.ledger import BuildRecord, Ledger, ReleaseRecord
from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import parse_fleet
from release_train.domain.release import GateBlocked, ManifestEntry, Status
from tests.conftest import ROOT, FakeLambdaContext, load_event
from tests.unit.adapters.ledger_table import all_items, create_ledger_table

EXEC = "arn:aws:states:us-east-1:123456789012:execution:ReleaseTrain-release-train:2026-W48-schedule"
BUCKET, TOPIC = "release-train-config", "release-train"
FLEET = """
fleet: acme
defaults: {project: "train-{service}-{stage}", approvers: ["arn:aws:iam::123456789012:role/ReleaseManager"]}
stages:
  - {name: staging, bake: P2D, test_project: train-e2e-staging}
  - {name: prod, bake: PT1H, approval: {required: true}}
services:
  - {name: api, source: {codecommit: api, branch: release}}
"""
API_COMMIT = "a" * 40


@dataclass
class Stack:
    ledger: Ledger
    table: Any
    sqs: Any
    inbox: str

    def notifications(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        return messages


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        aws.client.cache_clear()  # clients are cached per process: build them inside this mock
        table = create_ledger_table()
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="fleet.yaml", Body=FLEET.encode())
        sns, sqs = boto3.client("sns", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name=TOPIC)["TopicArn"]
        inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        for name, value in {
            "LEDGER_TABLE": table.name,
            "TOPIC_ARN": topic,
            "CONFIG_BUCKET": BUCKET,
            "ACCOUNT_ID": "123456789012",  # the default ApproverBoundary: this account's principals
        }.items():
            monkeypatch.setenv(name, value)
        yield Stack(Ledger(table), table, sqs, inbox)
        aws.client.cache_clear()


def handler_module(function: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"{function}_app_under_test", ROOT / "functions" / function / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _invoke(function: str, event: dict[str, Any]) -> Any:
    return handler_module(function).handler(event, FakeLambdaContext(function_name=function))


def planned(ledger: Ledger) -> None:
    """The ledger as PlanRelease leaves it for 2026-W48 (api rides)."""
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    ledger.acquire_lock("acme", "2026-W48", EXEC, now)
    record = ReleaseRecord("2026-W48", "acme", Status.RUNNING, "planned", EXEC, now.isoformat(), stages=["staging"])
    ledger.create_release(record, parse_fleet(FLEET).model_dump(mode="json"))
    ledger.put_manifest("2026-W48", [ManifestEntry("api", API_COMMIT, None, 1, "codecommit:api@release")])


def _status(stack: Stack) -> Status | None:
    record = stack.ledger.release("2026-W48")
    return record.status if record else None


def test_given_a_schedule_event_without_a_time_when_plan_release_runs_then_it_is_rejected_with_no_writes(
    stack: Stack,
) -> None:
    with pytest.raises(InvalidInput, match="scheduled_time: required when trigger is 'schedule'"):
        _invoke("plan_release", load_event("plan_release/schedule_without_time.json"))

    assert (all_items(stack.table), stack.notifications()) == ([], [])


def test_given_the_schedule_event_when_plan_release_runs_then_the_release_is_planned_from_the_bucket_fleet(
    stack: Stack,
) -> None:
    module = handler_module("plan_release")
    # moto has no GetBranch
    module.service._sources = type(
        "Heads", (), {"heads": lambda self, sources, within=None: dict.fromkeys(sources, API_COMMIT)}
    )()

    plan = module.handler(load_event("plan_release/schedule.json"), FakeLambdaContext())

    assert (plan["release_id"], plan["status"], [s["name"] for s in plan["stages"]]) == (
        "2026-W48",
        "RUNNING",
        ["staging", "prod"],
    )


def test_given_staging_passed_when_load_wave_runs_for_prod_then_it_returns_the_chunks(stack: Stack) -> None:
    planned(stack.ledger)
    stack.ledger.record_builds("2026-W48", [BuildRecord("staging", "api", "SUCCEEDED", "b:1", API_COMMIT, 1)])

    result = _invoke("load_wave", load_event("load_wave/prod_wave1.json"))

    assert result == {"chunks": [0], "chunk_concurrency": 1, "parallel_chunks": 1}


def test_given_a_chunk_when_load_wave_runs_for_it_then_it_returns_the_chunks_builds(stack: Stack) -> None:
    planned(stack.ledger)

    result = _invoke("load_wave", load_event("load_wave/prod_wave1_chunk0.json"))

    assert result == {"builds": [{"service": "api", "project": "train-api-prod", "commit": API_COMMIT}]}


def test_given_succeeded_builds_when_record_wave_runs_for_the_chunk_then_they_are_in_the_ledger(stack: Stack) -> None:
    planned(stack.ledger)

    result = _invoke("record_wave", load_event("record_wave/staging_wave1_chunk0_succeeded.json"))

    assert result == {"chunk": 0, "builds": 1, "failed": 0}
    assert [(b.service, b.status, b.commit) for b in stack.ledger.builds("2026-W48", "staging")] == [
        ("api", "SUCCEEDED", API_COMMIT)
    ]


def test_given_a_failed_build_when_record_wave_summarises_it_then_the_summary_keeps_id_status_and_phase(
    stack: Stack,
) -> None:
    event = load_event("record_wave/staging_build_failed.json")

    result = _invoke("record_wave", event)

    assert result == load_event("record_wave/staging_wave1_chunk0_failed.json")["results"][0]
    assert len(json.dumps(result)) < len(json.dumps(event["failed"]))


def test_given_a_failed_build_recorded_when_record_wave_decides_the_wave_then_wave_failed_names_it(
    stack: Stack,
) -> None:
    planned(stack.ledger)
    _invoke("record_wave", load_event("record_wave/staging_wave1_chunk0_failed.json"))

    with pytest.raises(Exception, match="staging wave 1: 1 of 1 builds failed: api \\(FAILED\\)") as caught:
        _invoke("record_wave", load_event("record_wave/staging_wave1.json"))

    assert type(caught.value).__name__ == "WaveFailed"
    assert stack.ledger.builds("2026-W48")[0].build_id == "train-api-staging:0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


def test_given_a_chunk_that_never_recorded_when_record_wave_decides_the_wave_then_its_services_failed(
    stack: Stack,
) -> None:
    planned(stack.ledger)
    event = {
        **load_event("record_wave/staging_wave1.json"),
        "chunks": [{"chunk": 0, "status": "FAILED", "error": "States.Timeout"}],
    }

    with pytest.raises(Exception, match="1 of 1 builds failed: api"):
        _invoke("record_wave", event)

    (build,) = stack.ledger.builds("2026-W48")
    assert (build.status, build.error) == (
        "FAILED",
        "chunk 0 of the wave ended without recording this build: States.Timeout",
    )


def test_given_a_prod_approval_event_when_request_approval_runs_then_the_token_is_kept_and_people_are_asked(
    stack: Stack,
) -> None:
    planned(stack.ledger)

    _invoke("request_approval", load_event("request_approval/prod.json"))

    approval = stack.ledger.approval("2026-W48", "prod")
    assert (approval and approval.status, approval and approval.task_token) == (
        "PENDING",
        "AQCEAAAAKgAAAAMAAAAAAAAAAexampleTaskToken",
    )
    assert len(stack.notifications()) == 1


def test_given_a_test_run_without_reports_when_evaluate_gate_runs_then_the_gate_blocks_naming_the_missing_report(
    stack: Stack,
) -> None:
    planned(stack.ledger)
    stack.ledger.record_builds("2026-W48", [BuildRecord("staging", "api", "SUCCEEDED", "b:1", API_COMMIT, 1)])

    with pytest.raises(GateBlocked, match="evidence missing: no test report for this release and stage"):
        _invoke("evaluate_gate", load_event("evaluate_gate/staging_no_test_report.json"))


def test_given_a_promoted_release_when_finalize_release_runs_then_it_succeeds_and_frees_the_lock(stack: Stack) -> None:
    planned(stack.ledger)
    for stage in ("staging", "prod"):
        stack.ledger.put_gate("2026-W48", stage, "PROMOTE", [], {})

    _invoke("finalize_release", load_event("finalize_release/release.json"))

    assert (_status(stack), stack.ledger.lock("acme"), stack.ledger.baseline("acme")) == (
        Status.SUCCEEDED,
        None,
        ("2026-W48", {"api": API_COMMIT}),
    )


def test_given_a_gate_block_when_record_failure_runs_then_the_release_is_blocked_with_the_gate_reason(
    stack: Stack,
) -> None:
    planned(stack.ledger)

    _invoke("record_failure", load_event("record_failure/gate_blocked.json"))

    record = stack.ledger.release("2026-W48")
    assert (record and record.status, record and record.reason) == (
        Status.BLOCKED,
        "GateBlocked: staging: hold on api by alice: schema migration",
    )


def test_given_the_execution_aborted_event_when_cleanup_runs_then_the_release_is_cancelled_and_the_lock_freed(
    stack: Stack,
) -> None:
    planned(stack.ledger)

    _invoke("cleanup_execution", load_event("cleanup_execution/execution_aborted.json"))

    assert (_status(stack), stack.ledger.lock("acme")) == (Status.CANCELLED, None)


def test_given_the_lambdas_remaining_time_when_plan_release_runs_then_the_heads_get_it_less_the_reserve(
    stack: Stack,
) -> None:
    module = handler_module("plan_release")
    given: list[float | None] = []

    class Heads:
        def heads(self, sources: Any, within: float | None = None) -> dict[Any, str]:
            given.append(within)
            return dict.fromkeys(sources, API_COMMIT)

    module.service._sources = Heads()

    module.handler(load_event("plan_release/schedule.json"), FakeLambdaContext(remaining_ms=115_000))

    # 115 s left of PlanRelease's 120 s; the last 40 s are kept for a query in flight and the writes after it.
    assert given == [115.0 - module.RESERVE_S] and module.RESERVE_S == 40.0
