"""`trainctl fleet validate` / `fleet push` with stages in other accounts: bad `account`/`deploy_role` values and
accounts outside the stack's AllowedTargetAccounts exit 2 naming the field, before anything is written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from click.testing import CliRunner
from moto import mock_aws

from tests.conftest import ROOT
from trainctl.cli import main

PROD = "333333333333"
ROLE = f"arn:aws:iam::{PROD}:role/release-train-deploy"
STACK_TEMPLATE = {
    "Parameters": {"AllowedTargetAccounts": {"Type": "String", "Default": ""}},
    "Resources": {"ConfigBucket": {"Type": "AWS::S3::Bucket"}},
    "Outputs": {"ConfigBucketName": {"Value": {"Ref": "ConfigBucket"}}},
}


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def _stack(allowed: str) -> str:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    cloudformation.create_stack(
        StackName="release-train",
        TemplateBody=json.dumps(STACK_TEMPLATE),
        Parameters=[{"ParameterKey": "AllowedTargetAccounts", "ParameterValue": allowed}],
    )
    return str(cloudformation.describe_stacks(StackName="release-train")["Stacks"][0]["Outputs"][0]["OutputValue"])


def _fleet(tmp_path: Path, reads: bool = True, **prod: str) -> Path:
    raw = yaml.safe_load((ROOT / "fleet.yaml").read_text())
    raw["stages"][-1] |= prod
    if not reads:  # what the train cannot read in another account yet: aliases (deploy) and alarms
        raw["stages"][-1].pop("alarms", None)
        for service in raw["services"]:
            service.pop("deploy", None)
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    ("prod", "names"),
    [
        ({"account": "3333"}, "stages.1.account"),
        ({"account": PROD, "deploy_role": f"arn:aws:iam::{PROD}:user/deployer"}, "stages.1.deploy_role: not an IAM"),
        ({"account": "222222222222", "deploy_role": ROLE}, f"stages[1].deploy_role: the role is in account {PROD}"),
        ({"deploy_role": ROLE}, "stages[1].account: stage prod names a deploy_role"),
    ],
)
def test_given_a_bad_stage_account_when_validated_then_exit_2_names_the_field(
    tmp_path: Path, prod: dict[str, str], names: str
) -> None:
    code, output = _run("fleet", "validate", str(_fleet(tmp_path, **prod)))

    assert code == 2 and names in output and "Traceback" not in output


def test_given_an_account_outside_the_stack_s_allowed_accounts_when_pushed_then_exit_2_and_nothing_is_written(
    tmp_path: Path, aws: None
) -> None:
    bucket = _stack("222222222222")

    code, output = _run(
        "fleet", "push", str(_fleet(tmp_path, account=PROD, deploy_role=ROLE)), "--stack", "release-train"
    )

    assert code == 2
    assert f"stages[1] (prod).account: '{PROD}' is outside the stack's AllowedTargetAccounts" in output
    assert boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_given_an_allowed_account_when_validated_against_the_stack_then_the_guardrails_are_met(
    tmp_path: Path, aws: None
) -> None:
    _stack(f"222222222222,{PROD}")

    path = _fleet(tmp_path, reads=False, account=PROD, deploy_role=ROLE)

    code, output = _run("fleet", "validate", str(path), "--stack", "release-train")

    assert code == 0 and "guardrails of stack release-train: met" in output


def test_given_an_allowed_account_with_aliases_to_read_when_validated_then_the_guardrails_are_met(
    tmp_path: Path, aws: None
) -> None:
    """The train reads the stage's aliases and alarms through the account's role (tests/unit/test_cross_account.py)."""
    _stack(PROD)

    code, output = _run(
        "fleet", "validate", str(_fleet(tmp_path, account=PROD, deploy_role=ROLE)), "--stack", "release-train"
    )

    assert code == 0 and "guardrails of stack release-train: met" in output
