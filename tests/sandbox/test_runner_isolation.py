"""A simulation's world ends with it: nothing virtual leaks into the rest of the process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from release_train.adapters.clock import Clock
from trainctl.sandbox import clock as vclock
from trainctl.sandbox import emulators
from trainctl.sandbox.runner import simulate
from trainctl.sandbox.scenario import Scenario

ROOT = Path(__file__).resolve().parents[2]


def test_given_a_finished_simulation_then_real_time_and_plain_moto_are_back() -> None:
    result = simulate(ROOT / "fleet.yaml", Scenario(name="quiet week", changed=[]), ROOT)

    assert result.status == "NOTHING_TO_RELEASE"
    assert vclock.active() is None
    assert emulators.active() is None
    assert abs(Clock().now() - datetime.now(UTC)) < timedelta(minutes=1)  # not the scenario's virtual Monday
