"""The ledger under moto, on the table exactly as template.yaml defines it (incl. GSI1, KEYS_ONLY)."""

from __future__ import annotations

import base64
import itertools
import json
import random
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto import mock_aws

from release_train.adapters import ledger as ledger_module
from release_train.adapters.ledger import ApprovalRecord, BuildRecord, Ledger, Lock, ReleaseRecord
from release_train.domain.errors import InvalidInput
from release_train.domain.release import Hold, ManifestEntry, Status
from tests.unit.adapters.ledger_table import ITEM_LIMIT, TRANSACTION_LIMIT, all_items, create_ledger_table, item_size
from tests.unit.large_fleet import github_fleet

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
FLEET = "acme"
EXEC_A = "arn:aws:states:us-east-1:123456789012:execution:ReleaseTrain-rt:a"
EXEC_B = "arn:aws:states:us-east-1:123456789012:execution:ReleaseTrain-rt:b"


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        yield create_ledger_table()


@pytest.fixture
def ledger(table: Any) -> Ledger:
    return Ledger(table)


def _release(release_id: str = "2026-W48", execution_arn: str = EXEC_A, created: datetime = NOW) -> ReleaseRecord:
    return ReleaseRecord(
        release_id=release_id,
        fleet=FLEET,
        status=Status.RUNNING,
        reason="planned",
        execution_arn=execution_arn,
        created_at=created.isoformat(timespec="seconds"),
        stages=["staging", "prod"],
        requested_by="schedule",
    )


# --- the train lock ---------------------------------------------------------------------------------------------


def test_given_a_free_lock_when_acquired_then_no_holder_is_returned_and_the_lock_is_ours(ledger: Ledger) -> None:
    holder = ledger.acquire_lock(FLEET, "2026-W48", EXEC_A, NOW)

    assert (holder, ledger.lock(FLEET)) == (None, Lock("2026-W48", EXEC_A, "2026-11-23T09:00:00+00:00"))


def test_given_a_held_lock_when_another_execution_acquires_then_the_holder_is_returned(ledger: Ledger) -> None:
    ledger.acquire_lock(FLEET, "2026-W48", EXEC_A, NOW)

    holder = ledger.acquire_lock(FLEET, "2026-W49", EXEC_B, NOW + timedelta(days=7))

    assert holder == Lock("2026-W48", EXEC_A, "2026-11-23T09:00:00+00:00")


def test_given_a_held_lock_when_another_execution_acquires_then_the_lock_is_unchanged(ledger: Ledger) -> None:
    ledger.acquire_lock(FLEET, "2026-W48", EXEC_A, NOW)

    ledger.acquire_lock(FLEET, "2026-W49", EXEC_B, NOW + timedelta(days=7))

    assert ledger.lock(FLEET) == Lock("2026-W48", EXEC_A, "2026-11-23T09:00:00+00:00")


def test_given_our_own_lock_when_acquired_again_then_it_succeeds(ledger: Ledger) -> None:
    ledger.acquire_lock(FLEET, "2026-W48", EXEC_A, NOW)

    assert ledger.acquire_lock(FLEET, "2026-W48", EXEC_A, NOW) is None


def test_given_the_named_holder_when_stealing_then_the_lock_moves(ledger: Ledger) -> None:
    ledger.acquire_lock(FLEET, "2026-W48", EXEC_A, NOW)

    stolen = ledger.steal_lock(FLEET, EXEC_A, "2026-W49", EXEC_B, NOW)

    assert (stolen, ledger.lock(FLEET)) == (True, Lock("2026-W49", EXEC_B, "2026-11-23T09:00:00+00:00"))


def test_given_a_different_holder_when_stealing_then_it_is_refused_and_the_lock_is_unchanged(ledger: Ledger) -> None:
    ledger.acquire_lock(FLEET, "2026-W48", EXEC_A, NOW)
    newer = "arn:aws:states:us-east-1:123456789012:execution:ReleaseTrain-rt:c"

    stolen = ledger.steal_lock(FLEET, newer, "2026-W49", EXEC_B, NOW)

    assert (stolen, ledger.lock(FLEET)) == (False, Lock("2026-W48", EXEC_A, "2026-11-23T09:00:00+00:00"))


def test_given_a_free_lock_when_stealing_then_it_is_refused(ledger: Ledger) -> None:
    assert ledger.steal_lock(FLEET, EXEC_A, "2026-W49", EXEC_B, NOW) is False


def test_given_our_lock_when_released_then_it_is_free(ledger: Ledger) -> None:
    ledger.acquire_lock(FLEET, "2026-W48", EXEC_A, NOW)

    released = ledger.release_lock(FLEET, EXEC_A)

    assert (released, ledger.lock(FLEET)) == (True, None)


def test_given_someone_elses_lock_when_released_then_it_is_refused_and_kept(ledger: Ledger) -> None:
    ledger.acquire_lock(FLEET, "2026-W49", EXEC_B, NOW)

    released = ledger.release_lock(FLEET, EXEC_A)

    assert (released, ledger.lock(FLEET)) == (False, Lock("2026-W49", EXEC_B, "2026-11-23T09:00:00+00:00"))


# --- releases -----------------------------------------------------------------------------------------------------


def test_given_a_new_release_when_created_then_it_reads_back_running(ledger: Ledger) -> None:
    created = ledger.create_release(_release(), pinned_fleet={"fleet": FLEET})

    assert (created, ledger.release("2026-W48")) == (True, _release())


def test_given_a_new_release_when_created_then_its_execution_maps_to_it(ledger: Ledger) -> None:
    ledger.create_release(_release(), pinned_fleet={})

    assert ledger.release_for_execution(EXEC_A) == "2026-W48"


def test_given_a_new_release_when_created_then_the_fleet_is_pinned(ledger: Ledger) -> None:
    ledger.create_release(_release(), pinned_fleet={"fleet": FLEET, "services": [{"name": "api"}]})

    assert ledger.pinned_fleet("2026-W48") == {"fleet": FLEET, "services": [{"name": "api"}]}


# --- the pinned fleet at the fleet's largest size -------------------------------------------------------------------


def test_given_a_2000_service_fleet_when_pinned_then_it_reads_back_whole(ledger: Ledger) -> None:
    fleet = github_fleet()

    created = ledger.create_release(_release(), pinned_fleet=fleet)

    assert (created, ledger.pinned_fleet("2026-W48")) == (True, fleet)


def test_given_a_2000_service_fleet_when_pinned_then_every_item_and_the_transaction_fit_dynamodbs_limits(
    ledger: Ledger, table: Any
) -> None:
    fleet = github_fleet()
    assert len(json.dumps(fleet, separators=(",", ":"))) > ITEM_LIMIT  # one item could not hold it

    ledger.create_release(_release(), pinned_fleet=fleet)
    sizes = {item["SK"] if item["PK"].startswith("RELEASE#") else "EXEC#": item_size(item) for item in all_items(table)}

    assert max(sizes.values()) < ITEM_LIMIT, sizes
    assert sum(sizes.values()) < TRANSACTION_LIMIT


def test_given_parts_smaller_than_the_fleet_when_pinned_then_it_spans_several_items_and_reads_back(
    ledger: Ledger, table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_module, "PINNED_PART_BYTES", 20_000)
    fleet = github_fleet()

    ledger.create_release(_release(), pinned_fleet=fleet)
    parts = sorted(i["SK"] for i in all_items(table) if i["SK"].startswith("PINNED#"))

    assert len(parts) > 1 and parts[:2] == ["PINNED#0000", "PINNED#0001"]
    assert ledger.pinned_fleet("2026-W48") == fleet


def test_given_a_fleet_whose_parts_outgrow_one_query_page_when_read_then_every_page_is_read(ledger: Ledger) -> None:
    # Incompressible: ~1.5 MB of parts, over a Query page's 1 MB (moto pages at 1 MB too).
    fleet = {"fleet": "acme", "blob": random.Random(1).randbytes(1_500_000).hex()}

    ledger.create_release(_release(), pinned_fleet=fleet)

    assert ledger.pinned_fleet("2026-W48") == fleet


def test_given_a_fleet_too_large_for_one_transaction_when_created_then_it_is_refused_before_any_write(
    ledger: Ledger, table: Any
) -> None:
    # Base64 of random bytes: 6 bits in every 8 survive compression, ~4 MB of parts.
    fleet = {"fleet": "acme", "blob": base64.b64encode(random.Random(2).randbytes(4_000_000)).decode()}

    with pytest.raises(InvalidInput, match="a release pins at most 3,600,000"):
        ledger.create_release(_release(), pinned_fleet=fleet)
    assert all_items(table) == []


def test_given_a_running_release_when_the_same_id_is_created_again_then_false_and_its_pinned_fleet_is_intact(
    ledger: Ledger, table: Any
) -> None:
    first, second = github_fleet(seed=1), github_fleet(seed=2)
    ledger.create_release(_release(), pinned_fleet=first)
    before = all_items(table)

    again = ledger.create_release(_release(execution_arn=EXEC_B), pinned_fleet=second)

    assert (again, ledger.pinned_fleet("2026-W48"), ledger.release_for_execution(EXEC_B)) == (False, first, None)
    assert all_items(table) == before


def test_given_a_release_written_before_the_parts_when_its_fleet_is_read_then_fleet_json_is_used(
    ledger: Ledger, table: Any
) -> None:
    fleet = {"fleet": FLEET, "services": [{"name": "api"}]}
    table.put_item(  # the META item as create_release wrote it before PINNED# parts
        Item={
            "PK": "RELEASE#2026-W47",
            "SK": "META",
            "release_id": "2026-W47",
            "fleet": FLEET,
            "status": "SUCCEEDED",
            "execution_arn": EXEC_A,
            "created_at": "2026-11-16T09:00:00+00:00",
            "fleet_json": json.dumps(fleet, separators=(",", ":")),
        }
    )

    assert ledger.pinned_fleet("2026-W47") == fleet


def test_given_an_unknown_release_when_its_fleet_is_read_then_key_error(ledger: Ledger) -> None:
    with pytest.raises(KeyError):
        ledger.pinned_fleet("2026-W01")


def test_given_a_pinned_fleet_when_stored_then_it_is_zlib_compressed_json(ledger: Ledger, table: Any) -> None:
    ledger.create_release(_release(), pinned_fleet={"fleet": FLEET})

    [part] = [i for i in all_items(table) if i["SK"].startswith("PINNED#")]

    assert json.loads(zlib.decompress(part["fleet_zlib"].value)) == {"fleet": FLEET}


def test_given_an_existing_id_when_created_again_then_it_is_refused(ledger: Ledger) -> None:
    ledger.create_release(_release(), pinned_fleet={})

    assert ledger.create_release(_release(execution_arn=EXEC_B), pinned_fleet={}) is False


def test_given_an_existing_id_when_created_again_then_the_first_release_is_untouched(ledger: Ledger) -> None:
    ledger.create_release(_release(), pinned_fleet={})

    ledger.create_release(_release(execution_arn=EXEC_B), pinned_fleet={})

    assert (ledger.release("2026-W48"), ledger.release_for_execution(EXEC_B)) == (_release(), None)


def test_given_a_running_release_when_closed_then_it_is_terminal_with_reason_and_end(ledger: Ledger) -> None:
    ledger.create_release(_release(), pinned_fleet={})

    closed = ledger.close_release("2026-W48", Status.FAILED, "boom", NOW + timedelta(hours=1), "Build")
    record = ledger.release("2026-W48")

    assert closed is True
    assert record is not None
    assert (record.status, record.reason, record.ended_at, record.failed_state) == (
        Status.FAILED,
        "boom",
        "2026-11-23T10:00:00+00:00",
        "Build",
    )


def test_given_a_closed_release_when_closed_again_then_it_is_refused_and_the_first_outcome_stays(
    ledger: Ledger,
) -> None:
    ledger.create_release(_release(), pinned_fleet={})
    ledger.close_release("2026-W48", Status.CANCELLED, "stopped by alice", NOW)

    again = ledger.close_release("2026-W48", Status.FAILED, "late failure handler", NOW)
    record = ledger.release("2026-W48")

    assert (again, record and record.status, record and record.reason) == (False, Status.CANCELLED, "stopped by alice")


def test_given_an_unknown_release_when_closed_then_nothing_is_created(ledger: Ledger, table: Any) -> None:
    assert ledger.close_release("2026-W01", Status.FAILED, "x", NOW) is False
    assert all_items(table) == []


def test_given_releases_over_weeks_when_listed_then_newest_comes_first(ledger: Ledger) -> None:
    for week in (47, 49, 48):
        ledger.create_release(
            _release(f"2026-W{week}", f"{EXEC_A}-{week}", NOW + timedelta(weeks=week - 47)), pinned_fleet={}
        )

    assert [r.release_id for r in ledger.list_releases(FLEET)] == ["2026-W49", "2026-W48", "2026-W47"]


def test_given_more_releases_than_the_limit_when_listed_then_only_the_newest_are_returned(ledger: Ledger) -> None:
    for week in (47, 48, 49):
        ledger.create_release(
            _release(f"2026-W{week}", f"{EXEC_A}-{week}", NOW + timedelta(weeks=week - 47)), pinned_fleet={}
        )

    assert [r.release_id for r in ledger.list_releases(FLEET, limit=2)] == ["2026-W49", "2026-W48"]


# --- manifest and builds ------------------------------------------------------------------------------------------


def test_given_a_manifest_when_written_then_it_reads_back_with_previous_commits(ledger: Ledger) -> None:
    entries = [
        ManifestEntry("api", "a2", "a1", 1, "codecommit:api@release"),
        ManifestEntry("web", "w1", None, 2, "github:acme/web@main"),
    ]

    ledger.put_manifest("2026-W48", entries)

    assert ledger.manifest("2026-W48") == entries


def test_given_builds_of_two_stages_when_read_for_one_stage_then_only_that_stage_is_returned(ledger: Ledger) -> None:
    staging = BuildRecord("staging", "api", "SUCCEEDED", "train-api-staging:1", "a2", 1)
    prod = BuildRecord("prod", "api", "FAILED", None, "a2", 1, error="CodeBuild.BuildFailed: boom")
    ledger.record_builds("2026-W48", [staging, prod])

    assert ledger.builds("2026-W48", "prod") == [prod]


# --- approvals ----------------------------------------------------------------------------------------------------


def _pending(ledger: Ledger, stage: str = "prod") -> None:
    ledger.put_approval("2026-W48", ApprovalRecord(stage, "PENDING", f"token-{stage}", "2026-11-25T09:00:00"), {})


def test_given_a_pending_approval_when_decided_then_it_records_who_and_why(ledger: Ledger) -> None:
    _pending(ledger)

    decided = ledger.decide_approval("2026-W48", "prod", "APPROVED", "alice", "looks good")

    assert decided is True
    assert ledger.approval("2026-W48", "prod") == ApprovalRecord(
        "prod", "APPROVED", "token-prod", "2026-11-25T09:00:00", "alice", "looks good"
    )


def test_given_a_decided_approval_when_decided_again_then_it_is_refused_and_the_first_decision_stays(
    ledger: Ledger,
) -> None:
    _pending(ledger)
    ledger.decide_approval("2026-W48", "prod", "REJECTED", "bob", "not today")

    again = ledger.decide_approval("2026-W48", "prod", "APPROVED", "alice", "")
    record = ledger.approval("2026-W48", "prod")

    assert (again, record and record.status, record and record.decided_by) == (False, "REJECTED", "bob")


def test_given_one_decided_and_one_pending_approval_when_listing_pending_then_only_the_pending_one(
    ledger: Ledger,
) -> None:
    _pending(ledger, "staging")
    _pending(ledger, "prod")
    ledger.decide_approval("2026-W48", "staging", "APPROVED", "alice", "")

    assert [a.stage for a in ledger.pending_approvals("2026-W48")] == ["prod"]


# --- baseline, holds, events --------------------------------------------------------------------------------------


def test_given_no_good_release_yet_when_the_baseline_is_read_then_it_is_empty(ledger: Ledger) -> None:
    assert ledger.baseline(FLEET) == (None, {})


def test_given_a_baseline_when_a_release_of_some_services_succeeds_then_the_others_keep_their_commits(
    ledger: Ledger,
) -> None:
    ledger.set_baseline(FLEET, "2026-W47", {"api": "a1", "web": "w1"})

    ledger.set_baseline(FLEET, "2026-W48", {"api": "a2", "jobs": "j1"})

    assert ledger.baseline(FLEET) == ("2026-W48", {"api": "a2", "web": "w1", "jobs": "j1"})


def test_given_holds_when_listed_then_each_scope_is_returned_with_who_and_why(ledger: Ledger) -> None:
    ledger.put_hold(FLEET, Hold("*", "incident", "alice"), NOW)
    ledger.put_hold(FLEET, Hold("api", "migration", "bob"), NOW)

    assert sorted(ledger.holds(FLEET), key=lambda h: h.scope) == [
        Hold("*", "incident", "alice"),
        Hold("api", "migration", "bob"),
    ]


BOB = "arn:aws:sts::123456789012:assumed-role/Oncall/bob"
ALICE = "arn:aws:sts::123456789012:assumed-role/Oncall/alice"


def test_given_a_hold_when_removed_then_it_is_no_longer_listed(ledger: Ledger) -> None:
    ledger.put_hold(FLEET, Hold("api", "migration", "bob", BOB), NOW)

    ledger.remove_hold(FLEET, Hold("api", "migration done", "alice", ALICE), NOW)

    assert ledger.holds(FLEET) == []


def test_given_a_hold_put_and_lifted_when_audited_then_both_are_recorded_with_name_identity_and_reason(
    ledger: Ledger,
) -> None:
    ledger.put_hold(FLEET, Hold("api", "migration", "bob", BOB), NOW)
    ledger.remove_hold(FLEET, Hold("api", "migration done", "alice", ALICE), NOW)

    assert [(a["action"], a["by"], a["identity"], a["reason"], a.get("was")) for a in ledger.audit(FLEET)] == [
        ("hold_put", "bob", BOB, "migration", None),
        ("hold_removed", "alice", ALICE, "migration done", "migration"),
    ]
    assert ledger.holds(FLEET) == []  # audit records are not holds


def test_given_a_hold_when_the_lock_and_baseline_share_the_partition_then_they_are_not_listed_as_holds(
    ledger: Ledger,
) -> None:
    ledger.acquire_lock(FLEET, "2026-W48", EXEC_A, NOW)
    ledger.set_baseline(FLEET, "2026-W47", {"api": "a1"})

    assert ledger.holds(FLEET) == []


def test_given_events_at_different_times_when_read_then_they_come_in_time_order(ledger: Ledger) -> None:
    ledger.add_event("2026-W48", "gate", {"stage": "staging"}, NOW + timedelta(days=2))
    ledger.add_event("2026-W48", "planned", {"services": 2}, NOW)

    assert [e["kind"] for e in ledger.events("2026-W48")] == ["planned", "gate"]


def test_given_events_in_the_same_second_when_read_then_they_come_in_write_order(ledger: Ledger) -> None:
    for kind in ("planned", "wave_recorded", "gate"):
        ledger.add_event("2026-W48", kind, {}, NOW)

    assert [e["kind"] for e in ledger.events("2026-W48")] == ["planned", "wave_recorded", "gate"]


def test_given_two_processes_writing_in_the_same_second_when_read_then_no_event_is_lost(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each Lambda cold start begins its event counter at 0: two functions writing in the same second.
    monkeypatch.setattr(ledger_module, "_event_counter", itertools.count())
    ledger.add_event("2026-W48", "cleaned_up", {}, NOW)
    monkeypatch.setattr(ledger_module, "_event_counter", itertools.count())
    ledger.add_event("2026-W48", "lock_reclaimed", {}, NOW)

    assert sorted(e["kind"] for e in ledger.events("2026-W48")) == ["cleaned_up", "lock_reclaimed"]


def test_given_an_event_detail_when_read_then_it_round_trips_as_json(ledger: Ledger) -> None:
    ledger.add_event("2026-W48", "gate", {"reasons": ["hold on api"], "wave": 2}, NOW)

    assert ledger.events("2026-W48") == [
        {"kind": "gate", "at": "2026-11-23T09:00:00+00:00", "detail": {"reasons": ["hold on api"], "wave": 2}}
    ]
