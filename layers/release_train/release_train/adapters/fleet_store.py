"""The validated fleet lives in the config bucket (versioned); `trainctl fleet push` writes, PlanRelease reads."""

from __future__ import annotations

from typing import Any

from release_train.domain.fleet import Fleet, parse_fleet

FLEET_KEY = "fleet.yaml"


class FleetStore:
    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def load(self) -> tuple[Fleet, str | None]:
        """The fleet and the S3 version it came from (recorded on the release for audit)."""
        obj = self._s3.get_object(Bucket=self._bucket, Key=FLEET_KEY)
        text = obj["Body"].read().decode("utf-8")
        return parse_fleet(text, source=f"s3://{self._bucket}/{FLEET_KEY}"), obj.get("VersionId")

    def push(self, text: str) -> str | None:
        parse_fleet(text)  # validate before the side effect
        result = self._s3.put_object(Bucket=self._bucket, Key=FLEET_KEY, Body=text.encode(), ContentType="text/yaml")
        version = result.get("VersionId")
        return str(version) if version else None
