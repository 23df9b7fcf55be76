"""How a whole train scales with the fleet, against the two Step Functions hard limits (ADR 0007): wall time on this
machine, the largest execution's history against the 25,000-event cap, the largest state payload against 256 KiB,
state transitions and their cost, virtual duration. Not a test: numbers to read (and to quote in notes).

    .venv/bin/python bench/train_bench.py [--rows all|quick]

Rows: N services in 5 waves over 2 stages (100, 500, 1,000, 2,000), a 3-stage fleet of 1,000, a fleet of 500 whose
every StartBuild is throttled twice, and a fleet of 500 whose first staging wave fails entirely (each failure carries
the emulated build description as its cause). Targets: every row within 50% of both limits; wall ratio
N=2,000/N=100 at most 25.
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from release_train.domain.fleet import Fleet
from release_train.domain.scale import BUDGET, HISTORY_CAP, PAYLOAD_LIMIT
from trainctl.sandbox.runner import SimulationResult, simulate
from trainctl.sandbox.scenario import ApprovalAction, BuildBehaviour, Scenario, TestRun

ROOT = Path(__file__).resolve().parent.parent


def fleet(n: int, stages: int = 2) -> dict[str, object]:
    waves = 5
    middle = [{"name": "qa", "bake": "PT4H", "alarms": {"prefix": "qa-"}}] if stages == 3 else []
    return {
        "fleet": f"bench-{n}",
        "defaults": {
            "project": "train-{service}-{stage}",
            "build_concurrency": 20,
            "approvers": ["arn:aws:iam::123456789012:role/ReleaseManager"],
        },
        "stages": [
            {"name": "staging", "bake": "P2D", "test_project": "train-e2e-staging", "alarms": {"prefix": "staging-"}},
            *middle,
            {
                "name": "prod",
                "bake": "PT1H",
                "test_project": "train-e2e-prod",
                "alarms": {"prefix": "prod-"},
                "approval": {"required": True, "timeout": "PT24H"},
            },
        ],
        "services": [
            {
                "name": f"svc-{i:04d}",
                "source": {"codecommit": f"svc-{i:04d}", "branch": "release"},
                "wave": 1 + i * waves // n,
            }
            for i in range(n)
        ],
    }


@dataclass(frozen=True)
class Row:
    label: str
    n: int
    stages: int = 2
    builds: dict[str, dict[str, BuildBehaviour]] = field(default_factory=dict)


def rows(which: str) -> list[Row]:
    def everyone(n: int, behaviour: BuildBehaviour, wave: int | None = None) -> dict[str, BuildBehaviour]:
        services = fleet(n)["services"]
        assert isinstance(services, list)
        return {s["name"]: behaviour for s in services if wave is None or s["wave"] == wave}

    quick = [Row("N=100", 100), Row("N=500", 500)]
    if which == "quick":
        return quick
    return [
        *quick,
        Row("N=1000", 1000),
        Row("N=2000", 2000),
        Row("N=1000, 3 stages", 1000, stages=3),
        Row("N=500, 2 throttles/build", 500, builds={"staging": everyone(500, BuildBehaviour(throttled=2))}),
        Row(
            "N=500, wave 1 all fail",
            500,
            builds={"staging": everyone(500, BuildBehaviour(outcome="FAILED"), wave=1)},
        ),
    ]


def expected_virtual_s(doc: dict[str, object], scenario: Scenario) -> float:
    """What AWS would take: per stage, each wave ceil(builds / concurrency) build lengths, then tests, then the bake;
    a stage that needs approval waits for the approver (the happy path: no canary, nothing throttled)."""
    fleet = Fleet.model_validate(doc)
    build = BuildBehaviour().duration.total_seconds()
    waves = Counter(s.wave for s in fleet.services)
    total = 0.0
    for stage in fleet.stages:
        total += sum(math.ceil(n / fleet.defaults.build_concurrency) * build for n in waves.values())
        if stage.test_project:
            total += (scenario.tests.get(stage.name) or TestRun()).duration.total_seconds()
        total += stage.bake.total_seconds()
        if stage.approval.required:
            total += sum(a.after.total_seconds() for a in scenario.approval_answers(stage.name)[:1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", choices=["all", "quick"], default="all")
    args = parser.parse_args()
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    print(
        f"{'row':<26} {'status':>9} {'wall s':>7} {'execs':>5} {'release ev':>10} {'max events':>10} {'% cap':>6} "
        f"{'max payload':>11} {'% limit':>7} {'at state':<14} {'transitions':>11} {'$/release':>9} "
        f"{'virtual h':>9} {'expected h':>10}"
    )
    walls: dict[str, float] = {}
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows(args.rows):
            path = Path(tmp) / f"fleet-{row.n}-{row.stages}.yaml"
            doc = fleet(row.n, row.stages)
            path.write_text(yaml.safe_dump(doc))
            scenario = Scenario(name="bench", approvals={"prod": ApprovalAction(decision="approve")}, builds=row.builds)
            result = simulate(path, scenario, ROOT)
            walls[row.label] = result.wall_s
            events, payload, state = _limits(result)
            worst = max(worst, events / HISTORY_CAP, payload / PAYLOAD_LIMIT)
            expected = expected_virtual_s(doc, scenario) / 3600 if not row.builds else float("nan")
            print(
                f"{row.label:<26} {result.status:>9} {result.wall_s:>7.1f} {len(result.executions):>5} "
                f"{result.history_events:>10} "
                f"{events:>10} {100 * events / HISTORY_CAP:>5.1f}% "
                f"{payload:>11} {100 * payload / PAYLOAD_LIMIT:>6.1f}% "
                f"{state:<14} {result.state_transitions:>11} {result.estimated_cost_usd:>9.4f} "
                f"{result.virtual_duration_s / 3600:>9.2f} {expected:>10.2f}",
                flush=True,
            )
    if "N=100" in walls and "N=2000" in walls:
        print(f"wall ratio N=2000/N=100: {walls['N=2000'] / walls['N=100']:.1f} (target <= 25)")
    print(f"largest share of either limit: {100 * worst:.1f}% (target <= {100 * BUDGET:.0f}%)")


def _limits(result: SimulationResult) -> tuple[int, int, str]:
    """The largest history and the largest payload over every execution of the release (the parent and its chunks)."""
    events = max(e["history_events"] for e in result.executions)
    biggest = max(result.executions, key=lambda e: e["largest_payload"]["bytes"])["largest_payload"]
    return events, int(biggest["bytes"]), str(biggest["state"])


if __name__ == "__main__":
    main()
