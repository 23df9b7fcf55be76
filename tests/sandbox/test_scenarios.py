"""The scenario suite: the real ASL and handlers in the sandbox, one scripted world per file in examples/scenarios."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainctl.sandbox.runner import SimulationResult, simulate
from trainctl.sandbox.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "examples" / "scenarios"

# scenario -> (ledger status, text the reason must contain, builds started)
EXPECTED: dict[str, tuple[str, str, int]] = {
    "happy-path": ("SUCCEEDED", "all stages promoted", 14),
    "nothing-changed": ("NOTHING_TO_RELEASE", "no service changed", 0),
    "freeze-window": ("BLOCKED", "next open time", 0),
    "staging-build-fails": ("FAILED", "staging wave 2", 4),
    "staging-tests-fail": ("BLOCKED", "tests failed: 3 of 120", 7),
    "staging-tests-no-report": ("BLOCKED", "evidence missing: no test report", 7),
    "alarm-during-bake": ("BLOCKED", "went to ALARM during the bake", 7),
    "operator-hold": ("BLOCKED", "hold on the fleet", 7),
    "approval-approved": ("SUCCEEDED", "all stages promoted", 14),
    "approval-rejected": ("BLOCKED", "ApprovalRejected", 14),
    "approval-timeout": ("BLOCKED", "ApprovalTimedOut", 14),
    "cancel-during-bake": ("CANCELLED", "operator cancelled at Bake", 7),
    "prod-wave1-fails": ("FAILED", "prod wave 1", 9),
    "prod-build-fails": ("FAILED", "prod wave 3", 13),
    "build-throttled": ("SUCCEEDED", "all stages promoted", 14),
    "second-start": ("SUCCEEDED", "all stages promoted", 14),
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def run(request: pytest.FixtureRequest) -> tuple[str, SimulationResult]:
    name = request.param
    return name, simulate(ROOT / "fleet.yaml", load_scenario(SCENARIOS / f"{name}.yaml"), ROOT)


def test_given_a_scenario_when_the_train_ends_then_the_ledger_is_terminal_with_the_expected_reason(
    run: tuple[str, SimulationResult],
) -> None:
    name, result = run
    status, reason, builds = EXPECTED[name]
    assert result.status == status
    assert reason in result.reason
    assert result.builds_started == builds
    assert result.lock_held_after is False  # every ending frees the lock


def test_given_a_scenario_when_prod_builds_ran_then_they_built_exactly_the_commits_staging_built(
    run: tuple[str, SimulationResult],
) -> None:
    _, result = run
    if not result.stages:
        pytest.skip("no release was planned in this scenario")
    staging, prod = result.stages
    staged = {s["name"]: s["commit"] for s in staging["services"] if s["build_status"] == "SUCCEEDED"}
    for service in prod["services"]:
        if service["build_status"] != "NOT_BUILT":
            assert staged[service["name"]] == service["commit"]


def test_given_a_second_start_while_a_train_runs_then_it_is_refused_and_the_first_unaffected() -> None:
    result = simulate(ROOT / "fleet.yaml", load_scenario(SCENARIOS / "second-start.yaml"), ROOT)
    assert result.second_start is not None
    assert result.second_start["status"] == "FAILED"
    assert result.second_start["error"] in {"ReleaseInProgress", "ReleaseAlreadyExists"}
    assert result.status == "SUCCEEDED"


def test_given_throttled_start_builds_then_they_are_retried_and_the_release_succeeds() -> None:
    result = simulate(ROOT / "fleet.yaml", load_scenario(SCENARIOS / "build-throttled.yaml"), ROOT)
    assert result.builds_throttled == 2
    assert result.status == "SUCCEEDED"


def test_given_malformed_input_then_it_is_rejected_before_any_side_effect() -> None:
    result = simulate(ROOT / "fleet.yaml", load_scenario(SCENARIOS / "malformed-input.yaml"), ROOT)
    assert result.execution_error == "InvalidInput"
    assert result.release_id is None  # no release record
    assert result.builds_started == 0
    assert result.lock_held_after is False
