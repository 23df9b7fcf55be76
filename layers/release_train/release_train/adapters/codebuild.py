"""CodeBuild reads for the gate and the clean-up (the builds themselves are started by the state machine)."""

from __future__ import annotations

from typing import Any

from release_train.domain.release import TestEvidence

RUNNING = {"IN_PROGRESS"}
_PASSING = {"SUCCEEDED", "SKIPPED"}


class CodeBuild:
    def __init__(self, client: Any) -> None:
        self._c = client

    def running_builds_for_release(self, projects: list[str], release_id: str) -> list[str]:
        """Builds still running for this release: found by the RELEASE_ID variable the train passed them."""
        found: list[str] = []
        for project in sorted(set(projects)):
            ids: list[str] = []
            kwargs: dict[str, Any] = {"projectName": project, "sortOrder": "DESCENDING"}
            try:
                while True:
                    page = self._c.list_builds_for_project(**kwargs)
                    ids.extend(page.get("ids", []))
                    # Newest first; a release's builds are recent, 100 is plenty to look back through.
                    if "nextToken" not in page or len(ids) >= 100:
                        break
                    kwargs["nextToken"] = page["nextToken"]
            except self._c.exceptions.ResourceNotFoundException:
                continue
            for chunk in _chunks(ids, 100):
                for build in self._c.batch_get_builds(ids=chunk).get("builds", []):
                    env = build.get("environment", {}).get("environmentVariables", [])
                    tagged = any(v.get("name") == "RELEASE_ID" and v.get("value") == release_id for v in env)
                    if tagged and build.get("buildStatus") in RUNNING:
                        found.append(build["id"])
        return found

    def stop(self, build_id: str) -> None:
        self._c.stop_build(id=build_id)

    def test_evidence(self, build_id: str) -> TestEvidence | None:
        """Pass/fail counts across the build's test reports; None when the build produced no report."""
        builds = self._c.batch_get_builds(ids=[build_id]).get("builds", [])
        report_arns = builds[0].get("reportArns", []) if builds else []
        if not report_arns:
            return None
        total = passed = failed = 0
        for chunk in _chunks(report_arns, 100):
            for report in self._c.batch_get_reports(reportArns=chunk).get("reports", []):
                summary = report.get("testSummary", {})
                counts: dict[str, int] = summary.get("statusCounts", {})
                total += int(summary.get("total", sum(counts.values())))
                passed += sum(n for status, n in counts.items() if status in _PASSING)
                failed += sum(n for status, n in counts.items() if status not in _PASSING)
        return TestEvidence(tuple(report_arns), total, passed, failed)


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
