"""What a fleet file may not say, whatever the stack: projects that are another stage's, placeholders that are code,
branch names that mean another branch, secret ids the train cannot read, approvals nobody may answer."""

from __future__ import annotations

import pytest

from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import check_branch, matching_approver, parse_fleet

APPROVER = "arn:aws:iam::123456789012:role/ReleaseManager"
HEAD = f"""
fleet: acme
defaults: {{approvers: ["{APPROVER}"]}}
"""


def _fleet(services: str, stages: str = "") -> str:
    return HEAD + stages + "services:\n" + services


def _problems(text: str) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        parse_fleet(text)
    return caught.value.problems


# --- projects -----------------------------------------------------------------------------------------------------


def test_given_staging_mapped_to_the_prod_project_when_parsed_then_the_shared_project_is_refused() -> None:
    problems = _problems(
        _fleet("  - {name: api, source: {codecommit: api}, project: {staging: build-api, prod: build-api}}\n")
    )

    assert problems == [
        "services[0].project: project 'build-api' (the prod project of api) is already the staging project of api; "
        "each needs its own"
    ]


def test_given_a_staging_project_whose_name_says_prod_when_parsed_then_it_is_refused_naming_the_stage() -> None:
    problems = _problems(
        _fleet("  - {name: api, source: {codecommit: api}, project: {staging: train-api-prod, prod: train-api-p}}\n")
    )

    assert problems == [
        "services[0].project: 'train-api-prod' for stage staging names stage prod; a stage's project must not be "
        "another stage's"
    ]


def test_given_project_names_that_mention_no_stage_when_parsed_then_they_are_the_fleets_business() -> None:
    fleet = parse_fleet(
        _fleet("  - {name: api, source: {codecommit: api}, project: {staging: train-api-stg, prod: train-api-prd}}\n")
    )

    assert [fleet.project_for(fleet.services[0], s) for s in ("staging", "prod")] == ["train-api-stg", "train-api-prd"]


def test_given_a_service_named_like_a_stage_when_its_projects_are_checked_then_its_own_name_does_not_count() -> None:
    fleet = parse_fleet(_fleet("  - {name: prod-tools, source: {codecommit: t}}\n"))

    assert fleet.project_for(fleet.services[0], "staging") == "train-prod-tools-staging"


def test_given_two_services_sharing_one_project_when_parsed_then_the_second_is_refused() -> None:
    problems = _problems(
        _fleet(
            "  - {name: api, source: {codecommit: api}, project: {staging: train-x-staging, prod: train-api-prod}}\n"
            "  - {name: web, source: {codecommit: web}, project: {staging: train-x-staging, prod: train-web-prod}}\n"
        )
    )

    assert problems == [
        "services[1].project: project 'train-x-staging' (the staging project of web) is already the staging project "
        "of api; each needs its own"
    ]


def test_given_a_service_pattern_without_the_stage_when_parsed_then_both_stages_sharing_it_is_refused() -> None:
    problems = _problems(_fleet("  - {name: api, source: {codecommit: api}, project: 'train-{service}'}\n"))

    assert problems == [
        "services[0].project: project 'train-api' (the prod project of api) is already the staging project of api; "
        "each needs its own"
    ]


def test_given_a_test_project_that_is_a_services_build_project_when_parsed_then_it_is_refused() -> None:
    stages = (
        "stages:\n  - {name: staging, test_project: train-api-staging}\n  - {name: prod, approval: {required: true}}\n"
    )

    problems = _problems(_fleet("  - {name: api, source: {codecommit: api}}\n", stages))

    assert problems == [
        "services[0].project: project 'train-api-staging' (the staging project of api) is already the staging test "
        "project; each needs its own"
    ]


def test_given_one_test_project_for_two_stages_when_parsed_then_the_second_is_refused() -> None:
    stages = (
        "stages:\n  - {name: staging, test_project: train-e2e}\n"
        "  - {name: prod, test_project: train-e2e, approval: {required: true}}\n"
    )

    problems = _problems(_fleet("  - {name: api, source: {codecommit: api}}\n", stages))

    assert problems == [
        "stages[1].test_project: project 'train-e2e' (the prod test project) is already the staging test project; "
        "each needs its own"
    ]


@pytest.mark.parametrize(
    ("pattern", "placeholder"),
    [("{service.__class__.__name__}-{stage}", "{service.__class__.__name__}"), ("{0}-{stage}", "{0}")],
)
def test_given_a_pattern_with_code_in_a_placeholder_when_parsed_then_it_is_refused_not_evaluated(
    pattern: str, placeholder: str
) -> None:
    problems = _problems(_fleet(f"  - {{name: api, source: {{codecommit: api}}, project: '{pattern}'}}\n"))

    assert problems == [f"project: unknown placeholder {placeholder} in '{pattern}' (only {{service}} and {{stage}})"]


# --- branches -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("branch", ["release#2", "feature/x", "réléase-ü", "v1.2", "a-b_c", "@x"])
def test_given_a_branch_git_accepts_when_parsed_then_it_is_kept_exactly(branch: str) -> None:
    fleet = parse_fleet(
        _fleet(f'  - {{name: api, source: {{github: acme/api, branch: "{branch}", token_secret: release-train/gh}}}}\n')
    )

    assert fleet.services[0].source.branch == branch


@pytest.mark.parametrize(
    "branch",
    [
        "release 2",
        "a..b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[b",
        "a\\\\b",
        "-x",
        "/x",
        "x/",
        "x.",
        "x.lock",
        "x/.hidden",
        "a//b",
        "a@{1}",
        "@",
        "",
        "a\\tb",
    ],
)
def test_given_a_branch_git_refuses_when_parsed_then_the_source_branch_is_named(branch: str) -> None:
    problems = _problems(_fleet(f'  - {{name: api, source: {{codecommit: api, branch: "{branch}"}}}}\n'))

    assert len(problems) == 1
    assert (
        problems[0].startswith("services.0.source.codecommit.branch: Value error, ")
        or "is not a git branch name" in (problems[0])
    )
    assert "is not a git branch name" in problems[0]


def test_given_a_branch_of_256_bytes_when_checked_then_it_is_refused_and_255_is_kept() -> None:
    check_branch("é" * 127 + "a")  # 255 bytes

    with pytest.raises(ValueError, match="1-255 bytes"):
        check_branch("é" * 128)


# --- secrets ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "release-train/github-token",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:release-train/github-token-AbCdEf",
    ],
)
def test_given_a_secret_under_the_trains_prefix_when_parsed_then_it_is_kept(secret: str) -> None:
    fleet = parse_fleet(_fleet(f"  - {{name: api, source: {{github: acme/api, token_secret: '{secret}'}}}}\n"))

    assert fleet.services[0].source.token_secret == secret  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("prod/db-password", "must be named under release-train/"),
        ("release-train/../x y", "is not a Secrets Manager secret name or ARN"),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:other/x", "must be named under release-train/"),
    ],
)
def test_given_a_secret_id_the_train_cannot_or_may_not_read_when_parsed_then_it_is_refused(
    secret: str, why: str
) -> None:
    problems = _problems(
        HEAD + f"notifications: {{webhook_secret: '{secret}'}}\nservices:\n  - {{name: a, source: {{codecommit: a}}}}\n"
    )

    assert len(problems) == 1 and problems[0].startswith("notifications.webhook_secret: ") and why in problems[0]


# --- approvers ----------------------------------------------------------------------------------------------------


def test_given_a_stage_that_needs_approval_and_nobody_named_when_parsed_then_the_approvers_field_is_named() -> None:
    problems = _problems(
        "fleet: acme\nstages: [{name: staging}, {name: prod, approval: {required: true}}]\n"
        "services:\n  - {name: a, source: {codecommit: a}}\n"
    )

    assert problems == [
        "stages[1].approval.approvers: stage prod requires an approval but names nobody who may answer; list IAM "
        "principal ARN patterns here or in defaults.approvers"
    ]


def test_given_stage_approvers_when_parsed_then_they_replace_the_defaults_for_that_stage() -> None:
    mine = "arn:aws:sts::123456789012:assumed-role/Prod*/*"
    fleet = parse_fleet(
        HEAD + f"stages: [{{name: staging}}, {{name: prod, approval: {{required: true, approvers: ['{mine}']}}}}]\n"
        "services:\n  - {name: a, source: {codecommit: a}}\n"
    )

    assert fleet.approvers_for(fleet.stages[1]) == (mine,)
    assert fleet.approvers_for(fleet.stages[0]) == (APPROVER,)


@pytest.mark.parametrize(
    "pattern",
    ["ReleaseManager", "arn:aws:iam::12345:role/x", "arn:aws:s3:::bucket", "arn:aws:iam::123456789012:role/a?b"],
)
def test_given_an_approver_that_is_not_a_principal_arn_pattern_when_parsed_then_it_is_refused(pattern: str) -> None:
    problems = _problems(
        f"fleet: acme\ndefaults: {{approvers: ['{pattern}']}}\nservices:\n  - {{name: a, source: {{codecommit: a}}}}\n"
    )

    assert (
        len(problems) == 1 and problems[0].startswith("defaults.approvers.0: ") and "IAM principal ARN" in problems[0]
    )


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("arn:aws:sts::123456789012:assumed-role/ReleaseManager/alice", APPROVER),
        ("arn:aws:iam::123456789012:role/ReleaseManager", APPROVER),
        ("arn:aws:sts::123456789012:assumed-role/ReleaseManagerX/alice", None),
        ("arn:aws:sts::999999999999:assumed-role/ReleaseManager/alice", None),
        ("arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice"),
        ("arn:aws:iam::123456789012:user/bob", None),
    ],
)
def test_given_a_caller_when_matched_against_approvers_then_only_a_listed_principal_or_its_sessions_match(
    caller: str, expected: str | None
) -> None:
    assert matching_approver((APPROVER, "arn:aws:iam::123456789012:user/alice"), caller) == expected


def test_given_the_first_pattern_misses_and_a_later_one_matches_when_matched_then_the_later_one_is_returned() -> None:
    patterns = ("arn:aws:iam::123456789012:role/Other", "arn:aws:sts::123456789012:assumed-role/Release*/*")

    assert matching_approver(patterns, "arn:aws:sts::123456789012:assumed-role/ReleaseManager/a") == patterns[1]


def test_given_a_github_source_without_a_token_secret_then_the_fleet_is_refused_naming_the_field() -> None:
    # GitHub's GraphQL API answers only authenticated requests: a tokenless source could never resolve its head.
    with pytest.raises(InvalidInput, match=r"token_secret"):
        parse_fleet(_fleet("  - {name: api, source: {github: acme/api, branch: main}}\n"))
