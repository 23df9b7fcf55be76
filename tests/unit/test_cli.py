"""trainctl's operator commands against moto: what they change, what they print, how they fail."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from release_train.adapters.ledger import ApprovalRecord, Ledger, ReleaseRecord
from release_train.domain.release import Status
from tests.conftest import ROOT
from tests.unit.adapters.ledger_table import TABLE_NAME, all_items, create_ledger_table
from trainctl.cli import main

FLEET_FILE = ROOT / "fleet.yaml"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:ReleaseTrain-rt:train-1"


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    # Step Functions as the sandbox runs it: SendTaskSuccess checks the token like AWS does.
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield Ledger(create_ledger_table())


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _release(ledger: Ledger, release_id: str = "2026-W48", created: str = "2026-11-23T09:00:00+00:00") -> None:
    record = ReleaseRecord(release_id, "acme-shop", Status.RUNNING, "planned", EXECUTION, created)
    assert ledger.create_release(record, pinned_fleet={})


def test_given_a_hold_when_set_then_the_ledger_has_it_and_lifting_it_removes_it(ledger: Ledger) -> None:
    code, output = _run("hold", "--table", TABLE_NAME, "--fleet", "acme-shop", "--reason", "INC-7", "--by", "oncall")
    assert code == 0 and "hold on * set: INC-7" in output
    assert [(h.scope, h.reason, h.by) for h in ledger.holds("acme-shop")] == [("*", "INC-7", "oncall")]

    code, _ = _run("hold", "--table", TABLE_NAME, "--fleet", "acme-shop", "--reason", "-", "--by", "x", "--remove")
    assert code == 0
    assert ledger.holds("acme-shop") == []


def test_given_releases_when_status_is_asked_then_the_lock_and_the_newest_releases_are_shown(ledger: Ledger) -> None:
    _release(ledger, "2026-W47", "2026-11-16T09:00:00+00:00")
    _release(ledger, "2026-W48", "2026-11-23T09:00:00+00:00")
    ledger.close_release("2026-W47", Status.SUCCEEDED, "all stages promoted", datetime_now())
    ledger.acquire_lock("acme-shop", "2026-W48", EXECUTION, datetime_now())

    code, output = _run("status", "--table", TABLE_NAME, "--fleet", "acme-shop")

    assert code == 0
    assert "lock: 2026-W48 since" in output
    assert output.index("2026-W48") < output.index("2026-W47")  # newest first
    assert "SUCCEEDED" in output and "RUNNING" in output


def test_given_no_approval_request_when_approving_then_it_fails_with_exit_2_naming_the_stage(ledger: Ledger) -> None:
    _release(ledger)
    code, output = _run("approve", "--table", TABLE_NAME, "2026-W48", "--stage", "prod", "--by", "rm")
    assert code == 2
    assert "no approval request for stage prod" in output


def test_given_a_token_step_functions_does_not_know_when_approving_then_exit_2_and_the_approval_is_expired(
    ledger: Ledger,
) -> None:
    _release(ledger)
    ledger.put_approval("2026-W48", ApprovalRecord("prod", "PENDING", "not-a-live-token", "2026-11-25T10:00"), {})

    code, output = _run("approve", "--table", TABLE_NAME, "2026-W48", "--stage", "prod", "--by", "rm")

    assert code == 2
    assert "no longer waits for an answer" in output
    approval = ledger.approval("2026-W48", "prod")
    assert approval is not None and approval.status == "EXPIRED"


def test_given_a_valid_fleet_file_when_validated_then_it_summarises_it() -> None:
    code, output = _run("fleet", "validate", str(FLEET_FILE))
    assert code == 0
    assert "fleet acme-shop" in output
    assert "6 services" in output
    assert "'staging', 'prod'" in output


def test_given_an_invalid_fleet_file_when_validated_then_exit_2_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("fleet: acme\nservices:\n  - {name: a, source: {codecommit: a}, wave: 0}\n")
    code, output = _run("fleet", "validate", str(bad))
    assert code == 2
    assert "services.0.wave" in output


def test_given_an_invalid_fleet_when_pushed_then_nothing_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("fleet: acme\nservices: []\n")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="release-train-config-test")
        code, output = _run("fleet", "push", str(bad), "--bucket", "release-train-config-test")
        assert code == 2 and "services" in output
        assert s3.list_objects_v2(Bucket="release-train-config-test").get("KeyCount") == 0


def test_given_a_valid_fleet_when_pushed_then_the_bucket_holds_it(ledger: Ledger) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="release-train-config-test")
    code, output = _run("fleet", "push", str(FLEET_FILE), "--bucket", "release-train-config-test")
    assert code == 0 and "pushed" in output
    assert (
        s3.get_object(Bucket="release-train-config-test", Key="fleet.yaml")["Body"].read().decode()
        == FLEET_FILE.read_text()
    )


def test_given_a_running_train_when_cancelled_then_the_execution_is_stopped_with_the_reason(ledger: Ledger) -> None:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = sfn.create_state_machine(
        name="ReleaseTrain-rt",
        definition=json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name="train-1")["executionArn"]
    for _ in range(6000):  # a running train: it has reached its Wait (a generous bound: a defect guard, not a timing)
        if any(e["type"] == "WaitStateEntered" for e in sfn.get_execution_history(executionArn=arn)["events"]):
            break
        time.sleep(0.01)

    code, output = _run("cancel", arn, "--reason", "bad canary in identity")

    assert code == 0 and "stop requested" in output
    for _ in range(6000):  # the interpreter ends the execution on its own thread
        if sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
            break
        time.sleep(0.01)
    described = sfn.describe_execution(executionArn=arn)
    assert described["status"] == "ABORTED"
    assert all_items(ledger._t) == []  # the CLI only stops; the clean-up rule closes the release


def datetime_now() -> datetime:
    return datetime(2026, 11, 23, 10, tzinfo=UTC)
