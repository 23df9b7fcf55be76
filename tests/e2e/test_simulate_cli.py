"""`trainctl simulate` as an operator runs it: a separate process, exit codes, JSON on stdout, errors on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainctl.sandbox.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "examples" / "scenarios"
FLEET = ROOT / "fleet.yaml"


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


@pytest.fixture(scope="module")
def rolled_back() -> tuple[int, dict[str, Any], str]:
    return _simulate_json("prod-alarm-rolls-back")


@pytest.fixture(scope="module")
def prod_wave_fails() -> tuple[int, dict[str, Any], str]:
    return _simulate_json("prod-wave1-fails")


def _manifest(doc: dict[str, Any], stage: str) -> dict[str, str]:
    """service -> the commit the release pinned (the manifest, as --json lists it per stage)."""
    services = next(s["services"] for s in doc["stages"] if s["name"] == stage)
    return {s["name"]: s["commit"] for s in services}


def _fleet_services() -> list[dict[str, Any]]:
    services: list[dict[str, Any]] = yaml.safe_load(FLEET.read_text())["services"]
    return services


def _headline(stage: str, pinned: dict[str, str], live: dict[str, str]) -> str:
    """The sentence a release that ends after `stage` began deploying puts in its reason."""
    new = sorted(s for s, commit in pinned.items() if live.get(s) == commit)
    return f"{stage} runs new code for {len(new)} of {len(pinned)} services" + (f": {', '.join(new)}" if new else "")


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), text
    return moment


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


# --- what is live, as `--json` reports it (top-level `live`: stage -> service -> commit, or "unknown") --------------


def test_given_the_happy_path_when_simulated_with_json_then_live_is_the_pinned_commit_in_every_stage(
    happy: tuple[int, dict[str, Any], str],
) -> None:
    _, doc, _ = happy

    assert set(doc["live"]) == {s["name"] for s in doc["stages"]}
    for stage in doc["stages"]:
        assert doc["live"][stage["name"]] == _manifest(doc, stage["name"]), stage["name"]
    # The release succeeded, so it is the baseline "what changed" falls back to.
    assert doc["baseline_release"] == doc["release_id"]


def test_given_a_prod_alarm_with_the_rollback_policy_when_simulated_then_live_shows_which_services_run_new_code(
    rolled_back: tuple[int, dict[str, Any], str],
) -> None:
    code, doc, _ = rolled_back
    scenario = load_scenario(SCENARIOS / "prod-alarm-rolls-back.yaml")
    pinned = _manifest(doc, "prod")
    # The train can put back only services whose Lambda functions the fleet declares (their aliases).
    declared = {s["name"] for s in _fleet_services() if s.get("deploy")}
    assert scenario.on_prod_failure == "rollback"
    assert declared and declared < set(pinned)

    assert code == 1
    assert doc["status"] == "BLOCKED"
    assert doc["live"]["prod"] == {
        name: scenario.commit(name, "previous") if name in declared else commit for name, commit in pinned.items()
    }
    assert _headline("prod", pinned, doc["live"]["prod"]) in doc["reason"]
    assert f"runs new code for {len(pinned) - len(declared)} of {len(pinned)} services" in doc["reason"]
    # Staging is not touched by a prod rollback.
    assert doc["live"]["staging"] == _manifest(doc, "staging")
    # The baseline did not move to a release that did not succeed.
    assert doc["baseline_release"] != doc["release_id"]


def test_given_a_prod_alarm_with_the_rollback_policy_when_simulated_then_aliases_go_back_newest_wave_first(
    rolled_back: tuple[int, dict[str, Any], str],
) -> None:
    _, doc, _ = rolled_back
    wave_of = {
        function.format(service=s["name"], stage="prod"): s["wave"]
        for s in _fleet_services()
        if s.get("deploy")
        for function in s["deploy"]["functions"]
    }
    ended = [e["detail"] for e in doc["events"] if e["kind"] == "live_after_end"]

    assert len(ended) == 1
    rolled = [line.split(":")[0] for line in ended[0]["rolled_back"]]
    assert sorted(rolled) == sorted(wave_of)
    waves = [wave_of[function] for function in rolled]
    assert waves == sorted(waves, reverse=True)


def test_given_a_failed_prod_wave_when_simulated_then_live_says_what_runs_and_what_the_train_cannot_tell(
    prod_wave_fails: tuple[int, dict[str, Any], str],
) -> None:
    code, doc, _ = prod_wave_fails
    pinned = _manifest(doc, "prod")
    prod = next(s["services"] for s in doc["stages"] if s["name"] == "prod")
    failed = {s["name"] for s in prod if s["build_status"] == "FAILED"}
    first_wave = {s["name"] for s in prod if s["wave"] == min(x["wave"] for x in prod)}
    declared = {s["name"] for s in _fleet_services() if s.get("deploy")}
    live = doc["live"]["prod"]
    assert failed and failed < first_wave

    assert code == 1
    assert doc["status"] == "FAILED"
    # The failed build's service has no declared function to look at: what it runs is unknown, and said so.
    for name in failed - declared:
        assert live[name] == "unknown"
    for name in first_wave - failed:
        assert live[name] == pinned[name]
    # Later waves never started: whatever prod runs for them, it is not this release's commit.
    for name in set(pinned) - first_wave:
        assert live.get(name) != pinned[name]
    headline = _headline("prod", pinned, live)
    assert f"runs new code for {len(first_wave - failed)} of {len(pinned)} services" in headline
    assert headline in doc["reason"]
    assert f"unknown for {', '.join(sorted(failed - declared))}" in doc["reason"]


# --- builds carry virtual start and end times (ISO 8601, UTC) -------------------------------------------------------


def test_given_the_happy_path_when_simulated_with_json_then_every_build_has_utc_start_and_end_times_in_order(
    happy: tuple[int, dict[str, Any], str],
) -> None:
    _, doc, _ = happy
    scenario = load_scenario(SCENARIOS / "happy-path.yaml")

    assert doc["builds"]
    for build in doc["builds"]:
        started, ended = _utc(build["started_at"]), _utc(build["ended_at"])
        assert build["started_at"].endswith("Z"), build
        assert scenario.schedule_time <= started <= ended, build
    # The prod approval guards entry to prod: no prod build started before it was given.
    approved = [_utc(a["at"]) for a in doc["approval_answers"] if a["stage"] == "prod" and a["accepted"]]
    prod_builds = [_utc(b["started_at"]) for b in doc["builds"] if b["stage"] == "prod"]
    assert len(approved) == 1
    assert prod_builds
    assert min(prod_builds) >= approved[0]


# --- what people read: the live log (stderr, when not a terminal) and the summary (stdout) --------------------------

ASL_STATES = ("LoadWave", "BuildChunks", "RunChunk", "BuildFailed", "BuildDone", "RecordWave", "EvaluateGate")


def test_given_a_failing_build_when_simulated_for_people_then_the_log_names_wave_and_failure_and_ends_with_reason() -> (
    None
):
    done = _trainctl("simulate", "--fleet", "fleet.yaml", "--scenario", "staging-build-fails")

    assert done.returncode == 1
    log = [line.split("  ", 1)[1] for line in done.stderr.splitlines() if "  " in line]  # "<virtual time>  <news>"
    assert log[:4] == [
        "staging wave 1: started",
        "staging wave 1: 2 succeeded, 0 failed",
        "staging wave 2: started",
        "staging wave 2: catalog FAILED",
    ]
    assert "staging wave 2: 1 succeeded, 1 failed (catalog)" in log
    assert log[-1] == "train ended: failed"
    printed = done.stdout.splitlines()
    staging = printed.index("stage staging")
    rows = [line for line in printed[staging : printed.index("stage prod")] if line.startswith("│")]
    assert [row.split("│")[1:3] for row in rows][2][1].strip() == "catalog"  # wave 2 leads with its failure
    assert printed[-1].startswith("release 2026-W48 (staging-build-fails): FAILED — WaveFailed: staging wave 2")
    assert "catalog" in printed[-1]
    for state in ASL_STATES:
        assert state not in done.stdout + done.stderr
