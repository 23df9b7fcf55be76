"""Execution input, release ids from the schedule time, and which services ride the train."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import Fleet, parse_fleet
from release_train.domain.release import (
    Change,
    ExecutionInput,
    parse_execution_input,
    release_id_for,
    select_services,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
FLEET = """
fleet: acme
defaults: {approvers: ["arn:aws:iam::123456789012:role/ReleaseManager"]}
services:
  - {name: api, source: {codecommit: api}}
  - {name: web, source: {codecommit: web}, wave: 2}
  - {name: jobs, source: {codecommit: jobs}}
"""
HEADS = {"api": "a2", "web": "w1", "jobs": "j2"}
BASELINE = {"api": "a1", "web": "w1"}  # jobs never released


@pytest.fixture
def fleet() -> Fleet:
    return parse_fleet(FLEET)


def _scheduled(moment: str) -> ExecutionInput:
    return parse_execution_input({"trigger": "schedule", "scheduled_time": moment})


# --- execution input --------------------------------------------------------------------------------------------


def test_given_the_schedule_target_input_when_parsed_then_it_is_accepted() -> None:
    request = parse_execution_input(
        {"trigger": "schedule", "scheduled_time": "2026-11-23T09:00:00Z", "requested_by": "schedule"}
    )

    assert (request.trigger, request.scheduled_time, request.services) == (
        "schedule",
        datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        "changed",
    )


def test_given_an_empty_input_when_parsed_then_it_is_a_manual_start_of_changed_services() -> None:
    request = parse_execution_input({})

    assert (request.trigger, request.services, request.release_id) == ("manual", "changed", None)


def test_given_a_schedule_trigger_without_a_time_when_parsed_then_the_missing_time_is_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_execution_input({"trigger": "schedule"})

    assert caught.value.source == "execution input"
    assert caught.value.problems == [
        "scheduled_time: required when trigger is 'schedule' (<aws.scheduler.scheduled-time>)"
    ]


def test_given_a_scheduled_time_without_a_zone_when_parsed_then_a_zone_is_asked_for() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_execution_input({"trigger": "manual", "scheduled_time": "2026-11-23T09:00:00"})

    assert caught.value.problems == ["scheduled_time: needs a time zone, e.g. 2026-11-23T09:00:00Z"]


def test_given_an_unknown_key_when_parsed_then_it_is_rejected_with_its_name() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_execution_input({"servics": ["api"]})

    assert caught.value.problems == ["servics: Extra inputs are not permitted"]


def test_given_a_release_id_with_a_slash_when_parsed_then_the_pattern_is_shown() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_execution_input({"release_id": "2026/W48"})

    assert caught.value.problems[0].startswith("release_id: String should match pattern")


def test_given_an_unknown_trigger_when_parsed_then_it_is_rejected() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_execution_input({"trigger": "webhook"})

    assert caught.value.problems[0].startswith("trigger: Input should be 'schedule' or 'manual'")


def test_given_input_that_is_not_an_object_when_parsed_then_it_is_rejected() -> None:
    with pytest.raises(InvalidInput):
        parse_execution_input("start please")


# --- release ids ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheduled", "expected"),
    [
        ("2026-11-23T09:00:00Z", "2026-W48"),
        ("2026-12-31T09:00:00Z", "2026-W53"),  # 2026 has 53 ISO weeks
        ("2027-01-01T09:00:00Z", "2026-W53"),  # still the ISO week of 2026
        ("2027-01-04T09:00:00Z", "2027-W01"),
        ("2027-01-04T00:30:00+02:00", "2026-W53"),  # Sunday 22:30 UTC: the week is taken in UTC
    ],
)
def test_given_a_schedule_time_when_the_release_is_named_then_it_is_the_iso_week(scheduled: str, expected: str) -> None:
    assert release_id_for(_scheduled(scheduled), "exec-1", NOW) == expected


def test_given_the_same_schedule_firing_twice_when_named_then_both_executions_get_the_same_id() -> None:
    request = _scheduled("2026-11-23T09:00:00Z")

    assert release_id_for(request, "exec-1", NOW) == release_id_for(request, "exec-2", NOW)


def test_given_an_explicit_release_id_when_named_then_it_wins() -> None:
    request = parse_execution_input({"release_id": "hotfix-1", "scheduled_time": "2026-11-23T09:00:00Z"})

    assert release_id_for(request, "exec-1", NOW) == "hotfix-1"


def test_given_a_manual_start_when_named_then_the_week_of_now_and_the_execution_name_are_used() -> None:
    release_id = release_id_for(parse_execution_input({}), "a1b2c3d4-e5f6-7890-abcd-ef0123456789", NOW)

    assert release_id == "2026-W48-manual-ef0123456789"


# --- which services ride ----------------------------------------------------------------------------------------


def test_given_changed_when_selecting_then_only_services_whose_head_moved_ride(fleet: Fleet) -> None:
    changes, unknown = select_services(fleet, parse_execution_input({}), HEADS, BASELINE)

    assert (changes, unknown) == ([Change("api", "a1", "a2"), Change("jobs", None, "j2")], [])


def test_given_all_when_selecting_then_unchanged_services_ride_too(fleet: Fleet) -> None:
    changes, _ = select_services(fleet, parse_execution_input({"services": "all"}), HEADS, BASELINE)

    assert [c.service for c in changes] == ["api", "web", "jobs"]


def test_given_a_subset_when_selecting_then_exactly_those_ride_even_if_unchanged(fleet: Fleet) -> None:
    changes, _ = select_services(fleet, parse_execution_input({"services": ["web"]}), HEADS, BASELINE)

    assert changes == [Change("web", "w1", "w1")]


def test_given_a_subset_with_an_unknown_service_when_selecting_then_it_is_reported(fleet: Fleet) -> None:
    _, unknown = select_services(fleet, parse_execution_input({"services": ["api", "billing"]}), HEADS, BASELINE)

    assert unknown == ["billing"]


def test_given_nothing_moved_when_selecting_changed_then_no_service_rides(fleet: Fleet) -> None:
    changes, _ = select_services(fleet, parse_execution_input({}), HEADS, dict(HEADS))

    assert changes == []
