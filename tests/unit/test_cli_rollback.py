"""`trainctl rollback` against moto Lambda with real published versions and aliases, and the ledger in moto DynamoDB:
order (newest wave first), dry run, refusals, the RevisionId race, canary routing, new functions, partial failure and
re-run, what the ledger records, the JSON document, and exit codes 2 and 3."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from release_train.adapters.ledger import Ledger, ReleaseRecord
from release_train.domain.fleet import parse_fleet
from release_train.domain.live import AliasMove, Live
from release_train.domain.release import ManifestEntry, Status
from tests.unit.adapters.ledger_table import TABLE_NAME, create_ledger_table
from tests.unit.operator_world import without_credentials
from trainctl import cli, convention
from trainctl.cli import main
from trainctl.sandbox import moto_fixes

RELEASE = "2026-W48"
PREVIOUS = "2026-W47"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MOTO_CALLER = "arn:aws:sts::123456789012:user/moto"

# Three waves; `fresh` is a service whose function this release created (its alias had no `before`).
FLEET_TEXT = """
fleet: acme
stages:
  - {name: staging}
  - {name: prod}
services:
  - {name: api, source: {codecommit: api, branch: release}, wave: 1, deploy: {functions: ["svc-api-{stage}-fn"]}}
  - name: web
    source: {codecommit: web, branch: release}
    wave: 2
    deploy: {functions: ["svc-web-{stage}-a", "svc-web-{stage}-b"]}
  - {name: jobs, source: {codecommit: jobs, branch: release}, wave: 3, deploy: {functions: ["svc-jobs-{stage}-fn"]}}
  - {name: fresh, source: {codecommit: fresh, branch: release}, wave: 3, deploy: {functions: ["svc-fresh-{stage}-fn"]}}
"""
FLEET = parse_fleet(FLEET_TEXT)
OLD = {s.name: f"{i:x}" * 40 for i, s in enumerate(FLEET.services, start=1)}  # what ran before: commit per service
NEW = {s.name: f"{i + 10:x}" * 40 for i, s in enumerate(FLEET.services)}  # what this release deployed

STACK_TEMPLATE = {
    "Resources": {"ConfigBucket": {"Type": "AWS::S3::Bucket"}},
    "Outputs": {"LedgerTableName": {"Value": TABLE_NAME}},
}


@dataclass
class World:
    ledger: Ledger
    updates: list[str] = field(default_factory=list)  # functions, in the order trainctl sent UpdateAlias
    before_update: list[Callable[[str], None]] = field(default_factory=list)  # run as each UpdateAlias is sent

    @property
    def lam(self) -> Any:
        return boto3.client("lambda", region_name="us-east-1")

    def alias(self, function: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.lam.get_alias(FunctionName=function, Name="live")
        return answer

    def version(self, function: str) -> str:
        return str(self.alias(function)["FunctionVersion"])

    def move(self, function: str, version: str) -> None:
        """Someone else (a later release, a person) points the alias elsewhere."""
        self.lam.update_alias(FunctionName=function, Name="live", FunctionVersion=version)


def _zip(n: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", f"def handler(event, context):\n    return {n}\n")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _alias_revisions(monkeypatch: pytest.MonkeyPatch) -> None:
    """UpdateAlias with RevisionId as AWS answers it: the sandbox's moto fix 16, here for these tests only."""
    from moto.awslambda import models, responses

    monkeypatch.setattr(models.LambdaAlias, "update", moto_fixes._alias_update)
    monkeypatch.setattr(responses.LambdaResponse, "update_alias", moto_fixes._update_alias_response)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with mock_aws():
        boto3.client("cloudformation", region_name="us-east-1").create_stack(
            StackName="release-train", TemplateBody=json.dumps(STACK_TEMPLATE)
        )
        state = World(Ledger(create_ledger_table()))
        real_session = cli._session

        def session(profile: str | None, region: str | None) -> Any:
            made = real_session(profile, region)

            def sending(params: dict[str, Any], **_: Any) -> None:
                for hook in state.before_update:
                    hook(params["FunctionName"])
                state.updates.append(params["FunctionName"])

            made.events.register("provide-client-params.lambda.UpdateAlias", sending)
            return made

        monkeypatch.setattr(cli, "_session", session)
        monkeypatch.setattr(cli, "_now", lambda: NOW)
        monkeypatch.setattr(convention.out, "width", 240)
        yield state


def _deployed(world: World, stage: str = "prod", status: Status = Status.BLOCKED) -> None:
    """The release deployed every service to `stage` and ended: each function has version 1 (the previous release's
    commit) and 2 (this one's), its `live` alias on 2, the journal says 1 -> 2, and LIVE# says the new commit runs.
    `fresh`'s function is new: only version 1 (this release's), no `before`."""
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(RoleName=f"fn-{uuid.uuid4().hex[:6]}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    record = ReleaseRecord(RELEASE, "acme", Status.RUNNING, "planned", "arn:exec", "2026-11-23T09:00:00+00:00",
                           stages=["staging", "prod"])  # fmt: skip
    assert world.ledger.create_release(record, pinned_fleet=FLEET.model_dump(mode="json"))
    world.ledger.put_manifest(
        RELEASE, [ManifestEntry(s.name, NEW[s.name], OLD[s.name], s.wave, "codecommit") for s in FLEET.services]
    )
    moves, live = [], []
    for service in FLEET.services:
        functions = FLEET.functions_for(service, stage)
        releases = [(RELEASE, NEW)] if service.name == "fresh" else [(PREVIOUS, OLD), (RELEASE, NEW)]
        for function in functions:
            world.lam.create_function(FunctionName=function, Runtime="python3.13", Role=role, Handler="app.handler",
                                      Code={"ZipFile": _zip(0)})  # fmt: skip
            for n, (release, commits) in enumerate(releases, start=1):
                world.lam.update_function_code(FunctionName=function, ZipFile=_zip(n))
                world.lam.publish_version(
                    FunctionName=function, Description=f"release {release} commit {commits[service.name]}"
                )
            after = str(len(releases))
            world.lam.create_alias(FunctionName=function, Name="live", FunctionVersion=after)
            before = None if service.name == "fresh" else "1"
            moves.append(AliasMove(stage, service.name, function, "live", service.wave, before, after))
        old_commit, old_release = (None, None) if service.name == "fresh" else (OLD[service.name], PREVIOUS)
        versions = {f: str(len(releases)) for f in functions}
        live.append(Live(stage, service.name, NEW[service.name], RELEASE, "aliases", versions, old_commit, old_release,
                         "2026-11-23T10:00:00+00:00"))  # fmt: skip
    world.ledger.put_alias_moves(RELEASE, moves)
    world.ledger.set_live("acme", live)
    if status is not Status.RUNNING:
        assert world.ledger.close_release(RELEASE, status, "GateBlocked: prod: alarm", NOW)


ROLLED = ["svc-jobs-prod-fn", "svc-web-prod-a", "svc-web-prod-b", "svc-api-prod-fn"]  # fresh has nothing to go back to


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["rollback", *args])
    return result.exit_code, result.stdout, result.stderr


def _json(*args: str) -> tuple[int, dict[str, Any], str]:
    code, stdout, stderr = _run(*args, "--output", "json")
    return code, json.loads(stdout), stderr


def _versions(world: World) -> dict[str, str]:
    return {f: world.version(f) for f in [*ROLLED, "svc-fresh-prod-fn"]}


def _wave_of(function: str) -> int:
    return next(s.wave for s in FLEET.services if function in FLEET.functions_for(s, "prod"))


# --- the happy path -------------------------------------------------------------------------------------------------


def test_given_a_release_that_moved_prod_aliases_when_rolled_back_then_each_goes_back_newest_wave_first(
    world: World,
) -> None:
    _deployed(world)

    code, stdout, stderr = _run(RELEASE, "--reason", "INC-42 [sev1] checkout errors")

    assert code == 0, stderr
    assert _versions(world) == {**dict.fromkeys(ROLLED, "1"), "svc-fresh-prod-fn": "1"}
    assert sorted(world.updates) == sorted(ROLLED)
    assert [_wave_of(f) for f in world.updates] == [3, 2, 2, 1]  # order sent, not timing: waves descend
    assert "svc-web-prod-a" in stdout and "rolled back" in stdout
    assert "svc-fresh-prod-fn: left on version 1: its alias did not exist before 2026-W48" in stderr


def test_given_a_rollback_when_it_completes_then_the_ledger_records_who_why_each_alias_and_what_is_live(
    world: World,
) -> None:
    _deployed(world)

    code, _, _ = _run(RELEASE, "--reason", "INC-42")

    assert code == 0
    [event] = [e for e in world.ledger.events(RELEASE) if e["kind"] == "rollback"]
    detail = event["detail"]
    assert (detail["stage"], detail["reason"], detail["by"], detail["result"]) == (
        "prod", "INC-42", MOTO_CALLER, "rolled back"
    )  # fmt: skip
    assert "svc-api-prod-fn: 2 -> 1 (rolled back)" in detail["aliases"]
    assert "svc-fresh-prod-fn: 1 -> None (skipped: new function)" in detail["aliases"]
    journal = {m.function: m for m in world.ledger.alias_moves(RELEASE, "prod")}
    assert all(journal[f].rolled_back and journal[f].after == "1" for f in ROLLED)
    assert not journal["svc-fresh-prod-fn"].rolled_back
    prod = world.ledger.live("acme")["prod"]
    assert {s: (prod[s].commit, prod[s].release_id, prod[s].how) for s in ("api", "web", "jobs")} == {
        s: (OLD[s], PREVIOUS, "rollback") for s in ("api", "web", "jobs")
    }
    assert (prod["fresh"].commit, prod["fresh"].how) == (NEW["fresh"], "aliases")  # still the new code, said so


def test_given_a_rollback_when_asked_for_json_then_one_document_lists_each_alias_from_to_and_its_state(
    world: World,
) -> None:
    _deployed(world)

    code, doc, _ = _json(RELEASE, "--reason", "INC-42", "--concurrency", "2")

    assert code == 0
    assert {k: doc[k] for k in ("release_id", "stage", "dry_run", "result", "identity", "refused")} == {
        "release_id": RELEASE,
        "stage": "prod",
        "dry_run": False,
        "result": "rolled back",
        "identity": MOTO_CALLER,
        "refused": [],
    }
    assert doc["aliases"][0] == {
        "wave": 3,
        "service": "fresh",
        "function": "svc-fresh-prod-fn",
        "alias": "live",
        "from": "1",
        "to": None,
        "routing": None,
        "state": "skipped: new function",
        "error": None,
    }
    assert [(a["function"], a["from"], a["to"], a["state"]) for a in doc["aliases"][1:]] == [
        (f, "2", "1", "rolled back") for f in ROLLED
    ]
    assert sorted(r["service"] for r in doc["live"]) == ["api", "jobs", "web"]


def test_given_a_stage_when_named_then_only_that_stage_goes_back(world: World) -> None:
    _deployed(world, stage="staging")

    code, doc, _ = _json(RELEASE, "--stage", "staging", "--reason", "bad build")
    nothing, prod_doc, _ = _json(RELEASE, "--reason", "bad build")  # prod (the default) was never deployed

    assert code == 0 and doc["stage"] == "staging" and world.version("svc-api-staging-fn") == "1"
    assert (nothing, prod_doc["result"], prod_doc["aliases"]) == (0, "nothing to roll back", [])


# --- dry run --------------------------------------------------------------------------------------------------------


def test_given_a_dry_run_then_it_prints_each_change_and_changes_nothing(world: World) -> None:
    _deployed(world)

    code, doc, _ = _json(RELEASE, "--dry-run", "--reason", "checking")
    table_code, stdout, _ = _run(RELEASE, "--dry-run", "--reason", "checking")

    assert (code, table_code, doc["result"], doc["identity"]) == (0, 0, "dry run", None)
    assert [(a["function"], a["wave"], a["from"], a["to"], a["state"]) for a in doc["aliases"][1:]] == [
        (f, _wave_of(f), "2", "1", "would roll back") for f in ROLLED
    ]
    assert "would change" in stdout and "svc-jobs-prod-fn" in stdout
    assert world.updates == [] and _versions(world) == dict.fromkeys([*ROLLED, "svc-fresh-prod-fn"], "2") | {
        "svc-fresh-prod-fn": "1"
    }
    assert not [e for e in world.ledger.events(RELEASE) if e["kind"] == "rollback"]
    assert not any(m.rolled_back for m in world.ledger.alias_moves(RELEASE))


# --- refusals -------------------------------------------------------------------------------------------------------


def test_given_a_later_release_moved_an_alias_when_rolled_back_then_all_is_refused_naming_it(world: World) -> None:
    _deployed(world)
    world.lam.update_function_code(FunctionName="svc-web-prod-b", ZipFile=_zip(9))
    world.lam.publish_version(FunctionName="svc-web-prod-b", Description="release 2026-W49 commit " + "f" * 40)
    world.move("svc-web-prod-b", "3")

    code, _, stderr = _run(RELEASE, "--reason", "INC-42")

    assert code == 1
    assert "svc-web-prod-b (alias live) points to 3, not to 2 as this release left it" in stderr
    assert "nothing changed" in stderr and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert world.updates == [] and world.version("svc-api-prod-fn") == "2"
    assert not [e for e in world.ledger.events(RELEASE) if e["kind"] == "rollback"]
    code, doc, _ = _json(RELEASE, "--reason", "INC-42")
    states = {a["function"]: (a["from"], a["state"]) for a in doc["aliases"]}
    assert (code, doc["result"], states["svc-web-prod-b"], states["svc-api-prod-fn"]) == (
        1, "refused", ("3", "refused"), ("2", "not attempted")
    )  # fmt: skip


def test_given_a_running_release_when_rolled_back_then_exit_1_says_to_cancel_it_first(world: World) -> None:
    _deployed(world, status=Status.RUNNING)

    code, _, stderr = _run(RELEASE, "--reason", "INC-42")

    assert code == 1 and "still running" in stderr and f"trainctl cancel {RELEASE}" in stderr
    assert world.updates == []


# --- races, canaries, partial failure -------------------------------------------------------------------------------


def test_given_an_alias_moved_between_check_and_update_then_its_update_fails_and_is_not_overwritten(
    world: World,
) -> None:
    _deployed(world)
    world.lam.update_function_code(FunctionName="svc-web-prod-a", ZipFile=_zip(9))
    world.lam.publish_version(FunctionName="svc-web-prod-a", Description="hotfix")

    def race(function: str) -> None:
        if function == "svc-web-prod-a" and world.version(function) == "2":
            world.move(function, "3")  # a person moves it after trainctl's GetAlias, before its UpdateAlias

    world.before_update.append(race)

    code, doc, stderr = _json(RELEASE, "--reason", "INC-42")

    assert code == 1 and world.version("svc-web-prod-a") == "3"  # the person's move stands
    states = {a["function"]: (a["state"], a["error"]) for a in doc["aliases"]}
    assert states["svc-web-prod-a"] == ("failed", "moved since the check (UpdateAlias: RevisionId changed)")
    assert states["svc-api-prod-fn"] == ("not attempted", None)  # an older wave waits for the newer one
    assert (states["svc-jobs-prod-fn"][0], world.version("svc-jobs-prod-fn")) == ("rolled back", "1")
    assert "not back: svc-web-prod-a (moved since the check" in stderr and "svc-api-prod-fn (not attempted)" in stderr
    [move] = [m for m in world.ledger.alias_moves(RELEASE, "prod") if m.function == "svc-web-prod-a"]
    assert (move.after, move.rolled_back) == ("2", False)  # the journal keeps what this release deployed

    again, _, stderr = _run(RELEASE, "--reason", "INC-42")  # a re-run sees the stranger's version and refuses

    assert again == 1 and "svc-web-prod-a (alias live) points to 3, not to 2" in stderr
    assert world.version("svc-web-prod-a") == "3"


def test_given_a_half_shifted_canary_when_rolled_back_then_the_routing_config_is_cleared(world: World) -> None:
    _deployed(world)
    world.lam.update_alias(
        FunctionName="svc-api-prod-fn",
        Name="live",
        FunctionVersion="2",
        RoutingConfig={"AdditionalVersionWeights": {"1": 0.3}},
    )

    code, doc, _ = _json(RELEASE, "--reason", "INC-42")

    assert code == 0
    [api] = [a for a in doc["aliases"] if a["function"] == "svc-api-prod-fn"]
    assert (api["from"], api["routing"], api["state"]) == ("2 (+ 1 at 30%)", {"1": 0.3}, "rolled back")
    alias = world.alias("svc-api-prod-fn")
    assert alias["FunctionVersion"] == "1"
    assert not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")


def test_given_an_update_that_fails_when_rolled_back_then_exit_1_lists_what_went_back_and_a_rerun_completes(
    world: World,
) -> None:
    from botocore.exceptions import ClientError

    _deployed(world)
    refused = {"svc-web-prod-b"}

    def conflict(function: str) -> None:
        if function in refused:
            raise ClientError(
                {"Error": {"Code": "ResourceConflictException", "Message": "An update is in progress"}},
                "UpdateAlias",
            )

    world.before_update.append(conflict)

    code, _, stderr = _run(RELEASE, "--reason", "INC-42")

    assert code == 1
    assert "back: svc-jobs-prod-fn, svc-web-prod-a;" in stderr
    assert "not back: svc-web-prod-b (ResourceConflictException: An update is in progress); svc-api-prod-fn" in stderr
    assert (world.version("svc-web-prod-b"), world.version("svc-api-prod-fn")) == ("2", "2")
    prod = world.ledger.live("acme")["prod"]
    assert (prod["jobs"].how, prod["web"].commit) == ("rollback", "unknown")  # web half back: unknown, said so
    [event] = [e for e in world.ledger.events(RELEASE) if e["kind"] == "rollback"]
    assert event["detail"]["result"] == "partial"

    refused.clear()
    world.updates.clear()
    again, doc, _ = _json(RELEASE, "--reason", "INC-42")

    assert again == 0 and doc["result"] == "rolled back"
    assert world.updates == ["svc-web-prod-b", "svc-api-prod-fn"]  # what was already back is not touched again
    states = {a["function"]: a["state"] for a in doc["aliases"]}
    assert states == {
        "svc-fresh-prod-fn": "skipped: new function",
        "svc-jobs-prod-fn": "already back",
        "svc-web-prod-a": "already back",
        "svc-web-prod-b": "rolled back",
        "svc-api-prod-fn": "rolled back",
    }
    assert all(world.version(f) == "1" for f in ROLLED)
    assert {world.ledger.live("acme")["prod"][s].how for s in ("api", "web", "jobs")} == {"rollback"}


def test_given_an_alias_already_back_but_not_journaled_when_rerun_then_it_counts_as_done(world: World) -> None:
    _deployed(world)
    world.move("svc-api-prod-fn", "1")  # an earlier run's UpdateAlias landed; its ledger write never did

    code, doc, _ = _json(RELEASE, "--reason", "INC-42")

    assert code == 0 and "svc-api-prod-fn" not in world.updates
    assert {a["function"]: a["state"] for a in doc["aliases"]}["svc-api-prod-fn"] == "already back"
    [move] = [m for m in world.ledger.alias_moves(RELEASE, "prod") if m.function == "svc-api-prod-fn"]
    assert move.rolled_back


# --- bad input: exit 2; AWS and not found: exit 3 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((RELEASE, "--stage", "qa", "--reason", "x"), "--stage 'qa': release 2026-W48 has stages staging, prod"),
        ((RELEASE, "--reason", "  "), "--reason is empty"),
        ((RELEASE,), "Missing option '--reason'"),
        ((RELEASE, "--reason", "x", "--concurrency", "0"), "--concurrency"),
    ],
)
def test_given_bad_input_when_rolled_back_then_exit_2_names_the_field_and_nothing_changes(
    world: World, args: tuple[str, ...], says: str
) -> None:
    _deployed(world)

    code, stdout, stderr = _run(*args)

    assert (code, stdout, says in stderr, "Traceback" in stderr) == (2, "", True, False), stderr
    assert world.updates == [] and world.version("svc-api-prod-fn") == "2"


def test_given_an_unknown_release_when_rolled_back_then_exit_3_says_how_to_find_one(world: World) -> None:
    code, stdout, stderr = _run("2020-W01", "--reason", "x")

    assert (code, stdout) == (3, "") and "not in the ledger" in stderr and "trainctl history" in stderr


def test_given_no_credentials_when_rolled_back_then_exit_3_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    without_credentials(monkeypatch, tmp_path)

    code, stdout, stderr = _run(RELEASE, "--reason", "x")

    assert (code, stdout, "Traceback" in stderr) == (3, "", False)
    assert "no AWS credentials found" in stderr and stderr.count("\n") == 1
