"""Keep each scenario's tests next to each other, so pytest-xdist hands one scenario's run to one worker."""

from __future__ import annotations

from pathlib import Path

import pytest

_SCENARIOS = {p.stem.replace("-", "_") for p in (Path(__file__).parents[2] / "examples" / "scenarios").glob("*.yaml")}


def _scenario_of(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "name" in callspec.params:
        return str(callspec.params["name"]).replace("-", "_")
    return next((n for n in getattr(item, "fixturenames", []) if n in _SCENARIOS), "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Scenario runs are module-scoped fixtures (test_scenarios.py) and xdist's load scheduling sends contiguous chunks
    # of tests to each worker: grouping a scenario's tests avoids simulating it on both. Other tests keep their places.
    slots = [i for i, item in enumerate(items) if item.nodeid.startswith("tests/sandbox/test_scenarios.py::")]
    grouped = sorted((items[i] for i in slots), key=_scenario_of)  # stable: a scenario's tests keep their order
    for slot, item in zip(slots, grouped, strict=True):
        items[slot] = item
