"""The train's metrics on the real code paths: each service writes its EMF line (name, unit, dimensions) when the thing
it measures happens, never with a release id or a service as a dimension, and a metric that cannot be written never
fails the release. The EMF lines are read from stdout, as CloudWatch Logs would read them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from release_train.adapters.ledger import BuildRecord
from release_train.adapters.metrics import (
    CATALOGUE,
    NAMESPACE,
    MetricSpec,
    TrainMetrics,
)
from release_train.domain.release import GateBlocked, Status, WaveFailed
from release_train.services import (
    AnswerApprovalService,
    CleanupService,
    FinalizeService,
    GateService,
    PlanService,
    RecordFailureService,
    RecordWaveService,
)
from tests.unit.test_services import (
    EXEC_A,
    HEADS,
    MONDAY,
    RM,
    World,
    _pending_prod_approval,
    _promoted,
)

SPECS = {spec.name: spec for spec in CATALOGUE}


@pytest.fixture(autouse=True)
def _metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # The sandbox turns them off (POWERTOOLS_METRICS_DISABLED); here they must be printed.
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)


def emitted(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str, float, dict[str, str]]]:
    """(name, unit, value, dimensions) of every EMF line printed since the last call; each line is checked against
    the EMF shape CloudWatch extracts from: one directive, our namespace, one dimension set."""
    found = []
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith("{"):
            continue
        blob = json.loads(line)
        if "_aws" not in blob:
            continue
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        (dimension_set,) = directive["Dimensions"]
        for metric in directive["Metrics"]:
            dims = {d: blob[d] for d in dimension_set}
            value = blob[metric["Name"]]
            (value,) = value if isinstance(value, list) else [value]  # EMF allows a value or an array of values
            found.append((metric["Name"], metric["Unit"], float(value), dims))
    for name, _, _, dims in found:
        # cardinality: `fleet` and the spec's own closed-enum dimension only, never a release, service or stage
        spec: MetricSpec = SPECS[name]
        assert tuple(dims) == spec.dimensions
        assert not spec.dimension or dims[spec.dimension] in spec.values
    return found


def _closer(world: World) -> tuple[FinalizeService, RecordFailureService, CleanupService]:
    metrics = TrainMetrics()
    return (
        FinalizeService(world.ledger, world.notifier, world.clock, metrics),
        RecordFailureService(world.ledger, world.executions, world.functions, world.notifier, world.clock, metrics),
        CleanupService(
            world.ledger,
            world.executions,
            world.codebuild,
            world.deployments,
            world.functions,
            world.notifier,
            world.clock,
            metrics,
        ),
    )


# --- releases ended, lead time ----------------------------------------------------------------------------------


def test_given_a_promoted_release_when_finalized_then_one_success_and_its_lead_time_are_written(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _promoted(world)  # planned (created) at MONDAY
    world.clock.moment = MONDAY + timedelta(days=3, minutes=30)
    capsys.readouterr()

    finalize, _, _ = _closer(world)
    finalize.finalize("2026-W48")

    assert emitted(capsys) == [
        ("ReleasesEnded", "Count", 1.0, {"fleet": "acme", "status": "SUCCEEDED"}),
        ("LeadTimeSeconds", "Seconds", 3 * 86_400 + 1_800.0, {"fleet": "acme"}),
    ]


def test_given_a_release_cancelled_meanwhile_when_finalize_lands_then_only_the_cancel_is_counted(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _promoted(world)
    finalize, _, cleanup = _closer(world)
    capsys.readouterr()

    cleanup.cleanup({"executionArn": EXEC_A, "status": "ABORTED", "cause": "operator"})
    finalize.finalize("2026-W48")

    assert [(n, d) for n, _, _, d in emitted(capsys)] == [("ReleasesEnded", {"fleet": "acme", "status": "CANCELLED"})]


@pytest.mark.parametrize(("outcome", "status"), [("BLOCKED", "BLOCKED"), ("FAILED", "FAILED")])
def test_given_a_failed_or_blocked_release_when_recorded_then_its_status_is_counted_once(
    world: World, capsys: pytest.CaptureFixture[str], outcome: str, status: str
) -> None:
    world.plan(EXEC_A)
    _, record_failure, _ = _closer(world)
    capsys.readouterr()

    error = {"Error": "GateBlocked", "Cause": "staging: tests failed"}
    record_failure.record_failure("2026-W48", outcome, error, EXEC_A)
    record_failure.record_failure("2026-W48", outcome, error, EXEC_A)  # a retried task: closed once, counted once

    assert emitted(capsys) == [("ReleasesEnded", "Count", 1.0, {"fleet": "acme", "status": status})]


def test_given_an_aborted_execution_cleaned_up_twice_when_counted_then_one_cancel_is_written(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.plan(EXEC_A)
    _, _, cleanup = _closer(world)
    capsys.readouterr()

    detail = {"executionArn": EXEC_A, "status": "ABORTED", "cause": None, "error": None}
    cleanup.cleanup(detail)
    cleanup.cleanup(detail)  # EventBridge delivers at least once

    assert emitted(capsys) == [("ReleasesEnded", "Count", 1.0, {"fleet": "acme", "status": "CANCELLED"})]


# --- build failures, per wave -----------------------------------------------------------------------------------


def _record_wave(world: World, statuses: dict[str, str]) -> RecordWaveService:
    world.ledger.record_builds(
        "2026-W48",
        [
            BuildRecord("staging", s, st, f"train-{s}-staging:1", HEADS[s], 1 if s == "api" else 2)
            for s, st in statuses.items()
        ],
    )
    return RecordWaveService(world.ledger, world.functions, world.clock, TrainMetrics())


def test_given_a_wave_with_a_failed_build_when_recorded_then_its_failures_are_counted_before_wave_failed(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.plan(EXEC_A)
    recorder = _record_wave(world, {"api": "FAILED"})
    capsys.readouterr()

    with pytest.raises(WaveFailed):
        recorder.record("2026-W48", "staging", 1, [{"chunk": 0, "status": "SUCCEEDED"}])

    assert emitted(capsys) == [("BuildFailures", "Count", 1.0, {"fleet": "acme"})]


def test_given_a_clean_wave_when_recorded_then_zero_failures_are_written(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.plan(EXEC_A)
    recorder = _record_wave(world, {"web": "SUCCEEDED"})
    capsys.readouterr()

    recorder.record("2026-W48", "staging", 2, [{"chunk": 0, "status": "SUCCEEDED"}])

    assert emitted(capsys) == [("BuildFailures", "Count", 0.0, {"fleet": "acme"})]


# --- gate verdicts ----------------------------------------------------------------------------------------------


class _NoAlarms:
    def evidence(self, selector: Any, start: datetime, end: datetime) -> list[Any]:
        return []


def _gate(world: World) -> GateService:
    return GateService(world.ledger, world.codebuild, _NoAlarms(), world.notifier, world.clock, TrainMetrics())


def test_given_a_stage_without_its_test_report_when_the_gate_decides_then_a_block_is_counted(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.plan(EXEC_A)
    capsys.readouterr()

    with pytest.raises(GateBlocked):
        _gate(world).evaluate({"release_id": "2026-W48", "stage": {"name": "staging"}})

    assert emitted(capsys) == [("GateVerdicts", "Count", 1.0, {"fleet": "acme", "verdict": "BLOCK"})]


def test_given_a_stage_whose_builds_all_succeeded_when_the_gate_decides_then_a_promote_is_counted(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.plan(EXEC_A)
    world.ledger.record_builds(
        "2026-W48",
        [BuildRecord("prod", s, "SUCCEEDED", f"train-{s}-prod:1", HEADS[s], 1 if s == "api" else 2) for s in HEADS],
    )
    capsys.readouterr()

    verdict = _gate(world).evaluate({"release_id": "2026-W48", "stage": {"name": "prod"}})

    assert verdict["verdict"] == "PROMOTE"
    assert emitted(capsys) == [("GateVerdicts", "Count", 1.0, {"fleet": "acme", "verdict": "PROMOTE"})]


# --- approval wait ----------------------------------------------------------------------------------------------


def test_given_a_pending_approval_when_answered_two_hours_later_then_the_wait_is_written(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _pending_prod_approval(world)  # requested 2026-11-25T10:00:00
    world.clock.moment = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    service = AnswerApprovalService(world.ledger, world.executions, world.clock, TrainMetrics())
    capsys.readouterr()

    service.answer(RM, "2026-W48", "prod", approve=True, reason="ship it", by="Rita")

    assert emitted(capsys) == [("ApprovalWaitSeconds", "Seconds", 7_200.0, {"fleet": "acme"})]


def test_given_an_answer_refused_when_not_an_approver_then_no_wait_is_written(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    _pending_prod_approval(world)
    service = AnswerApprovalService(world.ledger, world.executions, world.clock, TrainMetrics())
    capsys.readouterr()

    with pytest.raises(Exception, match="is not an approver"):
        service.answer("arn:aws:sts::123456789012:assumed-role/Developer/eve", "2026-W48", "prod", True, "trust me")

    assert emitted(capsys) == []


# --- a metric never fails a release -----------------------------------------------------------------------------


def test_given_metrics_that_cannot_be_written_when_a_release_is_finalized_then_it_still_succeeds(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

    def broken(self: AmazonCloudWatchEMFProvider, raise_on_empty_metrics: bool = False) -> None:
        raise OSError("stdout closed")

    monkeypatch.setattr(AmazonCloudWatchEMFProvider, "flush_metrics", broken)
    _promoted(world)
    finalize, _, _ = _closer(world)

    result = finalize.finalize("2026-W48")

    record = world.ledger.release("2026-W48")
    assert result["finalized"] is True and record is not None and record.status is Status.SUCCEEDED
    assert emitted(capsys) == []
    assert "metric ReleasesEnded for fleet acme not written" in caplog.text


def test_given_an_unreadable_start_time_when_the_lead_time_is_measured_then_it_is_dropped_not_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    TrainMetrics().lead_time("acme", "not a timestamp", MONDAY)
    TrainMetrics().release_ended("acme", Status.RUNNING)  # not an end: refused by the catalogue, not written

    assert emitted(capsys) == []


def test_given_metrics_disabled_when_written_then_nothing_is_printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")  # what the sandbox sets

    TrainMetrics().release_ended("acme", Status.SUCCEEDED)

    assert capsys.readouterr().out == ""


# --- production wiring --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory",
    [
        "plan_service",
        "finalize_service",
        "record_failure_service",
        "cleanup_service",
        "record_wave_service",
        "gate_service",
        "answer_approval_service",
    ],
)
def test_given_the_production_wiring_when_a_service_is_built_then_it_writes_metrics(
    factory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from release_train import wiring

    for name in ("LEDGER_TABLE", "TOPIC_ARN", "CONFIG_BUCKET"):
        monkeypatch.setenv(name, "stand-in")

    service = getattr(wiring, factory)()

    assert isinstance(service._metrics, TrainMetrics)


# --- PlanRelease's own ends: nothing to release, a freeze, a plan that failed --------------------------------------


def _planner(world: World) -> PlanService:
    return world.planner(metrics=TrainMetrics())


def _plan(world: World) -> dict[str, Any]:
    raw = {"trigger": "schedule", "scheduled_time": world.clock.now().isoformat()}
    return _planner(world).plan(raw, EXEC_A, "a")


def test_given_nothing_changed_when_planned_then_one_nothing_to_release_is_counted(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.ledger.set_baseline("acme", "2026-W47", HEADS)

    assert _plan(world)["status"] == "NOTHING_TO_RELEASE"
    assert emitted(capsys) == [("ReleasesEnded", "Count", 1.0, {"fleet": "acme", "status": "NOTHING_TO_RELEASE"})]


def test_given_a_freeze_when_planned_then_one_blocked_is_counted(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.clock.moment = datetime(2026, 12, 21, 9, 0, tzinfo=UTC)

    assert _plan(world)["status"] == "BLOCKED"
    assert emitted(capsys) == [("ReleasesEnded", "Count", 1.0, {"fleet": "acme", "status": "BLOCKED"})]


def test_given_a_planned_release_when_it_rides_then_nothing_is_counted_yet(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _plan(world)["status"] == "RUNNING"
    assert emitted(capsys) == []
