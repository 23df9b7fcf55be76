"""EvaluateGate: collect a stage's evidence (tests, alarms over the bake, holds, freeze) and decide; fails closed."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from release_train.adapters.ledger import Ledger
from release_train.adapters.metrics import MetricsPort, NoMetrics
from release_train.domain.release import Evidence, GateBlocked, decide
from release_train.services.context import ReleaseContext, build_id_from_cause, iso
from release_train.services.ports import AlarmsPort, ClockPort, CodeBuildPort, NotifierPort
from release_train.services.stage_ports import PerAccount, per_account


class GateService:
    def __init__(
        self,
        ledger: Ledger,
        codebuild: CodeBuildPort,
        alarms: AlarmsPort | PerAccount[AlarmsPort],
        notifier: NotifierPort,
        clock: ClockPort,
        metrics: MetricsPort | None = None,
    ) -> None:
        self._ledger, self._codebuild, self._alarms = ledger, codebuild, per_account(alarms)
        self._notifier, self._clock = notifier, clock
        self._metrics = metrics or NoMetrics()

    def evaluate(self, state: dict[str, Any]) -> dict[str, Any]:
        release_id, stage_name = state["release_id"], state["stage"]["name"]
        evidence = self.collect(state)
        now = self._clock.now()
        decision = decide(evidence)
        evidence_doc = asdict(evidence)
        self._ledger.put_gate(release_id, stage_name, decision.verdict.value, list(decision.reasons), evidence_doc)
        self._ledger.add_event(
            release_id,
            "gate",
            {"stage": stage_name, "verdict": decision.verdict.value, "reasons": list(decision.reasons)},
            now,
        )
        self._count_verdict(release_id, decision.verdict.value)
        if decision.reasons:
            raise GateBlocked(f"{stage_name}: " + "; ".join(decision.reasons))
        return {"stage": stage_name, "verdict": decision.verdict.value}

    def collect(self, state: dict[str, Any]) -> Evidence:
        """Everything the gate looks at for this stage iteration's state, read now; None where unreadable."""
        release_id, stage_name = state["release_id"], state["stage"]["name"]
        ctx = ReleaseContext(self._ledger, release_id)
        ctx.require_stage(stage_name, "EvaluateGate", "stage.name")
        stage = ctx.fleet.stages[ctx.stage_index(stage_name)]
        now = self._clock.now()
        evidence = Evidence(
            stage=stage_name, tests_expected=bool(stage.test_project), alarms_expected=stage.alarms is not None
        )
        builds = self._ledger.builds(release_id, stage_name)
        riding = {e.service for e in ctx.manifest}
        built = {b.service for b in builds if b.status == "SUCCEEDED"}
        evidence.builds_succeeded = riding <= built if builds else None

        if stage.test_project:
            build_id = (state.get("tests") or {}).get("build_id") or build_id_from_cause(
                (state.get("tests_error") or {}).get("Cause")
            )
            if build_id is None:
                evidence.missing.append("the test run did not start or left no build id")
            else:
                try:
                    evidence.tests = self._codebuild.test_evidence(build_id)
                except Exception as exc:
                    evidence.missing.append(f"test reports of {build_id} unreadable: {exc}")

        if stage.alarms is not None:
            start = self._bake_started(release_id, stage_name) or now
            try:
                # the stage's alarms are in the stage's account (docs/accounts.md)
                evidence.alarms = self._alarms(stage.account).evidence(stage.alarms, start, now)
            except Exception as exc:
                evidence.missing.append(f"alarms unreadable: {exc}")

        try:
            evidence.holds = [h for h in self._ledger.holds(ctx.fleet.fleet) if h.scope in riding | {"*"}]
        except Exception as exc:
            evidence.missing.append(f"holds unreadable: {exc}")
        frozen = ctx.fleet.freeze_at(now)
        evidence.freeze_reason = f"{frozen.reason} until {iso(frozen.end)}" if frozen else None
        return evidence

    def _count_verdict(self, release_id: str, verdict: str) -> None:
        try:
            record = self._ledger.release(release_id)  # the metric's `fleet`; the verdict is already recorded
        except Exception:
            return  # a metric never fails the gate
        if record is not None:
            self._metrics.gate_verdict(record.fleet, verdict)

    def _bake_started(self, release_id: str, stage: str) -> datetime | None:
        times = [
            e["at"]
            for e in self._ledger.events(release_id)
            if e["kind"] == "wave_recorded" and e["detail"].get("stage") == stage
        ]
        return datetime.fromisoformat(max(times)) if times else None
