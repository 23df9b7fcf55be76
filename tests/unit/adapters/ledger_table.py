"""The ledger table created in moto exactly as template.yaml declares it (keys, GSI1 and its projection)."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

import boto3
from boto3.dynamodb.types import Binary
from samtranslator.yaml_helper import yaml_parse

from tests.conftest import ROOT

TABLE_NAME = "release-train-ledger"


@cache
def ledger_table_properties() -> dict[str, Any]:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    properties: dict[str, Any] = template["Resources"]["LedgerTable"]["Properties"]
    return properties


def create_ledger_table(name: str = TABLE_NAME) -> Any:
    """A boto3 Table resource; call inside `mock_aws`."""
    props = ledger_table_properties()
    dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
    table = dynamodb.create_table(
        TableName=name,
        BillingMode=props["BillingMode"],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"],
    )
    return table


def all_items(table: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = table.scan()["Items"]
    return items


# "The maximum item size in DynamoDB is 400 KB" with "1 KB = 1024 bytes" (Developer Guide, "Constraints in Amazon
# DynamoDB"); TransactWriteItems: "The aggregate size of the items in the transaction cannot exceed 4 MB".
ITEM_LIMIT = 400 * 1024
TRANSACTION_LIMIT = 4 * 1024 * 1024


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it (Developer Guide, "DynamoDB item sizes and formats"): each attribute's
    UTF-8 name plus its value. moto checks items too, against its own 405,000 bytes; this is AWS's rule, measured."""
    return sum(len(name.encode()) + _size(value) for name, value in item.items())


def _size(value: Any) -> int:
    """Strings their UTF-8 bytes; binary its raw bytes (not the base64 sent); numbers 1 byte per two significant digits
    + 1; null and Boolean 1; lists and maps 3 bytes + 1 per element (+ each map key's UTF-8 bytes)."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, Binary):
        return len(value.value)  # type: ignore[attr-defined]  # boto3-stubs omit it
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, Decimal):
        digits = str(abs(value)).replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if isinstance(value, dict):
        return 3 + sum(len(k.encode()) + _size(v) + 1 for k, v in value.items())
    if isinstance(value, list | set):
        return 3 + sum(_size(v) + 1 for v in value)
    raise TypeError(f"no DynamoDB size rule for {type(value).__name__}")
