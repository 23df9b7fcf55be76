"""The companies table (DynamoDB, partition key `id`). The boto3 resource is built on first use."""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.exceptions import ClientError

from company_api.models import Company

_table: Any = None


def table() -> Any:
    global _table
    if _table is None:
        _table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])
    return _table


def put_new(company: Company) -> None:
    table().put_item(Item=company.model_dump(mode="json"), ConditionExpression="attribute_not_exists(id)")


def get(company_id: str) -> Company | None:
    item = table().get_item(Key={"id": company_id}).get("Item")
    return Company.model_validate(item) if item else None


def replace_existing(company: Company) -> bool:
    """False when there is no such company (an update never creates)."""
    try:
        table().put_item(Item=company.model_dump(mode="json"), ConditionExpression="attribute_exists(id)")
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def delete_existing(company_id: str) -> bool:
    try:
        table().delete_item(Key={"id": company_id}, ConditionExpression="attribute_exists(id)")
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True
