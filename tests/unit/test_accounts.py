"""release_train.adapters.accounts against moto's STS (which keeps accounts apart by the credentials' account):
clients for a stage account are signed with the assumed train role, the ExternalId is sent, and credentials are
re-fetched only near expiry (a fake clock, no waiting)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import botocore.session
import pytest
from dateutil.tz import tzutc
from moto import mock_aws

from release_train.adapters.accounts import SESSION_NAME, TargetAccounts
from release_train.domain.errors import InvalidInput

HOME = "123456789012"  # moto's default account: the tools account
TARGET = "222222222222"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(tzutc())

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def source() -> Iterator[botocore.session.Session]:
    with mock_aws():
        yield botocore.session.get_session()


def _recorded_assume_calls(session: botocore.session.Session) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    session.register("provide-client-params.sts.AssumeRole", lambda params, **_: calls.append(dict(params)))
    return calls


def _accounts(source: botocore.session.Session, clock: Clock | None = None) -> TargetAccounts:
    return TargetAccounts(
        source,
        home_account=HOME,
        role_name="release-train-target",
        external_id="release-train-rt",
        region="us-east-1",
        clock=clock or Clock(),
    )


def test_given_a_target_account_when_a_client_calls_then_it_acts_as_the_train_role_there(
    source: botocore.session.Session,
) -> None:
    calls = _recorded_assume_calls(source)
    sts = _accounts(source).client(TARGET, "sts")

    identity = sts.get_caller_identity()

    assert identity["Account"] == TARGET
    assert identity["Arn"] == f"arn:aws:sts::{TARGET}:assumed-role/release-train-target/{SESSION_NAME}"
    assert calls == [
        {
            "RoleArn": f"arn:aws:iam::{TARGET}:role/release-train-target",
            "RoleSessionName": SESSION_NAME,
            "ExternalId": "release-train-rt",
        }
    ]


def test_given_a_target_account_when_it_writes_then_the_tools_account_does_not_see_it(
    source: botocore.session.Session,
) -> None:
    accounts = _accounts(source)
    alarm = {
        "AlarmName": "svc-api-prod-5xx",
        "MetricName": "Errors",
        "Namespace": "AWS/Lambda",
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    }
    accounts.client(TARGET, "cloudwatch").put_metric_alarm(**alarm)

    there = accounts.client(TARGET, "cloudwatch").describe_alarms()["MetricAlarms"]
    home = accounts.client(None, "cloudwatch").describe_alarms()["MetricAlarms"]

    assert [a["AlarmArn"] for a in there] == [f"arn:aws:cloudwatch:us-east-1:{TARGET}:alarm:svc-api-prod-5xx"]
    assert home == []


def test_given_the_home_account_or_none_when_a_client_is_asked_for_then_no_role_is_assumed(
    source: botocore.session.Session,
) -> None:
    calls = _recorded_assume_calls(source)
    accounts = _accounts(source)

    assert accounts.client(None, "sts").get_caller_identity()["Account"] == HOME
    assert accounts.client(HOME, "sts") is accounts.client(None, "sts")
    assert calls == []


def test_given_credentials_far_from_expiry_when_called_again_then_they_are_reused_and_near_expiry_refetched(
    source: botocore.session.Session,
) -> None:
    calls = _recorded_assume_calls(source)
    clock = Clock()
    accounts = _accounts(source, clock)
    sts = accounts.client(TARGET, "sts")

    sts.get_caller_identity()
    clock.now += timedelta(minutes=40)  # moto's sessions last an hour: 20 minutes left, outside the refresh windows
    sts.get_caller_identity()
    assert len(calls) == 1
    assert accounts.client(TARGET, "sts") is sts, "one client per (account, service)"
    assert accounts.client(TARGET, "lambda").meta.region_name == "us-east-1"

    clock.now += timedelta(minutes=11)  # 9 minutes left: inside botocore's mandatory refresh window
    sts.get_caller_identity()
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"role_name": "bad role"}, "TargetAccountRoleName: 'bad role' is not an IAM role name"),
        ({"external_id": "x"}, "TargetAccountExternalId: must be 2-1224 characters"),
    ],
)
def test_given_bad_settings_when_built_then_the_setting_is_named_before_any_call(
    source: botocore.session.Session, kwargs: dict[str, str], problem: str
) -> None:
    calls = _recorded_assume_calls(source)
    settings = {"role_name": "release-train-target", "external_id": "release-train-rt", **kwargs}

    with pytest.raises(InvalidInput) as caught:
        TargetAccounts(source, home_account=HOME, **settings)

    assert caught.value.problems[0].startswith(problem)
    assert calls == []


def test_given_an_account_that_is_not_12_digits_when_a_client_is_asked_for_then_it_is_refused(
    source: botocore.session.Session,
) -> None:
    with pytest.raises(InvalidInput) as caught:
        _accounts(source).client("2222", "lambda")

    assert caught.value.problems == ["'2222' is not a 12-digit AWS account id"]
