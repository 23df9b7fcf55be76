"""Alarm evidence (Stubber: DescribeAlarms is paginated; DescribeAlarmHistory is asked for the bake window only)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from release_train.adapters.alarms import Alarms
from release_train.domain.fleet import AlarmSelector
from release_train.domain.release import AlarmEvidence

BAKE_START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BAKE_END = BAKE_START + timedelta(days=2)
ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:"


@pytest.fixture
def stubbed() -> Iterator[tuple[Alarms, Stubber]]:
    client = boto3.client("cloudwatch", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield Alarms(client), stubber
        stubber.assert_no_pending_responses()


def _alarm(name: str, state: str) -> dict[str, Any]:
    return {"AlarmName": name, "AlarmArn": ARN + name, "StateValue": state}


def _history(stubber: Stubber, name: str, *new_states: str) -> None:
    items = [
        {
            "AlarmName": name,
            "HistoryItemType": "StateUpdate",
            "HistoryData": json.dumps({"oldState": {"stateValue": "OK"}, "newState": {"stateValue": s}}),
        }
        for s in new_states
    ]
    stubber.add_response(
        "describe_alarm_history",
        {"AlarmHistoryItems": items},
        {"AlarmName": name, "HistoryItemType": "StateUpdate", "StartDate": BAKE_START, "EndDate": BAKE_END},
    )


def test_given_alarms_on_two_pages_when_collected_then_every_alarm_with_the_prefix_is_evidence(
    stubbed: tuple[Alarms, Stubber],
) -> None:
    alarms, stubber = stubbed
    wanted = {"AlarmTypes": ["MetricAlarm", "CompositeAlarm"], "AlarmNamePrefix": "prod-"}
    stubber.add_response("describe_alarms", {"MetricAlarms": [_alarm("prod-api-5xx", "OK")], "NextToken": "t2"}, wanted)
    stubber.add_response(
        "describe_alarms", {"CompositeAlarms": [_alarm("prod-health", "ALARM")]}, {**wanted, "NextToken": "t2"}
    )
    _history(stubber, "prod-api-5xx")
    _history(stubber, "prod-health", "ALARM")

    evidence = alarms.evidence(AlarmSelector(prefix="prod-"), BAKE_START, BAKE_END)

    assert evidence == [AlarmEvidence("prod-api-5xx", "OK", False), AlarmEvidence("prod-health", "ALARM", True)]


def test_given_an_alarm_that_went_to_alarm_and_back_during_the_bake_when_collected_then_it_fired(
    stubbed: tuple[Alarms, Stubber],
) -> None:
    alarms, stubber = stubbed
    stubber.add_response(
        "describe_alarms",
        {"MetricAlarms": [_alarm("prod-api-p99", "OK")]},
        {"AlarmTypes": ["MetricAlarm", "CompositeAlarm"], "AlarmNamePrefix": "prod-"},
    )
    _history(stubber, "prod-api-p99", "INSUFFICIENT_DATA", "ALARM", "OK")

    assert alarms.evidence(AlarmSelector(prefix="prod-"), BAKE_START, BAKE_END) == [
        AlarmEvidence("prod-api-p99", "OK", fired_during_bake=True)
    ]


def test_given_a_tag_selector_when_collected_then_only_alarms_carrying_every_tag_are_evidence(
    stubbed: tuple[Alarms, Stubber],
) -> None:
    alarms, stubber = stubbed
    stubber.add_response(
        "describe_alarms",
        {"MetricAlarms": [_alarm("api-5xx", "OK"), _alarm("web-5xx", "ALARM")]},
        {"AlarmTypes": ["MetricAlarm", "CompositeAlarm"]},
    )
    stubber.add_response(
        "list_tags_for_resource",
        {"Tags": [{"Key": "train", "Value": "acme"}, {"Key": "stage", "Value": "prod"}]},
        {"ResourceARN": ARN + "api-5xx"},
    )
    stubber.add_response(
        "list_tags_for_resource", {"Tags": [{"Key": "train", "Value": "acme"}]}, {"ResourceARN": ARN + "web-5xx"}
    )
    _history(stubber, "api-5xx")

    evidence = alarms.evidence(AlarmSelector(tag={"train": "acme", "stage": "prod"}), BAKE_START, BAKE_END)

    assert evidence == [AlarmEvidence("api-5xx", "OK", False)]


def test_given_describe_alarms_denied_when_collected_then_the_error_propagates_for_the_gate_to_block(
    stubbed: tuple[Alarms, Stubber],
) -> None:
    alarms, stubber = stubbed
    stubber.add_client_error("describe_alarms", "AccessDenied", "not authorized")

    with pytest.raises(alarms._c.exceptions.ClientError):
        alarms.evidence(AlarmSelector(prefix="prod-"), BAKE_START, BAKE_END)
