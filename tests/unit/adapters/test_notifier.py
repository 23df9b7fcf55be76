"""Notifications: SNS always (moto), a webhook when configured (real loopback HTTP). Never raises."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from release_train.adapters.notifier import Notifier
from tests.unit.adapters.loopback import Loopback, loopback_server

WEBHOOK_SECRET = "release-train/slack-webhook"
BODY = {"kind": "succeeded", "release_id": "2026-W48", "lines": ["api: a1..a2", "web: first release"]}


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name="release-train")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        yield {"sns": sns, "sqs": sqs, "topic": topic, "queue": queue, "secrets": secrets}


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Loopback]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with loopback_server() as server:
        yield server


def _published(aws: dict[str, Any]) -> list[dict[str, Any]]:
    messages = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def _with_webhook(aws: dict[str, Any], url: str) -> Notifier:
    aws["secrets"].create_secret(Name=WEBHOOK_SECRET, SecretString=url + "\n")
    return Notifier(aws["sns"], aws["topic"], aws["secrets"])


def test_given_a_notification_when_sent_then_sns_gets_the_subject_body_and_kind(aws: dict[str, Any]) -> None:
    sent = Notifier(aws["sns"], aws["topic"]).send("Release 2026-W48 shipped", BODY)

    [message] = _published(aws)
    assert sent is True
    assert (message["Subject"], json.loads(message["Message"]), message["MessageAttributes"]["kind"]["Value"]) == (
        "Release 2026-W48 shipped",
        BODY,
        "succeeded",
    )


def test_given_a_subject_over_100_characters_when_sent_then_it_is_cut_to_what_sns_accepts(
    aws: dict[str, Any],
) -> None:
    Notifier(aws["sns"], aws["topic"]).send("x" * 150, BODY)

    [message] = _published(aws)
    assert message["Subject"] == "x" * 100


def test_given_sns_failing_when_sent_then_false_is_returned_and_nothing_raises(aws: dict[str, Any]) -> None:
    missing_topic = aws["topic"] + "-deleted"

    assert Notifier(aws["sns"], missing_topic).send("Release 2026-W48 shipped", BODY) is False


def test_given_a_webhook_when_sent_then_it_receives_the_subject_and_lines_as_text(
    aws: dict[str, Any], webhook: Loopback
) -> None:
    webhook.route("POST", "/hook", 200, {"ok": True})

    sent = _with_webhook(aws, webhook.base_url + "/hook").send("Release 2026-W48 shipped", BODY, WEBHOOK_SECRET)

    assert sent is True
    assert json.loads(webhook.requests[0].body) == {
        "text": "*Release 2026-W48 shipped*\n• api: a1..a2\n• web: first release"
    }


def test_given_a_failing_webhook_when_sent_then_false_is_returned_and_nothing_raises(
    aws: dict[str, Any], webhook: Loopback
) -> None:
    webhook.route("POST", "/hook", 500, {"error": "down"})

    assert _with_webhook(aws, webhook.base_url + "/hook").send("Release 2026-W48", BODY, WEBHOOK_SECRET) is False


def test_given_a_failing_webhook_when_sent_then_the_failure_is_logged_with_the_subject(
    aws: dict[str, Any], webhook: Loopback, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.route("POST", "/hook", 500, {"error": "down"})

    with caplog.at_level(logging.ERROR):
        _with_webhook(aws, webhook.base_url + "/hook").send("Release 2026-W48", BODY, WEBHOOK_SECRET)

    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert (record.getMessage(), record.__dict__.get("subject")) == ("webhook notification failed", "Release 2026-W48")


def test_given_a_failing_webhook_when_sent_then_sns_still_got_the_message(
    aws: dict[str, Any], webhook: Loopback
) -> None:
    webhook.route("POST", "/hook", 500, {"error": "down"})

    _with_webhook(aws, webhook.base_url + "/hook").send("Release 2026-W48", BODY, WEBHOOK_SECRET)

    assert len(_published(aws)) == 1


def test_given_a_missing_webhook_secret_when_sent_then_false_is_returned_and_nothing_raises(
    aws: dict[str, Any],
) -> None:
    notifier = Notifier(aws["sns"], aws["topic"], aws["secrets"])

    assert notifier.send("Release 2026-W48", BODY, "release-train/does-not-exist") is False
