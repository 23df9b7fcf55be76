"""CleanupExecution: on ABORTED/FAILED/TIMED_OUT (EventBridge, at least once) stop what the release left running --
its builds, and the CodeDeploy deployments its builds started (with rollback) -- settle what is live, close the ledger,
free the lock, tell people."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from release_train.adapters.ledger import Ledger
from release_train.adapters.metrics import MetricsPort, NoMetrics
from release_train.domain.release import Status
from release_train.services.context import ReleaseContext, live_items, notify
from release_train.services.ending import settle_live
from release_train.services.live import LiveTracker
from release_train.services.ports import (
    ClockPort,
    CodeBuildPort,
    DeploymentsPort,
    ExecutionsPort,
    FunctionsPort,
    NotifierPort,
)
from release_train.services.stage_ports import PerAccount, per_account, stage_account

WAIT_BUDGET_S = 120.0  # for all of a release's deployments to end after StopDeployment, shared by the accounts


class CleanupService:
    def __init__(
        self,
        ledger: Ledger,
        executions: ExecutionsPort,
        codebuild: CodeBuildPort,
        deployments: DeploymentsPort | PerAccount[DeploymentsPort],
        functions: FunctionsPort | PerAccount[FunctionsPort],
        notifier: NotifierPort,
        clock: ClockPort,
        metrics: MetricsPort | None = None,
    ) -> None:
        self._ledger, self._executions, self._codebuild = ledger, executions, codebuild
        self._metrics = metrics or NoMetrics()
        self._deployments, self._notifier, self._clock = per_account(deployments), notifier, clock
        self._tracker = LiveTracker(ledger, functions)

    def cleanup(self, detail: dict[str, Any]) -> dict[str, Any]:
        """EventBridge 'Step Functions Execution Status Change' (ABORTED, FAILED, TIMED_OUT); at-least-once."""
        execution_arn, sfn_status = detail["executionArn"], detail["status"]
        release_id = self._ledger.release_for_execution(execution_arn)
        if release_id is None:
            return {"execution": execution_arn, "action": "none: this execution never owned a release"}
        ctx = ReleaseContext(self._ledger, release_id)
        stopped = self._stop_builds(ctx, release_id)
        deployments = self._stop_deployments(ctx, datetime.fromisoformat(ctx.record.created_at))
        for approval in self._ledger.pending_approvals(release_id):
            self._ledger.decide_approval(release_id, approval.stage, "CANCELLED", "release-train", sfn_status)
        now = self._clock.now()
        status = Status.CANCELLED if sfn_status == "ABORTED" else Status.FAILED
        cause = detail.get("cause") or detail.get("error") or f"execution {sfn_status}"
        closed = self._ledger.release(release_id)
        live = (
            settle_live(self._ledger, self._tracker, ctx, now) if closed and closed.status is Status.RUNNING else None
        )
        reason = f"execution {sfn_status}: {cause}{live.reason_suffix() if live else ''}"
        was_closed = self._ledger.close_release(release_id, status, reason, now, None)
        self._ledger.release_lock(ctx.fleet.fleet, execution_arn)
        if was_closed:
            self._metrics.release_ended(ctx.fleet.fleet, status)
            self._ledger.add_event(
                release_id,
                "cleaned_up",
                {"status": sfn_status, "stopped_builds": stopped, "stopped_deployments": deployments},
                now,
            )
            notify(
                self._notifier,
                ctx.fleet,
                f"Release {release_id} {status.value}",
                {
                    "kind": status.value.lower(),
                    "release_id": release_id,
                    "reason": reason,
                    "stopped_builds": stopped,
                    "stopped_deployments": deployments,
                    "lines": [
                        reason,
                        f"stopped {len(stopped)} running builds, {len(deployments)} running deployments",
                        *(live.lines if live else []),
                        *[f"rolled back {r}" for r in (live.rolled_back if live else [])],
                    ],
                },
                full=live_items(release_id, ctx.fleet.fleet),
            )
        return {
            "release_id": release_id,
            "closed": was_closed,
            "stopped_builds": stopped,
            "stopped_deployments": deployments,
        }

    def _stop_builds(self, ctx: ReleaseContext, release_id: str) -> list[str]:
        projects = [
            ctx.fleet.project_for(ctx.fleet.service(e.service), s.name) for e in ctx.manifest for s in ctx.fleet.stages
        ]
        projects += [s.test_project for s in ctx.fleet.stages if s.test_project]
        stopped = []
        for build_id in self._codebuild.running_builds_for_release(projects, release_id):
            try:
                self._codebuild.stop(build_id)
                stopped.append(build_id)
            except Exception:
                pass  # already finished between the list and the stop
        return stopped

    def _stop_deployments(self, ctx: ReleaseContext, since: datetime) -> dict[str, str]:
        """A stopped build leaves its CodeDeploy deployments running: stop them with rollback, wait until they end.
        Each stage's deployments run in the stage's account (docs/accounts.md): one pass per account. A Lambda
        deployment is found by its function, an ECS one by its application and deployment group."""
        by_account: dict[str | None, set[str]] = {}
        for e in ctx.manifest:
            service = ctx.fleet.service(e.service)
            for stage in ctx.fleet.canary_stages(service):
                targets = by_account.setdefault(stage_account(ctx.fleet, stage), set())
                targets.update(ctx.fleet.functions_for(service, stage))
                ecs = ctx.fleet.ecs_for(service, stage)
                if ecs is not None:
                    targets.add(ecs.deployment_key)
        # Stop everywhere first, then wait: the accounts share one wait budget (the function's timeout is 300 s).
        stopping: list[tuple[DeploymentsPort, dict[str, str]]] = []
        for account, functions in sorted(by_account.items(), key=lambda item: item[0] or ""):
            if not functions:
                continue
            deployments = self._deployments(account)
            running = deployments.in_flight(sorted(functions), since)
            for deployment_id in running:
                deployments.stop(deployment_id)
            if running:
                stopping.append((deployments, running))
        stopped: dict[str, str] = {}
        for deployments, running in stopping:
            ended = deployments.wait_ended(sorted(running), WAIT_BUDGET_S / len(stopping))
            stopped |= {f"{running[d]} {d}": status for d, status in ended.items()}
        return stopped
