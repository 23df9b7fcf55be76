"""How a whole train scales with the fleet: wall time on this machine, history events against the 25,000 cap,
state transitions and their Step Functions cost. Not a test: numbers to read (and to quote in notes).

    .venv/bin/python bench/train_bench.py [--sizes 30,100,300,500]
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
from collections import Counter
from pathlib import Path

import yaml

from release_train.domain.fleet import Fleet
from trainctl.sandbox.runner import simulate
from trainctl.sandbox.scenario import ApprovalAction, BuildBehaviour, Scenario, TestRun

ROOT = Path(__file__).resolve().parent.parent
HISTORY_CAP = 25_000


def fleet(n: int) -> dict[str, object]:
    waves = 5
    return {
        "fleet": f"bench-{n}",
        "defaults": {
            "project": "train-{service}-{stage}",
            "build_concurrency": 20,
            "approvers": ["arn:aws:iam::123456789012:role/ReleaseManager"],
        },
        "stages": [
            {"name": "staging", "bake": "P2D", "test_project": "train-e2e-staging", "alarms": {"prefix": "staging-"}},
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
                "name": f"svc-{i:03d}",
                "source": {"codecommit": f"svc-{i:03d}", "branch": "release"},
                "wave": 1 + i * waves // n,
            }
            for i in range(n)
        ],
    }


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
    parser.add_argument("--sizes", default="30,100,300,500")
    args = parser.parse_args()
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    scenario = Scenario(name="bench", approvals={"prod": ApprovalAction(decision="approve")})
    rows = []
    print(
        f"{'N':>5} {'status':>10} {'wall s':>8} {'events':>7} {'% cap':>6} {'transitions':>11} "
        f"{'$/release':>9} {'virtual h':>9} {'expected h':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            path = Path(tmp) / f"fleet-{n}.yaml"
            doc = fleet(n)
            path.write_text(yaml.safe_dump(doc))
            result = simulate(path, scenario, ROOT)
            rows.append((n, result))
            print(
                f"{n:>5} {result.status:>10} {result.wall_s:>8.2f} {result.history_events:>7} "
                f"{100 * result.history_events / HISTORY_CAP:>5.1f}% {result.state_transitions:>11} "
                f"{result.estimated_cost_usd:>9.4f} {result.virtual_duration_s / 3600:>9.2f} "
                f"{expected_virtual_s(doc, scenario) / 3600:>10.2f}",
                flush=True,
            )
    walls = {n: r.wall_s for n, r in rows}
    if 30 in walls and 300 in walls:
        print(f"wall ratio N=300/N=30: {walls[300] / walls[30]:.2f}")
    print("targets: N=30 under 10 s wall; N=500 at most 50% of the history cap")


if __name__ == "__main__":
    main()
