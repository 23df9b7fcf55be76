"""Shared fixtures: a LambdaContext stand-in, event loading, fake AWS credentials."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
# moto's interpreter logs every error a state machine catches (with the whole parsed state) at ERROR level.
logging.getLogger("moto").setLevel(logging.CRITICAL)


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never reach a real account from tests, whatever the developer's shell has.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "release-train-tests")


@dataclass
class FakeLambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"
    remaining_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


def load_event(relative: str) -> dict[str, Any]:
    """Load events/<function>/<case>.json — the same files `sam local invoke -e` uses."""
    return json.loads((EVENTS / relative).read_text())
