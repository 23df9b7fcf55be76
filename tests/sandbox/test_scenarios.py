"""The scenario suite: whole trains of the real ASL and handlers in the sandbox, one scripted world per file.

Each scenario in examples/scenarios runs once per module (a fixture) and several tests read that one run. Expected
commits come from the scenario itself (`Scenario.commit`), what was built from the emulated CodeBuild (`result.builds`:
the commit each build was started with), and statuses and reasons from the ledger — so a test fails when the
behaviour breaks, not when a number changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from release_train.domain.fleet import parse_fleet
from trainctl.sandbox.runner import SimulationResult, simulate
from trainctl.sandbox.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "examples" / "scenarios"
FLEET = parse_fleet((ROOT / "fleet.yaml").read_text())
SERVICES = {s.name for s in FLEET.services}
WAVE = {s.name: s.wave for s in FLEET.services}
TERMINAL = {"SUCCEEDED", "BLOCKED", "FAILED", "CANCELLED", "NOTHING_TO_RELEASE"}


def _scenario(name: str) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.yaml")


def _run_fixture(name: str) -> Callable[[], SimulationResult]:
    @pytest.fixture(scope="module", name=name.replace("-", "_"))
    def run() -> SimulationResult:
        return simulate(ROOT / "fleet.yaml", _scenario(name), ROOT)

    return run


NAMES = sorted(p.stem for p in SCENARIOS.glob("*.yaml"))
for _name in NAMES:
    globals()[f"_fixture_{_name.replace('-', '_')}"] = _run_fixture(_name)


def _head(scenario: str, services: set[str]) -> dict[str, str]:
    s = _scenario(scenario)
    return {name: s.commit(name, "head") for name in services}


def _service_builds(result: SimulationResult, stage: str) -> list[dict[str, Any]]:
    return [b for b in result.builds if b["stage"] == stage and b["kind"] == "service"]


def _built(result: SimulationResult, stage: str) -> dict[str, str]:
    """service -> the commit its build in `stage` was started with (each service at most once: asserted)."""
    builds = _service_builds(result, stage)
    counts = Counter(b["service"] for b in builds)
    assert all(n == 1 for n in counts.values()), f"a service was built twice in {stage}: {counts}"
    return {b["service"]: b["commit"] for b in builds}


def _ledger_status(result: SimulationResult, stage: str) -> dict[str, str]:
    stage_doc = next(s for s in result.stages if s["name"] == stage)
    return {s["name"]: s["build_status"] for s in stage_doc["services"]}


def _gate(result: SimulationResult, stage: str) -> dict[str, Any] | None:
    return next((g for g in result.gates if g["stage"] == stage), None)


def _test_runs(result: SimulationResult, stage: str) -> list[dict[str, Any]]:
    return [b for b in result.builds if b["stage"] == stage and b["kind"] == "test"]


# --- invariants over every scenario -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_given_any_scenario_when_the_train_ends_then_the_ledger_is_terminal_with_a_reason_and_the_lock_free(
    name: str, request: pytest.FixtureRequest
) -> None:
    result: SimulationResult = request.getfixturevalue(name.replace("-", "_"))
    assert result.execution_status != "RUNNING"
    for release in result.fleet_releases:  # invariant 3: nothing left RUNNING
        assert release["status"] in TERMINAL
    if result.release_id is not None:
        assert result.status in TERMINAL
        assert result.reason.strip()
    assert result.lock_held_after is False
    assert not [b for b in result.builds if b["status"] == "IN_PROGRESS"], "a build was left running"


@pytest.mark.parametrize("name", NAMES)
def test_given_any_scenario_when_prod_builds_then_each_builds_the_commit_that_succeeded_in_staging(
    name: str, request: pytest.FixtureRequest
) -> None:
    result: SimulationResult = request.getfixturevalue(name.replace("-", "_"))
    # per release: a scenario may run two trains (a newer one superseding a pending approval)
    staging_ok = {
        (b["release_id"], b["service"]): b["commit"]
        for b in _service_builds(result, "staging")
        if b["status"] == "SUCCEEDED"
    }
    releases = {r["release_id"] for r in result.fleet_releases}
    for build in _service_builds(result, "prod"):  # invariant 1
        key = (build["release_id"], build["service"])
        assert key in staging_ok, f"{key} reached prod without a successful staging build in the same release"
        assert build["commit"] == staging_ok[key]
        assert build["release_id"] in releases


# --- happy path ---------------------------------------------------------------------------------------------------


def test_given_a_healthy_week_when_the_train_runs_then_it_succeeds_with_both_gates_promoting(
    happy_path: SimulationResult,
) -> None:
    assert (happy_path.status, happy_path.reason) == ("SUCCEEDED", "all stages promoted")
    assert happy_path.execution_status == "SUCCEEDED"
    assert {g["stage"]: (g["verdict"], g["reasons"]) for g in happy_path.gates} == {
        "staging": ("PROMOTE", []),
        "prod": ("PROMOTE", []),
    }


def test_given_a_healthy_week_when_the_train_runs_then_each_stage_builds_every_service_once_at_its_head_commit(
    happy_path: SimulationResult,
) -> None:
    expected = _head("happy-path", SERVICES)
    assert _built(happy_path, "staging") == expected
    assert _built(happy_path, "prod") == expected


def test_given_a_healthy_week_when_the_train_runs_then_waves_start_in_order_within_each_stage(
    happy_path: SimulationResult,
) -> None:
    for stage in ("staging", "prod"):
        waves = [WAVE[b["service"]] for b in _service_builds(happy_path, stage)]  # builds in start order
        assert waves == sorted(waves)


# --- nothing to release, freeze -----------------------------------------------------------------------------------


def test_given_no_branch_moved_when_the_schedule_fires_then_nothing_is_released_and_nothing_built(
    nothing_changed: SimulationResult,
) -> None:
    assert nothing_changed.status == "NOTHING_TO_RELEASE"
    assert nothing_changed.reason == "no service's head differs from what prod runs (last release 2026-W47)"
    assert nothing_changed.execution_status == "SUCCEEDED"
    assert nothing_changed.builds == []
    assert nothing_changed.gates == []


def test_given_a_freeze_window_when_the_schedule_fires_then_the_release_is_blocked_before_any_build(
    freeze_window: SimulationResult,
) -> None:
    assert freeze_window.status == "BLOCKED"
    assert "freeze window 'scenario freeze'" in freeze_window.reason
    assert "next open time" in freeze_window.reason
    assert freeze_window.builds == []
    assert freeze_window.gates == []


# --- staging failures: nothing reaches prod -----------------------------------------------------------------------


def test_given_a_staging_build_fails_when_its_wave_ends_then_the_release_fails_naming_the_build(
    staging_build_fails: SimulationResult,
) -> None:
    assert staging_build_fails.status == "FAILED"
    assert "staging wave 2" in staging_build_fails.reason
    assert "catalog (FAILED)" in staging_build_fails.reason
    assert _ledger_status(staging_build_fails, "staging")["catalog"] == "FAILED"


def test_given_a_staging_build_fails_when_its_wave_ends_then_no_later_wave_no_tests_and_no_prod_build_run(
    staging_build_fails: SimulationResult,
) -> None:
    assert set(_built(staging_build_fails, "staging")) == {s for s in SERVICES if WAVE[s] <= 2}
    assert _test_runs(staging_build_fails, "staging") == []
    assert _service_builds(staging_build_fails, "prod") == []
    assert staging_build_fails.gates == []


def test_given_staging_tests_fail_when_the_gate_evaluates_then_it_blocks_on_the_failed_tests(
    staging_tests_fail: SimulationResult,
) -> None:
    assert staging_tests_fail.status == "BLOCKED"
    assert "tests failed: 3 of 120" in staging_tests_fail.reason
    gate = _gate(staging_tests_fail, "staging")
    assert gate is not None
    assert (gate["verdict"], gate["reasons"]) == ("BLOCK", ["tests failed: 3 of 120"])
    assert _service_builds(staging_tests_fail, "prod") == []


def test_given_a_test_run_without_a_report_when_the_gate_evaluates_then_missing_evidence_blocks(
    staging_tests_no_report: SimulationResult,
) -> None:
    runs = _test_runs(staging_tests_no_report, "staging")
    assert [r["status"] for r in runs] == ["SUCCEEDED"]  # the run itself passed: only the evidence is missing
    gate = _gate(staging_tests_no_report, "staging")
    assert gate is not None
    assert gate["verdict"] == "BLOCK"
    assert gate["reasons"] == ["evidence missing: no test report for this release and stage"]
    assert staging_tests_no_report.status == "BLOCKED"
    assert _service_builds(staging_tests_no_report, "prod") == []


def test_given_an_alarm_during_the_bake_when_it_recovers_before_the_gate_then_the_gate_still_blocks(
    alarm_during_bake: SimulationResult,
) -> None:
    gate = _gate(alarm_during_bake, "staging")
    assert gate is not None
    assert gate["reasons"] == ["alarm staging-checkout-latency went to ALARM during the bake"]
    assert alarm_during_bake.status == "BLOCKED"
    assert "staging-checkout-latency" in alarm_during_bake.reason
    assert _service_builds(alarm_during_bake, "prod") == []


def test_given_an_operator_hold_when_the_first_wave_would_start_then_it_blocks_with_the_holds_reason_and_author(
    operator_hold: SimulationResult,
) -> None:
    assert operator_hold.status == "BLOCKED"
    assert "hold on the fleet by oncall@example.com: incident INC-4711 in progress" in operator_hold.reason
    assert operator_hold.builds == []  # no wave starts under a hold, in any stage


# --- approval -----------------------------------------------------------------------------------------------------


def test_given_prod_needs_approval_when_it_is_approved_then_the_release_succeeds_with_the_approver_recorded(
    approval_approved: SimulationResult,
) -> None:
    assert approval_approved.status == "SUCCEEDED"
    [approval] = approval_approved.approvals
    assert (approval["stage"], approval["status"], approval["decided_by"], approval["reason"]) == (
        "prod",
        "APPROVED",
        "alice@example.com",
        "canary numbers look good",
    )


def test_given_prod_needs_approval_when_it_is_rejected_then_the_release_is_blocked_with_the_approvers_reason(
    approval_rejected: SimulationResult,
) -> None:
    assert approval_rejected.status == "BLOCKED"
    assert approval_rejected.reason == "ApprovalRejected: rejected by bob@example.com: marketing launch moved"
    [approval] = approval_rejected.approvals
    assert (approval["status"], approval["decided_by"]) == ("REJECTED", "bob@example.com")
    assert _gate(approval_rejected, "prod") is None


@pytest.mark.parametrize("name", ["approval-rejected", "approval-timeout", "approval-after-cancel", "approval-late"])
def test_given_a_prod_approval_not_given_in_time_then_nothing_was_deployed_to_prod(
    name: str, request: pytest.FixtureRequest
) -> None:
    result: SimulationResult = request.getfixturevalue(name.replace("-", "_"))
    assert result.status in {"BLOCKED", "CANCELLED"}
    assert _service_builds(result, "prod") == []  # the approval guards ENTRY to prod
    assert [d for d in result.deployments if d["stage"] == "prod"] == []
    assert "prod" not in result.live  # nothing of this release is live in prod
    assert "runs new code" not in result.reason


def test_given_prod_needs_approval_when_nobody_answers_then_it_times_out_blocked(
    approval_timeout: SimulationResult,
) -> None:
    assert approval_timeout.status == "BLOCKED"
    assert approval_timeout.reason.startswith("ApprovalTimedOut: ")
    [approval] = approval_timeout.approvals
    assert approval["status"] == "TIMED_OUT"
    # asked on entry to prod, right after the 2-day staging bake; the 24 h timeout passed in virtual time
    staging = 3 * 6 * 60 + 12 * 60  # three 6-minute waves and the 12-minute test run
    eventbridge = 2  # the execution's status change reaches the clean-up 2 s later (scenario default)
    assert approval_timeout.virtual_duration_s == staging + 2 * 86400 + 86400 + eventbridge
    assert _gate(approval_timeout, "prod") is None


def test_given_an_answer_after_the_approval_timed_out_then_it_is_refused_and_kept_as_a_refused_answer(
    approval_late: SimulationResult,
) -> None:
    result = approval_late
    assert result.status == "BLOCKED" and result.reason.startswith("ApprovalTimedOut: ")
    [approval] = result.approvals
    assert approval["status"] == "TIMED_OUT"  # not APPROVED: the answer came an hour after the 24 h timeout
    [answer] = result.approval_answers
    assert (answer["by"], answer["accepted"]) == ("late@example.com", False)
    assert "already decided: TIMED_OUT" in answer["refused"]
    refused = [e["detail"] for e in result.events if e["kind"] == "approval_refused"]
    assert refused == [
        {
            "stage": "prod",
            "answer": "APPROVED",
            "by": "late@example.com",
            "identity": "arn:aws:sts::123456789012:assumed-role/ReleaseManager/late@example.com",
            "why": "already decided: TIMED_OUT",
        }
    ]
    assert _gate(result, "prod") is None


def test_given_an_answer_after_the_execution_stopped_then_step_functions_refuses_it_and_it_is_recorded_expired(
    approval_after_cancel: SimulationResult,
) -> None:
    result = approval_after_cancel
    [answer] = result.approval_answers
    assert answer["accepted"] is False
    assert "TaskTimedOut" in answer["refused"]  # the ledger still said PENDING; Step Functions said no
    [approval] = result.approvals
    assert (approval["status"], approval["decided_by"]) == ("EXPIRED", "rm@example.com")
    assert result.status == "CANCELLED"
    assert result.cleanup is not None and result.cleanup["closed"] is True  # the late clean-up still closed it


def test_given_two_approvers_answering_together_then_the_first_answer_counts_and_the_second_is_refused(
    approval_two_approvers: SimulationResult,
) -> None:
    result = approval_two_approvers
    assert [(a["by"], a["accepted"]) for a in result.approval_answers] == [
        ("alice@example.com", True),
        ("bob@example.com", False),
    ]
    [approval] = result.approvals
    assert (approval["status"], approval["decided_by"]) == ("APPROVED", "alice@example.com")
    assert result.status == "SUCCEEDED"


def test_given_a_lost_clean_up_when_the_next_train_starts_then_it_reclaims_the_lock_and_closes_the_old_release(
    cleanup_lost: SimulationResult,
) -> None:
    result = cleanup_lost
    assert result.cleanup is None  # EventBridge never delivered it
    assert result.status == "CANCELLED"
    assert result.reason == (
        "execution ABORTED and its clean-up never ran; closed when release 2026-W49 reclaimed the lock"
    )
    assert {r["release_id"]: r["status"] for r in result.fleet_releases} == {
        "2026-W48": "CANCELLED",
        "2026-W49": "SUCCEEDED",
    }
    assert "lock_reclaimed" in [e["kind"] for e in result.events]


def test_given_a_clean_up_that_lands_while_finalize_runs_then_the_cancel_stands(
    cleanup_races_finalize: SimulationResult,
) -> None:
    result = cleanup_races_finalize
    assert result.execution_status == "ABORTED"
    assert result.status == "CANCELLED"  # FinalizeRelease ran after the clean-up and changed nothing
    assert result.invocations["FinalizeReleaseFunction"] == 1
    kinds = [e["kind"] for e in result.events]
    assert "cleaned_up" in kinds and "succeeded" not in kinds


# --- holds and freezes mid-rollout, what is live, rollback -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("freeze-between-prod-waves", "freeze window 'Payment provider incident' until 2026-11-25T18:00:00+00:00"),
        ("hold-during-prod-rollout", "hold on the fleet by oncall@example.com: INC-512 checkout errors"),
    ],
)
def test_given_a_freeze_or_hold_beginning_between_prod_waves_then_the_later_waves_never_start(
    name: str, why: str, request: pytest.FixtureRequest
) -> None:
    result: SimulationResult = request.getfixturevalue(name.replace("-", "_"))
    assert result.status == "BLOCKED"
    assert result.reason.startswith(f"WaveBlocked: prod wave 2 not started: {why}; prod waves deployed: 1.")
    assert {WAVE[b["service"]] for b in _service_builds(result, "prod")} == {1}
    wave1 = {s for s in SERVICES if WAVE[s] == 1}
    head = _head(name, SERVICES)
    assert result.live["prod"] == {s: head[s] for s in wave1}
    assert result.reason.endswith(f"prod runs new code for 2 of 6 services: {', '.join(sorted(wave1))}")


def test_given_a_prod_alarm_during_the_bake_with_the_stop_policy_then_blocked_saying_prod_runs_the_new_code(
    prod_alarm_during_bake: SimulationResult,
) -> None:
    result = prod_alarm_during_bake
    assert result.status == "BLOCKED"
    assert result.reason.endswith("prod runs new code for 6 of 6 services: " + ", ".join(sorted(SERVICES)))
    assert result.live["prod"] == _head("prod-alarm-during-bake", SERVICES)
    assert all(d["final_alias"]["version"] == d["target_version"] for d in result.deployments if d["stage"] == "prod")


def test_given_a_prod_alarm_with_the_rollback_policy_then_the_aliases_are_back_on_their_previous_versions(
    prod_alarm_rolls_back: SimulationResult,
) -> None:
    result = prod_alarm_rolls_back
    declared = {"company-service", "orders"}  # the services that declare their functions (fleet.yaml `deploy`)
    scenario = _scenario("prod-alarm-rolls-back")
    assert {s: result.live["prod"][s] for s in declared} == {s: scenario.commit(s, "previous") for s in declared}
    others = sorted(SERVICES - declared)
    assert result.reason.endswith(f"prod runs new code for 4 of 6 services: {', '.join(others)}")
    rolled = next(e for e in result.events if e["kind"] == "live_after_end")["detail"]["rolled_back"]
    assert len(rolled) == 5 and all("->" in line for line in rolled)  # 4 company functions + orders' api
    assert rolled[0].startswith("svc-orders-prod-api")  # newest wave first (orders rides in wave 2)


def test_given_a_cancel_while_the_canary_shifts_then_the_clean_up_stops_and_rolls_back_its_deployments(
    cancel_during_canary: SimulationResult,
) -> None:
    result = cancel_during_canary
    assert result.status == "CANCELLED"
    company = [d for d in result.deployments if d["service"] == "company-service" and d["stage"] == "prod"]
    assert {d["status"] for d in company} == {"Stopped"}
    assert all(d["final_alias"]["version"] == d["current_version"] for d in company)
    assert result.cleanup is not None and len(result.cleanup["stopped_deployments"]) == 4
    previous = _scenario("cancel-during-canary").commit("company-service", "previous")
    assert result.live["prod"]["company-service"] == previous  # observed back on the old versions
    assert result.live["prod"]["identity"] == "unknown"  # its build was stopped mid-deploy: nobody can tell
    assert "prod runs new code for 0 of 6 services; unknown for identity" in result.reason


def test_given_a_finalize_racing_a_cancel_then_the_baseline_never_moves(
    cleanup_races_finalize: SimulationResult,
) -> None:
    result = cleanup_races_finalize
    assert result.status == "CANCELLED"
    assert result.baseline_release == "2026-W47"  # not this release
    assert "finalize_refused" in [e["kind"] for e in result.events]


def test_given_a_healthy_week_then_the_ledger_says_every_stage_runs_the_released_commits(
    happy_path: SimulationResult,
) -> None:
    head = _head("happy-path", SERVICES)
    assert happy_path.live == {"staging": head, "prod": head}


def test_given_the_train_redeployed_while_a_release_waits_then_that_release_finishes_on_the_versions_it_started_on(
    train_upgraded_while_waiting: SimulationResult,
) -> None:
    result = train_upgraded_while_waiting
    assert result.status == "SUCCEEDED"
    releases = [e for e in result.executions if e["started_by"] is None]
    versions = [e["version"].rsplit(":", 1)[1] for e in releases]
    assert versions == ["1", "2"]  # week 48 on version 1; week 49 started on the alias, now version 2
    # Each chunk runs the chunk machine's version deployed with its release's version, even the ones week 48 started
    # after the upgrade (its prod waves): the release names the chunk version, never the live alias.
    version_of = {e["arn"]: e["version"] for e in result.executions}
    chunks = [e for e in result.executions if e["started_by"] is not None]
    assert chunks and all(
        "ReleaseTrainChunk" in c["version"] and c["version"][-2:] == version_of[c["started_by"]][-2:] for c in chunks
    ), [(c["version"], version_of[c["started_by"]]) for c in chunks]
    train = {k: v for k, v in result.invocations_by_version.items() if k.endswith("Function") and "Traffic" not in k}
    # The approver calls the URL on the `live` alias, which the upgrade moved: the front door is the new version.
    assert train.pop("AnswerApprovalFunction") == {"2": 1}
    assert train.pop("PlanReleaseFunction") == {"1": 1, "2": 1}
    assert train and all(set(calls) == {"1"} for calls in train.values()), train  # nothing of week 48 ran version 2


# --- cancel -------------------------------------------------------------------------------------------------------


def test_given_builds_running_when_the_operator_cancels_then_the_release_is_cancelled_with_the_operators_cause(
    cancel_during_builds: SimulationResult,
) -> None:
    assert cancel_during_builds.execution_status == "ABORTED"
    assert cancel_during_builds.status == "CANCELLED"
    assert cancel_during_builds.reason == "execution ABORTED: scenario: operator cancelled at Build (staging)"


def test_given_builds_running_when_the_operator_cancels_then_every_running_build_is_stopped(
    cancel_during_builds: SimulationResult,
) -> None:
    assert cancel_during_builds.cleanup is not None
    stopped_now = {b["id"] for b in cancel_during_builds.builds if b["status"] == "STOPPED"}
    # Step Functions stops the .sync builds of a stopped execution itself; the clean-up stops whatever it missed.
    assert stopped_now
    assert set(cancel_during_builds.cleanup["stopped_builds"]) <= stopped_now
    assert all(b["status"] != "IN_PROGRESS" for b in cancel_during_builds.builds)
    assert {WAVE[b["service"]] for b in _service_builds(cancel_during_builds, "staging")} == {1}
    assert _service_builds(cancel_during_builds, "prod") == []


def test_given_builds_running_when_the_operator_cancels_then_the_chunk_execution_is_stopped_with_the_release(
    cancel_during_builds: SimulationResult,
) -> None:
    """Stopping the release stops its running chunk execution (Step Functions stops a .sync:2 child; ADR 0007), and
    that chunk's Build tasks stop their builds: nothing of the release runs on."""
    release = next(e for e in cancel_during_builds.executions if e["started_by"] is None)
    chunks = [e for e in cancel_during_builds.executions if e["started_by"] == release["arn"]]

    assert release["status"] == "ABORTED"
    assert [c["status"] for c in chunks] == ["ABORTED"]  # staging wave 1's only chunk; no later one started


def test_given_a_cancelled_release_when_eventbridge_delivers_the_status_change_again_then_nothing_changes(
    cancel_during_builds: SimulationResult,
) -> None:
    assert cancel_during_builds.cleanup is not None
    assert cancel_during_builds.cleanup["closed"] is True
    [again] = cancel_during_builds.cleanup_redeliveries
    assert again == {
        "release_id": cancel_during_builds.release_id,
        "closed": False,
        "stopped_builds": [],
        "stopped_deployments": {},
    }
    assert cancel_during_builds.status == "CANCELLED"
    assert [e["kind"] for e in cancel_during_builds.events].count("cleaned_up") == 1
    assert cancel_during_builds.lock_held_after is False


def test_given_the_staging_bake_when_the_operator_cancels_then_the_release_is_cancelled_and_prod_never_builds(
    cancel_during_bake: SimulationResult,
) -> None:
    assert (cancel_during_bake.execution_status, cancel_during_bake.status) == ("ABORTED", "CANCELLED")
    assert cancel_during_bake.reason == "execution ABORTED: scenario: operator cancelled at Bake (staging)"
    assert _built(cancel_during_bake, "staging") == _head("cancel-during-bake", SERVICES)
    assert cancel_during_bake.cleanup is not None
    assert cancel_during_bake.cleanup["stopped_builds"] == []  # every staging build had finished
    assert _service_builds(cancel_during_bake, "prod") == []
    assert cancel_during_bake.gates == []


# --- one train at a time ------------------------------------------------------------------------------------------


def test_given_a_train_running_when_the_same_schedule_fires_again_then_the_start_is_refused_as_already_existing(
    second_start: SimulationResult,
) -> None:
    assert second_start.second_start is not None
    assert second_start.second_start["status"] == "FAILED"
    assert second_start.second_start["error"] == "ReleaseAlreadyExists"
    assert "already running" in second_start.second_start["cause"]


def test_given_a_refused_second_start_when_the_first_train_goes_on_then_it_is_unaffected(
    second_start: SimulationResult,
) -> None:
    assert second_start.status == "SUCCEEDED"
    assert [r["release_id"] for r in second_start.fleet_releases] == [second_start.release_id]
    assert _built(second_start, "staging") == _head("second-start", SERVICES)
    assert _built(second_start, "prod") == _head("second-start", SERVICES)
    assert "lock_reclaimed" not in [e["kind"] for e in second_start.events]


def test_given_a_manual_train_running_when_the_schedule_fires_then_the_start_is_refused_as_in_progress(
    second_start_other_release: SimulationResult,
) -> None:
    result = second_start_other_release
    assert result.second_start is not None
    assert result.second_start["error"] == "ReleaseInProgress"
    assert "refused, not queued" in result.second_start["cause"]
    assert result.release_id == "2026-W48-hotfix"
    assert result.status == "SUCCEEDED"
    assert [r["release_id"] for r in result.fleet_releases] == ["2026-W48-hotfix"]  # no record for the refused one


def test_given_a_train_waiting_for_approval_when_next_weeks_schedule_fires_then_the_newer_release_supersedes_it(
    approval_superseded: SimulationResult,
) -> None:
    result = approval_superseded
    assert result.release_id == "2026-W48"
    assert result.status == "BLOCKED"
    assert result.reason == "superseded by release 2026-W49 while waiting for an approval"
    assert result.execution_status == "ABORTED"  # stopped, not answered: only AnswerApproval answers approvals
    [approval] = result.approvals
    assert (approval["status"], approval["decided_by"]) == ("SUPERSEDED", "release-train")
    # the newer train planned and ran (it was not refused); one record per release, and the lock ends free
    assert sorted(r["release_id"] for r in result.fleet_releases) == ["2026-W48", "2026-W49"]
    assert result.second_start is not None
    assert result.second_start["error"] != "ReleaseInProgress"
    assert {b["release_id"] for b in result.builds} == {"2026-W48", "2026-W49"}
    assert result.lock_held_after is False


# --- prod failures ------------------------------------------------------------------------------------------------


def test_given_a_prod_wave_1_build_fails_when_the_wave_ends_then_the_release_fails_and_wave_2_never_starts(
    prod_wave1_fails: SimulationResult,
) -> None:
    assert prod_wave1_fails.status == "FAILED"
    assert "prod wave 1" in prod_wave1_fails.reason
    assert "identity (FAILED)" in prod_wave1_fails.reason
    assert set(_built(prod_wave1_fails, "prod")) == {s for s in SERVICES if WAVE[s] == 1}
    ledger = _ledger_status(prod_wave1_fails, "prod")
    assert (ledger["identity"], ledger["company-service"]) == ("FAILED", "SUCCEEDED")
    assert {ledger[s] for s in SERVICES if WAVE[s] > 1} == {"NOT_BUILT"}
    assert _gate(prod_wave1_fails, "prod") is None


def test_given_a_prod_build_times_out_when_its_wave_ends_then_the_release_fails_with_codebuilds_verdict(
    prod_build_fails: SimulationResult,
) -> None:
    assert prod_build_fails.status == "FAILED"
    assert "prod wave 3" in prod_build_fails.reason
    assert "payments (TIMED_OUT)" in prod_build_fails.reason
    ledger = _ledger_status(prod_build_fails, "prod")
    assert ledger["payments"] == "TIMED_OUT"
    assert {ledger[s] for s in SERVICES if WAVE[s] < 3} == {"SUCCEEDED"}
    assert "succeeded" not in [e["kind"] for e in prod_build_fails.events]


# --- input, throttling, subsets -----------------------------------------------------------------------------------


def test_given_malformed_execution_input_when_the_train_starts_then_it_is_rejected_with_the_field_named(
    malformed_input: SimulationResult,
) -> None:
    assert malformed_input.execution_error == "InvalidInput"
    assert malformed_input.reason.startswith("InvalidInput: execution input is invalid")
    assert "services" in malformed_input.reason
    assert "got: 42" in malformed_input.reason
    assert "stackTrace" not in malformed_input.reason


def test_given_malformed_execution_input_when_the_train_starts_then_nothing_is_written_built_or_locked(
    malformed_input: SimulationResult,
) -> None:
    assert malformed_input.release_id is None
    assert malformed_input.fleet_releases == []
    assert malformed_input.builds == []
    assert malformed_input.lock_held_after is False
    assert set(malformed_input.invocations) - {"CleanupExecutionFunction"} == {"PlanReleaseFunction"}


def test_given_startbuild_throttled_twice_when_the_build_state_retries_then_the_release_succeeds(
    build_throttled: SimulationResult,
) -> None:
    assert build_throttled.builds_throttled == 2
    assert build_throttled.status == "SUCCEEDED"
    assert _built(build_throttled, "staging") == _head("build-throttled", SERVICES)  # identity built once, not 3x


def test_given_a_named_subset_when_started_manually_then_exactly_those_services_ride_both_stages(
    named_subset: SimulationResult,
) -> None:
    riding = {"identity", "orders"}
    assert named_subset.status == "SUCCEEDED"
    assert {s["name"] for s in named_subset.stages[0]["services"]} == riding
    assert _built(named_subset, "staging") == _head("named-subset", riding)
    assert _built(named_subset, "prod") == _head("named-subset", riding)


@pytest.mark.parametrize(
    ("name", "state"),
    [("staging-build-fails", "RecordWave"), ("alarm-during-bake", "EvaluateGate"), ("prod-wave1-fails", "RecordWave")],
)
def test_given_a_release_that_did_not_ship_when_closed_then_the_ledger_names_the_state_that_failed(
    name: str, state: str, request: pytest.FixtureRequest
) -> None:
    result: SimulationResult = request.getfixturevalue(name.replace("-", "_"))
    assert result.failed_state == state


# --- approvers and sources (guardrails and trust) -------------------------------------------------------------------

RITA = "arn:aws:sts::123456789012:assumed-role/ReleaseManager/rita"
EVE = "arn:aws:sts::123456789012:assumed-role/Developer/eve"


def test_given_an_answer_from_someone_not_on_the_approvers_list_then_it_is_refused_recorded_and_does_not_count(
    approval_not_an_approver: SimulationResult,
) -> None:
    result = approval_not_an_approver
    assert result.status == "SUCCEEDED"
    refused, accepted = result.approval_answers
    assert (refused["identity"], refused["http_status"], refused["accepted"]) == (EVE, 403, False)
    assert "is not an approver of stage prod" in refused["refused"]
    assert (accepted["identity"], accepted["http_status"], accepted["accepted"]) == (RITA, 200, True)
    [approval] = result.approvals
    assert (approval["status"], approval["decided_by"], approval["identity"]) == ("APPROVED", "rita", RITA)
    [attempt] = [e["detail"] for e in result.events if e["kind"] == "approval_refused"]
    assert (attempt["identity"], attempt["by"]) == (EVE, "eve")
    # nothing reached prod before the real approver answered
    first_prod = min(b["started_at"] for b in _service_builds(result, "prod"))
    assert first_prod >= accepted["at"].replace("+00:00", "Z")


def test_given_github_down_through_the_lambdas_retries_then_the_state_machine_retries_and_the_release_resumes(
    source_unavailable_then_recovers: SimulationResult,
) -> None:
    result = source_unavailable_then_recovers
    assert result.status == "SUCCEEDED"
    assert result.invocations_by_version["PlanReleaseFunction"] == {"1": 2}  # the first attempt, then the Retry
    assert [r["release_id"] for r in result.fleet_releases] == ["2026-W48"]  # resumed, not a second release
    assert _built(result, "prod")["orders"] == _head("source-unavailable-then-recovers", {"orders"})["orders"]


def test_given_a_branch_github_does_not_have_then_the_release_fails_naming_service_and_source_and_builds_nothing(
    source_not_found: SimulationResult,
) -> None:
    result = source_not_found
    assert result.status == "FAILED"
    assert "service orders" in result.reason and "github:acme/orders@release" in result.reason
    assert "no such branch" in result.reason  # GitHub GraphQL: `ref: null` (the script says 404)
    assert result.builds == []
    assert result.lock_held_after is False
    assert [r["release_id"] for r in result.fleet_releases] == ["2026-W48"]


def test_given_break_glass_when_the_train_runs_then_no_stage_bakes_but_prod_is_still_approved_and_it_is_on_record(
    break_glass_skip_bake: SimulationResult,
) -> None:
    result = break_glass_skip_bake
    assert result.status == "SUCCEEDED"
    # The example fleet bakes staging two days: the whole train took less than one (virtual) day.
    assert result.virtual_duration_s < 24 * 3600
    [approval] = result.approvals
    assert (approval["stage"], approval["status"], approval["decided_by"]) == ("prod", "APPROVED", "alice@example.com")
    [override] = [e["detail"] for e in result.events if e["kind"] == "break_glass"]
    assert override == {
        "identity": "arn:aws:sts::123456789012:assumed-role/ReleaseManager/carol@example.com",
        "reason": "INC-4711: checkout returns 500 for every card payment",
        "skip": ["bake"],
    }
