"""boto3 clients with the retry policy every adapter shares (botocore's adaptive mode: backoff + jitter)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=5, read_timeout=30)
CONFIG = _CONFIG  # also for the clients of stages in other accounts (adapters/stage_clients.py)


@cache
def client(service: str) -> Any:
    # Cached per process: Lambda reuses it across warm invocations; the region comes from AWS_REGION.
    return boto3.client(service, config=_CONFIG)  # type: ignore[call-overload]


def error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None
