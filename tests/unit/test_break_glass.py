"""Break glass: a grant PlanRelease honours only when signed by the stack's key, for this execution, and fresh; the
BreakGlass function audits before it starts anything; an override never reaches the approval.

The domain's edges use a local HMAC with the same contract as the KMS adapter (sign/verify); the adapter and the
function run against moto's KMS with an HMAC_256 key, as the stack creates it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from release_train.adapters import aws
from release_train.adapters.ledger import Ledger
from release_train.adapters.mac import KmsMac
from release_train.domain.break_glass import CLOCK_SKEW, GRANT_LIFETIME, BreakGlass, Grant, honour
from release_train.domain.errors import InvalidInput
from release_train.services import PlanService
from tests.conftest import FakeLambdaContext
from tests.unit.adapters.ledger_table import all_items
from tests.unit.test_handlers import handler_module
from tests.unit.test_services import MONDAY, World

ACCOUNT = "123456789012"
CAROL = f"arn:aws:sts::{ACCOUNT}:assumed-role/ReleaseManager/carol"
NAME = "breakglass-0123456789ab"
EXEC_BG = f"arn:aws:states:us-east-1:{ACCOUNT}:execution:ReleaseTrain-rt:{NAME}"
REASON = "INC-4711: checkout returns 500 for every card payment"


class LocalMac:
    """sign/verify as KmsMac, with a key in memory: for the domain's edges, not for what KMS answers."""

    def __init__(self, key: bytes = b"the stack's key") -> None:
        self._key = key

    def sign(self, message: bytes) -> str:
        return base64.b64encode(hmac.new(self._key, message, hashlib.sha256).digest()).decode()

    def verify(self, message: bytes, mac: str) -> bool:
        return hmac.compare_digest(self.sign(message), mac)


def _grant(**changes: Any) -> Grant:
    fields: dict[str, Any] = {
        "execution_name": NAME,
        "identity": CAROL,
        "reason": REASON,
        "skip": ("bake",),
        "issued_at": MONDAY,
    }
    return Grant(**{**fields, **changes})


def _signed(grant: Grant, mac: LocalMac | None = None) -> BreakGlass:
    return BreakGlass(grant=grant, mac=(mac or LocalMac()).sign(grant.message()))


# --- the domain: which grants are honoured ---------------------------------------------------------------------------


def test_given_a_grant_signed_for_this_execution_when_honoured_then_it_is_returned() -> None:
    assert honour(_signed(_grant()), LocalMac(), NAME, MONDAY) == _grant()


def test_given_a_stack_without_break_glass_when_a_grant_arrives_then_it_is_refused_naming_the_parameter() -> None:
    with pytest.raises(InvalidInput, match=r"AllowBreakGlass=false"):
        honour(_signed(_grant()), None, NAME, MONDAY)


def test_given_a_grant_signed_with_another_key_when_honoured_then_it_is_refused() -> None:
    forged = _signed(_grant(), LocalMac(b"someone else's key"))

    with pytest.raises(InvalidInput, match="signature does not verify"):
        honour(forged, LocalMac(), NAME, MONDAY)


@pytest.mark.parametrize(
    "edit",
    [
        {"reason": "a different reason, typed after signing"},
        {"identity": f"arn:aws:iam::{ACCOUNT}:user/mallory"},
        {"execution_name": "breakglass-ffffffffffff"},
        {"issued_at": MONDAY + timedelta(seconds=1)},
    ],
    ids=["reason", "identity", "execution", "issued_at"],
)
def test_given_a_signed_grant_when_one_field_is_edited_then_its_signature_no_longer_verifies(
    edit: dict[str, Any],
) -> None:
    original = _signed(_grant())
    edited = BreakGlass(grant=_grant(**edit), mac=original.mac)

    with pytest.raises(InvalidInput, match="signature does not verify"):
        honour(edited, LocalMac(), edited.grant.execution_name, MONDAY)


def test_given_a_grant_for_another_execution_when_this_one_presents_it_then_it_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"issued for execution breakglass-0123456789ab, not breakglass-aaaa"):
        honour(_signed(_grant()), LocalMac(), "breakglass-aaaaaaaaaaaa", MONDAY)


def test_given_a_grant_exactly_at_its_lifetime_then_it_is_honoured_and_one_second_later_it_has_expired() -> None:
    assert honour(_signed(_grant()), LocalMac(), NAME, MONDAY + GRANT_LIFETIME).execution_name == NAME

    with pytest.raises(InvalidInput, match="expired"):
        honour(_signed(_grant()), LocalMac(), NAME, MONDAY + GRANT_LIFETIME + timedelta(seconds=1))


def test_given_a_grant_issued_ahead_of_the_clock_then_the_skew_is_tolerated_and_one_second_more_is_not() -> None:
    assert honour(_signed(_grant(issued_at=MONDAY + CLOCK_SKEW)), LocalMac(), NAME, MONDAY).execution_name == NAME

    ahead = _signed(_grant(issued_at=MONDAY + CLOCK_SKEW + timedelta(seconds=1)))
    with pytest.raises(InvalidInput, match="in the future"):
        honour(ahead, LocalMac(), NAME, MONDAY)


@pytest.mark.parametrize(
    ("field", "value"),
    [("skip", ("approval",)), ("skip", ()), ("reason", "hotfix"), ("execution_name", "manual-0123456789ab")],
    ids=["approval-is-never-skippable", "nothing-to-skip", "reason-too-short", "not-a-break-glass-name"],
)
def test_given_a_grant_outside_what_break_glass_may_do_when_built_then_it_is_invalid(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        _grant(**{field: value})


# --- the KMS adapter (moto's KMS, an HMAC_256 key as the stack creates) ----------------------------------------------


@pytest.fixture
def hmac_key() -> Iterator[str]:
    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        yield str(kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"])


def test_given_an_hmac_key_when_a_message_is_signed_then_only_that_message_verifies(hmac_key: str) -> None:
    mac = KmsMac(boto3.client("kms", region_name="us-east-1"), hmac_key)
    signature = mac.sign(b"grant")

    assert (mac.verify(b"grant", signature), mac.verify(b"grant!", signature)) == (True, False)
    assert mac.verify(b"grant", "not base64 at all!") is False


def test_given_two_hmac_keys_when_one_signs_then_the_other_does_not_verify(hmac_key: str) -> None:
    kms = boto3.client("kms", region_name="us-east-1")
    other = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]

    assert KmsMac(kms, other).verify(b"grant", KmsMac(kms, hmac_key).sign(b"grant")) is False


# --- PlanRelease: an honoured grant skips the bake, never the approval; a refused one writes nothing ---------------


def _planner(world: World, verifier: LocalMac | None) -> PlanService:
    return world.planner(break_glass=verifier)


def _break_glass_input(block: BreakGlass) -> dict[str, Any]:
    return {"trigger": "manual", "requested_by": CAROL, "break_glass": block.model_dump(mode="json")}


def test_given_an_honoured_grant_when_planning_then_no_stage_bakes_and_prod_still_needs_its_approval(
    world: World,
) -> None:
    plan = _planner(world, LocalMac()).plan(_break_glass_input(_signed(_grant())), EXEC_BG, NAME)

    assert [(s["name"], s["bake_seconds"], s.get("approval_timeout_seconds")) for s in plan["stages"]] == [
        ("staging", 0, None),
        ("prod", 0, 86400),
    ]


def test_given_an_honoured_grant_when_planning_then_the_release_and_the_audit_trail_name_who_and_why(
    world: World,
) -> None:
    plan = _planner(world, LocalMac()).plan(_break_glass_input(_signed(_grant())), EXEC_BG, NAME)

    [event] = [e for e in world.ledger.events(plan["release_id"]) if e["kind"] == "break_glass"]
    assert event["detail"] == {"identity": CAROL, "reason": REASON, "skip": ["bake"]}
    [audit] = [a for a in world.ledger.audit("acme") if a["action"] == "break_glass_honoured"]
    assert (audit["identity"], audit["reason"], audit["release_id"]) == (CAROL, REASON, plan["release_id"])


def test_given_no_grant_when_planning_the_same_execution_then_the_fleets_bakes_apply(world: World) -> None:
    plan = _planner(world, LocalMac()).plan({"trigger": "manual"}, EXEC_BG, NAME)

    assert [s["bake_seconds"] for s in plan["stages"]] == [172800, 3600]


def test_given_an_honoured_grant_in_a_freeze_when_planning_then_the_freeze_still_blocks(
    world: World,
) -> None:
    world.clock.moment = MONDAY.replace(month=12, day=21)
    block = _signed(_grant(issued_at=world.clock.moment))

    plan = _planner(world, LocalMac()).plan(_break_glass_input(block), EXEC_BG, NAME)

    assert (plan["status"], plan["stages"]) == ("BLOCKED", [])


@pytest.mark.parametrize(
    ("verifier", "block", "why"),
    [
        (None, _signed(_grant()), "AllowBreakGlass=false"),
        (LocalMac(), _signed(_grant(), LocalMac(b"forged")), "signature"),
        (LocalMac(), _signed(_grant(execution_name="breakglass-ffffffffffff")), "issued for execution"),
    ],
    ids=["stack-does-not-allow", "forged", "another-execution"],
)
def test_given_a_refused_grant_when_planning_then_nothing_is_written_no_source_asked_and_people_hear(
    world: World,
    verifier: LocalMac | None,
    block: BreakGlass,
    why: str,
) -> None:
    with pytest.raises(InvalidInput, match=why):
        _planner(world, verifier).plan(_break_glass_input(block), EXEC_BG, NAME)

    assert all_items(world.table) == []
    assert world.sources.resolved == []
    [(subject, body)] = world.notifier.sent
    assert "break-glass start was refused" in subject
    assert f"claimed by {CAROL}" in body["lines"]


# --- the BreakGlass function behind its URL (moto: KMS, Step Functions, the ledger, S3, SNS) ------------------------


@dataclass
class Door:
    key: str
    machine: str
    sfn: Any


@pytest.fixture
def door(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Door:
    kms, sfn = boto3.client("kms", region_name="us-east-1"), boto3.client("stepfunctions", region_name="us-east-1")
    key = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]
    role = f"arn:aws:iam::{ACCOUNT}:role/sfn"
    definition = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    machine = sfn.create_state_machine(name="ReleaseTrain-rt", definition=definition, roleArn=role)
    # The stack passes the `live` alias; plain moto starts no alias (the sandbox's moto fix 11 does), so the machine.
    monkeypatch.setenv("BREAK_GLASS_KEY", key)
    monkeypatch.setenv("STATE_MACHINE_ALIAS_ARN", machine["stateMachineArn"])
    return Door(key, machine["stateMachineArn"], sfn)


def _url_event(body: Any, caller: str | None = CAROL, method: str = "POST") -> dict[str, Any]:
    """Function URL payload format 2.0, as Lambda builds it for an AWS_IAM-authenticated request."""
    context: dict[str, Any] = {"http": {"method": method, "path": "/"}, "accountId": ACCOUNT}
    if caller is not None:
        context["authorizer"] = {"iam": {"userArn": caller, "accountId": ACCOUNT, "callerId": "AROAEXAMPLE:carol"}}
    text = body if isinstance(body, str) else json.dumps(body)
    return {"version": "2.0", "requestContext": context, "body": text, "isBase64Encoded": False}


def _call(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    answer = handler_module("break_glass").handler(event, FakeLambdaContext(function_name="break_glass"))
    return int(answer["statusCode"]), json.loads(answer["body"])


def _executions(door: Door) -> list[dict[str, Any]]:
    return list(door.sfn.list_executions(stateMachineArn=door.machine)["executions"])


def test_given_an_operator_with_the_url_when_they_break_glass_then_a_train_starts_whose_grant_plan_release_honours(
    stack: Any,
    door: Door,
) -> None:
    status, body = _call(_url_event({"action": "start", "skip": ["bake"], "reason": REASON}))

    assert status == 200
    assert {"release_id", "execution_arn", "grant"} <= set(body)  # what `trainctl start --skip-bake` reads
    assert (body["grant"]["identity"], body["grant"]["reason"]) == (CAROL, REASON)
    started = door.sfn.describe_execution(executionArn=body["execution_arn"])
    assert started["name"] == body["execution_name"]
    request = json.loads(started["input"])
    block = BreakGlass.model_validate(request["break_glass"])
    assert (block.grant.identity, block.grant.reason, block.grant.skip) == (CAROL, REASON, ("bake",))
    year, week, _ = block.grant.issued_at.isocalendar()
    assert body["release_id"] == f"{year}-W{week:02d}-manual-{started['name'][-12:]}"  # as PlanRelease names it
    # What PlanRelease does with it: the same key verifies it, for this execution.
    verifier = KmsMac(boto3.client("kms", region_name="us-east-1"), door.key)
    assert honour(block, verifier, started["name"], block.grant.issued_at) == block.grant


def test_given_a_break_glass_start_then_the_audit_record_and_the_notification_exist_before_plan_release_runs(
    stack: Any,
    door: Door,
) -> None:
    _call(_url_event({"action": "start", "skip": ["bake"], "reason": REASON, "services": ["api"]}))

    [audit] = Ledger(stack.table).audit("acme")
    assert (audit["action"], audit["identity"], audit["reason"], audit["skip"]) == (
        "break_glass",
        CAROL,
        REASON,
        ["bake"],
    )
    [message] = stack.notifications()
    assert "BREAK GLASS" in json.loads(message["Body"])["Subject"]


@pytest.mark.parametrize(
    ("event", "status", "says"),
    [
        (_url_event({"action": "start", "skip": ["bake"], "reason": REASON}, caller=None), 403, "AWS_IAM"),
        (_url_event({"action": "start", "skip": ["bake"], "reason": REASON}, method="GET"), 405, "POST"),
        (_url_event({"action": "start", "skip": ["approval"], "reason": REASON}), 400, "skip"),
        (_url_event({"action": "start", "skip": ["bake"], "reason": "hotfix"}), 400, "reason"),
        (_url_event({"action": "start", "skip": ["bake"], "reason": REASON, "services": ["nope"]}), 400, "nope"),
        (_url_event("{not json"), 400, "not JSON"),
        ({"skip": ["bake"]}, 400, "BreakGlassUrl"),
    ],
    ids=["no-identity", "get", "skip-approval", "short-reason", "unknown-service", "not-json", "not-a-url-request"],
)
def test_given_a_bad_break_glass_request_then_it_is_refused_saying_why_and_nothing_is_written_or_started(
    stack: Any,
    door: Door,
    event: dict[str, Any],
    status: int,
    says: str,
) -> None:
    answer_status, body = _call(event)

    assert answer_status == status
    assert says in json.dumps(body)
    assert (all_items(stack.table), _executions(door), stack.notifications()) == ([], [], [])


def test_given_the_stack_without_break_glass_when_the_function_module_loads_then_it_refuses_to_start(
    stack: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BREAK_GLASS_KEY", raising=False)
    aws.client.cache_clear()

    with pytest.raises(RuntimeError, match="AllowBreakGlass=true"):
        handler_module("break_glass")
