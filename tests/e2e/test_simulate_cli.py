"""`trainctl simulate` as an operator runs it: a separate process, exit codes, JSON on stdout, errors on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trainctl.sandbox.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "examples" / "scenarios"


def _trainctl(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "trainctl"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "trainctl.cli"]
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}  # no wrapping or colour codes in what we read
    return subprocess.run(
        [*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def _simulate_json(scenario: str) -> tuple[int, dict[str, Any], str]:
    done = _trainctl("simulate", "--fleet", "fleet.yaml", "--scenario", str(SCENARIOS / f"{scenario}.yaml"), "--json")
    return done.returncode, json.loads(done.stdout), done.stderr


@pytest.fixture(scope="module")
def happy() -> tuple[int, dict[str, Any], str]:
    return _simulate_json("happy-path")


@pytest.fixture(scope="module")
def failing() -> tuple[int, dict[str, Any], str]:
    return _simulate_json("staging-build-fails")


def test_given_the_happy_path_when_simulated_with_json_then_it_exits_0_with_the_release_summary(
    happy: tuple[int, dict[str, Any], str],
) -> None:
    code, doc, _ = happy
    assert code == 0
    assert doc["scenario"] == "happy-path"
    assert doc["status"] == "SUCCEEDED"
    assert doc["reason"] == "all stages promoted"
    assert doc["release_id"] == "2026-W48"  # the ISO week of the scenario's schedule time, 2026-11-23
    for key in ("history_events", "state_transitions"):
        assert isinstance(doc[key], int)
        assert doc[key] > 0
    assert doc["virtual_duration_s"] >= 2 * 86400  # the 2-day staging bake passed in virtual time
    assert isinstance(doc["wall_s"], float)


def test_given_the_happy_path_when_simulated_with_json_then_each_stage_lists_every_service_with_commit_and_build(
    happy: tuple[int, dict[str, Any], str],
) -> None:
    _, doc, _ = happy
    scenario = load_scenario(SCENARIOS / "happy-path.yaml")
    services = {"company-service", "identity", "catalog", "orders", "payments", "notifications"}
    assert [s["name"] for s in doc["stages"]] == ["staging", "prod"]
    for stage in doc["stages"]:
        assert {s["name"]: s["commit"] for s in stage["services"]} == {
            name: scenario.commit(name, "head") for name in services
        }
        assert {s["build_status"] for s in stage["services"]} == {"SUCCEEDED"}


def test_given_a_failing_scenario_when_simulated_with_json_then_it_exits_1_with_the_reason(
    failing: tuple[int, dict[str, Any], str],
) -> None:
    code, doc, _ = failing
    assert code == 1
    assert doc["status"] == "FAILED"
    assert "staging wave 2" in doc["reason"]
    assert "catalog" in doc["reason"]
    staging = {s["name"]: s["build_status"] for s in doc["stages"][0]["services"]}
    assert staging["catalog"] == "FAILED"


def test_given_an_invalid_fleet_file_when_simulated_then_it_exits_2_naming_the_file_field_and_expectation(
    tmp_path: Path,
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "fleet: acme-shop\n"
        "stages:\n"
        "  - name: staging\n"
        "    bake: P30D\n"
        "services:\n"
        "  - name: api\n"
        "    source: {codecommit: api}\n"
        "    wave: 0\n"
    )
    done = _trainctl("simulate", "--fleet", str(fleet), "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert str(fleet) in done.stderr
    assert "stages.0.bake: must be between 0 and 14 days" in done.stderr
    assert "services.0.wave: Input should be greater than or equal to 1 (got: 0)" in done.stderr


def test_given_an_invalid_scenario_file_when_simulated_then_it_exits_2_naming_the_file_and_field(
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("changed: maybe\nbuilds: {staging: {api: {outcome: EXPLODED}}}\n")
    done = _trainctl("simulate", "--scenario", str(scenario), "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert str(scenario) in done.stderr
    assert "changed" in done.stderr
    assert "builds.staging.api.outcome" in done.stderr
