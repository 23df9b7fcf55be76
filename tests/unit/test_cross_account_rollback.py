"""`trainctl rollback` of a stage in another account (docs/accounts.md): the ledger is read with the operator's tools
account credentials, the stage's aliases with --stage-profile's, which must be in the stage's account.

moto keeps accounts apart by access key: an IAM user's key created in PROD acts in PROD (moto.iam.models
.get_account_id_from); the tests' "testing" key is moto's default account, the tools account. The same function
exists in both, so a rollback in the wrong account shows up in the decoy's alias.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from release_train.adapters.ledger import Ledger, ReleaseRecord
from release_train.domain.fleet import parse_fleet
from release_train.domain.live import AliasMove, Live
from release_train.domain.release import ManifestEntry, Status
from tests.unit.adapters.ledger_table import TABLE_NAME, create_ledger_table
from trainctl import cli
from trainctl.cli import main
from trainctl.sandbox import moto_fixes

TOOLS = DEFAULT_ACCOUNT_ID
PROD = "333333333333"
RELEASE = "2026-W48"
FUNCTION = "svc-api-prod-fn"
FLEET = parse_fleet(f"""
fleet: acme
stages:
  - {{name: staging}}
  - {{name: prod, account: '{PROD}'}}
services:
  - {{name: api, source: {{codecommit: api, branch: release}}, wave: 1,
     deploy: {{functions: ["svc-api-{{stage}}-fn"]}}}}
""")
OLD, NEW = "1" * 40, "2" * 40
STACK_TEMPLATE = {
    "Resources": {"ConfigBucket": {"Type": "AWS::S3::Bucket"}},
    "Outputs": {"LedgerTableName": {"Value": TABLE_NAME}},
}


@pytest.fixture(autouse=True)
def _alias_revisions(monkeypatch: pytest.MonkeyPatch) -> None:
    """UpdateAlias with RevisionId as AWS answers it (the sandbox's moto fix, as tests/unit/test_cli_rollback.py)."""
    from moto.awslambda import models, responses

    monkeypatch.setattr(models.LambdaAlias, "update", moto_fixes._alias_update)
    monkeypatch.setattr(responses.LambdaResponse, "update_alias", moto_fixes._update_alias_response)


def _zip(n: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", f"def handler(event, context):\n    return {n}\n")
    return buffer.getvalue()


def _in_prod(service: str) -> Any:
    """A client acting in PROD: moto's AssumeRole credentials act in the role's account."""
    creds = boto3.client("sts").assume_role(RoleArn=f"arn:aws:iam::{PROD}:role/admin", RoleSessionName="setup")
    c = creds["Credentials"]
    return boto3.client(service, aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                        aws_session_token=c["SessionToken"])  # fmt: skip


def _deployed(lam: Any, iam: Any) -> None:
    """FUNCTION with version 1 (the previous release's) and 2 (this one's), alias `live` on 2."""
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam.create_function(FunctionName=FUNCTION, Runtime="python3.13", Role=role, Handler="app.handler",
                        Code={"ZipFile": _zip(0)})  # fmt: skip
    for n, commit in ((1, OLD), (2, NEW)):
        lam.update_function_code(FunctionName=FUNCTION, ZipFile=_zip(n))
        lam.publish_version(FunctionName=FUNCTION, Description=f"release 2026-W4{6 + n} commit {commit}")
    lam.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="2")


def _profile(path: Path, name: str, iam: Any) -> None:
    """A named profile whose key is an IAM user's in `iam`'s account (the operator's own credentials there)."""
    iam.create_user(UserName=f"operator-{name}")
    key = iam.create_access_key(UserName=f"operator-{name}")["AccessKey"]
    with path.open("a") as out:
        out.write(f"[{name}]\naws_access_key_id = {key['AccessKeyId']}\n")
        out.write(f"aws_secret_access_key = {key['SecretAccessKey']}\n")


@pytest.fixture
def ledger(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Ledger]:
    with mock_aws():
        boto3.client("cloudformation").create_stack(StackName="release-train", TemplateBody=json.dumps(STACK_TEMPLATE))
        ledger = Ledger(create_ledger_table())
        _deployed(_in_prod("lambda"), _in_prod("iam"))
        _deployed(boto3.client("lambda"), boto3.client("iam"))  # the decoy in the tools account
        credentials = tmp_path / "credentials"
        _profile(credentials, "prod", _in_prod("iam"))
        _profile(credentials, "tools", boto3.client("iam"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        record = ReleaseRecord(RELEASE, "acme", Status.RUNNING, "planned", "arn:exec", "2026-11-23T09:00:00+00:00",
                               stages=["staging", "prod"])  # fmt: skip
        assert ledger.create_release(record, pinned_fleet=FLEET.model_dump(mode="json"))
        ledger.put_manifest(RELEASE, [ManifestEntry("api", NEW, OLD, 1, "codecommit")])
        ledger.put_alias_moves(RELEASE, [AliasMove("prod", "api", FUNCTION, "live", 1, "1", "2")])
        ledger.set_live("acme", [Live("prod", "api", NEW, RELEASE, "aliases", {FUNCTION: "2"}, OLD, "2026-W47",
                                      "2026-11-23T10:00:00+00:00")])  # fmt: skip
        assert ledger.close_release(RELEASE, Status.BLOCKED, "GateBlocked: prod: alarm", cli._now())
        yield ledger


def _alias(lam: Any) -> str:
    return str(lam.get_alias(FunctionName=FUNCTION, Name="live")["FunctionVersion"])


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["rollback", RELEASE, "--reason", "INC-7", *args])
    return result.exit_code, result.stdout, result.stderr


def test_given_a_prod_stage_in_another_account_when_rolled_back_with_its_profile_then_that_alias_goes_back(
    ledger: Ledger,
) -> None:
    code, _, stderr = _run("--stage-profile", "prod")

    assert code == 0, stderr
    assert _alias(_in_prod("lambda")) == "1"
    assert _alias(boto3.client("lambda")) == "2", "the tools account's same-named alias is not touched"
    [move] = ledger.alias_moves(RELEASE, "prod")
    assert move.rolled_back
    assert ledger.live("acme")["prod"]["api"].how == "rollback"


def test_given_a_stage_in_another_account_without_a_stage_profile_when_rolled_back_then_exit_2_names_the_option(
    ledger: Ledger,
) -> None:
    code, stdout, stderr = _run()

    assert (code, stdout, "Traceback" in stderr) == (2, "", False)
    assert f"stage prod is in account {PROD}: pass --stage-profile NAME" in stderr and stderr.count("\n") == 1
    assert (_alias(_in_prod("lambda")), _alias(boto3.client("lambda"))) == ("2", "2")


def test_given_a_stage_profile_in_the_wrong_account_when_rolled_back_then_exit_2_names_both_accounts(
    ledger: Ledger,
) -> None:
    code, _, stderr = _run("--stage-profile", "tools")

    assert code == 2
    assert f"--stage-profile tools: its credentials are in account {TOOLS}, not {PROD}" in stderr
    assert (_alias(_in_prod("lambda")), _alias(boto3.client("lambda"))) == ("2", "2")


def test_given_a_stage_in_this_account_when_a_stage_profile_is_given_then_exit_2_says_to_leave_it_out(
    ledger: Ledger,
) -> None:
    code, _, stderr = _run("--stage", "staging", "--stage-profile", "prod")

    assert code == 2 and "--stage-profile: stage staging is in this account" in stderr
