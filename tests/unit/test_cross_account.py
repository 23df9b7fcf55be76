"""A stage in another account is read and moved there (docs/accounts.md): the use cases on moto in two accounts.

moto keeps accounts apart by the caller's access key (`moto.iam.models.get_account_id_from`; an unknown key, as the
tests' "testing", is `moto.core.DEFAULT_ACCOUNT_ID`, 123456789012: the tools account here), and its STS AssumeRole
mints keys that act in the role's account ("The ARN can point to another account, providing an opportunity to switch
accounts", moto/sts/models.py). So the same function and alarm names exist twice below: in the tools account as a
decoy, in PROD as the stage's; a read or move of the wrong account shows up as the wrong version or state.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from release_train.adapters.aws import CONFIG
from release_train.adapters.ledger import Ledger
from release_train.adapters.stage_clients import StageClients
from release_train.domain.fleet import parse_fleet
from release_train.domain.guardrails import Guardrails
from release_train.services import (
    CleanupService,
    GateService,
    LoadWaveService,
    PlanService,
    RecordFailureService,
    RecordWaveService,
)
from release_train.services.stage_ports import PerAccount
from tests.unit.adapters.ledger_table import create_ledger_table
from tests.unit.test_services import (
    EXEC_A,
    HEADS,
    FakeCodeBuild,
    FakeDeployments,
    FakeExecutions,
    FakeFleets,
    FakeNotifier,
    FakeSources,
    FixedClock,
)

TOOLS = DEFAULT_ACCOUNT_ID
PROD = "333333333333"
RELEASE = "2026-W48"
FUNCTION = "svc-api-prod-fn"
ALARM = "svc-api-prod-5xx"
FLEET = f"""
fleet: acme
defaults:
  project: "train-{{service}}-{{stage}}"
  approvers: ["arn:aws:iam::{TOOLS}:role/ReleaseManager"]
stages:
  - {{name: staging, bake: P2D}}
  - {{name: prod, bake: PT1H, approval: {{required: true}}, account: '{PROD}', alarms: {{prefix: svc-api-prod-}}}}
on_prod_failure: rollback
services:
  - {{name: api, source: {{codecommit: api, branch: release}}, wave: 1,
     deploy: {{functions: ['svc-api-{{stage}}-fn'], canary_stages: [staging, prod]}}}}
"""


@dataclass
class Accounts:
    stages: StageClients
    ledger: Ledger
    clock: FixedClock = field(default_factory=FixedClock)
    notifier: FakeNotifier = field(default_factory=FakeNotifier)
    executions: FakeExecutions = field(default_factory=FakeExecutions)

    def lam(self, account: str) -> Any:
        return self.stages.client(account, "lambda")

    def alias(self, account: str, function: str = FUNCTION) -> str:
        return str(self.lam(account).get_alias(FunctionName=function, Name="live")["FunctionVersion"])

    def functions(self) -> PerAccount[Any]:
        return PerAccount(self.stages.functions)


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


def _function(lam: Any, iam: Any, account: str, name: str, versions: int) -> None:
    """`name` with `versions` published versions (each described with a commit, as the buildspec does) and alias
    `live` on the last."""
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    assert role.split(":")[4] == account
    lam.create_function(
        FunctionName=name, Runtime="python3.13", Role=role, Handler="app.handler", Code={"ZipFile": _zip()}
    )
    for n in range(1, versions + 1):
        lam.update_function_code(FunctionName=name, ZipFile=_zip() + bytes(n))
        lam.publish_version(FunctionName=name, Description=f"release 2026-W{40 + n} commit {str(n) * 40}")
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=str(versions))


def _no_history(cloudwatch: Any) -> None:
    """moto does not implement DescribeAlarmHistory: answer it empty (its documented shape, AlarmHistoryItems) through
    botocore's before-call event, which short-circuits the call with (http response, parsed)."""
    empty = (AWSResponse("https://monitoring", 200, {}, None), {"AlarmHistoryItems": []})
    cloudwatch.meta.events.register("before-call.cloudwatch.DescribeAlarmHistory", lambda **_: empty)


def _alarm(cloudwatch: Any, state: str) -> None:
    _no_history(cloudwatch)
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM,
        MetricName="Errors",
        Namespace="AWS/Lambda",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue=state, StateReason="test")


@pytest.fixture
def accounts() -> Iterator[Accounts]:
    with mock_aws():
        # The wiring's own path: the environment template.yaml gives the functions that read a stage.
        env = {"ACCOUNT_ID": TOOLS, "TARGET_ACCOUNT_ROLE_NAME": "release-train-target",
               "TARGET_ACCOUNT_EXTERNAL_ID": "release-train-rt"}  # fmt: skip
        stages = StageClients.from_environment(env, boto3.client, CONFIG)
        assert stages.client(PROD, "sts").get_caller_identity()["Account"] == PROD
        assert stages.client(None, "sts").get_caller_identity()["Account"] == TOOLS
        world = Accounts(stages, Ledger(create_ledger_table()))
        _function(world.lam(TOOLS), stages.client(TOOLS, "iam"), TOOLS, "svc-api-staging-fn", 1)
        _function(world.lam(TOOLS), stages.client(TOOLS, "iam"), TOOLS, FUNCTION, 5)  # the decoy: alias on 5
        _function(world.lam(PROD), stages.client(PROD, "iam"), PROD, FUNCTION, 1)  # prod's: alias on 1
        yield world


def _planned(world: Accounts) -> None:
    rails = Guardrails.from_parameters({"AllowedTargetAccounts": PROD}, TOOLS)
    fleets = FakeFleets(parse_fleet(FLEET))
    PlanService(world.ledger, fleets, FakeSources(), world.executions, world.notifier, world.clock, rails).plan(
        {"trigger": "schedule", "scheduled_time": world.clock.now().isoformat()}, EXEC_A, "a"
    )


def _deployed_to_prod(world: Accounts) -> None:
    """Both stages' wave 1 through LoadWave and RecordWave; prod's deploy publishes version 2 in PROD."""
    _planned(world)
    loader = LoadWaveService(world.ledger, world.functions(), world.clock)
    recorder = RecordWaveService(world.ledger, world.functions(), world.clock)
    for stage in ("staging", "prod"):
        loader.load(RELEASE, stage, 1)
        if stage == "prod":  # what `sam deploy` in PROD does
            lam = world.lam(PROD)
            lam.update_function_code(FunctionName=FUNCTION, ZipFile=_zip() + b"new")
            lam.publish_version(FunctionName=FUNCTION, Description=f"release {RELEASE} commit {HEADS['api']}")
            lam.update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="2")
        recorder.record_chunk(RELEASE, stage, 1, 0, [{"service": "api", "status": "SUCCEEDED", "build_id": "b"}])
        recorder.record(RELEASE, stage, 1, [{"chunk": 0, "status": "SUCCEEDED"}])


def test_given_a_prod_stage_in_another_account_when_its_wave_runs_then_the_journal_reads_that_accounts_alias(
    accounts: Accounts,
) -> None:
    _deployed_to_prod(accounts)

    [move] = accounts.ledger.alias_moves(RELEASE, "prod")
    assert (move.function, move.before, move.after) == (FUNCTION, "1", "2")  # the decoy is on 5
    live = accounts.ledger.live("acme")["prod"]["api"]
    assert (live.commit, live.how, live.functions) == (HEADS["api"], "aliases", {FUNCTION: "2"})


def test_given_a_failed_release_with_rollback_when_recorded_then_the_prod_accounts_alias_goes_back_only(
    accounts: Accounts,
) -> None:
    _deployed_to_prod(accounts)
    accounts.lam(TOOLS).update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="2")  # as if it were ours

    RecordFailureService(
        accounts.ledger, accounts.executions, accounts.functions(), accounts.notifier, accounts.clock
    ).record_failure(RELEASE, "BLOCKED", {"Error": "GateBlocked", "Cause": "prod: alarm"}, EXEC_A)

    assert accounts.alias(PROD) == "1"
    assert accounts.alias(TOOLS) == "2", "the same-named alias of the tools account is not touched"
    assert accounts.alias(TOOLS, "svc-api-staging-fn") == "1"
    [move] = accounts.ledger.alias_moves(RELEASE, "prod")
    assert move.rolled_back
    assert accounts.ledger.live("acme")["prod"]["api"].how == "rollback"


def test_given_a_prod_stage_in_another_account_when_the_gate_reads_alarms_then_it_reads_that_accounts(
    accounts: Accounts,
) -> None:
    _alarm(accounts.stages.client(PROD, "cloudwatch"), "ALARM")
    _alarm(accounts.stages.client(TOOLS, "cloudwatch"), "OK")  # the decoy would let the gate pass
    _planned(accounts)
    gate = GateService(
        accounts.ledger,
        FakeCodeBuild(),
        PerAccount(accounts.stages.alarms),
        accounts.notifier,
        accounts.clock,
    )

    evidence = gate.collect({"release_id": RELEASE, "stage": {"name": "prod"}})

    assert [(a.name, a.state_now) for a in evidence.alarms or []] == [(ALARM, "ALARM")]


@dataclass
class Budgeted(FakeDeployments):
    budgets: list[float] = field(default_factory=list)

    def wait_ended(self, deployment_ids: list[str], budget_s: float = 120.0) -> dict[str, str]:
        self.budgets.append(budget_s)
        return super().wait_ended(deployment_ids, budget_s)


def test_given_stages_in_two_accounts_when_cleaned_up_then_each_accounts_deployments_are_stopped_there(
    accounts: Accounts,
) -> None:
    """Deployments per account with fakes: moto's CodeDeploy serves no Lambda deployment to list."""
    _deployed_to_prod(accounts)
    per_account = {
        None: Budgeted({"d-STAGING": "svc-api-staging-fn", "d-DECOY": FUNCTION}),
        PROD: Budgeted({"d-PROD": FUNCTION}),
    }
    asked: list[str | None] = []

    def deployments(account: str | None) -> Budgeted:
        asked.append(account)
        return per_account[account]

    result = CleanupService(
        accounts.ledger,
        accounts.executions,
        FakeCodeBuild(),
        PerAccount(deployments),
        accounts.functions(),
        accounts.notifier,
        accounts.clock,
    ).cleanup({"executionArn": EXEC_A, "status": "ABORTED", "cause": "operator"})

    assert asked == [None, PROD]
    assert per_account[None].stopped == ["d-STAGING"], "prod's function in the tools account is not prod's"
    assert per_account[PROD].stopped == ["d-PROD"]
    assert [per_account[None].budgets, per_account[PROD].budgets] == [[60.0], [60.0]], "one 120 s wait, shared"
    assert result["stopped_deployments"] == {"svc-api-staging-fn d-STAGING": "Stopped", f"{FUNCTION} d-PROD": "Stopped"}


def test_given_no_external_id_when_a_stage_in_another_account_is_read_then_the_error_names_the_parameter() -> None:
    stages = StageClients.from_environment({"ACCOUNT_ID": TOOLS}, lambda service: f"home {service}", CONFIG)

    assert stages.client(None, "lambda") == "home lambda"
    assert stages.client(TOOLS, "lambda") == "home lambda"
    with pytest.raises(RuntimeError, match=f"a stage is in account {PROD}, but the stack has no TargetAccountExternal"):
        stages.functions(PROD)


def test_given_a_plain_port_when_a_tracker_is_built_then_it_serves_every_account() -> None:
    """One-account stacks and the fakes pass a plain port: every stage gets it."""
    from release_train.services.stage_ports import per_account

    port = object()
    provider = per_account(port)

    assert provider(None) is port and provider(PROD) is port
    assert per_account(provider) is provider
