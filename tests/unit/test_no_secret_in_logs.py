"""No secret in any log line: whole trains in the sandbox whose webhook fails and whose GitHub misbehaves, with every
byte of log output captured (the handlers' Powertools log, stdout, stderr, every logging record) and searched for the
secrets: the webhook URL (a Slack webhook's secret is its path) and the GitHub token.

The webhook secret is created and GitHub is scripted after the runner's own set-up (a wrapper around `_Run._setup`).
The adapter's retry sleeps run on the sandbox's virtual clock (`moto_fixes._swap_targets` points its `time` at the
shim): nothing waits on the wall clock.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from trainctl.sandbox import runner
from trainctl.sandbox.runner import SimulationResult, simulate
from trainctl.sandbox.scenario import load_scenario
from trainctl.sandbox.sources import GitHubAnswer

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "release-train/slack-webhook"
SECRET_WORD = "XyZs3cretWebh00kPath"
SECRET_PATH = f"/services/T0001/B0002/{SECRET_WORD}"
SANDBOX_TOKEN = "ghp_sandbox_token"  # what the runner stores in every GitHub token secret


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed when the block ends: connections are refused


@pytest.fixture
def fleet_with_webhook(tmp_path: Path) -> Path:
    doc = yaml.safe_load((ROOT / "fleet.yaml").read_text())
    doc["notifications"] = {**(doc.get("notifications") or {}), "webhook_secret": WEBHOOK_SECRET}
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def train(
    tmp_path: Path,
    fleet_with_webhook: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[..., tuple[SimulationResult, str, str]]]:
    """Run a scenario with a failing webhook and GitHub scripted; return (result, all log output, webhook URL)."""
    caplog.set_level(logging.DEBUG)
    # Out of reach, and said so: botocore's DEBUG output logs response bodies (GetSecretValue's SecretString) and
    # request signatures, so it must stay off; `responses` (moto's HTTP interception, sandbox only) logs each request
    # it lets through with its URL at INFO; moto's interpreter logs whole state inputs.
    caplog.set_level(logging.INFO, logger="botocore")
    caplog.set_level(logging.WARNING, logger="responses")
    webhook_url = f"https://127.0.0.1:{_closed_port()}{SECRET_PATH}"

    def run(scenario: str, *github: int | GitHubAnswer) -> tuple[SimulationResult, str, str]:
        original = runner._Run._setup

        def setup(self: Any) -> None:
            original(self)
            boto3.client("secretsmanager").create_secret(Name=WEBHOOK_SECRET, SecretString=webhook_url + "\n")
            self.world.sources.script_github("acme/orders", "release", *github)

        monkeypatch.setattr(runner._Run, "_setup", setup)
        log_file = tmp_path / f"{scenario}.log"
        result = simulate(
            fleet_with_webhook,
            load_scenario(ROOT / "examples" / "scenarios" / f"{scenario}.yaml"),
            ROOT,
            log_path=log_file,
        )
        out, err = capsys.readouterr()
        records = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records]
        logged = "\n".join([log_file.read_text(), out, err, caplog.text, *records])
        return result, logged, webhook_url

    yield run


def _assert_no_secret(text: str, webhook_url: str) -> None:
    for secret in (webhook_url, SECRET_PATH, SECRET_WORD, SANDBOX_TOKEN):
        assert secret not in text, f"{secret!r} leaked"


@pytest.mark.slow
def test_given_a_failing_webhook_and_github_failing_then_recovering_when_a_train_runs_then_no_secret_is_logged(
    train: Callable[..., tuple[SimulationResult, str, str]],
) -> None:
    result, logged, url = train("nothing-changed", 500, GitHubAnswer(status=429, retry_after=5), 200)

    assert result.status == "NOTHING_TO_RELEASE"  # GitHub recovered within the adapter's retries
    assert result.virtual_duration_s >= 5  # the 429's Retry-After was waited for, on the virtual clock
    assert "webhook notification failed" in logged  # the webhook was called, failed, and the failure was logged
    # by host (a Powertools JSON line, or the record's fields when the notifier's logger is not under the handler's)
    assert re.search(r"""webhook_host['"]: ?['"]127\.0\.0\.1['"]""", logged)
    _assert_no_secret(logged, url)
    _assert_no_secret(json.dumps(result.to_json(), default=str), url)


@pytest.mark.slow
def test_given_github_refusing_the_token_when_a_train_runs_then_the_failure_names_the_source_and_no_secret(
    train: Callable[..., tuple[SimulationResult, str, str]],
) -> None:
    result, logged, url = train("nothing-changed", 401)

    assert "github:acme/orders@release" in result.reason and "HTTP 401" in result.reason
    _assert_no_secret(logged, url)
    _assert_no_secret(json.dumps(result.to_json(), default=str), url)
