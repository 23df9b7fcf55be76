"""The live view of `trainctl simulate` and its summary: folded from history events, rendered from documents."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from trainctl import resources
from trainctl.convention import CommandError
from trainctl.live_view import LARGE_WAVE, LiveTrain, canaries_of, milestone, render_live, render_summary
from trainctl.sandbox.runner import Observed

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
STAGING = {"name": "staging", "waves": [1, 2], "bake_seconds": 172800, "test_project": "train-e2e-staging"}
PROD = {"name": "prod", "waves": [1, 2], "bake_seconds": 3600, "approval_timeout_seconds": 86400}
ASL_NAMES = ("LoadWave", "BuildFailed", "BuildDone", "RecordWave", "EvaluateGate", "RequestApproval", "RunChunk")


def entered(state: str, data: dict[str, Any], minutes: float = 0) -> Observed:
    details = {"stateEnteredEventDetails": {"name": state, "input": json.dumps(data)}}
    return Observed("TaskStateEntered", state, data, T0 + timedelta(minutes=minutes), details)


def event(kind: str, details: dict[str, Any], minutes: float = 0) -> Observed:
    return Observed(kind, None, None, T0 + timedelta(minutes=minutes), details)


def build(state: str, stage: str, wave: int, service: str, minutes: float = 0, status: str = "FAILED") -> Observed:
    data: dict[str, Any] = {"release_id": "2026-W48", "stage": stage, "wave": wave, "chunk": 0, "service": service}
    if state == "BuildFailed":  # the Catch's $.error: the cause is the build description (a JSON string)
        data["error"] = {
            "Error": "States.TaskFailed",
            "Cause": json.dumps({"Id": f"p:{service}", "BuildStatus": status}),
        }
    return entered(state, data, minutes)


def plan() -> Observed:
    output = {"plan": {"release_id": "2026-W48", "service_count": 4, "stages": [STAGING, PROD]}}
    return event("TaskStateExited", {"stateExitedEventDetails": {"name": "PlanRelease", "output": json.dumps(output)}})


def rendered(renderable: Any) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(renderable, soft_wrap=True)
    return console.export_text()


def staging_wave_2_fails(train: LiveTrain) -> list[str]:
    lines: list[str] = []
    for observed in [
        plan(),
        entered("NeedsApproval", {"release_id": "2026-W48", "stage": STAGING}),
        entered("LoadWave", {"stage": "staging", "wave": 1}),
        build("Build", "staging", 1, "identity"),
        build("BuildDone", "staging", 1, "identity", 6),
        entered("RecordWave", {"stage": "staging", "wave": 1}, 6),
        entered("LoadWave", {"stage": "staging", "wave": 2}, 6),
        build("Build", "staging", 2, "catalog", 6),
        build("Build", "staging", 2, "orders", 6),
        build("BuildFailed", "staging", 2, "catalog", 10),
    ]:
        lines += train(observed)
    return lines


def test_given_a_failing_build_when_its_failure_state_is_entered_then_the_wave_counts_and_names_it_at_once() -> None:
    train = LiveTrain()

    lines = staging_wave_2_fails(train)

    doc = train.doc()
    assert doc["release_id"] == "2026-W48"
    assert doc["services"] == 4
    assert [s["name"] for s in doc["stages"]] == ["staging", "prod"]
    waves = {w["wave"]: w for w in doc["stages"][0]["waves"]}
    assert waves[1] == {
        "wave": 1,
        "state": "done",
        "running": 0,
        "succeeded": 1,
        "failed": 0,
        "failed_services": [],
    }
    assert waves[2] == {
        "wave": 2,
        "state": "building",
        "running": 1,
        "succeeded": 0,
        "failed": 1,
        "failed_services": ["catalog"],
    }
    # The failure is news the moment it happens, not when the wave ends.
    assert lines[-1] == "staging wave 2: catalog FAILED"
    assert lines[:3] == ["staging wave 1: started", "staging wave 1: 1 succeeded, 0 failed", "staging wave 2: started"]
    assert milestone(T0 + timedelta(minutes=10), lines[-1]) == "Mon 23 Nov 09:10  staging wave 2: catalog FAILED"


def test_given_the_live_document_when_rendered_then_it_reads_stage_wave_counts_and_failures_without_asl_names() -> None:
    train = LiveTrain()
    staging_wave_2_fails(train)

    screen = rendered(render_live(train.doc()))

    assert "2026-W48 · running · staging: wave 2" in screen
    assert "wave 1  done · 1 succeeded" in screen
    assert "wave 2  building · 1 running · 0 succeeded · 1 failed: catalog" in screen
    assert "Mon 23 Nov 09:10" in screen
    for name in ASL_NAMES:
        assert name not in screen
    assert "Build states" not in screen


def test_given_a_bake_when_virtual_time_passes_then_the_countdown_shows_what_is_left() -> None:
    train = LiveTrain()
    train(plan())
    train(entered("RunTests", {"release_id": "2026-W48", "stage": STAGING}, 10))
    lines = train(entered("Bake", {"stage": STAGING, "tests": {"status": "SUCCEEDED"}}, 20))
    train(event("WaitStateStarted", {}, 20 + 60 * 5))  # any later event moves the clock: 5 h into the bake

    staging = train.doc()["stages"][0]
    assert staging["bake"] == {
        "seconds": 172800,
        "ends_at": (T0 + timedelta(minutes=20, days=2)).isoformat(),
        "left_s": 172800 - 5 * 3600,
    }
    assert staging["tests"] == "SUCCEEDED"
    assert lines == ["staging: baking 2d 0h, until Wed 25 Nov 09:20"]
    assert "bake 2d 0h until Wed 25 Nov 09:20, 1d 19h left" in rendered(render_live(train.doc()))


def test_given_an_approval_when_it_is_answered_then_the_view_says_by_whom_and_the_gate_before_it_promoted() -> None:
    train = LiveTrain()
    train(plan())
    train(entered("EvaluateGate", {"stage": STAGING}, 1))
    promoted = train(entered("NeedsApproval", {"release_id": "2026-W48", "stage": PROD}, 2))
    asked = train(entered("RequestApproval", {"release_id": "2026-W48", "stage": PROD}, 2))
    pending = rendered(render_live(train.doc()))
    answer = {"approved_by": "alice@example.com", "identity": "arn:aws:sts::1:assumed-role/RM/alice", "reason": "go"}
    details = {"resourceType": "lambda", "resource": "invoke.waitForTaskToken", "output": json.dumps(answer)}
    answered = train(event("TaskSucceeded", {"taskSucceededEventDetails": details}, 90))

    stages = {s["name"]: s for s in train.doc()["stages"]}
    assert stages["staging"]["gate"] == "PROMOTE"  # prod was entered: the staging gate promoted
    assert promoted == ["staging: gate PROMOTE"]
    assert "approval pending since 2026-11-23T09:02:00+00:00" in pending
    assert asked == ["prod: approval requested; nothing is deployed to prod until it is given"]
    assert stages["prod"]["approval"]["status"] == "APPROVED"
    assert stages["prod"]["approval"]["by"] == "alice@example.com"
    assert answered == ["prod: approved by alice@example.com: go"]
    assert "approval approved by alice@example.com: go" in rendered(render_live(train.doc()))


def test_given_a_rejected_approval_then_the_view_says_refused_and_why() -> None:
    train = LiveTrain()
    train(entered("RequestApproval", {"stage": PROD}))
    details = {
        "resourceType": "lambda",
        "resource": "invoke.waitForTaskToken",
        "error": "ApprovalRejected",
        "cause": "rejected by bob@example.com: launch moved",
    }

    lines = train(event("TaskFailed", {"taskFailedEventDetails": details}, 5))
    lines += train(entered("ReleaseBlocked", {}, 5))

    assert train.doc()["stages"][0]["approval"]["status"] == "REJECTED"
    assert lines == [
        "prod: approval refused (ApprovalRejected): rejected by bob@example.com: launch moved",
        "train ended: blocked",
    ]


@dataclass
class _Site:
    function: str
    stage: str = "prod"


@dataclass
class _Deployment:
    site: _Site
    target_version: str
    status: str
    routing: list[dict[str, Any]] = field(default_factory=list)
    rolled_back: bool = False


def test_given_canaries_shifting_when_rendered_then_the_traffic_share_on_the_new_version_shows() -> None:
    shifting = _Deployment(
        _Site("shop-prod-api"), "3", "InProgress", [{"version": "2", "additional_weights": {"3": 0.1}}]
    )
    done = _Deployment(_Site("shop-prod-worker"), "5", "Succeeded", [{"version": "5", "additional_weights": {}}])
    waiting = _Deployment(_Site("shop-prod-cron"), "2", "Created")

    found = canaries_of([shifting, done, waiting])
    screen = rendered(render_live(LiveTrain(lambda: found).doc()))

    assert [c["traffic_percent"] for c in found] == [10.0, 100.0, 0.0]
    assert "shop-prod-api 10% on the new version (InProgress)" in screen
    assert "shop-prod-cron 0% on the new version (Created)" in screen
    assert "1 shifted to 100%" in screen


def _result(services: int, failed: set[str]) -> dict[str, Any]:
    names = [f"svc-{i:03d}" for i in range(services)]
    stage = {
        "name": "staging",
        "services": [
            {
                "name": n,
                "wave": 1 + i % 3,
                "commit": "a" * 40,
                "build_status": "FAILED" if n in failed else "SUCCEEDED",
            }
            for i, n in enumerate(names)
        ],
    }
    return {
        "release_id": "2026-W48",
        "scenario": "three-fail",
        "status": "FAILED",
        "reason": "WaveFailed: staging wave 2: 2 of 100 builds failed: svc-004, svc-007",
        "stages": [stage],
        "gates": [],
        "deployments": [],
        "second_start": None,
        "virtual_duration_s": 3600.0,
        "wall_s": 1.5,
        "history_events": 100,
        "state_transitions": 50,
        "estimated_cost_usd": 0.001,
        "builds_started": 300,
        "builds_throttled": 0,
    }


def test_given_a_large_fleet_when_summarised_then_each_wave_is_its_failures_first_then_counts_and_the_reason_last() -> (
    None
):
    doc = _result(300, {"svc-004", "svc-007"})

    lines = rendered(render_summary(doc)).splitlines()

    assert len(lines) < 30  # 300 services: not a row each
    rows = [line for line in lines if line.startswith("│")]
    cells = [[c.strip() for c in row.strip("│").split("│")] for row in rows]
    assert cells == [
        ["1", "100 services", "-", "SUCCEEDED"],
        ["2", "svc-004", "aaaaaaaaaaaa", "FAILED"],
        ["2", "svc-007", "aaaaaaaaaaaa", "FAILED"],
        ["2", "98 services", "-", "SUCCEEDED"],
        ["3", "100 services", "-", "SUCCEEDED"],
    ]
    assert lines[-1] == f"release 2026-W48 (three-fail): FAILED — {doc['reason']}"


def test_given_a_small_fleet_when_summarised_then_every_service_has_a_row_in_wave_order() -> None:
    doc = _result(LARGE_WAVE, {"svc-004"})

    rows = [line for line in rendered(render_summary(doc)).splitlines() if line.startswith("│")]
    cells = [[c.strip() for c in row.strip("│").split("│")] for row in rows]

    assert len(cells) == LARGE_WAVE
    assert [c[0] for c in cells] == sorted(c[0] for c in cells)
    wave_2 = [c[1] for c in cells if c[0] == "2"]
    assert wave_2[0] == "svc-004"  # the failure leads its wave
    assert wave_2[1:] == sorted(wave_2[1:])


# --- where the stack's files come from (trainctl/resources.py) -----------------------------------------------------


def _stack_files(root: Path) -> Path:
    for name in resources.REQUIRED:
        path = root / name
        if "." in path.name:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
        else:
            path.mkdir(parents=True, exist_ok=True)
    return root


def test_given_an_incomplete_checkout_when_the_stack_is_looked_up_then_the_installed_copy_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(resources.OVERRIDE, raising=False)
    checkout = tmp_path / "site-packages"
    checkout.mkdir()
    installed = _stack_files(tmp_path / "site-packages" / "trainctl" / "_stack")

    assert resources.stack_root((checkout, installed)) == installed
    assert resources.stack_root((_stack_files(tmp_path / "checkout"), installed)) == tmp_path / "checkout"


def test_given_no_complete_copy_when_the_stack_is_looked_up_then_one_error_says_what_is_missing_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(resources.OVERRIDE, raising=False)
    partial = tmp_path / "partial"
    (partial / "functions").mkdir(parents=True)

    with pytest.raises(resources.StackFilesMissing) as raised:
        resources.stack_root((partial,))

    assert raised.value.code == 3
    message = str(raised.value)
    assert "\n" not in message
    assert f"{partial} lacks template.yaml, statemachines/release_train.asl.json" in message
    assert "pipx install" in message


def test_given_a_scenario_name_when_resolved_then_the_shipped_file_is_found_and_a_wrong_name_lists_them(
    tmp_path: Path,
) -> None:
    shipped = tmp_path / "examples" / "scenarios"
    shipped.mkdir(parents=True)
    (shipped / "happy-path.yaml").write_text("name: happy-path\n")
    (shipped / "staging-build-fails.yaml").write_text("name: staging-build-fails\n")

    assert resources.scenario_path("happy-path", tmp_path) == shipped / "happy-path.yaml"
    assert resources.scenario_path("staging-build-fails.yaml", tmp_path) == shipped / "staging-build-fails.yaml"
    with pytest.raises(CommandError) as raised:
        resources.scenario_path("happy", tmp_path)
    assert raised.value.code == 2
    assert str(raised.value).endswith("one of: happy-path, staging-build-fails")


def test_given_a_fleet_name_when_resolved_then_the_shipped_fleet_is_found_and_a_file_still_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "examples" / "fleets"
    shipped.mkdir(parents=True)
    (shipped / "three-accounts.yaml").write_text("fleet: a\n")
    (shipped / "mixed-ecs.yaml").write_text("fleet: b\n")
    own = tmp_path / "work"
    own.mkdir()
    (own / "three-accounts.yaml").write_text("fleet: mine\n")

    assert resources.fleet_path("three-accounts", tmp_path) == shipped / "three-accounts.yaml"
    monkeypatch.chdir(own)  # a file of that name where the operator stands is theirs, not the shipped one
    assert resources.fleet_path("three-accounts.yaml", tmp_path) == Path("three-accounts.yaml")
    with pytest.raises(CommandError) as raised:
        resources.fleet_path("three", tmp_path)
    assert raised.value.code == 2
    assert str(raised.value) == (
        "--fleet three: no such file, and not the name of a shipped fleet; pass a fleet file or one of: "
        "mixed-ecs, three-accounts"
    )


def test_given_the_last_gate_deciding_when_the_release_blocks_then_the_gate_blocked_and_the_train_ended() -> None:
    train = LiveTrain()
    train(plan())
    train(entered("EvaluateGate", {"stage": PROD}))

    lines = train(entered("ReleaseBlocked", {}, 1))

    assert lines == ["prod: gate BLOCK", "train ended: blocked"]
    assert train.doc()["phase"] == "blocked"
    assert "gate BLOCK" in rendered(render_live(train.doc()))
