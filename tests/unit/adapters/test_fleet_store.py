"""The fleet in the config bucket (moto S3): validated before it is written, read back with its version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from release_train.adapters.fleet_store import FLEET_KEY, FleetStore
from release_train.domain.errors import InvalidInput

BUCKET = "release-train-config"
VALID = (
    "fleet: acme\n"
    'defaults: {approvers: ["arn:aws:iam::123456789012:role/ReleaseManager"]}\n'
    "services:\n  - {name: api, source: {codecommit: api}}\n"
)


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def _versions(s3: Any) -> list[dict[str, Any]]:
    versions: list[dict[str, Any]] = s3.list_object_versions(Bucket=BUCKET).get("Versions", [])
    return versions


def test_given_a_valid_fleet_when_pushed_then_it_is_stored_and_its_version_returned(s3: Any) -> None:
    version = FleetStore(s3, BUCKET).push(VALID)

    stored = s3.get_object(Bucket=BUCKET, Key=FLEET_KEY)
    assert (stored["Body"].read().decode(), stored["VersionId"]) == (VALID, version)


def test_given_an_invalid_fleet_when_pushed_then_it_is_rejected(s3: Any) -> None:
    with pytest.raises(InvalidInput):
        FleetStore(s3, BUCKET).push(VALID + "colour: red\n")


def test_given_an_invalid_fleet_when_pushed_then_nothing_is_written(s3: Any) -> None:
    with pytest.raises(InvalidInput):
        FleetStore(s3, BUCKET).push("fleet: [")

    assert _versions(s3) == []


def test_given_a_pushed_fleet_when_loaded_then_the_fleet_and_its_version_come_back(s3: Any) -> None:
    store = FleetStore(s3, BUCKET)
    version = store.push(VALID)

    fleet, loaded_version = store.load()

    assert (fleet.fleet, [s.name for s in fleet.services], loaded_version) == ("acme", ["api"], version)


def test_given_an_invalid_fleet_in_the_bucket_when_loaded_then_the_error_names_the_s3_object(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=FLEET_KEY, Body=b"fleet: acme\n")

    with pytest.raises(InvalidInput, match=r"^s3://release-train-config/fleet.yaml is invalid"):
        FleetStore(s3, BUCKET).load()
