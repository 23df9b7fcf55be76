"""`trainctl report` on a real simulated train: canary-succeeds (every stage, wave and build, the prod approval with the
approver's IAM identity, both gates, five canaries with their hooks), its approval answered with markup and quotes in
the name and reason. The command runs in-process while the sandbox still exists (inside _Run._result, as
test_aws_limits.py does), reading the ledger and the emulated CodeBuild and CodeDeploy through boto3.

RELEASE_TRAIN_RECORD_REPORT=1 also rewrites tests/fixtures/report/canary-succeeds.json, the document the fast unit test
(tests/unit/test_report.py) renders.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from tests.conftest import ROOT
from tests.unit.test_report import HOSTILE, RECORDED, Page, assert_offline, assert_timeline
from trainctl.cli import main
from trainctl.report import gather
from trainctl.sandbox import runner
from trainctl.sandbox.runner import SimulationResult, simulate
from trainctl.sandbox.scenario import ApprovalAction, Scenario, load_scenario
from trainctl.views import show_doc

APPROVER = 'Alice "Ops" <alice@example.com>'

Reported = tuple[SimulationResult, dict[str, Any], Path, dict[str, Any]]


def _simulate_and_report(scenario: Scenario, page: Path, record: bool = False) -> Reported:
    """The train, the report document, the page `trainctl report` wrote, and what the command did (`cli`) and the
    prod approval's task token (`token`)."""
    captured: dict[str, Any] = {}
    original = runner._Run._result

    def result_and_report(self: Any, described: dict[str, Any], wall_start: float) -> SimulationResult:
        result = original(self, described, wall_start)
        table = self.stack.physical("LedgerTable")
        rid = result.release_id
        captured["token"] = self.ledger.approval(rid, "prod").task_token
        invoked = CliRunner().invoke(main, ["report", rid, "--html", str(page), "--table", table, "-o", "json"])
        captured["cli"] = invoked
        now = self.clock.now()
        show = show_doc(self.ledger, self.ledger.release(rid), now)
        captured["doc"] = gather(boto3.Session(), show, now)
        if record:
            keys = ("started_at", "ended_at", "duration_s")
            times = {b["build_id"]: {k: b[k] for k in keys} for b in captured["doc"]["builds"]}
            RECORDED.parent.mkdir(parents=True, exist_ok=True)
            RECORDED.write_text(
                json.dumps({"show": show, "times": times, "canaries": captured["doc"]["canaries"]}, indent=1) + "\n"
            )
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner._Run, "_result", result_and_report)
        result = simulate(ROOT / "fleet.yaml", scenario, ROOT)
    return result, captured["doc"], page, captured


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Reported:
    """canary-succeeds, its prod approval answered by a name and reason full of markup and quotes."""
    scenario = load_scenario(ROOT / "examples/scenarios/canary-succeeds.yaml")
    scenario = scenario.model_copy(
        update={"approvals": {"prod": ApprovalAction(decision="approve", by=APPROVER, reason=HOSTILE)}}
    )
    page = tmp_path_factory.mktemp("report") / "release.html"
    return _simulate_and_report(scenario, page, os.environ.get("RELEASE_TRAIN_RECORD_REPORT") == "1")


@pytest.fixture(scope="module")
def failed_canary(tmp_path_factory: pytest.TempPathFactory) -> Reported:
    """canary-pre-traffic-fails: the read function's PreTraffic hook fails, CodeDeploy and the stack roll back."""
    scenario = load_scenario(ROOT / "examples/scenarios/canary-pre-traffic-fails.yaml")
    return _simulate_and_report(scenario, tmp_path_factory.mktemp("report") / "release.html")


def test_given_a_simulated_train_when_reported_then_the_command_writes_the_page_and_exits_0(
    reported: Reported,
) -> None:
    result, _, page, captured = reported
    assert result.status == "SUCCEEDED"
    invoked = captured["cli"]
    assert invoked.exit_code == 0, invoked.output
    summary = json.loads(invoked.stdout)
    assert summary["file"] == str(page) and summary["bytes"] == page.stat().st_size > 10_000
    assert (summary["builds"], summary["canaries"], summary["notes"]) == (12, 5, [])


def test_given_a_simulated_train_then_the_page_shows_its_timeline_from_the_ledger(
    reported: Reported,
) -> None:
    result, doc, page_path, _ = reported
    source = page_path.read_text()
    page = Page(source)
    assert_timeline(page, doc)
    assert [s["name"] for s in doc["stages"]] == ["staging", "prod"]
    # every build the ledger recorded, with the id CodeBuild gave it and the duration CodeBuild reports
    built = {(s["name"], b["name"]): b["build_id"] for s in result.stages for b in s["services"]}
    rows = page.kind("build")
    assert {r.attrs["data-build-id"] for r in rows} == set(built.values()) and len(rows) == 12
    emulated = {b["id"]: b for b in result.builds}
    for build in doc["builds"]:
        began, ended = (datetime.fromisoformat(emulated[build["build_id"]][k]) for k in ("started_at", "ended_at"))
        assert (build["started_at"], build["ended_at"]) == (began.isoformat(), ended.isoformat())
        assert build["duration_s"] == (ended - began).total_seconds() > 0
    # the approval, answered by whom: the display name given and the IAM identity AWS authenticated
    approval = page.one("approval", stage="prod", status="APPROVED")
    (answer,) = result.approval_answers
    assert APPROVER in approval.text and answer["identity"] in approval.text and HOSTILE in approval.text
    # gates: verdicts with their evidence (the test reports, the alarms read over the bake)
    for stage in ("staging", "prod"):
        gate = page.one("gate", stage=stage, verdict="PROMOTE")
        assert "120 passed, 0 failed of 120" in gate.text and f"{stage}-errors" in gate.text
    # canaries: every emulated deployment of the release, with the hooks' reported results
    canaries = {n.attrs["data-deployment-id"]: n for n in page.kind("canary")}
    assert set(canaries) == {d["deployment_id"] for d in result.deployments}
    hooks = page.kind("hook")
    assert [(h.attrs["data-event"], h.attrs["data-status"]) for h in hooks] == [
        ("BeforeAllowTraffic", "Succeeded"),
        ("AfterAllowTraffic", "Succeeded"),
    ] * len(result.deployments)
    # the events: who did what
    decided = page.one("event", event="approval_decided")
    assert answer["identity"] in decided.text
    assert_offline(page, source)


def test_given_a_simulated_train_then_the_task_token_and_raw_markup_never_reach_the_page(
    reported: Reported,
) -> None:
    _, _, page_path, captured = reported
    source = page_path.read_text()
    assert captured["token"] and captured["token"] not in source
    assert HOSTILE not in source and "&lt;script&gt;" in source and "&quot;Ops&quot;" in source


def test_given_a_canary_whose_pre_traffic_hook_fails_then_the_page_shows_the_failure_and_what_is_live_after(
    failed_canary: Reported,
) -> None:
    result, doc, page_path, captured = failed_canary
    assert result.status == "FAILED" and captured["cli"].exit_code == 0, captured["cli"].output
    source = page_path.read_text()
    page = Page(source)
    assert page.one("release").attrs["data-status"] == "FAILED"
    (build,) = [b for b in doc["builds"] if (b["stage"], b["service"]) == ("prod", "company-service")]
    row = page.one("build", stage="prod", wave="1", **{"build-id": build["build_id"]})
    assert "FAILED" in row.text
    assert "FAILED" in page.one("timeline-wave", stage="prod", wave="1").attrs["data-state"]
    assert not page.kind("bake", stage="prod") and not page.kind("gate", stage="prod")  # it never got there
    (read,) = [n for n in page.kind("canary") if n.attrs["data-function"] == "svc-company-prod-read"]
    assert "Failed" in read.text
    hooks = [n for n in page.kind("hook") if n.attrs["data-event"] == "BeforeAllowTraffic"]
    assert sorted(h.attrs["data-status"] for h in hooks) == ["Failed", "Succeeded", "Succeeded", "Succeeded"]
    assert not [n for n in page.kind("hook") if n.attrs["data-status"] == "Failed" and n not in hooks]
    (after,) = page.kind("rollback-event")
    assert "prod runs new code for 1 of 6 services: identity" in after.text
    assert page.one("event", event="failed")
    assert_offline(page, source)
