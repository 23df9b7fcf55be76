"""Stages in other AWS accounts: `stages[].account` / `stages[].deploy_role` and the AllowedTargetAccounts guardrail."""

from __future__ import annotations

import pytest

from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import Fleet, parse_fleet
from release_train.domain.guardrails import Guardrails

TOOLS = "111111111111"
DEV = "222222222222"
PROD = "333333333333"
APPROVER = f"arn:aws:iam::{TOOLS}:role/ReleaseManager"
ROLE = f"arn:aws:iam::{PROD}:role/release-train/deploy-prod"


def _fleet(prod: str) -> str:
    return (
        f"fleet: acme\ndefaults: {{approvers: ['{APPROVER}']}}\nstages:\n"
        "  - {name: staging, bake: P2D}\n"
        f"  - {{name: prod, bake: PT1H, approval: {{required: true}}{prod}}}\n"
        "services:\n  - {name: api, source: {codecommit: api}}\n"
    )


def _problems(prod: str) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        parse_fleet(_fleet(prod))
    return caught.value.problems


def test_given_a_stage_with_account_and_deploy_role_when_parsed_then_both_are_kept_and_other_stages_stay_local() -> (
    None
):
    fleet = parse_fleet(_fleet(f", account: '{PROD}', deploy_role: '{ROLE}'"))

    assert (fleet.stages[1].account, fleet.stages[1].deploy_role) == (PROD, ROLE)
    assert (fleet.stages[0].account, fleet.stages[0].deploy_role) == (None, None)


def test_given_an_account_without_a_deploy_role_when_parsed_then_it_is_accepted() -> None:
    assert parse_fleet(_fleet(f", account: '{PROD}'")).stages[1].account == PROD


@pytest.mark.parametrize("account", ["'33333333333'", "'3333333333333'", "'33333333333a'", "''"])
def test_given_an_account_that_is_not_12_digits_when_parsed_then_the_field_is_named(account: str) -> None:
    assert _problems(f", account: {account}") == [
        f"stages.1.account: String should match pattern '^\\d{{12}}$' (got: {account})"
    ]


def test_given_an_unquoted_account_when_parsed_then_quoting_is_asked_for_because_yaml_drops_leading_zeros() -> None:
    assert _problems(f", account: {PROD}") == [
        f"stages.1.account: quote the account id ('{PROD}'): YAML reads an unquoted number, which loses leading "
        f"zeros (got: {PROD})"
    ]


@pytest.mark.parametrize(
    "role",
    [
        f"arn:aws:iam::{PROD}:user/deployer",
        f"arn:aws:sts::{PROD}:assumed-role/deploy/session",
        f"arn:aws:iam::{PROD}:role/",
        f"arn:aws:iam::{PROD}:role/{'x' * 65}",
        f"arn:aws:iam::{PROD}:role//deploy",
        f"arn:aws:iam::{PROD}:role/déploy",
        "deploy-prod",
    ],
)
def test_given_a_deploy_role_that_is_not_a_role_arn_when_parsed_then_the_field_and_shape_are_named(role: str) -> None:
    problems = _problems(f", account: '{PROD}', deploy_role: '{role}'")

    assert len(problems) == 1
    assert problems[0].startswith("stages.1.deploy_role: not an IAM role ARN (arn:aws:iam::<12-digit account>:role/")


def test_given_a_deploy_role_in_another_account_than_the_stage_when_parsed_then_the_mismatch_is_named() -> None:
    assert _problems(f", account: '{DEV}', deploy_role: '{ROLE}'") == [
        f"stages[1].deploy_role: the role is in account {PROD}, not the stage's account {DEV}; a stage's builds "
        "deploy with a role in its own account"
    ]


def test_given_a_deploy_role_without_an_account_when_parsed_then_the_account_is_asked_for() -> None:
    assert _problems(f", deploy_role: '{ROLE}'") == [
        f"stages[1].account: stage prod names a deploy_role in account {PROD}; give `account: '{PROD}'` too"
    ]


def _remote(account: str) -> Fleet:
    return parse_fleet(_fleet(f", account: '{account}'"))


def test_given_the_default_parameters_when_a_stage_names_another_account_then_it_is_refused() -> None:
    rails = Guardrails.from_parameters({}, TOOLS)

    assert rails.violations(_remote(PROD)) == [
        f"stages[1] (prod).account: '{PROD}' is outside the stack's AllowedTargetAccounts (empty: this account only)"
    ]
    assert rails.violations(_remote(TOOLS)) == [], "naming the train's own account is naming no other account"


def test_given_allowed_target_accounts_when_checked_then_listed_accounts_pass_and_any_other_is_refused() -> None:
    rails = Guardrails.from_parameters({"AllowedTargetAccounts": f"{DEV}, {PROD}"}, TOOLS)

    assert rails.violations(_remote(PROD)) == []
    assert rails.violations(_remote(TOOLS)) == []
    assert rails.violations(_remote("444444444444")) == [
        f"stages[1] (prod).account: '444444444444' is outside the stack's AllowedTargetAccounts (['{DEV}', '{PROD}'])"
    ]


def test_given_a_malformed_allowed_target_account_when_read_then_the_parameter_is_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        Guardrails.from_parameters({"AllowedTargetAccounts": f"{DEV},prod"}, TOOLS)

    assert caught.value.problems == ["AllowedTargetAccounts: 'prod' is not a 12-digit AWS account id"]


def test_given_planrelease_environment_when_read_then_allowed_target_accounts_and_account_come_from_it() -> None:
    rails = Guardrails.from_environment({"ALLOWED_TARGET_ACCOUNTS": PROD, "ACCOUNT_ID": TOOLS})

    assert rails.violations(_remote(PROD)) == []
    assert rails.violations(_remote(DEV)) != []


def test_given_a_remote_stage_with_alarms_and_deployed_functions_when_checked_then_allowed() -> None:
    """The train reads a stage's alarms and aliases through the stage account's role (tests/unit/test_cross_account.py
    proves the reads go there), so an allowed account may declare both; an account outside the stack's list may not."""
    rails = Guardrails.from_parameters({"AllowedTargetAccounts": PROD}, TOOLS)
    text = _fleet(f", account: '{PROD}', alarms: {{prefix: prod-}}").replace(
        "{name: api, source: {codecommit: api}}",
        "{name: api, source: {codecommit: api}, deploy: {functions: ['svc-api-{stage}']}}",
    )

    assert rails.violations(parse_fleet(text)) == []
    elsewhere = text.replace(f", account: '{PROD}'", f", account: '{DEV}'")
    assert rails.violations(parse_fleet(elsewhere)) == [
        f"stages[1] (prod).account: '{DEV}' is outside the stack's AllowedTargetAccounts (['{PROD}'])"
    ]
