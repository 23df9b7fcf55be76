"""The ledger table created in moto exactly as template.yaml declares it (keys, GSI1 and its projection)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
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
