"""What the operator-command tests set up alike: a train's state machine whose executions stay RUNNING (one long
Wait: moto's interpreter never ends it, no wall time passes), and a machine with no AWS credentials anywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

RUNNING_TRAIN = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}


def train_machine(sfn: Any, name: str = "ReleaseTrain-rt") -> str:
    """The ARN of a state machine whose executions wait (RUNNING) until someone stops them."""
    return str(
        sfn.create_state_machine(
            name=name, definition=json.dumps(RUNNING_TRAIN), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
    )


def without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No keys in the environment, no profile files, no instance metadata: boto3's chain finds nothing."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
