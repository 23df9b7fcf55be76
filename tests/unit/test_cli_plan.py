"""`trainctl plan` against a stack in moto (S3, DynamoDB, Secrets Manager, Step Functions, CloudFormation), CodeCommit
GetBranch answered by the sandbox's emulator (moto has no GetBranch) and GitHub by the sandbox's loopback GraphQL
stand-in. Each would-leave and would-not-leave outcome with its exit code, the --services input, a source that
cannot be read, and that a preview writes nothing and starts nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from release_train.adapters.ledger import ApprovalRecord, Ledger, ReleaseRecord
from release_train.domain.fleet import parse_fleet
from release_train.domain.live import UNKNOWN, Live
from release_train.domain.release import Hold, Status
from tests.conftest import ROOT
from tests.unit.adapters.ledger_table import all_items, create_ledger_table
from tests.unit.operator_world import train_machine
from trainctl import cli, convention
from trainctl.cli import main
from trainctl.sandbox import emulators
from trainctl.sandbox.sources import Sources as EmulatedSources

FLEET_TEXT = (ROOT / "fleet.yaml").read_text()
FLEET = parse_fleet(FLEET_TEXT)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, outside the example fleet's year-end freeze
IN_FREEZE = datetime(2026, 12, 22, 9, 0, tzinfo=UTC)  # fleet.yaml: Year-end freeze 2026-12-21 .. 2027-01-04
TOKEN = "ghp_Sup3rS3cretT0kenNeverPrinted"

TEMPLATE = {
    "Parameters": {
        "GitHubApiUrl": {"Type": "String", "Default": "https://api.github.com"},
        "AliasArn": {"Type": "String"},
    },
    "Resources": {"ConfigBucket": {"Type": "AWS::S3::Bucket"}},
    "Outputs": {
        "ConfigBucketName": {"Value": {"Ref": "ConfigBucket"}},
        "LedgerTableName": {"Value": "release-train-ledger"},
        "StateMachineAliasArn": {"Value": {"Ref": "AliasArn"}},
    },
}


def head(service: str) -> str:
    return hashlib.sha1(f"{service}-head".encode()).hexdigest()


def old(service: str) -> str:
    return hashlib.sha1(f"{service}-old".encode()).hexdigest()


@dataclass
class World:
    ledger: Ledger
    machine: str
    bucket: str
    sources: EmulatedSources

    @property
    def sfn(self) -> Any:
        return boto3.client("stepfunctions", region_name="us-east-1")

    def running_release(self, release_id: str) -> str:
        """A release whose execution runs (moto keeps it RUNNING: no interpreter) and holds the train lock."""
        arn = str(self.sfn.start_execution(stateMachineArn=self.machine, name=release_id, input="{}")["executionArn"])
        record = ReleaseRecord(
            release_id, "acme-shop", Status.RUNNING, "planned", arn, "2026-11-23T09:00:00+00:00", ["staging", "prod"]
        )
        assert self.ledger.create_release(record, pinned_fleet=FLEET.model_dump(mode="json"))
        assert self.ledger.acquire_lock("acme-shop", release_id, arn, NOW) is None
        return arn

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a preview could change: the ledger, executions, the config bucket."""
        items = sorted(json.dumps(i, sort_keys=True, default=repr) for i in all_items(self.ledger._t))
        executions = self.sfn.list_executions(stateMachineArn=self.machine)["executions"]
        versions = boto3.client("s3", region_name="us-east-1").list_object_versions(Bucket=self.bucket)
        return (
            items,
            [(e["executionArn"], e["status"]) for e in executions],
            [(v["Key"], v["VersionId"]) for v in versions.get("Versions", [])],
        )


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a developer's proxy must not see the loopback GitHub
    emulated = EmulatedSources(SimpleNamespace(clock=None))  # type: ignore[arg-type]
    github_url = emulated.start_github()
    for service in FLEET.services:
        source = service.source
        if hasattr(source, "codecommit"):
            emulated.branches[(source.codecommit, source.branch)] = head(service.name)
        else:
            emulated.github_heads[(source.github, source.branch)] = head(service.name)
    # CodeCommit GetBranch answered by the sandbox's emulator at botocore's before-call (validated against the model).
    emulators.install()
    emulators.activate(SimpleNamespace(routes=emulated.routes(), defects=[]))  # type: ignore[arg-type]
    try:
        with mock_aws():
            sfn = boto3.client("stepfunctions", region_name="us-east-1")
            machine = train_machine(sfn)
            cloudformation = boto3.client("cloudformation", region_name="us-east-1")
            cloudformation.create_stack(
                StackName="release-train",
                TemplateBody=json.dumps(TEMPLATE),
                Parameters=[
                    {"ParameterKey": "AliasArn", "ParameterValue": machine},
                    {"ParameterKey": "GitHubApiUrl", "ParameterValue": github_url},
                ],
            )
            outputs = cloudformation.describe_stacks(StackName="release-train")["Stacks"][0]["Outputs"]
            bucket = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "ConfigBucketName")
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            s3.put_object(Bucket=bucket, Key="fleet.yaml", Body=FLEET_TEXT)
            boto3.client("secretsmanager", region_name="us-east-1").create_secret(
                Name="release-train/github-token", SecretString=TOKEN
            )
            ledger = Ledger(create_ledger_table())
            # The last good release shipped every service's old commit.
            ledger.set_baseline("acme-shop", "2026-W47", {s.name: old(s.name) for s in FLEET.services})
            monkeypatch.setattr(cli, "_now", lambda: NOW)
            monkeypatch.setattr(convention.out, "width", 240)  # rows stay whole for the asserts
            yield World(ledger, machine, bucket, emulated)
    finally:
        emulators.activate(None)
        emulated.stop_github()


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["plan", *args])
    return result.exit_code, result.stdout, result.stderr


def _json(*args: str) -> tuple[int, dict[str, Any], str]:
    code, stdout, stderr = _run(*args, "--output", "json")
    return code, json.loads(stdout), stderr


def _riding(doc: dict[str, Any]) -> list[str]:
    return [s["service"] for s in doc["services"]]


# --- what would ride --------------------------------------------------------------------------------------------------


def test_given_heads_and_what_prod_runs_when_planning_then_changed_services_ride_with_their_commit_ranges(
    world: World,
) -> None:
    # Given: identity's head already runs in prod (the baseline says otherwise: live wins), payments' and
    # notifications' heads are the baseline, orders' prod commit is unknown.
    world.ledger.set_baseline(
        "acme-shop", "2026-W47", {"payments": head("payments"), "notifications": head("notifications")}
    )
    world.ledger.set_live(
        "acme-shop",
        [
            Live("prod", "identity", head("identity"), "2026-W47", "aliases"),
            Live("prod", "orders", UNKNOWN, None, "aliases not observed"),
        ],
    )

    code, doc, stderr = _json()

    assert (code, stderr) == (0, "")
    assert doc["would_leave"] is True and doc["blocked_by"] == []
    assert (doc["fleet"], doc["evaluated_at"], doc["request"]) == ("acme-shop", "2026-11-23T10:00:00+00:00", "changed")
    assert doc["fleet_version"]  # the S3 version the train would read
    assert _riding(doc) == ["company-service", "catalog", "orders"]
    company, _, orders = doc["services"]
    assert company == {
        "service": "company-service",
        "wave": 1,
        "source": "codecommit:company-service@release",
        "previous_commit": old("company-service"),
        "commit": head("company-service"),
        "range": f"{old('company-service')}..{head('company-service')}",
        "changed": True,
    }
    assert (orders["source"], orders["previous_commit"], orders["range"]) == (
        "github:acme/orders@release",
        UNKNOWN,
        None,
    )
    assert orders["commit"] == head("orders")
    assert doc["waves"] == [
        {"wave": 1, "services": ["company-service"]},
        {"wave": 2, "services": ["catalog", "orders"]},
    ]
    assert doc["unchanged"] == 3
    assert doc["compared_with"] == {"stage": "prod", "last_release": "2026-W47"}
    # domain/scale.py: 24 + per stage (36 + per wave (18 + 12 per chunk)), 2 stages of 2 one-chunk waves.
    assert doc["estimate"]["history_events"] == 24 + 2 * (36 + 2 * (18 + 12))


def test_given_changes_when_planning_as_a_table_then_each_service_shows_its_commits_and_the_verdict(
    world: World,
) -> None:
    code, stdout, _ = _run()

    assert code == 0
    assert "would release 6 services in waves [1, 2, 3]" in stdout
    assert f"{old('orders')[:12]}" in stdout and f"{head('orders')[:12]}" in stdout
    assert "0 unchanged (compared with what prod runs; last release 2026-W47)" in stdout


def test_given_nothing_changed_when_planning_then_it_would_not_leave_and_exits_1(world: World) -> None:
    world.ledger.set_baseline("acme-shop", "2026-W48", {s.name: head(s.name) for s in FLEET.services})

    code, doc, stderr = _json()

    assert code == 1
    assert doc["would_leave"] is False and doc["services"] == [] and doc["unchanged"] == 6
    assert doc["blocked_by"] == [
        {
            "kind": "nothing_to_release",
            "reason": "no service's head differs from what prod runs (last release 2026-W48)",
        }
    ]
    assert "would not leave" in stderr


# --- would it leave ---------------------------------------------------------------------------------------------------


def test_given_a_freeze_window_when_planning_then_it_is_blocked_until_the_reopen_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_now", lambda: IN_FREEZE)

    code, doc, _ = _json()

    assert code == 1
    assert doc["would_leave"] is False
    (block,) = doc["blocked_by"]
    assert (block["kind"], block["window"], block["until"], block["reopens"]) == (
        "freeze",
        "Year-end freeze",
        "2027-01-04T00:00:00+00:00",
        "2027-01-04T00:00:00+00:00",
    )
    assert "next open time 2027-01-04T00:00:00+00:00" in block["reason"]
    assert len(doc["services"]) == 6  # what would ride once it reopens, were the heads the same


def test_given_a_freeze_when_planning_as_a_table_then_it_says_why_it_would_not_leave_on_stdout(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_now", lambda: IN_FREEZE)

    code, stdout, stderr = _run()

    assert (code, stderr) == (1, "")
    assert "would not leave: freeze window 'Year-end freeze' until 2027-01-04T00:00:00+00:00" in stdout
    assert "would ride once unblocked" in stdout


def test_given_a_hold_on_a_riding_service_when_planning_then_it_is_blocked_naming_the_hold(world: World) -> None:
    world.ledger.put_hold("acme-shop", Hold("orders", "incident 4711", "ana", "arn:aws:sts::1:assumed-role/x/ana"), NOW)

    code, doc, stderr = _json()

    assert code == 1
    assert doc["blocked_by"] == [
        {
            "kind": "hold",
            "reason": "hold on orders by ana: incident 4711",
            "scope": "orders",
            "by": "ana",
            "identity": "arn:aws:sts::1:assumed-role/x/ana",
        }
    ]
    assert "hold on orders by ana" in stderr


def test_given_a_hold_on_a_service_that_does_not_ride_when_planning_then_the_train_would_leave(world: World) -> None:
    world.ledger.set_baseline("acme-shop", "2026-W47", {"identity": head("identity")})
    world.ledger.put_hold("acme-shop", Hold("identity", "migration", "bo"), NOW)

    code, doc, _ = _json()

    assert (code, doc["would_leave"]) == (0, True)
    assert "identity" not in _riding(doc)


def test_given_a_running_release_holding_the_lock_when_planning_then_it_is_blocked_naming_it(world: World) -> None:
    arn = world.running_release("2026-W48")

    code, doc, _ = _json()

    assert code == 1
    (block,) = doc["blocked_by"]
    assert (block["kind"], block["release_id"], block["execution_arn"]) == ("lock", "2026-W48", arn)
    assert "release 2026-W48 is running and holds the acme-shop train lock" in block["reason"]


def test_given_a_release_waiting_for_approval_when_planning_then_it_would_leave_and_supersede_it(world: World) -> None:
    world.running_release("2026-W48")
    world.ledger.put_approval("2026-W48", ApprovalRecord("prod", "PENDING", "tok", "2026-11-23T09:40:00+00:00"), {})

    code, doc, _ = _json()

    assert (code, doc["would_leave"]) == (0, True)
    assert doc["notes"] == [
        "release 2026-W48 waits for the prod approval: the scheduled train supersedes it (it ends BLOCKED); "
        "`trainctl start` does so only with --supersede"
    ]


def test_given_a_lock_whose_execution_ended_when_planning_then_it_would_leave_and_reclaim_it(world: World) -> None:
    arn = world.running_release("2026-W48")
    world.sfn.stop_execution(executionArn=arn)

    code, doc, _ = _json()

    assert (code, doc["would_leave"]) == (0, True)
    assert "its execution ended: the next train reclaims the lock" in doc["notes"][0]


# --- --services / --all -----------------------------------------------------------------------------------------------


def test_given_named_services_when_planning_then_only_they_ride_even_if_unchanged(world: World) -> None:
    world.ledger.set_baseline("acme-shop", "2026-W47", {"identity": head("identity")})

    code, doc, _ = _json("--services", "orders, identity")

    assert code == 0
    assert doc["request"] == ["orders", "identity"]
    assert _riding(doc) == ["identity", "orders"]  # fleet order
    identity = doc["services"][0]
    assert (identity["changed"], identity["range"]) == (False, None)
    assert doc["changed_not_selected"] == ["company-service", "catalog", "payments", "notifications"]


def test_given_all_when_planning_then_every_service_rides(world: World) -> None:
    world.ledger.set_baseline("acme-shop", "2026-W48", {s.name: head(s.name) for s in FLEET.services})

    code, doc, _ = _json("--all")

    assert (code, doc["request"], len(doc["services"])) == (0, "all", 6)


def test_given_an_unknown_service_when_planning_then_exit_2_naming_it_before_any_source_is_asked(
    world: World,
) -> None:
    code, stdout, stderr = _run("--services", "orders,nope")

    assert (code, stdout) == (2, "")
    assert stderr.strip() == "error: --services: not in fleet acme-shop: nope"
    assert world.sources.github_requests == []


@pytest.mark.parametrize(
    "args",
    [pytest.param(("--services", "orders", "--all"), id="both"), pytest.param(("--services", " , "), id="empty")],
)
def test_given_contradictory_or_empty_selection_when_planning_then_exit_2(world: World, args: tuple[str, ...]) -> None:
    code, stdout, stderr = _run(*args)

    assert (code, stdout) == (2, "")
    assert stderr.startswith("error: --services")


# --- sources that cannot be read --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        pytest.param(
            lambda s: s.github_heads.clear(), "no such repository, or the token cannot see it (NOT_FOUND)", id="repo"
        ),
        pytest.param(
            lambda s: s.script_github("acme/orders", "release", 404), "no such branch (GitHub answered ref: null)",
            id="branch",
        ),
    ],
)  # fmt: skip
def test_given_github_answers_404_when_planning_then_exit_3_naming_service_and_source_never_the_token(
    world: World, break_it: Any, reason: str
) -> None:
    break_it(world.sources)

    code, stdout, stderr = _run()

    assert (code, stdout) == (3, "")
    assert stderr.strip() == f"error: service orders: cannot read the head of github:acme/orders@release: {reason}"
    assert TOKEN not in stderr and "127.0.0.1" not in stderr and "Traceback" not in stderr


def test_given_a_codecommit_repository_missing_when_planning_then_exit_3_naming_the_service(world: World) -> None:
    del world.sources.branches[("payments", "release")]

    code, _, stderr = _run()

    assert code == 3
    assert "service payments: cannot read the head of codecommit:payments@release" in stderr
    assert "RepositoryDoesNotExistException" in stderr


# --- the fleet the train would read ---------------------------------------------------------------------------------


def test_given_a_fleet_below_the_stacks_guardrails_when_planning_then_exit_1_naming_the_rule_before_any_source(
    world: World,
) -> None:
    below = FLEET_TEXT.replace('project: "train-{service}-{stage}"', 'project: "other-{service}-{stage}"')
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=world.bucket, Key="fleet.yaml", Body=below)

    code, stdout, stderr = _run()

    assert (code, stdout) == (1, "")
    assert stderr.startswith("error: the train would not leave: the fleet in the config bucket (against the stack's")
    assert "does not start with ProjectPrefix 'train-'" in stderr
    assert world.sources.github_requests == []


def test_given_no_fleet_in_the_config_bucket_when_planning_then_exit_3_saying_to_push_one(world: World) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    for version in s3.list_object_versions(Bucket=world.bucket).get("Versions", []):
        s3.delete_object(Bucket=world.bucket, Key=version["Key"], VersionId=version["VersionId"])

    code, _, stderr = _run()

    assert code == 3
    assert f"no fleet at s3://{world.bucket}/fleet.yaml (stack release-train): push one (trainctl fleet push)" in stderr


# --- a preview changes nothing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("blocked", [False, True], ids=["would-leave", "blocked-by-lock"])
def test_given_any_outcome_when_planning_then_nothing_is_written_and_no_execution_starts(
    world: World, blocked: bool
) -> None:
    if blocked:
        world.running_release("2026-W48")
    before = world.snapshot()

    code, _, _ = _run()

    assert code == (1 if blocked else 0)
    assert world.snapshot() == before
    assert len(world.sources.github_requests) == 1  # the heads were really read
