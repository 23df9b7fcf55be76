"""fleet.yaml parsing and validation (invariant 6: bad input is rejected with a clear message naming file and field)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import CodeCommitSource, GitHubSource, parse_fleet
from tests.conftest import ROOT

SOURCE = "config/fleet.yaml"
APPROVER = "arn:aws:iam::123456789012:role/ReleaseManager"
MINIMAL = f"""
fleet: acme
defaults: {{approvers: ["{APPROVER}"]}}
services:
  - name: api
    source: {{codecommit: api}}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        parse_fleet(text, source=SOURCE)
    assert SOURCE in str(caught.value), "every error names the file"
    return caught.value.problems


def _with_freeze(*windows: tuple[str, str]) -> str:
    lines = [MINIMAL, "freeze_windows:"]
    lines += [f"  - {{start: {start}, end: {end}, reason: window {i}}}" for i, (start, end) in enumerate(windows)]
    return "\n".join(lines) + "\n"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- defaults ---------------------------------------------------------------------------------------------------


def test_given_a_minimal_fleet_when_parsed_then_stages_default_to_staging_with_a_two_day_bake_then_prod() -> None:
    fleet = parse_fleet(MINIMAL)

    assert [(s.name, s.bake) for s in fleet.stages] == [("staging", timedelta(days=2)), ("prod", timedelta(hours=1))]


def test_given_a_minimal_fleet_when_parsed_then_services_default_to_wave_1_branch_main_and_the_project_pattern() -> (
    None
):
    fleet = parse_fleet(MINIMAL)
    service = fleet.service("api")

    assert (service.wave, service.source, fleet.project_for(service, "prod")) == (
        1,
        CodeCommitSource(codecommit="api", branch="main"),
        "train-api-prod",
    )


def test_given_a_minimal_fleet_when_parsed_then_only_the_last_stage_needs_approval_and_concurrency_is_10() -> None:
    fleet = parse_fleet(MINIMAL)

    assert [(s.approval.required, s.approval.timeout) for s in fleet.stages] == [
        (False, timedelta(hours=24)),
        (True, timedelta(hours=24)),
    ]
    assert fleet.approvers_for(fleet.stages[1]) == (APPROVER,)
    assert fleet.defaults.build_concurrency == 10


def test_given_the_example_fleet_when_parsed_then_it_is_valid_and_has_a_github_source() -> None:
    fleet = parse_fleet((ROOT / "fleet.yaml").read_text())

    assert fleet.service("orders").source == GitHubSource(
        github="acme/orders", branch="release", token_secret="release-train/github-token"
    )


def test_given_a_project_map_when_projects_are_resolved_then_each_stage_gets_its_own_project() -> None:
    fleet = parse_fleet(MINIMAL + "    project: {staging: build-api-s, prod: build-api-p}\n")

    assert [fleet.project_for(fleet.service("api"), s) for s in ("staging", "prod")] == ["build-api-s", "build-api-p"]


# --- rejected input: each names the field path and what is expected ------------------------------------------------


def test_given_an_unknown_service_key_when_parsed_then_the_typo_is_named_with_its_path() -> None:
    problems = _problems(MINIMAL + "    wave_s: 2\n")

    assert problems == ["services.0.wave_s: Extra inputs are not permitted (got: 2)"]


def test_given_an_unknown_top_level_key_when_parsed_then_it_is_rejected() -> None:
    problems = _problems(MINIMAL + "colour: red\n")

    assert problems == ["colour: Extra inputs are not permitted (got: 'red')"]


def test_given_a_service_twice_when_parsed_then_the_duplicate_name_is_reported() -> None:
    problems = _problems(MINIMAL + "  - name: api\n    source: {codecommit: api-2}\n")

    assert problems == ["services: names must be unique, repeated: ['api']"]


def test_given_a_stage_twice_when_parsed_then_the_duplicate_stage_is_reported() -> None:
    problems = _problems(MINIMAL + "stages: [{name: prod}, {name: prod}]\n")

    assert problems == ["stages: names must be unique, repeated: ['prod']"]


def test_given_a_project_name_codebuild_refuses_when_parsed_then_the_service_project_is_named() -> None:
    problems = _problems(MINIMAL + "    project: 'api build!'\n")

    assert problems == ["services[0].project: 'api build!' is not a valid CodeBuild project name"]


def test_given_a_project_map_missing_a_stage_when_parsed_then_the_missing_stage_is_named() -> None:
    problems = _problems(MINIMAL + "    project: {staging: build-api-s}\n")

    assert problems == [
        "services[0].project: needs exactly one project per stage ['prod', 'staging']; missing ['prod']"
    ]


def test_given_a_project_map_with_an_unknown_stage_when_parsed_then_the_unknown_stage_is_named() -> None:
    problems = _problems(MINIMAL + "    project: {staging: a-s, prod: a-p, qa: a-q}\n")

    assert problems == [
        "services[0].project: needs exactly one project per stage ['prod', 'staging']; unknown stages ['qa']"
    ]


def test_given_a_bad_service_name_when_parsed_then_the_expected_pattern_is_shown() -> None:
    problems = _problems(MINIMAL.replace("name: api", "name: Api_1"))

    assert problems == ["services.0.name: String should match pattern '^[a-z0-9][a-z0-9-]{0,62}$' (got: 'Api_1')"]


def test_given_a_freeze_window_without_a_time_zone_when_parsed_then_a_zone_is_asked_for() -> None:
    problems = _problems(_with_freeze(("2026-12-20T00:00:00", "2026-12-27T00:00:00")))

    assert problems == ["freeze_windows.0: start and end need a time zone (e.g. 2026-12-20T00:00:00Z)"]


def test_given_a_freeze_window_ending_before_it_starts_when_parsed_then_it_is_rejected() -> None:
    problems = _problems(_with_freeze(("2026-12-27T00:00:00Z", "2026-12-20T00:00:00Z")))

    assert problems == ["freeze_windows.0: end must be after start"]


@pytest.mark.parametrize("bake", ["P15D", "-1"])
def test_given_a_bake_outside_0_to_14_days_when_parsed_then_the_bounds_are_stated(bake: str) -> None:
    problems = _problems(MINIMAL + f"stages: [{{name: staging, bake: {bake}}}]\n")

    assert len(problems) == 1
    assert problems[0].startswith("stages.0.bake: must be between 0 and 14 days")


@pytest.mark.parametrize(("bake", "expected"), [("P14D", timedelta(days=14)), ("0", timedelta(0))])
def test_given_a_bake_on_the_bounds_when_parsed_then_it_is_accepted(bake: str, expected: timedelta) -> None:
    fleet = parse_fleet(MINIMAL + f"stages: [{{name: staging, bake: {bake}}}]\n")

    assert fleet.stages[0].bake == expected


@pytest.mark.parametrize("timeout", ["PT59S", "P7DT1S"])
def test_given_an_approval_timeout_outside_1_minute_to_7_days_when_parsed_then_the_bounds_are_stated(
    timeout: str,
) -> None:
    problems = _problems(MINIMAL + f"stages: [{{name: prod, approval: {{required: true, timeout: {timeout}}}}}]\n")

    assert len(problems) == 1
    assert problems[0].startswith("stages.0.approval.timeout: must be between 1 minute and 7 days")


def test_given_alarms_without_prefix_or_tag_when_parsed_then_the_choice_is_explained() -> None:
    problems = _problems(MINIMAL + "stages: [{name: prod, alarms: {}}]\n")

    assert problems == ["stages.0.alarms: give `prefix` or `tag` (or leave `alarms` out for no alarm evidence)"]


def test_given_a_fleet_without_services_when_parsed_then_services_is_required() -> None:
    problems = _problems("fleet: acme\n")

    assert problems == ["services: Field required"]


def test_given_text_that_is_not_yaml_when_parsed_then_it_says_so() -> None:
    problems = _problems("fleet: [")

    assert problems[0].startswith("not valid YAML:")


def test_given_a_yaml_list_when_parsed_then_a_mapping_is_expected() -> None:
    problems = _problems("- api\n")

    assert problems == ["<top level>: expected a mapping with `fleet`, `stages` and `services`"]


# --- freeze windows -----------------------------------------------------------------------------------------------


def test_given_a_moment_inside_a_window_when_asked_for_the_freeze_then_that_window_is_returned() -> None:
    fleet = parse_fleet(_with_freeze(("2026-12-21T00:00:00Z", "2027-01-04T00:00:00Z")))

    window = fleet.freeze_at(_at("2026-12-25T12:00:00"))

    assert window is not None and window.reason == "window 0"


def test_given_the_end_instant_of_a_window_when_asked_for_the_freeze_then_it_is_open() -> None:
    fleet = parse_fleet(_with_freeze(("2026-12-21T00:00:00Z", "2027-01-04T00:00:00Z")))

    assert fleet.freeze_at(_at("2027-01-04T00:00:00")) is None


def test_given_chained_freeze_windows_when_asked_for_the_next_open_time_then_it_is_the_end_of_the_chain() -> None:
    fleet = parse_fleet(
        _with_freeze(
            ("2026-12-28T00:00:00Z", "2027-01-11T00:00:00Z"),  # listed first, entered second
            ("2026-12-21T00:00:00Z", "2026-12-28T00:00:00Z"),
            ("2027-01-10T00:00:00Z", "2027-01-12T09:00:00Z"),  # overlaps the second
        )
    )

    assert fleet.next_open_time(_at("2026-12-22T09:00:00")) == _at("2027-01-12T09:00:00")


def test_given_a_moment_outside_every_window_when_asked_for_the_next_open_time_then_it_is_that_moment() -> None:
    fleet = parse_fleet(_with_freeze(("2026-12-21T00:00:00Z", "2027-01-04T00:00:00Z")))

    assert fleet.next_open_time(_at("2026-11-23T09:00:00")) == _at("2026-11-23T09:00:00")
