"""The gate's decision (invariant 4: fails closed — missing or unreadable evidence blocks, with a reason)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from release_train.domain.release import AlarmEvidence, Evidence, Hold, Verdict, decide
from release_train.domain.release import TestEvidence as ReportEvidence  # not a pytest class

PASSING_TESTS = ReportEvidence(report_arns=("arn:report/1",), total=40, passed=40, failed=0)
QUIET = AlarmEvidence(name="prod-api-5xx", state_now="OK", fired_during_bake=False)


def _all_good(**changes: object) -> Evidence:
    good = Evidence(
        stage="prod",
        builds_succeeded=True,
        tests=PASSING_TESTS,
        tests_expected=True,
        alarms=[QUIET],
        alarms_expected=True,
        holds=[],
    )
    return replace(good, **changes)  # type: ignore[arg-type]


def test_given_all_evidence_good_when_deciding_then_promote_with_no_reasons() -> None:
    decision = decide(_all_good())

    assert (decision.verdict, decision.reasons) == (Verdict.PROMOTE, ())


@pytest.mark.parametrize(
    ("evidence", "reason"),
    [
        (_all_good(builds_succeeded=None), "evidence missing: build results for this stage"),
        (_all_good(tests=None), "evidence missing: no test report for this release and stage"),
        (
            _all_good(tests=ReportEvidence(("arn:report/1",), total=0, passed=0, failed=0)),
            "evidence missing: test reports contain no test cases",
        ),
        (_all_good(alarms=None), "evidence missing: alarm state and history could not be read"),
        (_all_good(holds=None), "evidence missing: operator holds could not be read"),
        (
            _all_good(missing=["test reports of build-1 unreadable: AccessDenied"]),
            "evidence missing: test reports of build-1 unreadable: AccessDenied",
        ),
    ],
    ids=["builds", "tests", "empty-reports", "alarms", "holds", "unreadable"],
)
def test_given_missing_evidence_when_deciding_then_block_naming_what_was_missing(
    evidence: Evidence, reason: str
) -> None:
    decision = decide(evidence)

    assert (decision.verdict, decision.reasons) == (Verdict.BLOCK, (reason,))


def test_given_no_evidence_collected_at_all_when_deciding_then_block() -> None:
    decision = decide(Evidence(stage="prod"))

    assert decision.verdict is Verdict.BLOCK


def test_given_tests_not_expected_when_there_is_no_report_then_that_is_not_a_reason() -> None:
    decision = decide(_all_good(tests=None, tests_expected=False))

    assert decision.verdict is Verdict.PROMOTE


def test_given_no_alarm_selector_when_alarms_were_not_read_then_that_is_not_a_reason() -> None:
    decision = decide(_all_good(alarms=None, alarms_expected=False))

    assert decision.verdict is Verdict.PROMOTE


def test_given_a_failed_build_when_deciding_then_block() -> None:
    assert decide(_all_good(builds_succeeded=False)).reasons == ("not every build of this stage succeeded",)


def test_given_failed_tests_when_deciding_then_block_with_the_counts() -> None:
    evidence = _all_good(tests=ReportEvidence(("arn:report/1",), total=40, passed=37, failed=3))

    assert decide(evidence).reasons == ("tests failed: 3 of 40",)


@pytest.mark.parametrize(
    ("alarm", "reason"),
    [
        (AlarmEvidence("prod-api-5xx", "ALARM", fired_during_bake=True), "alarm prod-api-5xx is in ALARM"),
        (
            AlarmEvidence("prod-api-5xx", "OK", fired_during_bake=True),
            "alarm prod-api-5xx went to ALARM during the bake",
        ),
        (
            AlarmEvidence("prod-api-5xx", "INSUFFICIENT_DATA", fired_during_bake=False),
            "alarm prod-api-5xx has INSUFFICIENT_DATA",
        ),
    ],
    ids=["alarm-now", "fired-during-bake", "insufficient-data"],
)
def test_given_an_alarm_that_is_not_quiet_when_deciding_then_block(alarm: AlarmEvidence, reason: str) -> None:
    decision = decide(_all_good(alarms=[QUIET, alarm]))

    assert (decision.verdict, decision.reasons) == (Verdict.BLOCK, (reason,))


def test_given_a_fleet_hold_when_deciding_then_block_naming_who_and_why() -> None:
    decision = decide(_all_good(holds=[Hold("*", "payments incident", "alice")]))

    assert decision.reasons == ("hold on the fleet by alice: payments incident",)


def test_given_a_service_hold_when_deciding_then_block_naming_the_service() -> None:
    decision = decide(_all_good(holds=[Hold("api", "schema migration", "bob")]))

    assert decision.reasons == ("hold on api by bob: schema migration",)


def test_given_a_freeze_window_when_deciding_then_block_with_its_reason() -> None:
    decision = decide(_all_good(freeze_reason="Year-end freeze until 2027-01-04T00:00:00+00:00"))

    assert decision.reasons == ("freeze window: Year-end freeze until 2027-01-04T00:00:00+00:00",)


def test_given_several_problems_when_deciding_then_every_one_is_a_reason() -> None:
    decision = decide(_all_good(builds_succeeded=False, holds=None, freeze_reason="Year-end freeze"))

    assert len(decision.reasons) == 3
