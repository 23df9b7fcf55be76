"""How waves are split into chunk executions, and the estimate that keeps a release inside Step Functions' limits."""

from __future__ import annotations

from typing import Any

import pytest

from release_train.domain.fleet import parse_fleet
from release_train.domain.scale import (
    BUDGET,
    CHUNK_SIZE,
    HISTORY_CAP,
    PAYLOAD_LIMIT,
    PER_CHUNK,
    PER_STAGE,
    PER_WAVE,
    RELEASE_FIXED,
    STATE_OVERHEAD_BYTES,
    Estimate,
    chunk_of,
    chunk_plan,
    estimate,
)


@pytest.mark.parametrize(
    ("services", "concurrency", "expected"),
    [
        (1, 20, (1, 1, 1)),
        (CHUNK_SIZE, 20, (1, 20, 1)),
        (CHUNK_SIZE + 1, 20, (2, 20, 1)),  # one more service, one more chunk
        (2 * CHUNK_SIZE, 20, (2, 20, 1)),
        (2_000, 40, (20, 40, 1)),
        (7, 40, (1, 7, 1)),  # never more builds at once than the chunk has
    ],
)
def test_given_a_wave_when_split_then_chunks_hold_at_most_chunk_size_and_never_exceed_the_concurrency(
    services: int, concurrency: int, expected: tuple[int, int, int]
) -> None:
    plan = chunk_plan(services, concurrency)

    assert (plan.chunks, plan.chunk_concurrency, plan.parallel_chunks) == expected
    assert plan.chunk_concurrency * plan.parallel_chunks <= concurrency


def test_given_a_large_concurrency_when_split_then_chunks_run_side_by_side_within_it() -> None:
    plan = chunk_plan(1_000, 250)  # a cap above CHUNK_SIZE (the fleet allows 40 today; the rule must hold anyway)

    assert (plan.chunk_concurrency, plan.parallel_chunks) == (CHUNK_SIZE, 2)


@pytest.mark.parametrize(("services", "concurrency"), [(0, 1), (1, 0)])
def test_given_an_empty_wave_or_no_concurrency_then_there_is_no_plan(services: int, concurrency: int) -> None:
    with pytest.raises(ValueError, match="a wave needs"):
        chunk_plan(services, concurrency)


def test_given_sorted_names_then_the_chunks_partition_them_in_order() -> None:
    names = [f"s{i:04d}" for i in range(CHUNK_SIZE * 2 + 1)]

    chunks = [chunk_of(names, k) for k in range(3)]

    assert [len(c) for c in chunks] == [CHUNK_SIZE, CHUNK_SIZE, 1]
    assert [name for chunk in chunks for name in chunk] == names
    assert chunk_of(names, 3) == []


def test_given_stages_and_waves_then_the_release_history_is_the_sum_of_its_parts() -> None:
    found = estimate([{1: CHUNK_SIZE + 1, 2: 1}], [10])

    assert found.release_events == RELEASE_FIXED + PER_STAGE + 2 * PER_WAVE + 3 * PER_CHUNK
    assert found.payload_bytes == 10 + STATE_OVERHEAD_BYTES


def _at(events: int = 0, payload: int = 0) -> Estimate:
    return Estimate(release_events=events, chunk_events=0, payload_bytes=payload)


def test_given_an_estimate_at_exactly_half_of_each_limit_then_it_passes_and_one_more_fails() -> None:
    events, payload = int(HISTORY_CAP * BUDGET), int(PAYLOAD_LIMIT * BUDGET)

    assert _at(events, payload).problems() == []
    assert "history events" in " ".join(_at(events + 1, payload).problems())
    assert "payload limit" in " ".join(_at(events, payload + 1).problems())


def test_given_both_limits_crossed_then_both_are_named() -> None:
    problems = _at(HISTORY_CAP, PAYLOAD_LIMIT).problems()

    assert len(problems) == 2


def test_given_a_worst_chunk_then_it_stays_within_budget_whatever_the_fleet() -> None:
    worst = estimate([{1: 2_000}], [0])

    assert worst.chunk_events <= HISTORY_CAP * BUDGET


def _fleet_yaml(services: int, stages: int, waves: int) -> str:
    stage_docs: list[dict[str, Any]] = [{"name": f"s{k}", "bake": "PT1H"} for k in range(stages)]
    stage_docs[-1]["approval"] = {"required": True, "approvers": ["arn:aws:iam::123456789012:role/R"]}
    lines = ["fleet: acme", "stages:"]
    lines += [f"  - {stage}" for stage in stage_docs]
    lines.append("services:")
    lines += [
        f"  - {{name: svc-{i:04d}, source: {{codecommit: svc-{i:04d}, branch: main}}, wave: {1 + i % waves}}}"
        for i in range(services)
    ]
    return "\n".join(lines) + "\n"


def test_given_the_largest_fleet_over_three_stages_then_it_is_accepted() -> None:
    fleet = parse_fleet(_fleet_yaml(2_000, 3, 5))

    assert len(fleet.services) == 2_000


def test_given_ten_stages_of_fifty_waves_then_fleet_validation_refuses_naming_the_history_limit() -> None:
    with pytest.raises(Exception, match=r"history events in its execution, over 12,500 \(50% of Step Functions"):
        parse_fleet(_fleet_yaml(2_000, 10, 50))


def test_given_more_services_than_the_train_proves_then_the_fleet_is_refused() -> None:
    with pytest.raises(Exception, match="services"):
        parse_fleet(_fleet_yaml(2_001, 2, 5))
