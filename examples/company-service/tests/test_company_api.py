"""company-service handlers against a moto DynamoDB table. The events are the ones the release-train hooks send
as `invoke` checks (see the *Checks parameters in template.yaml), so these tests also pin what the hooks expect.

No conftest here on purpose: this folder is collected together with the repository's tests/, and this file's
basename is unique. `src/` is put on sys.path because the service is deployed from it (CodeUri: src/).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest.mock import MagicMock

import boto3
import pytest
from moto import mock_aws

SERVICE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(SERVICE / "src"))

# A stage's webhook secret as the service reads it (samconfig.toml: WebhookSecretName=company-service/<stage>/webhook)
SECRET_NAME = "company-service/prod/webhook"
SIGNING_KEY = "whsec_Sup3rS3cret-signing-key-0123456789"
SUBSCRIBER_URL = "https://hooks.billing.example/company-events/XyZs3cretWebh00kPath"
SECRET = {"url": SUBSCRIBER_URL, "signing_key": SIGNING_KEY}


@dataclass
class Context:
    function_name: str = "company-service-create"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:company-service-create:live"
    aws_request_id: str = "req-1"


def event(name: str, **overrides: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SERVICE / "events" / f"{name}.json").read_text())
    loaded.update(overrides)
    return loaded


class Subscriber:
    """Stands in for urllib.request.urlopen: records each request and answers with `status` (or raises `error`)."""

    def __init__(self) -> None:
        self.requests: list[urllib.request.Request] = []
        self.status = 204
        self.error: Exception | None = None

    def __call__(self, request: urllib.request.Request, timeout: float) -> Any:
        assert timeout <= 5  # inside the function's 10 s
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        response = MagicMock(status=self.status)
        response.__enter__.return_value = response
        return response


@pytest.fixture
def subscriber(monkeypatch: pytest.MonkeyPatch) -> Subscriber:
    from company_api import webhook

    recorder = Subscriber()
    monkeypatch.setattr(webhook, "_send", recorder)
    return recorder


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch, subscriber: Subscriber) -> Iterator[ModuleType]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("TABLE_NAME", "companies")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "company-service")
    monkeypatch.setenv("WEBHOOK_SECRET_NAME", SECRET_NAME)
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="companies",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        boto3.client("secretsmanager").create_secret(Name=SECRET_NAME, SecretString=json.dumps(SECRET))
        from aws_lambda_powertools.utilities import parameters
        from company_api import handlers, repository

        monkeypatch.setattr(repository, "_table", None)  # a handle from an earlier test is bound to another moto
        parameters.clear_caches()  # type: ignore[no-untyped-call]  # Powertools caches per container; a test is one
        yield handlers
        parameters.clear_caches()  # type: ignore[no-untyped-call]


def _create(handlers: ModuleType) -> dict[str, Any]:
    response: dict[str, Any] = handlers.create(event("create_company"), Context())
    return response


def test_given_a_valid_company_when_created_then_201_with_an_id(handlers: ModuleType) -> None:
    response = _create(handlers)

    assert response["statusCode"] == 201
    assert json.loads(response["body"])["name"] == "Acme Rockets"


def test_given_an_empty_body_when_created_then_400_naming_the_missing_fields(handlers: ModuleType) -> None:
    response = handlers.create(event("create_company_invalid"), Context())

    assert response["statusCode"] == 400
    assert "name: Field required" in json.loads(response["body"])["message"]


def test_given_a_created_company_when_read_then_200_with_it(handlers: ModuleType) -> None:
    company_id = json.loads(_create(handlers)["body"])["id"]
    path = f"/companies/{company_id}"

    response = handlers.read(
        event("read_company_missing", path=path, pathParameters={"company_id": company_id}), Context()
    )

    assert response["statusCode"] == 200
    assert json.loads(response["body"])["id"] == company_id


def test_given_no_such_company_when_read_then_404(handlers: ModuleType) -> None:
    response = handlers.read(event("read_company_missing"), Context())

    assert response["statusCode"] == 404


def test_given_a_created_company_when_updated_then_200_and_created_at_is_kept(handlers: ModuleType) -> None:
    created = json.loads(_create(handlers)["body"])
    path = f"/companies/{created['id']}"

    response = handlers.update(
        event("update_company_missing", path=path, pathParameters={"company_id": created["id"]}), Context()
    )

    assert response["statusCode"] == 200
    assert json.loads(response["body"])["created_at"] == created["created_at"]


def test_given_no_such_company_when_updated_then_404_and_nothing_is_created(handlers: ModuleType) -> None:
    response = handlers.update(event("update_company_missing"), Context())

    assert response["statusCode"] == 404
    assert boto3.client("dynamodb").scan(TableName="companies")["Count"] == 0


def test_given_a_created_company_when_deleted_then_204_and_it_is_gone(handlers: ModuleType) -> None:
    company_id = json.loads(_create(handlers)["body"])["id"]
    path = f"/companies/{company_id}"
    delete_event = event("delete_company_missing", path=path, pathParameters={"company_id": company_id})

    response = handlers.delete(delete_event, Context())

    assert response["statusCode"] == 204
    assert boto3.client("dynamodb").scan(TableName="companies")["Count"] == 0


def test_given_no_such_company_when_deleted_then_404(handlers: ModuleType) -> None:
    response = handlers.delete(event("delete_company_missing"), Context())

    assert response["statusCode"] == 404


# --- the company.created webhook and its per-stage secret ------------------------------------------------------------


def test_given_the_stage_secret_when_a_company_is_created_then_the_subscriber_gets_it_signed_with_the_key(
    handlers: ModuleType, subscriber: Subscriber
) -> None:
    created = json.loads(_create(handlers)["body"])

    [request] = subscriber.requests
    body = request.data
    assert isinstance(body, bytes)
    expected = "sha256=" + hmac.new(SIGNING_KEY.encode(), body, hashlib.sha256).hexdigest()
    assert (request.full_url, request.get_method()) == (SUBSCRIBER_URL, "POST")
    assert request.get_header("X-company-signature") == expected  # urllib stores header names capitalize()d
    assert request.get_header("X-company-event") == "company.created"
    assert json.loads(body) == {"type": "company.created", "data": created}


def test_given_another_stage_when_a_company_is_created_then_that_stage_secret_is_read(
    handlers: ModuleType, subscriber: Subscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = {"url": "https://hooks.staging.example/company-events", "signing_key": "k" * 32}
    boto3.client("secretsmanager").create_secret(
        Name="company-service/staging/webhook", SecretString=json.dumps(staging)
    )
    monkeypatch.setenv("WEBHOOK_SECRET_NAME", "company-service/staging/webhook")

    _create(handlers)

    [request] = subscriber.requests
    assert request.full_url == staging["url"]
    expected = "sha256=" + hmac.new(b"k" * 32, request.data, hashlib.sha256).hexdigest()  # type: ignore[arg-type]
    assert request.get_header("X-company-signature") == expected


def test_given_no_secret_for_the_stage_when_a_company_is_created_then_a_clear_error_and_nothing_is_stored(
    handlers: ModuleType, subscriber: Subscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    from company_api.webhook import WebhookNotConfigured

    monkeypatch.setenv("WEBHOOK_SECRET_NAME", "company-service/qa/webhook")

    with pytest.raises(WebhookNotConfigured) as raised:
        _create(handlers)

    message = str(raised.value)
    assert message.startswith("cannot read secret 'company-service/qa/webhook' (")
    assert "ResourceNotFoundException" in message and "store it in this stage's account as" in message
    assert boto3.client("dynamodb").scan(TableName="companies")["Count"] == 0  # checked before the write
    assert subscriber.requests == []


@pytest.mark.parametrize(
    ("stored", "field"),
    [
        (f"url={SUBSCRIBER_URL} signing_key={SIGNING_KEY}", "is not JSON"),
        (json.dumps({"url": SUBSCRIBER_URL.replace("https", "http"), "signing_key": SIGNING_KEY}), "field url"),
        (json.dumps({"url": SUBSCRIBER_URL, "signing_key": SIGNING_KEY[:31]}), "field signing_key"),
        (json.dumps([SUBSCRIBER_URL, SIGNING_KEY]), "field url"),
    ],
    ids=["not-json", "http-url", "short-key", "a-list"],
)
def test_given_an_unusable_secret_when_a_company_is_created_then_the_error_names_the_field_and_not_the_value(
    handlers: ModuleType, stored: str, field: str
) -> None:
    from company_api.webhook import WebhookNotConfigured

    boto3.client("secretsmanager").put_secret_value(SecretId=SECRET_NAME, SecretString=stored)

    with pytest.raises(WebhookNotConfigured, match=field) as raised:
        _create(handlers)

    assert SIGNING_KEY[:31] not in str(raised.value) and "XyZs3cretWebh00kPath" not in str(raised.value)
    assert boto3.client("dynamodb").scan(TableName="companies")["Count"] == 0


def test_given_no_secret_name_in_the_environment_when_a_company_is_created_then_the_variable_is_named(
    handlers: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from company_api.webhook import WebhookNotConfigured

    monkeypatch.delenv("WEBHOOK_SECRET_NAME")

    with pytest.raises(WebhookNotConfigured, match=r"WEBHOOK_SECRET_NAME is not set.*WebhookSecretName"):
        _create(handlers)


def test_given_no_secret_at_all_when_the_hooks_checks_run_then_every_verb_answers_without_it(
    handlers: ModuleType, subscriber: Subscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The traffic hooks' invoke checks (template.yaml, *Checks) and the sandbox run without any webhook secret.
    boto3.client("secretsmanager").delete_secret(SecretId=SECRET_NAME, ForceDeleteWithoutRecovery=True)
    monkeypatch.delenv("WEBHOOK_SECRET_NAME")

    statuses = [
        handlers.create(event("create_company_invalid"), Context())["statusCode"],
        handlers.read(event("read_company_missing"), Context())["statusCode"],
        handlers.update(event("update_company_missing"), Context())["statusCode"],
        handlers.delete(event("delete_company_missing"), Context())["statusCode"],
    ]

    assert statuses == [400, 404, 404, 404]
    assert subscriber.requests == []


@pytest.fixture
def powertools_log(handlers: ModuleType, caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Everything the handler's Powertools logger writes (its own JSON formatter, DEBUG and up), plus every other
    logger through caplog. botocore stays at INFO: at DEBUG it logs response bodies, GetSecretValue's included, in
    any Lambda function that reads a secret (keep it off in every stage)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="botocore")
    stream = io.StringIO()
    service_logger = logging.getLogger(handlers.logger.name)  # the service the Logger was built for
    capture = logging.StreamHandler(stream)
    capture.setFormatter(handlers.logger.registered_formatter)
    level = service_logger.level
    service_logger.addHandler(capture)
    service_logger.setLevel(logging.DEBUG)
    yield stream
    service_logger.removeHandler(capture)
    service_logger.setLevel(level)


@pytest.mark.parametrize(
    "failure",
    [None, urllib.error.URLError(ConnectionRefusedError(111, f"refused {SUBSCRIBER_URL}")), 500],
    ids=["delivered", "unreachable", "http-500"],
)
def test_given_a_delivery_when_it_succeeds_or_fails_then_the_log_names_the_host_and_never_the_secret(
    handlers: ModuleType,
    subscriber: Subscriber,
    powertools_log: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    failure: Exception | int | None,
) -> None:
    if isinstance(failure, int):
        subscriber.error = urllib.error.HTTPError(SUBSCRIBER_URL, failure, "boom", {}, io.BytesIO(SIGNING_KEY.encode()))  # type: ignore[arg-type]
    elif failure is not None:
        subscriber.error = failure

    response = _create(handlers)

    assert response["statusCode"] == 201  # stored; a failed delivery does not undo the create
    lines = [json.loads(line) for line in powertools_log.getvalue().splitlines()]
    [outcome] = [line for line in lines if line["message"].startswith("webhook")]
    assert outcome["webhook_host"] == "hooks.billing.example"
    if failure is None:
        assert (outcome["message"], outcome["status"]) == ("webhook delivered", 204)
    elif isinstance(failure, int):
        assert (outcome["message"], outcome["level"], outcome["status"]) == ("webhook delivery failed", "WARNING", 500)
    else:
        assert (outcome["message"], outcome["error"]) == ("webhook delivery failed", "URLError")
    logged = "\n".join([powertools_log.getvalue(), caplog.text, *(str(r.__dict__) for r in caplog.records)])
    for secret in (SIGNING_KEY, SUBSCRIBER_URL, "/company-events/XyZs3cretWebh00kPath", "XyZs3cretWebh00kPath"):
        assert secret not in logged, f"{secret!r} leaked"
    assert "company created" in logged  # the capture saw the handler's own lines
