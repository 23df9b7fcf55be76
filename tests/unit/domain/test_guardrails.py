"""The stack's guardrails: the floor a fleet file cannot lower. Boundaries are tested on both sides."""

from __future__ import annotations

from datetime import timedelta

import pytest

from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import Fleet, parse_fleet
from release_train.domain.guardrails import Guardrails

ACCOUNT = "123456789012"
APPROVER = f"arn:aws:iam::{ACCOUNT}:role/ReleaseManager"


def _fleet(stages: str, project: str = "train-{service}-{stage}", approvers: str = APPROVER) -> Fleet:
    return parse_fleet(
        f"fleet: acme\ndefaults: {{project: '{project}', approvers: ['{approvers}']}}\nstages:\n{stages}"
        "services:\n  - {name: api, source: {codecommit: api}}\n"
    )


STAGING_PROD = "  - {name: staging, bake: P2D}\n  - {name: prod, bake: PT1H, approval: {required: true}}\n"
RAILS = Guardrails.from_parameters({}, ACCOUNT)


def test_given_the_default_parameters_when_the_example_shape_is_checked_then_nothing_is_violated() -> None:
    assert RAILS.violations(_fleet(STAGING_PROD)) == []


@pytest.mark.parametrize("last", ["prod", "production", "live"])
def test_given_a_last_stage_without_approval_whatever_its_name_when_checked_then_it_is_refused(last: str) -> None:
    fleet = _fleet(f"  - {{name: staging, bake: P2D}}\n  - {{name: {last}, bake: PT1H}}\n")

    assert RAILS.violations(fleet) == [
        f"stages[1] ({last}).approval.required: the last stage always requires an approval (stack guardrail)"
    ]


def test_given_a_last_stage_bake_one_second_short_when_checked_then_it_is_refused_and_exactly_the_minimum_passes() -> (
    None
):
    short = _fleet("  - {name: staging}\n  - {name: prod, bake: 3599, approval: {required: true}}\n")
    exact = _fleet("  - {name: staging}\n  - {name: prod, bake: 3600, approval: {required: true}}\n")

    assert RAILS.violations(short) == [
        "stages[1] (prod).bake: PT59M59S is shorter than MinimumFinalBake (the last stage) = PT1H"
    ]
    assert RAILS.violations(exact) == []


def test_given_the_minimum_final_bake_when_an_earlier_stage_bakes_less_then_only_the_last_stage_is_held_to_it() -> None:
    rails = Guardrails.from_parameters({"MinimumFinalBake": "P1D"}, ACCOUNT)

    assert (
        rails.violations(
            _fleet("  - {name: staging, bake: 0}\n  - {name: prod, bake: P1D, approval: {required: true}}\n")
        )
        == []
    )


def test_given_require_approval_for_in_another_case_when_a_stage_skips_approval_then_it_is_refused() -> None:
    rails = Guardrails.from_parameters({"RequireApprovalFor": " Staging , QA "}, ACCOUNT)

    assert rails.violations(_fleet(STAGING_PROD)) == [
        "stages[0] (staging).approval.required: stack parameter RequireApprovalFor names staging"
    ]


def test_given_minimum_bake_for_a_stage_when_it_bakes_less_then_it_is_refused_and_the_larger_floor_wins() -> None:
    rails = Guardrails.from_parameters({"MinimumBake": "STAGING=P3D, prod=PT30M", "MinimumFinalBake": "PT2H"}, ACCOUNT)

    assert rails.violations(_fleet(STAGING_PROD)) == [
        "stages[0] (staging).bake: P2D is shorter than MinimumBake staging = P3D",
        "stages[1] (prod).bake: PT1H is shorter than MinimumFinalBake (the last stage) = PT2H",
    ]


def test_given_minimum_bake_larger_than_the_final_floor_when_the_last_stage_bakes_less_then_minimum_bake_is_named() -> (
    None
):
    rails = Guardrails.from_parameters({"MinimumBake": "prod=PT3H"}, ACCOUNT)

    assert rails.violations(_fleet(STAGING_PROD)) == [
        "stages[1] (prod).bake: PT1H is shorter than MinimumBake prod = PT3H"
    ]


def test_given_projects_outside_the_prefix_when_checked_then_each_project_is_named() -> None:
    fleet = _fleet(STAGING_PROD, project="{service}-{stage}")

    assert RAILS.violations(fleet) == [
        f"services[0].project ({stage}): 'api-{stage}' does not start with ProjectPrefix 'train-' (the state machine "
        "may start only those projects)"
        for stage in ("staging", "prod")
    ]


def test_given_a_test_project_outside_the_prefix_when_checked_then_it_is_named() -> None:
    fleet = _fleet(
        "  - {name: staging, bake: P2D, test_project: e2e}\n  - {name: prod, bake: PT1H, approval: {required: true}}\n"
    )

    assert RAILS.violations(fleet) == [
        "stages[0].test_project: 'e2e' does not start with ProjectPrefix 'train-' (the state machine may start only "
        "those projects)"
    ]


@pytest.mark.parametrize(
    ("approver", "inside"),
    [
        (APPROVER, True),
        (f"arn:aws:sts::{ACCOUNT}:assumed-role/ReleaseManager/*", True),
        ("arn:aws:iam::999999999999:role/ReleaseManager", False),
        ("arn:aws:iam::*:role/ReleaseManager", False),  # any account's role of that name: wider than the boundary
    ],
)
def test_given_an_approver_when_checked_against_the_default_boundary_then_only_this_accounts_principals_pass(
    approver: str, inside: bool
) -> None:
    problems = RAILS.violations(_fleet(STAGING_PROD, approvers=approver))

    assert problems == (
        []
        if inside
        else [
            f"stages[1] (prod).approval.approvers: '{approver}' is outside the stack's ApproverBoundary "
            f"['arn:aws:iam::{ACCOUNT}:*', 'arn:aws:sts::{ACCOUNT}:*']"
        ]
    )


def test_given_an_explicit_boundary_when_an_approver_is_outside_it_then_it_is_refused() -> None:
    rails = Guardrails.from_parameters({"ApproverBoundary": f"arn:aws:iam::{ACCOUNT}:role/Release*"}, ACCOUNT)

    assert rails.violations(_fleet(STAGING_PROD)) == []
    assert len(rails.violations(_fleet(STAGING_PROD, approvers=f"arn:aws:iam::{ACCOUNT}:role/Dev"))) == 1


def test_given_malformed_parameters_when_read_then_each_parameter_is_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        Guardrails.from_parameters({"MinimumFinalBake": "one hour", "MinimumBake": "staging"}, ACCOUNT)

    assert caught.value.problems == [
        "MinimumBake: 'staging' is not stage=duration (e.g. staging=P2D)",
        "MinimumFinalBake: 'one hour' is not an ISO 8601 duration like PT1H or P2D",
    ]


def test_given_the_environment_of_plan_release_when_read_then_it_maps_to_the_same_parameters() -> None:
    rails = Guardrails.from_environment(
        {
            "PROJECT_PREFIX": "rt-",
            "MINIMUM_FINAL_BAKE": "PT2H",
            "REQUIRE_APPROVAL_FOR": "staging",
            "MINIMUM_BAKE": "staging=P1D",
            "APPROVER_BOUNDARY": "",
            "ALLOW_BREAK_GLASS": "true",
            "ACCOUNT_ID": ACCOUNT,
        }
    )

    assert rails == Guardrails(
        project_prefix="rt-",
        fleet_name_prefix="svc-",
        minimum_final_bake=timedelta(hours=2),
        require_approval_for=frozenset({"staging"}),
        minimum_bake={"staging": timedelta(days=1)},
        approver_boundary=(f"arn:aws:iam::{ACCOUNT}:*", f"arn:aws:sts::{ACCOUNT}:*"),
        allow_break_glass=True,
        account=ACCOUNT,
    )


def test_given_violations_when_checked_then_one_error_names_the_source_and_every_rule() -> None:
    fleet = _fleet(
        "  - {name: staging}\n  - {name: prod, approval: {required: false}}\n", project="x-{service}-{stage}"
    )

    with pytest.raises(InvalidInput) as caught:
        RAILS.check(fleet, "s3://bucket/fleet.yaml")

    assert caught.value.source == "s3://bucket/fleet.yaml (against the stack's guardrails)"
    assert len(caught.value.problems) == 4  # approval, bake, two projects


def test_given_declared_functions_outside_the_fleet_name_prefix_when_checked_then_each_is_named_per_stage() -> None:
    fleet = parse_fleet(
        f"fleet: acme\ndefaults: {{approvers: ['{APPROVER}']}}\nstages:\n{STAGING_PROD}"
        "services:\n  - {name: api, source: {codecommit: api}, deploy: {functions: ['api-{stage}']}}\n"
    )

    assert RAILS.violations(fleet) == [
        f"services[0].deploy.functions ({stage}): 'api-{stage}' does not start with FleetNamePrefix 'svc-' (the "
        "train may read and move only those functions' aliases, the hooks check only those)"
        for stage in ("staging", "prod")
    ]


def _ecs_fleet(application: str) -> Fleet:
    return parse_fleet(
        f"fleet: acme\ndefaults: {{approvers: ['{APPROVER}']}}\nstages:\n{STAGING_PROD}"
        "services:\n  - name: orders\n    source: {codecommit: orders}\n"
        f"    deploy: {{platform: ecs, port: 8080, application: '{application}'}}\n"
    )


def test_given_an_ecs_application_inside_the_fleet_name_prefix_when_checked_then_it_is_allowed() -> None:
    assert RAILS.violations(_ecs_fleet("svc-{service}-{stage}")) == []


def test_given_an_ecs_console_application_when_checked_then_it_is_refused_per_stage_naming_the_fix() -> None:
    problems = RAILS.violations(_ecs_fleet("AppECS-acme-{service}"))
    assert [p.split(":")[0] for p in problems] == [
        "services[0].deploy.application (staging)",
        "services[0].deploy.application (prod)",
    ]
    assert "'AppECS-acme-orders'" in problems[0] and "HookExtraApplicationPattern" in problems[0]


@pytest.mark.parametrize(
    ("pattern", "allowed"),
    [
        ("AppECS-*", True),
        ("AppECS-acme-orders", True),
        ("AppECS-acme-order?", True),
        ("AppECS-acme-orders?", False),  # `?` is exactly one character
        ("AppECS-other-*", False),
        ("appecs-*", False),  # IAM resource names match case-sensitively
        ("", False),
    ],
)
def test_given_hook_extra_application_pattern_when_an_ecs_application_is_checked_then_iam_wildcards_decide(
    pattern: str, allowed: bool
) -> None:
    rails = Guardrails.from_parameters({"HookExtraApplicationPattern": pattern}, ACCOUNT)
    assert (rails.violations(_ecs_fleet("AppECS-acme-{service}")) == []) is allowed


def test_given_plan_releases_environment_when_read_then_the_extra_application_pattern_is_the_stacks() -> None:
    rails = Guardrails.from_environment({"HOOK_EXTRA_APPLICATION_PATTERN": "AppECS-*", "ACCOUNT_ID": ACCOUNT})
    assert rails.violations(_ecs_fleet("AppECS-acme-{service}")) == []
