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

from release_train.adapters.ledger import Ledger, ReleaseRecord
from release_train.domain.release import Status
from tests.conftest import ROOT
from tests.unit.adapters.ledger_table import TABLE_NAME, all_items, create_ledger_table
from tests.unit.adapters.loopback import Loopback, loopback_server
from tests.unit.operator_world import train_machine
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


MOTO_CALLER = "arn:aws:sts::123456789012:user/moto"  # what moto's STS GetCallerIdentity answers


def test_given_a_hold_when_set_and_lifted_then_both_are_audited_with_the_callers_iam_identity(ledger: Ledger) -> None:
    code, output = _run("hold", "--table", TABLE_NAME, "--fleet", "acme-shop", "--reason", "INC-7", "--by", "oncall")
    assert code == 0 and "set by oncall" in output and "INC-7" in output
    assert [(h.scope, h.reason, h.by, h.identity) for h in ledger.holds("acme-shop")] == [
        ("*", "INC-7", "oncall", MOTO_CALLER)
    ]

    code, _ = _run("hold", "--table", TABLE_NAME, "--fleet", "acme-shop", "--reason", "fixed", "--by", "x", "--remove")
    assert code == 0
    assert ledger.holds("acme-shop") == []
    assert [(a["action"], a["by"], a["identity"], a["reason"]) for a in ledger.audit("acme-shop")] == [
        ("hold_put", "oncall", MOTO_CALLER, "INC-7"),
        ("hold_removed", "x", MOTO_CALLER, "fixed"),
    ]


def test_given_releases_when_status_is_asked_with_table_and_fleet_then_the_running_one_and_the_last_are_shown(
    ledger: Ledger,
) -> None:
    _release(ledger, "2026-W47", "2026-11-16T09:00:00+00:00")
    _release(ledger, "2026-W48", "2026-11-23T09:00:00+00:00")
    ledger.close_release("2026-W47", Status.SUCCEEDED, "all stages promoted", datetime_now())
    ledger.acquire_lock("acme-shop", "2026-W48", EXECUTION, datetime_now())

    code, output = _run("status", "--table", TABLE_NAME, "--fleet", "acme-shop", "--output", "json")

    assert code == 0
    doc = json.loads(output)
    assert doc["lock"]["release_id"] == "2026-W48" and doc["running"]["status"] == "RUNNING"
    assert doc["last_release"]["release_id"] == "2026-W47" and doc["last_release"]["status"] == "SUCCEEDED"
    # no stack in this account: the schedule is unknown, and says why, but the ledger's answer stands
    assert doc["next_train"]["next_fire"] is None and "cannot read stack" in doc["next_train"]["note"]


# --- rich markup never swallows [brackets] ---------------------------------------------------------------------------


def test_given_an_invalid_fleet_name_when_validated_then_the_pattern_prints_intact_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("fleet: Acme_Shop\nservices:\n  - {name: a, source: {codecommit: a}, wave: 1}\n")

    result = CliRunner().invoke(main, ["fleet", "validate", str(bad)])

    assert result.exit_code == 2 and result.stdout == ""
    assert "'^[a-z0-9][a-z0-9-]{0,62}$'" in result.stderr  # not '^{0,62}$'
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_given_ledger_text_with_brackets_when_shown_then_every_bracket_prints(ledger: Ledger) -> None:
    record = ReleaseRecord(
        "2026-W49", "acme-shop", Status.RUNNING, "planned", EXECUTION, "2026-11-30T09:00:00+00:00", stages=["prod"]
    )
    assert ledger.create_release(record, pinned_fleet={})
    ledger.close_release("2026-W49", Status.BLOCKED, "gate prod: [bold]alarm[/] '^[a-z]{0,62}$' fired", datetime_now())
    ledger.add_event("2026-W49", "gate", {"why": "[red]x[/red] [link=http://x]y[/link]"}, datetime_now())

    result = CliRunner().invoke(main, ["show", "2026-W49", "--table", TABLE_NAME, "--fleet", "acme-shop"])

    assert result.exit_code == 0, result.output
    flat = "".join(result.stdout.split())
    for shown in ("[bold]alarm[/]", "'^[a-z]{0,62}$'", "[red]x[/red]", "[link=http://x]y[/link]"):
        assert "".join(shown.split()) in flat, shown


# --- approve / reject: SigV4-signed calls to the AnswerApproval function URL ---------------------------------------


@pytest.fixture
def approvals_url() -> Iterator[Loopback]:
    with loopback_server() as server:
        yield server


def _approve(url: str, *extra: str) -> tuple[int, str]:
    return _run("approve", "2026-W48", "--stage", "prod", "--reason", "ship it", "--by", "Rita", "--url", url, *extra)


def test_given_an_approval_when_sent_then_it_is_a_sigv4_signed_post_for_lambda_with_the_answer(
    approvals_url: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    approvals_url.route("POST", "/", 200, {"status": "APPROVED", "decided_by": "Rita", "identity": "arn:x"})

    code, output = _approve(approvals_url.base_url + "/")

    assert code == 0 and "APPROVED by Rita (arn:x)" in output
    [sent] = approvals_url.requests
    assert json.loads(sent.body) == {
        "release_id": "2026-W48",
        "stage": "prod",
        "decision": "approve",
        "reason": "ship it",
        "by": "Rita",
    }
    # SigV4 for service "lambda" in the caller's region ("Invoking Lambda function URLs": AWS_IAM needs SigV4).
    assert sent.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/lambda/aws4_request" in sent.headers["Authorization"]
    assert "X-Amz-Date" in sent.headers


def test_given_an_approval_when_sent_with_json_output_then_stdout_is_the_answer(
    approvals_url: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    approvals_url.route("POST", "/", 200, {"status": "APPROVED", "decided_by": "Rita", "identity": "arn:x"})

    result = CliRunner().invoke(
        main, ["approve", "2026-W48", "--stage", "prod", "--url", approvals_url.base_url + "/", "--output", "json"]
    )

    assert result.exit_code == 0
    answer = {"http_status": 200, "status": "APPROVED", "decided_by": "Rita", "identity": "arn:x"}
    assert json.loads(result.stdout) == answer


@pytest.mark.parametrize(
    ("status", "body", "exit_code", "says"),
    [
        (403, {"error": "arn:aws:sts::1:assumed-role/Dev/eve is not an approver of stage prod"}, 1, "not an approver"),
        (404, {"error": "release 2026-W48 has no approval request for stage prod"}, 3, "no approval request"),
        (409, {"error": "approval is invalid", "problems": ["already decided: TIMED_OUT"]}, 2, "already decided"),
        (400, {"error": "answer is invalid", "problems": ["stage: String should match pattern"]}, 2, "stage: "),
    ],
)
def test_given_a_refused_answer_when_approving_then_one_line_says_why_and_the_exit_code_tells_the_kind(
    approvals_url: Loopback,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    body: dict[str, object],
    exit_code: int,
    says: str,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    approvals_url.route("POST", "/", status, body)

    code, output = _approve(approvals_url.base_url + "/")

    assert (code, says in output, "Traceback" in output) == (exit_code, True, False)


def test_given_no_url_and_no_stack_when_approving_then_exit_3_names_the_stack(ledger: Ledger) -> None:
    code, output = _run("approve", "2026-W48", "--stage", "prod", "--stack", "no-such-stack")

    assert code == 3 and "cannot read stack no-such-stack" in output and "Traceback" not in output


def test_given_the_url_is_unreachable_when_approving_then_exit_3_names_the_host_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")

    code, output = _approve("http://127.0.0.1:9/secret-path")  # discard port: nothing listens

    assert code == 3 and "127.0.0.1" in output and "secret-path" not in output


# --- fleet push / validate against a stack's guardrails ------------------------------------------------------------

STACK_TEMPLATE = {
    "Parameters": {
        "ProjectPrefix": {"Type": "String", "Default": "train-"},
        "MinimumFinalBake": {"Type": "String", "Default": "PT1H"},
        "RequireApprovalFor": {"Type": "String", "Default": ""},
        "MinimumBake": {"Type": "String", "Default": ""},
        "ApproverBoundary": {"Type": "String", "Default": ""},
        "AllowBreakGlass": {"Type": "String", "Default": "false"},
    },
    "Resources": {"ConfigBucket": {"Type": "AWS::S3::Bucket"}},
    "Outputs": {"ConfigBucketName": {"Value": {"Ref": "ConfigBucket"}}},
}


def _stack(**parameters: str) -> str:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    cloudformation.create_stack(
        StackName="release-train",
        TemplateBody=json.dumps(STACK_TEMPLATE),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    outputs = cloudformation.describe_stacks(StackName="release-train")["Stacks"][0]["Outputs"]
    return str(outputs[0]["OutputValue"])


def test_given_a_fleet_below_the_stacks_guardrails_when_pushed_then_exit_2_names_the_rule_and_nothing_is_written(
    ledger: Ledger,
) -> None:
    bucket = _stack(MinimumFinalBake="P1D")

    code, output = _run("fleet", "push", str(FLEET_FILE), "--stack", "release-train")

    assert code == 2 and "MinimumFinalBake" in output and "stages[1] (prod).bake" in output
    assert boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_given_a_valid_fleet_when_pushed_then_the_stacks_bucket_holds_it(ledger: Ledger) -> None:
    bucket = _stack()

    code, output = _run("fleet", "push", str(FLEET_FILE), "--stack", "release-train")

    assert code == 0 and "pushed" in output
    stored = boto3.client("s3", region_name="us-east-1").get_object(Bucket=bucket, Key="fleet.yaml")
    assert stored["Body"].read().decode() == FLEET_FILE.read_text()


def test_given_a_stack_when_validating_with_it_then_its_guardrails_are_checked(ledger: Ledger) -> None:
    _stack(ProjectPrefix="rt-")

    code, output = _run("fleet", "validate", str(FLEET_FILE), "--stack", "release-train")

    assert code == 2 and "does not start with ProjectPrefix 'rt-'" in output


def test_given_no_stack_when_validating_then_it_says_the_guardrails_were_not_checked() -> None:
    code, output = _run("fleet", "validate", str(FLEET_FILE))

    assert code == 0 and "guardrails not checked" in output


def test_given_a_valid_fleet_file_when_validated_then_it_summarises_it() -> None:
    code, output = _run("fleet", "validate", str(FLEET_FILE))
    assert code == 0
    assert "fleet acme-shop" in output
    assert "6 services" in output
    assert "'staging', 'prod'" in output


def test_given_a_valid_fleet_file_when_validated_with_json_output_then_stdout_is_one_document() -> None:
    result = CliRunner().invoke(main, ["fleet", "validate", str(FLEET_FILE), "--output", "json"])

    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert (doc["fleet"], doc["services"], doc["stages"], doc["guardrails"]) == (
        "acme-shop",
        6,
        ["staging", "prod"],
        "not checked",
    )


def test_given_an_invalid_fleet_file_when_validated_then_exit_2_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("fleet: acme\nservices:\n  - {name: a, source: {codecommit: a}, wave: 0}\n")
    code, output = _run("fleet", "validate", str(bad))
    assert code == 2
    assert "services.0.wave" in output


def test_given_an_invalid_fleet_when_pushed_then_nothing_is_written(tmp_path: Path, ledger: Ledger) -> None:
    bucket = _stack()
    bad = tmp_path / "fleet.yaml"
    bad.write_text("fleet: acme\nservices: []\n")

    code, output = _run("fleet", "push", str(bad), "--stack", "release-train")

    assert code == 2 and "services" in output
    assert boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_given_a_running_train_when_cancelled_then_the_execution_is_stopped_with_the_reason(ledger: Ledger) -> None:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = train_machine(sfn)
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


def _abusive(tmp_path: Path, where: tuple[str | int, ...], value: object) -> Path:
    """The example fleet with one abuse applied: `value` put at the path `where` in the parsed document."""
    import yaml

    doc = yaml.safe_load(FLEET_FILE.read_text())
    parent = doc
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = value
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("where", "value", "names"),
    [
        # staging mapped to the prod project: prod deployed before any bake or approval
        (
            ("services", 1, "project"),
            {"staging": "train-identity-prod", "prod": "train-identity-prod"},
            "names stage prod",
        ),
        (("defaults", "project"), "build-{service}-{stage}", "does not start with ProjectPrefix 'train-'"),
        (("stages", 1, "approval", "required"), False, "the last stage always requires an approval"),
        (("stages", 1, "bake"), "PT0S", "shorter than MinimumFinalBake"),
        (("stages", 1, "name"), "production", None),  # a rename escapes nothing: still valid, still guarded
        (("defaults", "project"), "train-{service.__class__.__name__}-{stage}", "unknown placeholder"),
        (("defaults", "project"), "train-{0}-{stage}", "unknown placeholder {0}"),
        (("services", 0, "source", "branch"), "release 2", "is not a git branch name"),
        (("services", 3, "source", "token_secret"), "prod/db-password", "must be named under release-train/"),
        (
            ("stages", 1, "approval", "approvers"),
            ["arn:aws:iam::999999999999:role/ReleaseManager"],
            "outside the stack's ApproverBoundary",
        ),
        (("services", 0, "deploy", "functions"), ["company-{stage}-create"], "FleetNamePrefix 'svc-'"),
    ],
)
def test_given_a_fleet_file_that_tries_an_abuse_when_validated_against_the_stack_then_exit_2_names_the_rule(
    ledger: Ledger, tmp_path: Path, where: tuple[str | int, ...], value: object, names: str | None
) -> None:
    _stack()
    path = _abusive(tmp_path, where, value)

    code, output = _run("fleet", "validate", str(path), "--stack", "release-train")

    if names is None:  # renaming the last stage keeps its guardrails: the file stays valid
        assert code == 0 and "guardrails of stack release-train: met" in output
    else:
        assert (code, names in " ".join(output.split())) == (2, True), output
