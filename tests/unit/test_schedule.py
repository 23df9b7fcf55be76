"""When the next train leaves: EventBridge Scheduler's six-field cron (day-of-week 1-7 = SUN-SAT), in its time zone,
evaluated with croniter after a careful conversion (trainctl/schedule.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from trainctl.schedule import ScheduleError, next_fire, next_train, to_croniter

MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, after the default 09:00 train


@pytest.mark.parametrize(
    ("expression", "timezone", "now", "expected"),
    [
        # the template's default: Mondays 09:00 UTC; at 10:00 on a Monday the next is a week on
        ("cron(0 9 ? * MON *)", "UTC", MONDAY_10, "2026-11-30T09:00:00+00:00"),
        ("cron(0 9 ? * MON *)", "UTC", datetime(2026, 11, 23, 8, 59, tzinfo=UTC), "2026-11-23T09:00:00+00:00"),
        # numeric day-of-week is AWS's 1-7 = SUN-SAT: 2 is Monday, not Tuesday (croniter's 2)
        ("cron(0 9 ? * 2 *)", "UTC", MONDAY_10, "2026-11-30T09:00:00+00:00"),
        ("cron(0 9 ? * 1 *)", "UTC", MONDAY_10, "2026-11-29T09:00:00+00:00"),  # 1 = Sunday
        ("cron(0 9 ? * 7 *)", "UTC", MONDAY_10, "2026-11-28T09:00:00+00:00"),  # 7 = Saturday
        ("cron(0 9 ? * 3-5 *)", "UTC", MONDAY_10, "2026-11-24T09:00:00+00:00"),  # TUE-THU
        ("cron(0 9 ? * 2#1 *)", "UTC", MONDAY_10, "2026-12-07T09:00:00+00:00"),  # first Monday
        ("cron(0 9 ? * 6L *)", "UTC", MONDAY_10, "2026-11-27T09:00:00+00:00"),  # last Friday
        ("cron(0 9 L * ? *)", "UTC", MONDAY_10, "2026-11-30T09:00:00+00:00"),  # last day of the month
        ("cron(0/15 * * * ? *)", "UTC", MONDAY_10, "2026-11-23T10:15:00+00:00"),
        ("cron(0 9 1 1 ? 2027)", "UTC", MONDAY_10, "2027-01-01T09:00:00+00:00"),  # the year field
        # the schedule's zone: 09:00 Berlin is 08:00 UTC in winter
        ("cron(0 9 ? * MON *)", "Europe/Berlin", MONDAY_10, "2026-11-30T09:00:00+01:00"),
        ("at(2026-12-01T09:30:00)", "UTC", MONDAY_10, "2026-12-01T09:30:00+00:00"),
    ],
)
def test_given_a_scheduler_expression_when_evaluated_then_the_next_fire_time_is_aws_s(
    expression: str, timezone: str, now: datetime, expected: str
) -> None:
    when = next_fire(expression, timezone, now)
    assert when is not None and when.isoformat() == expected


def test_given_a_time_the_clock_skips_when_evaluated_then_that_day_does_not_fire() -> None:
    # 2026-03-29 02:30 does not exist in Berlin (02:00 -> 03:00): the Scheduler skips it.
    before = datetime(2026, 3, 28, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    when = next_fire("cron(30 2 * * ? *)", "Europe/Berlin", before)
    assert when is not None and when.isoformat() == "2026-03-30T02:30:00+02:00"


def test_given_a_time_the_clock_repeats_when_evaluated_then_it_fires_once() -> None:
    zone = ZoneInfo("Europe/Berlin")
    first = next_fire("cron(30 2 * * ? *)", "Europe/Berlin", datetime(2026, 10, 24, 12, 0, tzinfo=zone))
    assert first is not None and first.isoformat() == "2026-10-25T02:30:00+02:00"
    second = next_fire("cron(30 2 * * ? *)", "Europe/Berlin", first)
    assert second is not None and second.isoformat() == "2026-10-26T02:30:00+01:00"


def test_given_a_year_in_the_past_or_a_past_at_when_evaluated_then_there_is_no_next_time() -> None:
    assert next_fire("cron(0 9 1 1 ? 2020)", "UTC", MONDAY_10) is None
    assert next_fire("at(2026-01-01T00:00:00)", "UTC", MONDAY_10) is None


@pytest.mark.parametrize(
    ("expression", "timezone", "says"),
    [
        ("cron(0 9 * * MON)", "UTC", "has 6 fields"),
        ("cron(0 9 ? * 8 *)", "UTC", "expected 1-7"),
        ("cron(0 9 LW * ? *)", "UTC", "LW"),
        ("rate(7 days)", "UTC", "rate schedule"),
        ("weekly", "UTC", "not a cron"),
        ("cron(0 9 ? * MON *)", "Mars/Olympus", "not an IANA zone"),
    ],
)
def test_given_an_expression_that_cannot_be_evaluated_when_asked_then_it_says_why(
    expression: str, timezone: str, says: str
) -> None:
    with pytest.raises(ScheduleError, match=says):
        next_fire(expression, timezone, MONDAY_10)


def test_given_aws_fields_when_converted_then_only_day_of_week_numbers_shift() -> None:
    assert to_croniter("cron(0 9 ? * 2,4-6/2 *)") == "0 9 * * 1,3-5/2 0 *"
    assert to_croniter("cron(5 4 15 JAN ? 2027-2030)") == "5 4 15 JAN * 0 2027-2030"


def test_given_stack_parameters_when_the_next_train_is_asked_then_state_and_reasons_are_reported() -> None:
    assert next_train({}, MONDAY_10).to_json()["next_fire"] == "2026-11-30T09:00:00+00:00"  # template defaults
    disabled = next_train({"ScheduleState": "DISABLED"}, MONDAY_10)
    assert disabled.next_fire is None and "DISABLED" in disabled.note
    rate = next_train({"ScheduleExpression": "rate(1 day)"}, MONDAY_10)
    assert rate.next_fire is None and "rate" in rate.note
    berlin = next_train({"ScheduleTimezone": "Europe/Berlin"}, MONDAY_10).to_json()
    assert berlin["next_fire_utc"] == "2026-11-30T08:00:00+00:00"
