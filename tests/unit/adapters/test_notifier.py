"""Notifications: SNS always (moto), a webhook when configured (real loopback HTTP). Never raises."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
import requests
from botocore.stub import Stubber
from moto import mock_aws

from release_train.adapters.notifier import SNS_MESSAGE_BYTES, WEBHOOK_TEXT_CHARS, Notifier, bounded_json, bounded_text
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


# --- secrets never reach a log line --------------------------------------------------------------------------------

SECRET_PATH = "/services/T0001/B0002/XyZs3cretWebh00kPath"
SECRET_WORD = "XyZs3cretWebh00kPath"


class _Stdout:
    """Whatever sys.stdout is when a line is written (pytest gives each test phase its own capture)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Everything logged, at every level: the Powertools JSON lines on stdout (a handler with Powertools' formatter on
    the notifier's logger, as in a Lambda), stderr, and every record with all its fields (extras included)."""
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    from release_train.adapters import notifier

    handler = logging.StreamHandler(_Stdout())
    handler.setFormatter(LambdaPowertoolsFormatter())
    target = logging.getLogger(notifier.logger.name)
    target.addHandler(handler)
    caplog.set_level(logging.DEBUG)  # urllib3 logs request paths at DEBUG
    # Out of reach, and said so: botocore's DEBUG output logs every response body (GetSecretValue's SecretString
    # included) and every request's signature and session token, so it must stay off in Lambda; `responses` (moto's
    # HTTP interception, tests and sandbox only) logs each request it lets through with its URL at INFO.
    caplog.set_level(logging.INFO, logger="botocore")
    caplog.set_level(logging.WARNING, logger="responses")

    def text() -> str:
        out, err = capsys.readouterr()
        records = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records]
        return "\n".join([out, err, caplog.text, *records])

    try:
        yield text
    finally:
        target.removeHandler(handler)


def _assert_no_secret(logged: str, *secrets: str) -> None:
    for secret in (SECRET_PATH, SECRET_WORD, *secrets):
        assert secret not in logged


@pytest.mark.parametrize("status", [404, 500, 503])
def test_given_a_webhook_answering_an_error_when_sent_then_false_and_only_its_host_and_status_are_logged(
    aws: dict[str, Any], webhook: Loopback, all_logs: Callable[[], str], status: int
) -> None:
    webhook.route("POST", SECRET_PATH, status, {"error": "nope"})

    sent = _with_webhook(aws, webhook.base_url + SECRET_PATH).send("Release 2026-W48", BODY, WEBHOOK_SECRET)

    logged = all_logs()
    assert sent is False
    _assert_no_secret(logged, webhook.base_url + SECRET_PATH)
    assert '"webhook_host":"127.0.0.1"' in logged.replace(" ", "") and f'"status_code":{status}' in logged.replace(
        " ", ""
    )


def test_given_an_unreachable_webhook_when_sent_then_false_and_the_error_type_not_its_message_is_logged(
    aws: dict[str, Any], all_logs: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with loopback_server() as gone:
        url = gone.base_url + SECRET_PATH  # the port refuses connections once the block ends

    sent = _with_webhook(aws, url).send("Release 2026-W48", BODY, WEBHOOK_SECRET)

    logged = all_logs()
    assert sent is False
    _assert_no_secret(logged, url)
    assert '"error_type":"ConnectionError"' in logged.replace(" ", "")


def test_given_a_successful_webhook_call_when_urllib3_logs_the_request_then_its_path_is_redacted(
    aws: dict[str, Any], webhook: Loopback, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.route("POST", SECRET_PATH, 200, {"ok": True})
    caplog.set_level(logging.DEBUG)

    assert _with_webhook(aws, webhook.base_url + SECRET_PATH).send("Release", BODY, WEBHOOK_SECRET) is True

    lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert any('"POST <path> HTTP/1.1" 200' in line for line in lines)  # the request was logged, its path was not
    _assert_no_secret("\n".join(lines))


def test_given_a_plain_http_webhook_when_sent_then_it_is_refused_unsent_and_logged_by_host_and_scheme(
    aws: dict[str, Any], all_logs: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a refused webhook must not be called")

    monkeypatch.setattr(requests.Session, "send", never)

    sent = _with_webhook(aws, "http://hooks.example.com" + SECRET_PATH).send("Release", BODY, WEBHOOK_SECRET)

    logged = all_logs()
    assert sent is False
    _assert_no_secret(logged)
    compact = logged.replace(" ", "")
    assert '"webhook_host":"hooks.example.com"' in compact and '"webhook_scheme":"http"' in compact


@pytest.mark.parametrize(
    "value",
    ["ghp_Sup3rS3cretT0ken", "ghpSecret:abc/def", "ftp://files.example.com/Sup3rS3cret", "https://[broken/Sup3rS3cret"],
)
def test_given_a_webhook_secret_that_is_not_a_url_when_sent_then_nothing_of_its_value_is_logged(
    aws: dict[str, Any], all_logs: Callable[[], str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setattr(requests.Session, "send", lambda *a, **k: pytest.fail("nothing may be sent"))

    sent = _with_webhook(aws, value).send("Release", BODY, WEBHOOK_SECRET)

    logged = all_logs()
    assert sent is False
    assert value not in logged and "Sup3rS3cret" not in logged
    assert "webhook secret is not a URL" in logged and WEBHOOK_SECRET in logged


def test_given_an_unreadable_webhook_secret_when_sent_then_the_secret_id_and_error_code_are_logged(
    aws: dict[str, Any], all_logs: Callable[[], str]
) -> None:
    notifier = Notifier(aws["sns"], aws["topic"], aws["secrets"])

    assert notifier.send("Release", BODY, "release-train/does-not-exist") is False

    compact = all_logs().replace(" ", "")
    assert '"error_type":"ResourceNotFoundException"' in compact and "release-train/does-not-exist" in compact


def test_given_two_notifications_when_sent_then_the_webhook_secret_is_read_once(
    aws: dict[str, Any], webhook: Loopback
) -> None:
    webhook.route("POST", "/hook", 200, {"ok": True})
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    with Stubber(secrets) as stubber:  # one stubbed answer: a second read would fail
        stubber.add_response("get_secret_value", {"SecretString": webhook.base_url + "/hook"}, {"SecretId": "s"})
        notifier = Notifier(aws["sns"], aws["topic"], secrets)

        assert [notifier.send("a", BODY, "s"), notifier.send("b", BODY, "s")] == [True, True]

    assert len(webhook.requests) == 2


def test_given_a_redirecting_webhook_when_sent_then_the_redirect_is_not_followed(aws: dict[str, Any]) -> None:
    seen: list[str] = []

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            self.send_response(307)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        assert _with_webhook(aws, url).send("Release", BODY, WEBHOOK_SECRET) is False
    finally:
        server.shutdown()
        server.server_close()

    assert seen == ["/hook"]


# --- every message is bounded: SNS 256 KB, the webhook 4,000 characters ------------------------------------------


@dataclass
class _CapturingSns:
    published: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, **kwargs: Any) -> dict[str, str]:
        self.published.append(kwargs)
        return {"MessageId": "1"}


def _publish_size(call: dict[str, Any]) -> int:
    """What counts against SNS's 262,144 bytes: the message and every part of its attributes (and, to be safe here as
    in the adapter, the subject)."""
    attributes = sum(
        len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
        for name, value in call["MessageAttributes"].items()
    )
    return len(call["Message"].encode()) + attributes + len(call["Subject"].encode())


def _body_of_size(size: int, subject: str) -> dict[str, Any]:
    """A body whose publish (message, attributes, subject) is exactly `size` bytes."""
    body = {"kind": "succeeded", "release_id": "2026-W48", "pad": ""}
    sns = _CapturingSns()
    Notifier(sns, "arn:aws:sns:us-east-1:123456789012:t").send(subject, body)
    body["pad"] = "x" * (size - _publish_size(sns.published[0]))
    return body


@pytest.mark.parametrize(("over", "truncated"), [(0, False), (1, True)])
def test_given_a_body_at_snss_limit_when_sent_then_it_goes_whole_and_one_byte_more_is_shortened_to_fit(
    over: int, truncated: bool
) -> None:
    sns = _CapturingSns()
    body = _body_of_size(SNS_MESSAGE_BYTES + over, "Release 2026-W48 shipped")

    sent = Notifier(sns, "arn:aws:sns:us-east-1:123456789012:t").send("Release 2026-W48 shipped", body)

    [call] = sns.published
    message = json.loads(call["Message"])  # still one JSON document
    assert sent is True and _publish_size(call) <= SNS_MESSAGE_BYTES
    assert (message == body, "truncated" in message) == (not truncated, truncated)
    assert message["release_id"] == "2026-W48"


def test_given_a_body_far_over_snss_limit_when_sent_then_sns_accepts_it_and_it_says_what_was_cut(
    aws: dict[str, Any],
) -> None:
    body = {"kind": "succeeded", "release_id": "2026-W48", "lines": [f"svc-{i:04d}: {'a' * 40}" for i in range(20_000)]}

    sent = Notifier(aws["sns"], aws["topic"]).send("Release 2026-W48 shipped", body)

    [message] = [json.loads(m["Message"]) for m in _published(aws)]
    assert sent is True  # moto refuses messages over 262,144 characters, as SNS does over 262,144 bytes
    assert message["truncated"].startswith("shortened to fit")
    assert message["lines"][-1].endswith("more not shown")


@pytest.mark.parametrize(
    ("body", "limit"),
    [
        ({"kind": "k", "reason": "é" * 300_000}, 262_000),  # multi-byte characters: bytes, not characters, count
        ({"kind": "k", "nested": {"a": [{"b": "x" * 1_000}] * 1_000}}, 50_000),
        ({f"key{i}": "v" * 100 for i in range(5_000)}, 10_000),  # only the last resort fits
    ],
)
def test_given_an_oversized_body_when_bounded_then_it_is_json_within_the_limit(
    body: dict[str, Any], limit: int
) -> None:
    message = bounded_json(body, limit)

    assert len(message.encode()) <= limit and "truncated" in json.loads(message)


@pytest.mark.parametrize(("over", "cut"), [(0, False), (1, True)])
def test_given_webhook_text_at_its_limit_when_bounded_then_it_is_whole_and_one_character_more_is_cut(
    over: int, cut: bool
) -> None:
    lines = ["• " + "x" * 98] * 39  # 39 lines of 100 characters + newlines
    title = "t" * (WEBHOOK_TEXT_CHARS + over - len("\n".join(["", *lines])))

    text = bounded_text(title, lines)

    assert len(text) <= WEBHOOK_TEXT_CHARS
    assert (text == "\n".join([title, *lines]), "more lines not shown" in text) == (not cut, cut)


def test_given_many_lines_when_sent_to_the_webhook_then_its_text_stays_within_the_cap_and_counts_what_was_left_out(
    aws: dict[str, Any], webhook: Loopback
) -> None:
    webhook.route("POST", "/hook", 200, {"ok": True})
    body = {**BODY, "lines": [f"svc-{i:04d}: a1..a2" for i in range(2_000)]}

    _with_webhook(aws, webhook.base_url + "/hook").send("Release 2026-W48 shipped", body, WEBHOOK_SECRET)

    text = json.loads(webhook.requests[0].body)["text"]
    assert len(text) <= WEBHOOK_TEXT_CHARS
    assert text.startswith("*Release 2026-W48 shipped*\n• svc-0000: a1..a2")
    assert text.splitlines()[-1].startswith("… ") and "more lines not shown" in text.splitlines()[-1]
