"""Whole trains at a size where Step Functions' hard limits matter (ADR 0007): the chunk executions keep every
history and payload far under the limits the sandbox enforces as AWS does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from release_train.domain.scale import CHUNK_SIZE, HISTORY_CAP, PAYLOAD_LIMIT
from trainctl.sandbox.runner import simulate
from trainctl.sandbox.scenario import ApprovalAction, BuildBehaviour, Scenario

ROOT = Path(__file__).resolve().parents[2]
N = 250  # three chunks: two full, one partial


def _fleet(tmp_path: Path) -> Path:
    doc = {
        "fleet": "scale",
        "defaults": {"build_concurrency": 40, "approvers": ["arn:aws:iam::123456789012:role/ReleaseManager"]},
        "stages": [
            {"name": "staging", "bake": "PT1H"},
            {"name": "prod", "bake": "PT1H", "approval": {"required": True, "timeout": "PT24H"}},
        ],
        "services": [
            {"name": f"svc-{i:04d}", "source": {"codecommit": f"svc-{i:04d}", "branch": "release"}, "wave": 1}
            for i in range(N)
        ],
    }
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.slow
def test_given_a_wave_whose_every_build_fails_then_each_failure_is_recorded_and_no_payload_nears_the_limit(
    tmp_path: Path,
) -> None:
    """Each failed build's cause is a whole build description (~3 KB in the sandbox, ~4 KB in AWS); before the chunks
    a wave of ~60 such failures crossed 256 KiB and nothing recorded the wave."""
    failing = {f"svc-{i:04d}": BuildBehaviour(outcome="FAILED") for i in range(N)}
    scenario = Scenario(name="all-fail", approvals={"prod": ApprovalAction()}, builds={"staging": failing})

    result = simulate(_fleet(tmp_path), scenario, ROOT)

    assert result.status == "FAILED" and f"staging wave 1: {N} of {N} builds failed" in result.reason
    (staging,) = [s for s in result.stages if s["name"] == "staging"]
    assert len(staging["services"]) == N
    assert all(s["build_status"] == "FAILED" and s["build_id"] for s in staging["services"])
    assert all("build FAILED in BUILD: Error while executing command" in s["error"] for s in staging["services"])
    releases = [e for e in result.executions if e["started_by"] is None]
    chunks = [e for e in result.executions if e["started_by"] is not None]
    assert len(releases) == 1 and len(chunks) == -(-N // CHUNK_SIZE)
    assert max(e["largest_payload"]["bytes"] for e in result.executions) < PAYLOAD_LIMIT * 0.5
    assert max(e["history_events"] for e in result.executions) < HISTORY_CAP * 0.5
