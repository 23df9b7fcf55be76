"""`trainctl report`: the page rendered from a recorded report document (a real simulated train's, see
tests/sandbox/test_report.py, which simulates one and records it), parsed with html.parser; the command's exit codes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from moto import mock_aws

from release_train.adapters.ledger import Ledger, ReleaseRecord
from release_train.domain.release import Status
from tests.conftest import ROOT
from tests.unit.adapters.ledger_table import TABLE_NAME, create_ledger_table
from trainctl import cli
from trainctl.cli import main
from trainctl.report import gather, read_canaries, render_html, report_doc

RECORDED = ROOT / "tests" / "fixtures" / "report" / "canary-succeeds.json"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script> & \'it\' "works"'
_VOID = {"meta", "br", "link", "img", "input", "hr", "area", "base", "col", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())


class Page(HTMLParser):
    """Every element with its attributes and the text inside it (entities decoded, as a browser shows them)."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.nodes: list[Node] = []
        self._open: list[Node] = []
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.nodes.append(node)
        if tag not in _VOID:
            self._open.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.nodes.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                return

    def handle_data(self, data: str) -> None:
        for node in self._open:
            node.parts.append(data)

    def kind(self, kind: str, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.nodes
            if n.attrs.get("data-kind") == kind and all(n.attrs.get(f"data-{k}") == v for k, v in attrs.items())
        ]

    def one(self, kind: str, **attrs: str) -> Node:
        found = self.kind(kind, **attrs)
        assert len(found) == 1, (kind, attrs, [n.attrs for n in found])
        return found[0]


def assert_offline(page: Page, source: str) -> None:
    """Nothing is fetched: no script at all, no src/href/xlink:href/url() pointing anywhere but the page itself."""
    assert not [n for n in page.nodes if n.tag in {"script", "link", "img", "iframe", "object", "embed"}]
    for node in page.nodes:
        for name, value in node.attrs.items():
            if name in {"src", "href", "xlink:href", "action", "srcset", "poster"}:
                raise AssertionError(f"<{node.tag} {name}={value!r}>: the page must not reference anything")
            assert not name.startswith("on"), f"<{node.tag} {name}>: no event handler attributes"
    assert not re.search(r"url\(|@import", source), "CSS must not load anything"
    assert "<script" not in source.lower()


def assert_timeline(page: Page, doc: dict[str, Any]) -> None:
    """Each stage, each wave (in the SVG and in the tables), each build row with its id, bake, approval, gate."""
    for stage in doc["stages"]:
        name = stage["name"]
        page.one("stage", stage=name)
        for wave in stage["waves"]:
            assert page.one("wave", stage=name, wave=str(wave["wave"])).tag == "tr"  # the wave's row of builds
            assert page.one("timeline-wave", stage=name, wave=str(wave["wave"])).tag == "g"  # its bar in the SVG
        bake = page.one("bake", stage=name)
        assert bake.attrs["data-start"] < bake.attrs["data-end"]
        assert page.one("timeline-bake", stage=name).tag == "g"
        verdict = next(g["verdict"] for g in doc["gates"] if g["stage"] == name)
        assert page.one("gate", stage=name).attrs["data-verdict"] == verdict
        assert page.one("timeline-gate", stage=name).attrs["data-state"] == verdict
    if any(s.get("approval") for s in doc["stages"]):
        assert page.kind("timeline-approval")
    for build in doc["builds"]:
        row = page.one("build", stage=build["stage"], wave=str(build["wave"]), **{"build-id": build["build_id"]})
        assert build["service"] in row.text and build["status"] in row.text


# --- the recorded document --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    saved = json.loads(RECORDED.read_text())
    return report_doc(saved["show"], saved["times"], saved["canaries"], [], NOW)


def test_given_a_recorded_train_then_the_page_has_every_stage_wave_build_bake_approval_gate_and_canary(
    recorded: dict[str, Any],
) -> None:
    source = render_html(recorded)
    page = Page(source)
    assert_timeline(page, recorded)
    assert {(n.attrs["data-stage"], n.attrs["data-wave"]) for n in page.kind("timeline-wave")} == {
        (stage, wave) for stage in ("staging", "prod") for wave in ("1", "2", "3")
    }
    assert {n.attrs["data-stage"] for n in page.kind("timeline-gate")} == {"staging", "prod"}
    approval = page.one("approval", stage="prod", status="APPROVED")
    (decided,) = [a for a in recorded["approvals"] if a["stage"] == "prod"]
    assert decided["identity"].startswith("arn:aws:sts::") and decided["identity"] in approval.text
    assert decided["decided_by"] in approval.text
    # every build's duration is the one CodeBuild reported (the emulated builds last whole minutes)
    for build in recorded["builds"]:
        row = page.one("build", stage=build["stage"], wave=str(build["wave"]), **{"build-id": build["build_id"]})
        assert build["duration_s"] and f"{build['duration_s'] // 60}m" in row.text
    canaries = page.kind("canary")
    assert {n.attrs["data-function"] for n in canaries} == {c["function"] for c in recorded["canaries"]}
    assert len(canaries) == 5  # company-service's four functions and orders' api, in prod
    hooks = page.kind("hook")
    assert {(h.attrs["data-event"], h.attrs["data-status"]) for h in hooks} == {
        ("BeforeAllowTraffic", "Succeeded"),
        ("AfterAllowTraffic", "Succeeded"),
    }
    assert len(hooks) == 2 * len(canaries)
    assert_offline(page, source)


def test_given_markup_and_quotes_in_ledger_text_then_it_is_shown_as_text_never_as_markup(
    recorded: dict[str, Any],
) -> None:
    doc = json.loads(json.dumps(recorded))
    (approval,) = [s["approval"] for s in doc["stages"] if s["name"] == "prod"]
    approval["reason"] = HOSTILE
    doc["release"]["reason"] = HOSTILE
    doc["builds"][0]["error"] = HOSTILE
    doc["gates"][0]["reasons"] = [HOSTILE]
    doc["events"][0]["detail"]["by"] = HOSTILE
    source = render_html(doc)
    page = Page(source)
    assert_offline(page, source)  # no <script> element came through
    assert HOSTILE in page.one("approval", stage="prod").text
    assert HOSTILE in page.one("gate-reason").text
    assert HOSTILE in page.one("release").text


def test_given_a_task_token_anywhere_in_the_document_then_the_page_never_shows_it(recorded: dict[str, Any]) -> None:
    show = json.loads(json.dumps(recorded))
    show["approvals"][0]["task_token"] = "AQCEAAAAKgAAAAMAAAAAAAAAAb-secret-token"
    show["events"].append({"kind": "x", "at": NOW.isoformat(), "detail": {"taskToken": "AQCE-secret-token-2"}})
    doc = report_doc(show, {}, [], [], NOW)
    assert "secret-token" not in json.dumps(doc) and "secret-token" not in render_html(doc)


def test_given_hook_results_unreadable_then_the_canary_says_so_and_a_note_says_why(recorded: dict[str, Any]) -> None:
    canaries = [{**c, "hooks": None} for c in recorded["canaries"]]
    doc = report_doc(recorded, {}, canaries, ["CodeDeploy hook results not readable (X): status only"], NOW)
    page = Page(render_html(doc))
    assert not page.kind("hook") and len(page.kind("canary")) == len(canaries)
    assert "hook results not readable" in page.one("notes").text


def test_given_a_break_glass_start_then_the_page_names_who_overrode_what_and_why(recorded: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(recorded))
    who = "arn:aws:sts::123456789012:assumed-role/ReleaseManager/bob"
    detail = {"identity": who, "reason": HOSTILE, "skip": ["bake"]}  # as PlanRelease records it
    doc["events"].insert(1, {"kind": "break_glass", "at": "2026-11-23T09:00:00+00:00", "detail": detail})
    page = Page(render_html(doc))
    (row,) = page.kind("break-glass")
    assert who in row.text and HOSTILE in row.text and "bake" in row.text
    assert not page.kind("break-glass-none")
    assert Page(render_html(recorded)).one("break-glass-none")  # and a release without one says so


# --- CodeDeploy as AWS answers it ----------------------------------------------------------------------------------


APPSPEC = {
    "version": 0.0,
    "Resources": [
        {
            "svc": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Name": "svc-prod-api", "Alias": "live", "CurrentVersion": "3", "TargetVersion": "4"},
            }
        }
    ],
}


class FakeCodeDeploy:
    """ListDeployments / GetDeployment / ListDeploymentTargets / BatchGetDeploymentTargets / GetApplicationRevision as
    botocore parses them (codedeploy service model): one deployment of the release's function, one of another
    function, one of the release's function before the release began. `targets_fail`: ListDeploymentTargets answers
    500, as an endpoint that does not implement it does."""

    def __init__(self, targets_fail: bool = False) -> None:
        self.targets_fail = targets_fail
        self.target_calls = 0
        self.infos = {
            "d-IN": ("svc-prod-api", datetime(2026, 11, 25, 12, tzinfo=UTC)),
            "d-OTHER": ("someone-else", datetime(2026, 11, 25, 12, tzinfo=UTC)),
            "d-BEFORE": ("svc-prod-api", datetime(2026, 11, 20, 12, tzinfo=UTC)),
        }

    def get_paginator(self, name: str) -> Any:
        outer = self

        class Paginator:
            def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
                if name == "list_deployments":
                    yield {"deployments": ["d-IN"], "nextToken": "t"}
                    yield {"deployments": ["d-OTHER", "d-BEFORE"]}
                    return
                outer.target_calls += 1
                if outer.targets_fail:
                    raise ClientError({"Error": {"Code": "500", "Message": ""}}, "ListDeploymentTargets")
                yield {"targetIds": [f"{outer.infos[kwargs['deploymentId']][0]}:live"]}

        return Paginator()

    def get_deployment(self, deploymentId: str) -> dict[str, Any]:
        function = self.infos[deploymentId][0]
        return {
            "deploymentInfo": {
                "applicationName": "svc-app",
                "deploymentId": deploymentId,
                "computePlatform": "Lambda",
                "revision": {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": function}},
                "status": "Failed",
                "deploymentConfigName": "CodeDeployDefault.LambdaCanary10Percent5Minutes",
                "createTime": self.infos[deploymentId][1],
                "errorInformation": {"code": "HEALTH_CONSTRAINTS", "message": "hook failed"},
                "rollbackInfo": {"rollbackMessage": "rolled back by alarm"},
            }
        }

    def get_application_revision(self, applicationName: str, revision: dict[str, Any]) -> dict[str, Any]:
        function = revision["appSpecContent"]["sha256"]
        spec = json.loads(json.dumps(APPSPEC).replace("svc-prod-api", function))
        content = {"content": json.dumps(spec), "sha256": function}
        return {
            "applicationName": applicationName,
            "revision": {"revisionType": "AppSpecContent", "appSpecContent": content},
        }

    def batch_get_deployment_targets(self, deploymentId: str, targetIds: list[str]) -> dict[str, Any]:
        function = self.infos[deploymentId][0]
        return {
            "deploymentTargets": [
                {
                    "deploymentTargetType": "LambdaTarget",
                    "lambdaTarget": {
                        "deploymentId": deploymentId,
                        "targetId": targetIds[0],
                        "status": "Failed",
                        "lifecycleEvents": [
                            {"lifecycleEventName": "BeforeAllowTraffic", "status": "Succeeded"},
                            {
                                "lifecycleEventName": "AfterAllowTraffic",
                                "status": "Failed",
                                "diagnostics": {"errorCode": "UnknownError", "message": "5xx over budget"},
                            },
                        ],
                        "lambdaFunctionInfo": {
                            "functionName": function,
                            "functionAlias": "live",
                            "currentVersion": "3",
                            "targetVersion": "4",
                        },
                    },
                }
            ]
        }


WINDOW = (datetime(2026, 11, 23, 9, tzinfo=UTC), datetime(2026, 11, 26, tzinfo=UTC))


def test_given_deployments_in_and_outside_the_release_then_only_its_functions_in_its_window_are_read() -> None:
    notes: list[str] = []
    found = read_canaries(FakeCodeDeploy(), {"svc-prod-api"}, *WINDOW, notes)
    assert [c["deployment_id"] for c in found] == ["d-IN"] and notes == []
    (canary,) = found
    assert (canary["function"], canary["current_version"], canary["target_version"]) == ("svc-prod-api", "3", "4")
    assert canary["hooks"][1] == {
        "name": "AfterAllowTraffic",
        "status": "Failed",
        "started_at": None,
        "ended_at": None,
        "message": "5xx over budget",
    }
    assert canary["error"] == "HEALTH_CONSTRAINTS: hook failed" and canary["rollback"] == "rolled back by alarm"


def test_given_deployment_targets_unreadable_then_the_appspec_names_the_function_and_the_hooks_are_unknown() -> None:
    notes: list[str] = []
    codedeploy = FakeCodeDeploy(targets_fail=True)
    found = read_canaries(codedeploy, {"svc-prod-api"}, *WINDOW, notes)
    assert [(c["deployment_id"], c["function"], c["target_version"], c["hooks"]) for c in found] == [
        ("d-IN", "svc-prod-api", "4", None)
    ]
    assert codedeploy.target_calls == 1  # refused once: not asked again for the other deployment in the window
    (note,) = notes
    assert "hook results not readable" in note and "500" in note


def test_given_an_account_that_kept_no_builds_then_the_times_are_unknown_and_a_note_says_so() -> None:
    saved = json.loads(RECORDED.read_text())
    with mock_aws():  # moto's CodeBuild and CodeDeploy know nothing of these builds and deployments
        doc = gather(boto3.Session(region_name="us-east-1"), saved["show"], NOW)
    assert doc["notes"] == ["CodeBuild has no record of 12 of 12 builds: their times are unknown"]
    assert {b["duration_s"] for b in doc["builds"]} == {None} and doc["canaries"] == []
    assert "CodeBuild has no record of 12 of 12 builds" in Page(render_html(doc)).one("notes").text


# --- the command's exit codes --------------------------------------------------------------------------------------


@pytest.fixture
def ledger_table() -> Iterator[None]:
    with mock_aws():
        create_ledger_table()
        yield


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, ["report", *args, "--table", TABLE_NAME, "--fleet", "acme-shop"])


def test_given_an_unknown_release_then_exit_3_naming_it_and_no_file(
    ledger_table: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_now", lambda: NOW)
    result = _run("2026-W01", "--html", str(tmp_path / "r.html"))
    assert result.exit_code == 3, result.output
    assert "release 2026-W01 is not in the ledger" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("where", ["missing-folder/r.html", "."])
def test_given_an_html_path_that_cannot_be_written_then_exit_2_before_reading_aws(tmp_path: Path, where: str) -> None:
    # no moto here: reaching AWS would fail differently (exit 3), so exit 2 proves the check came first
    result = _run("2026-W48", "--html", str(tmp_path / where))
    assert result.exit_code == 2, result.output
    assert "--html" in result.output and "Traceback" not in result.output


def test_given_html_dash_then_the_page_goes_to_stdout_and_nothing_else(
    ledger_table: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_now", lambda: NOW)
    ledger = Ledger(boto3.resource("dynamodb", region_name="us-east-1").Table(TABLE_NAME))
    created = ReleaseRecord("2026-W48", "acme-shop", Status.RUNNING, "", "arn:x", "2026-11-23T09:00:00+00:00")
    assert ledger.create_release(created, {"fleet": "acme-shop"})
    result = CliRunner().invoke(main, ["report", "2026-W48", "--html", "-", "--table", TABLE_NAME])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("<!DOCTYPE html>") and result.stdout.rstrip().endswith("</html>")
    assert Page(result.stdout).one("release").attrs["data-status"] == "RUNNING"


def test_given_stdout_and_json_together_then_exit_2() -> None:
    result = _run("2026-W48", "--html", "-", "--output", "json")
    assert result.exit_code == 2 and "--output json" in result.stderr and "Usage:" not in result.output
