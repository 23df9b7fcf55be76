"""trainctl's operator commands against a stack in moto: status (and --watch), history, show, start, cancel, hold.
Each command's success, its --output json document, and each of its exit codes (trainctl/convention.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from release_train.adapters.ledger import ApprovalRecord, BuildRecord, Ledger, ReleaseRecord
from release_train.domain.fleet import parse_fleet
from release_train.domain.live import Live
from release_train.domain.release import ManifestEntry, Status
from tests.conftest import ROOT
from tests.unit.adapters.ledger_table import TABLE_NAME, create_ledger_table
from tests.unit.adapters.loopback import loopback_server
from tests.unit.operator_world import train_machine, without_credentials
from trainctl import cli, convention
from trainctl.cli import main
from trainctl.watch import watch_release

FLEET_TEXT = (ROOT / "fleet.yaml").read_text()
FLEET = parse_fleet(FLEET_TEXT)
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, after the default 09:00 train
APPROVER = "arn:aws:iam::123456789012:role/ReleaseManager"
MOTO_CALLER = "arn:aws:sts::123456789012:user/moto"

OPS_TEMPLATE = {
    "Parameters": {
        "ScheduleExpression": {"Type": "String", "Default": "cron(0 9 ? * MON *)"},
        "ScheduleTimezone": {"Type": "String", "Default": "UTC"},
        "ScheduleState": {"Type": "String", "Default": "ENABLED"},
        "AliasArn": {"Type": "String"},
    },
    "Resources": {"ConfigBucket": {"Type": "AWS::S3::Bucket"}},
    "Outputs": {
        "ConfigBucketName": {"Value": {"Ref": "ConfigBucket"}},
        "LedgerTableName": {"Value": TABLE_NAME},
        "StateMachineAliasArn": {"Value": {"Ref": "AliasArn"}},
    },
}


@dataclass
class World:
    ledger: Ledger
    machine: str  # what the stack's StateMachineAliasArn output names
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # Step Functions calls trainctl made

    @property
    def sfn(self) -> Any:
        return boto3.client("stepfunctions", region_name="us-east-1")

    def execution(self, name: str) -> str:
        return str(self.sfn.start_execution(stateMachineArn=self.machine, name=name, input="{}")["executionArn"])


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with mock_aws():  # executions stay RUNNING until stopped: no interpreter, no wall time
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = train_machine(sfn)
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        cloudformation.create_stack(
            StackName="release-train",
            TemplateBody=json.dumps(OPS_TEMPLATE),
            Parameters=[{"ParameterKey": "AliasArn", "ParameterValue": machine}],
        )
        outputs = cloudformation.describe_stacks(StackName="release-train")["Stacks"][0]["Outputs"]
        bucket = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "ConfigBucketName")
        boto3.client("s3", region_name="us-east-1").put_object(Bucket=bucket, Key="fleet.yaml", Body=FLEET_TEXT)
        state = World(Ledger(create_ledger_table()), machine)

        real_session = cli._session

        def session(profile: str | None, region: str | None) -> Any:
            made = real_session(profile, region)

            def capture(params: dict[str, Any], model: Any, **_: Any) -> None:
                state.calls.append((model.name, dict(params)))

            made.events.register("provide-client-params.stepfunctions.*", capture)
            return made

        monkeypatch.setattr(cli, "_session", session)
        monkeypatch.setattr(cli, "_now", lambda: NOW)
        monkeypatch.setattr(convention.out, "width", 240)  # a wide terminal: rows stay whole for the asserts
        yield state


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _json(*args: str) -> tuple[int, dict[str, Any], str]:
    code, stdout, stderr = _run(*args, "--output", "json")
    return code, json.loads(stdout), stderr


def _release(
    world: World,
    release_id: str = "2026-W48",
    created: str = "2026-11-23T09:00:00+00:00",
    *,
    lock: bool = True,
) -> str:
    arn = world.execution(release_id)
    record = ReleaseRecord(
        release_id, "acme-shop", Status.RUNNING, "planned", arn, created, stages=["staging", "prod"],
        requested_by="schedule",
    )  # fmt: skip
    assert world.ledger.create_release(record, pinned_fleet=FLEET.model_dump(mode="json"))
    entries = [ManifestEntry(s.name, f"{s.name}-new", f"{s.name}-old", s.wave, "codecommit") for s in FLEET.services]
    world.ledger.put_manifest(release_id, entries)
    if lock:
        assert world.ledger.acquire_lock("acme-shop", release_id, arn, NOW) is None
    return arn


def _wave(world: World, release_id: str, stage: str, wave: int, failed: tuple[str, ...] = ()) -> None:
    """A wave started and recorded, as LoadWave and RecordWave leave it."""
    world.ledger.add_event(release_id, "wave_started", {"stage": stage, "wave": wave}, NOW)
    builds = [
        BuildRecord(stage, s.name, "FAILED" if s.name in failed else "SUCCEEDED", f"b-{s.name}", f"{s.name}-new", wave)
        for s in FLEET.services
        if s.wave == wave
    ]
    world.ledger.record_builds(release_id, builds)
    world.ledger.add_event(release_id, "wave_recorded", {"stage": stage, "wave": wave, "failed": list(failed)}, NOW)


def _waiting_for_prod_approval(world: World, release_id: str = "2026-W48") -> None:
    for wave in (1, 2, 3):
        _wave(world, release_id, "staging", wave)
    world.ledger.put_gate(release_id, "staging", "PROMOTE", [], {"stage": "staging"})
    world.ledger.add_event(release_id, "gate", {"stage": "staging", "verdict": "PROMOTE"}, NOW)
    world.ledger.put_approval(
        release_id, ApprovalRecord("prod", "PENDING", "secret-task-token", "2026-11-23T09:40:00+00:00"), {}
    )
    world.ledger.add_event(release_id, "approval_requested", {"stage": "prod"}, NOW)


# --- status ----------------------------------------------------------------------------------------------------------


def test_given_a_train_building_when_status_is_asked_then_stage_wave_and_builds_per_wave_come_from_the_ledger(
    world: World,
) -> None:
    _release(world)
    _wave(world, "2026-W48", "staging", 1)
    _wave(world, "2026-W48", "staging", 2, failed=("orders",))
    world.ledger.add_event("2026-W48", "wave_started", {"stage": "staging", "wave": 3}, NOW)

    code, doc, stderr = _json("status")

    assert (code, stderr) == (0, "")
    running = doc["running"]
    assert (running["release_id"], running["stage"], running["wave"]) == ("2026-W48", "staging", 3)
    staging = running["stages"][0]
    assert staging["state"] == "building wave 3"
    assert [(w["wave"], w["state"], w["running"], w["succeeded"], w["failed"]) for w in staging["waves"]] == [
        (1, "done", 0, 2, 0),
        (2, "done", 0, 1, 1),
        (3, "building", 2, 0, 0),
    ]
    assert staging["waves"][1]["failed_services"] == ["orders"]
    assert running["stages"][1]["state"] == "not started"
    assert doc["next_train"]["next_fire"] == "2026-11-30T09:00:00+00:00"
    assert doc["next_train"]["expression"] == "cron(0 9 ? * MON *)"


def test_given_a_train_waiting_for_approval_when_status_is_asked_then_it_names_who_may_answer_and_what_is_live(
    world: World,
) -> None:
    _release(world)
    _waiting_for_prod_approval(world)
    world.ledger.set_live(
        "acme-shop",
        [
            Live("prod", "identity", "identity-old", "2026-W47", "build"),
            Live("prod", "orders", "unknown", None, "aliases not observed"),
        ],
    )

    code, doc, _ = _json("status")

    assert code == 0
    assert doc["running"]["pending_approvals"] == [
        {"stage": "prod", "requested_at": "2026-11-23T09:40:00+00:00", "approvers": [APPROVER]}
    ]
    assert doc["running"]["stages"][1]["state"] == "waiting for approval"
    assert "secret-task-token" not in json.dumps(doc)  # the token answers the approval: never shown
    assert [(r["service"], r["commit"]) for r in doc["live"]["prod"]] == [
        ("identity", "identity-old"),
        ("orders", "unknown"),
    ]

    code, table, _ = _run("status")
    assert code == 0
    assert "PENDING" in table and APPROVER in table and "next train: 2026-11-30T09:00:00+00:00" in table
    assert "1 from 2026-W47" in table and "orders" in table


def test_given_staging_all_recorded_when_status_is_asked_then_the_bake_left_is_shown(world: World) -> None:
    _release(world)
    for wave in (1, 2, 3):
        _wave(world, "2026-W48", "staging", wave)

    _, doc, _ = _json("status")

    staging = doc["running"]["stages"][0]
    assert staging["state"] == "testing and baking"
    # staging bakes P2D from the last recorded wave (NOW): all of it is left
    assert staging["bake"] == {
        "started_at": "2026-11-23T10:00:00+00:00",
        "ends_at": "2026-11-25T10:00:00+00:00",
        "left_s": 172800,
    }


def test_given_no_train_when_status_is_asked_then_it_says_so_and_shows_the_last_release(world: World) -> None:
    _release(world, lock=False)
    world.ledger.close_release("2026-W48", Status.SUCCEEDED, "all stages promoted", NOW)

    code, stdout, _ = _run("status")

    assert code == 0
    assert "no train running" in stdout and "2026-W48: SUCCEEDED" in stdout


def test_given_a_schedule_in_the_stacks_parameters_when_status_is_asked_then_its_zone_is_used(world: World) -> None:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    cloudformation.create_stack(
        StackName="berlin",
        TemplateBody=json.dumps(OPS_TEMPLATE),
        Parameters=[
            {"ParameterKey": "AliasArn", "ParameterValue": world.machine},
            {"ParameterKey": "ScheduleExpression", "ParameterValue": "cron(30 7 ? * 3 *)"},
            {"ParameterKey": "ScheduleTimezone", "ParameterValue": "Europe/Berlin"},
        ],
    )
    boto3.client("s3", region_name="us-east-1")  # the berlin stack has its own (empty) bucket: name the fleet

    code, doc, _ = _json("status", "--stack", "berlin", "--fleet", "acme-shop")

    assert code == 0
    assert doc["next_train"]["next_fire"] == "2026-11-24T07:30:00+01:00"  # 3 = Tuesday


def test_given_only_table_and_fleet_and_no_stack_when_status_is_asked_then_the_schedule_is_unknown_not_an_error(
    world: World,
) -> None:
    code, doc, _ = _json("status", "--stack", "gone", "--table", TABLE_NAME, "--fleet", "acme-shop")

    assert code == 0
    assert doc["next_train"]["next_fire"] is None and "cannot read stack gone" in doc["next_train"]["note"]


def test_given_no_such_stack_when_status_is_asked_then_exit_3_in_one_line(world: World) -> None:
    code, stdout, stderr = _run("status", "--stack", "gone")

    assert (code, stdout) == (3, "")
    assert stderr.count("\n") == 1 and "cannot read stack gone" in stderr and "--stack" in stderr


def test_given_no_fleet_in_the_bucket_when_status_is_asked_then_exit_3_says_to_push_one(world: World) -> None:
    boto3.client("s3", region_name="us-east-1").delete_object(
        Bucket=_bucket(), Key="fleet.yaml"
    )  # the stack's fleet file is gone

    code, _, stderr = _run("status")

    assert code == 3 and "trainctl fleet push" in stderr and "Traceback" not in stderr


def _bucket() -> str:
    outputs = boto3.client("cloudformation", region_name="us-east-1").describe_stacks(StackName="release-train")
    return next(o["OutputValue"] for o in outputs["Stacks"][0]["Outputs"] if o["OutputKey"] == "ConfigBucketName")


def test_given_a_running_train_when_watched_then_it_refreshes_until_it_ends_and_exits_by_how_it_ended(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _release(world)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:  # one refresh: the train ends while we "wait"
        pauses.append(seconds)
        world.ledger.close_release("2026-W48", Status.FAILED, "staging wave 2: 1 of 2 builds failed", NOW)

    monkeypatch.setattr(cli, "_sleep", sleep)

    code, doc, stderr = _json("status", "--watch", "--interval", "5")

    assert pauses == [5.0]
    assert code == 1 and "2026-W48 ended FAILED" in stderr
    assert doc["running"]["status"] == "FAILED"  # one document: the last one read


def test_given_a_train_that_succeeds_when_watched_then_exit_0(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    _release(world)
    monkeypatch.setattr(
        cli, "_sleep", lambda _: world.ledger.close_release("2026-W48", Status.SUCCEEDED, "all stages promoted", NOW)
    )

    code, stdout, _ = _run("status", "--watch")

    assert code == 0 and stdout.count("2026-W48") >= 2  # shown before and after the refresh


def test_given_nothing_running_when_watched_then_it_shows_once_and_says_there_is_nothing_to_watch(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_sleep", lambda _: pytest.fail("nothing to wait for"))

    code, _, stderr = _run("status", "--watch")

    assert code == 0 and "nothing to watch" in stderr


def test_given_the_watch_loop_when_run_then_one_iteration_reads_shows_and_pauses_once() -> None:
    docs = iter(
        [
            {"running": {"release_id": "r1", "status": "RUNNING"}},
            {"running": {"release_id": "r1", "status": "RUNNING"}},
            {"running": None},
        ]
    )
    shown: list[Any] = []
    pauses: list[float] = []

    watched = watch_release(lambda: next(docs), shown.append, pauses.append, 2.0, max_refreshes=1)

    assert (watched.release_id, watched.refreshes, len(shown), pauses) == ("r1", 1, 2, [2.0])


# --- history, show ---------------------------------------------------------------------------------------------------


def test_given_releases_when_history_is_asked_then_newest_first_with_status_reason_and_duration(world: World) -> None:
    _release(world, "2026-W47", "2026-11-16T09:00:00+00:00", lock=False)
    world.ledger.close_release(
        "2026-W47", Status.BLOCKED, "gate staging: alarm [staging-5xx] fired", datetime(2026, 11, 18, 11, tzinfo=UTC)
    )
    _release(world, "2026-W48")

    code, doc, _ = _json("history", "-n", "5")

    assert code == 0
    assert [(r["release_id"], r["status"], r["duration_s"]) for r in doc["releases"]] == [
        ("2026-W48", "RUNNING", 3600),
        ("2026-W47", "BLOCKED", 2 * 86400 + 2 * 3600),
    ]
    code, stdout, _ = _run("history")
    assert code == 0 and "alarm [staging-5xx] fired" in stdout and "2d 2h" in stdout


def test_given_a_release_when_shown_then_manifest_waves_builds_gates_approvals_with_identity_and_events(
    world: World,
) -> None:
    _release(world)
    _waiting_for_prod_approval(world)
    world.ledger.decide_approval("2026-W48", "prod", "APPROVED", "Rita", "ship it", identity=APPROVER + "/rita")

    code, doc, _ = _json("show", "2026-W48")

    assert code == 0
    assert doc["release"]["release_id"] == "2026-W48"
    assert [w["wave"] for w in doc["waves"]] == [1, 2, 3] and len(doc["manifest"]) == 6
    assert len(doc["builds"]) == 6 and {b["status"] for b in doc["builds"]} == {"SUCCEEDED"}
    assert doc["gates"][0]["verdict"] == "PROMOTE"
    [approval] = doc["approvals"]
    assert (approval["status"], approval["decided_by"], approval["identity"]) == (
        "APPROVED",
        "Rita",
        APPROVER + "/rita",
    )
    assert "task_token" not in approval
    assert [e["kind"] for e in doc["events"]][:2] == ["wave_started", "wave_recorded"]

    code, stdout, _ = _run("show", "2026-W48")
    assert code == 0 and "APPROVED by Rita" in stdout and "manifest" in stdout and "events" in stdout


def test_given_an_unknown_release_when_shown_then_exit_3_says_how_to_find_one(world: World) -> None:
    code, stdout, stderr = _run("show", "2026-W01")

    assert (code, stdout) == (3, "")
    assert "release 2026-W01 is not in the ledger" in stderr and "trainctl history" in stderr


# --- cancel ----------------------------------------------------------------------------------------------------------


def test_given_a_running_release_when_cancelled_by_id_then_its_execution_is_stopped_with_reason_and_identity(
    world: World,
) -> None:
    arn = _release(world)

    code, doc, _ = _json("cancel", "2026-W48", "--reason", "bad canary in identity")

    assert code == 0 and doc["execution_arn"] == arn
    assert world.sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    [stop] = [params for name, params in world.calls if name == "StopExecution"]
    assert stop == {
        "executionArn": arn,
        "error": "OperatorCancelled",
        "cause": f"bad canary in identity (cancelled by {MOTO_CALLER})",
    }


def test_given_an_execution_arn_when_cancelled_then_it_still_works(world: World) -> None:
    arn = world.execution("train-1")

    code, stdout, _ = _run("cancel", arn, "--reason", "wrong week")

    assert code == 0 and "stop requested" in stdout
    assert world.sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"


def test_given_an_ended_release_when_cancelled_then_exit_1_says_nothing_was_stopped(world: World) -> None:
    arn = _release(world)
    world.sfn.stop_execution(executionArn=arn)

    code, _, stderr = _run("cancel", "2026-W48", "--reason", "x")

    assert code == 1 and "already ABORTED" in stderr and "nothing to stop" in stderr


@pytest.mark.parametrize(
    ("args", "exit_code", "says"),
    [
        (("cancel", "2026-W01", "--reason", "x"), 3, "not in the ledger"),
        (("cancel", "2026-W48", "--reason", "  "), 2, "--reason is empty"),
        (("cancel", "2026-W48", "--reason", "x" * 33_000), 2, "at most 32,768"),
        (("cancel", "2026-W48"), 2, "Missing option '--reason'"),
        (("cancel", "arn:aws:states:us-east-1:123456789012:execution:ReleaseTrain-rt:nope", "--reason", "x"), 3, ""),
    ],
)
def test_given_a_bad_cancel_when_run_then_one_line_and_the_exit_code_tells_the_kind(
    world: World, args: tuple[str, ...], exit_code: int, says: str
) -> None:
    _release(world)

    code, stdout, stderr = _run(*args)

    assert (code, says in stderr, "Traceback" in stderr, stdout) == (exit_code, True, False, "")
    assert world.sfn.describe_execution(executionArn=world.ledger.release("2026-W48").execution_arn)["status"] == (  # type: ignore[union-attr]
        "RUNNING"
    )


# --- start -----------------------------------------------------------------------------------------------------------


def _started_input(world: World) -> dict[str, Any]:
    [params] = [params for name, params in world.calls if name == "StartExecution"]
    assert params["stateMachineArn"] == world.machine  # the stack's StateMachineAliasArn output
    return dict(json.loads(params["input"]))


def test_given_no_train_when_started_then_the_alias_gets_the_manual_input_with_who_and_why(world: World) -> None:
    code, doc, _ = _json("start", "--services", "orders,payments", "--reason", "hotfix INC-42")

    assert code == 0
    sent = _started_input(world)
    assert sent == {
        "trigger": "manual",
        "services": ["orders", "payments"],
        "requested_by": f"{MOTO_CALLER}: hotfix INC-42",
        "release_id": doc["release_id"],
    }
    assert doc["release_id"].startswith("2026-W48-manual-")
    assert world.sfn.describe_execution(executionArn=doc["execution_arn"])["input"] == json.dumps(sent)


@pytest.mark.parametrize(
    ("flags", "services"), [(("--all",), "all"), ((), "changed"), (("--release-id", "hotfix-1"), "changed")]
)
def test_given_start_options_when_started_then_the_services_field_follows_them(
    world: World, flags: tuple[str, ...], services: str
) -> None:
    code, doc, _ = _json("start", "--reason", "r", *flags)

    assert code == 0 and _started_input(world)["services"] == services
    if "--release-id" in flags:
        assert doc["release_id"] == "hotfix-1"


def test_given_a_train_building_when_started_then_exit_1_names_it_and_nothing_starts(world: World) -> None:
    _release(world)

    code, _, stderr = _run("start", "--reason", "r")

    assert code == 1 and "release 2026-W48 is running" in stderr and "trainctl cancel 2026-W48" in stderr
    assert [name for name, _ in world.calls if name == "StartExecution"] == []


def test_given_a_train_building_when_started_with_supersede_then_it_is_still_refused(world: World) -> None:
    _release(world)

    code, _, stderr = _run("start", "--reason", "r", "--supersede")

    assert code == 1 and "replaces only a train waiting for an approval" in stderr


def test_given_a_train_waiting_for_approval_when_started_then_only_supersede_lets_it_through(world: World) -> None:
    _release(world)
    _waiting_for_prod_approval(world)

    code, _, stderr = _run("start", "--reason", "r")
    assert code == 1 and "waiting for the prod approval" in stderr and "--supersede" in stderr

    code, doc, _ = _json("start", "--reason", "r", "--supersede")
    assert code == 0 and doc["supersedes"] == "2026-W48"
    # The CLI only starts: PlanRelease marks the approval SUPERSEDED and stops the old execution (ADR 0004).
    assert world.ledger.approval("2026-W48", "prod").status == "PENDING"  # type: ignore[union-attr]


def test_given_a_lock_whose_release_ended_when_started_then_it_starts(world: World) -> None:
    _release(world)
    world.ledger.close_release("2026-W48", Status.CANCELLED, "execution ABORTED", NOW)

    code, _, _ = _run("start", "--reason", "r")

    assert code == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--services", "orders", "--all"), "exclude each other"),
        (("--services", "orders,nope"), "not in fleet acme-shop: nope"),
        (("--services", ","), "names no service"),
        (("--release-id", "bad id!"), "release_id"),
        (("--release-id", "2026-W48"), None),  # exists: exit 1, below
    ],
)
def test_given_bad_start_input_when_started_then_exit_2_names_it(
    world: World, args: tuple[str, ...], says: str | None
) -> None:
    _release(world, lock=False)
    world.ledger.close_release("2026-W48", Status.SUCCEEDED, "all stages promoted", NOW)

    code, _, stderr = _run("start", "--reason", "r", *args)

    if says is None:
        assert code == 1 and "release 2026-W48 already exists" in stderr
    else:
        assert (code, says in stderr) == (2, True), stderr
    assert [name for name, _ in world.calls if name == "StartExecution"] == []


def test_given_a_stack_without_the_alias_output_when_started_then_exit_3_names_it(world: World) -> None:
    template = {**OPS_TEMPLATE, "Outputs": {k: v for k, v in OPS_TEMPLATE["Outputs"].items() if "Alias" not in k}}  # type: ignore[attr-defined]
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="old",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "AliasArn", "ParameterValue": world.machine}],
    )
    outputs = boto3.client("cloudformation", region_name="us-east-1").describe_stacks(StackName="old")
    bucket = next(o["OutputValue"] for o in outputs["Stacks"][0]["Outputs"] if o["OutputKey"] == "ConfigBucketName")
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=bucket, Key="fleet.yaml", Body=FLEET_TEXT)

    code, _, stderr = _run("start", "--reason", "r", "--stack", "old")

    assert code == 3 and "has no output StateMachineAliasArn" in stderr


# --- start --skip-bake: break glass through the stack's BreakGlass URL --------------------------------------------


def _break_glass_stack(world: World, url: str) -> None:
    """The release-train stack as AllowBreakGlass=true leaves it: one more output, BreakGlassUrl."""
    template = json.loads(json.dumps(OPS_TEMPLATE))
    template["Parameters"]["BreakGlassUrl"] = {"Type": "String"}
    template["Outputs"]["BreakGlassUrl"] = {"Value": {"Ref": "BreakGlassUrl"}}
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    cloudformation.create_stack(
        StackName="bg",
        TemplateBody=json.dumps(template),
        Parameters=[
            {"ParameterKey": "AliasArn", "ParameterValue": world.machine},
            {"ParameterKey": "BreakGlassUrl", "ParameterValue": url},
        ],
    )
    outputs = cloudformation.describe_stacks(StackName="bg")["Stacks"][0]["Outputs"]
    bucket = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "ConfigBucketName")
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=bucket, Key="fleet.yaml", Body=FLEET_TEXT)


REASON = "INC-4711: checkout returns 500"


def test_given_a_stack_without_break_glass_when_started_with_skip_bake_then_exit_1_says_so_and_nothing_starts(
    world: World,
) -> None:
    code, _, stderr = _run("start", "--reason", REASON, "--skip-bake")

    assert code == 1 and "does not allow break glass (its AllowBreakGlass parameter is false)" in stderr
    assert [name for name, _ in world.calls if name == "StartExecution"] == []


def test_given_break_glass_when_started_with_skip_bake_then_the_signed_request_goes_to_the_url_not_step_functions(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with loopback_server() as url:
        _break_glass_stack(world, url.base_url + "/")
        # The BreakGlass function's 200 body (functions/break_glass/app.py; its keys are held in test_break_glass.py).
        grant = {"identity": MOTO_CALLER, "reason": REASON, "skip": ["bake"], "execution_name": "breakglass-abc"}
        url.route(
            "POST",
            "/",
            200,
            {"release_id": "2026-W48-manual-abc", "execution_arn": f"{world.machine}:breakglass-abc", "grant": grant},
        )

        code, doc, _ = _json("start", "--services", "orders", "--reason", REASON, "--skip-bake", "--stack", "bg")

    assert code == 0
    assert (doc["release_id"], doc["break_glass"]["identity"]) == ("2026-W48-manual-abc", MOTO_CALLER)
    [sent] = url.requests
    assert json.loads(sent.body) == {"action": "start", "skip": ["bake"], "reason": REASON, "services": ["orders"]}
    assert "/lambda/aws4_request" in sent.headers["Authorization"]  # SigV4 for Lambda: the URL's AWS_IAM auth
    assert [name for name, _ in world.calls if name == "StartExecution"] == []  # the function starts it, not us


@pytest.mark.parametrize(
    ("status", "body", "exit_code", "says"),
    [
        (403, {"Message": "Forbidden"}, 1, "refused (403)"),
        (400, {"error": "the request is invalid", "problems": ["reason: too short"]}, 2, "reason: too short"),
        (502, {"error": "the train did not start: ExecutionAlreadyExists"}, 3, "ExecutionAlreadyExists"),
    ],
    ids=["no-break-glass-permission", "invalid", "start-failed"],
)
def test_given_break_glass_refused_when_started_with_skip_bake_then_the_exit_code_says_why(
    world: World, status: int, body: dict[str, Any], exit_code: int, says: str
) -> None:
    with loopback_server() as url:
        _break_glass_stack(world, url.base_url + "/")
        url.route("POST", "/", status, body)

        code, _, stderr = _run("start", "--reason", REASON, "--skip-bake", "--stack", "bg")

    assert (code, says in stderr, "Traceback" in stderr) == (exit_code, True, False), stderr


def test_given_a_short_reason_when_breaking_glass_then_exit_2_before_any_request(world: World) -> None:
    with loopback_server() as url:
        _break_glass_stack(world, url.base_url + "/")

        code, _, stderr = _run("start", "--reason", "hotfix", "--skip-bake", "--stack", "bg")

    assert code == 2 and "at least 10 characters" in stderr and url.requests == []


# --- hold, with the stack's table and fleet ------------------------------------------------------------------------


def test_given_the_stack_when_a_hold_is_set_then_table_and_fleet_come_from_it_and_json_says_who(world: World) -> None:
    code, doc, _ = _json("hold", "--reason", "INC-9 [sev2]", "--by", "oncall")

    assert code == 0
    assert doc == {
        "fleet": "acme-shop",
        "scope": "*",
        "action": "hold_put",
        "reason": "INC-9 [sev2]",
        "by": "oncall",
        "identity": MOTO_CALLER,
    }
    assert [h.reason for h in world.ledger.holds("acme-shop")] == ["INC-9 [sev2]"]
    _, doc, _ = _json("status")
    assert doc["holds"][0]["reason"] == "INC-9 [sev2]"


def test_given_a_hold_when_unhold_runs_then_it_is_lifted_and_the_audit_says_who_and_why(world: World) -> None:
    _json("hold", "--scope", "orders", "--reason", "INC-9", "--by", "oncall")

    code, doc, _ = _json("unhold", "--scope", "orders", "--reason", "INC-9 resolved", "--by", "rita")

    assert (code, doc["action"], doc["identity"]) == (0, "hold_removed", MOTO_CALLER)
    assert world.ledger.holds("acme-shop") == []
    lifted = world.ledger.audit("acme-shop")[-1]
    assert (lifted["action"], lifted["reason"], lifted["by"], lifted["was"]) == (
        "hold_removed",
        "INC-9 resolved",
        "rita",
        "INC-9",
    )


# --- AWS errors: one line, exit 3 -----------------------------------------------------------------------------------


def test_given_no_credentials_when_any_aws_command_runs_then_exit_3_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    without_credentials(monkeypatch, tmp_path)

    commands = [("status",), ("history",), ("show", "r"), ("cancel", "r", "--reason", "x"), ("start", "--reason", "x")]
    for args in commands:
        code, stdout, stderr = _run(*args)
        assert (code, stdout, "Traceback" in stderr) == (3, "", False), (args, stderr)
        assert "no AWS credentials found" in stderr and stderr.count("\n") == 1, stderr


def test_given_an_unknown_profile_when_run_then_exit_3_names_the_option() -> None:
    code, _, stderr = _run("history", "--profile", "no-such-profile")

    assert code == 3 and "--profile" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("AccessDeniedException", "AWS denied Query to your identity"),
        ("ResourceNotFoundException", "Query: Requested resource not found: check the name"),
        ("ExpiredTokenException", "did not accept your credentials"),
        ("ThrottlingException", "AWS error in Query: ThrottlingException"),
    ],
)
def test_given_aws_refuses_a_call_when_history_runs_then_exit_3_in_one_line(
    world: World, monkeypatch: pytest.MonkeyPatch, code: str, says: str
) -> None:
    from botocore.exceptions import ClientError

    message = "Requested resource not found" if code == "ResourceNotFoundException" else f"{code} happened"

    def refuse(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": code, "Message": message}}, "Query")

    monkeypatch.setattr(Ledger, "list_releases", refuse)

    exit_code, stdout, stderr = _run("history")

    assert (exit_code, stdout, says in stderr, stderr.count("\n")) == (3, "", True, 1), stderr
