"""company-service handlers against a moto DynamoDB table. The events are the ones the release-train hooks send
as `invoke` checks (see the *Checks parameters in template.yaml), so these tests also pin what the hooks expect.

No conftest here on purpose: this folder is collected together with the repository's tests/, and this file's
basename is unique. `src/` is put on sys.path because the service is deployed from it (CodeUri: src/).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

SERVICE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(SERVICE / "src"))


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


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("TABLE_NAME", "companies")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "company-service")
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="companies",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        from company_api import handlers, repository

        monkeypatch.setattr(repository, "_table", None)  # a handle from an earlier test is bound to another moto
        yield handlers


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
