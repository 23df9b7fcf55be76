"""Keep each scenario's tests next to each other, so pytest-xdist hands one scenario's run to one worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """When a test over a whole train fails, show what its failed deployments' hooks said: a failed canary is
    otherwise only a status in a long repr."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    from trainctl.sandbox.runner import SimulationResult

    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, SimulationResult):
            failed = [d for d in value.deployments if d.get("status") != "Succeeded"]
            if failed:
                shown = json.dumps(
                    [{k: d.get(k) for k in ("function", "status", "error", "hooks")} for d in failed], default=str
                )
                report.sections.append((f"failed deployments of {name}", shown[:20_000]))
