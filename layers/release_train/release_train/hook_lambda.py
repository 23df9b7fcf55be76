"""The Lambda side of the traffic hooks, shared by functions/pre_traffic and functions/post_traffic.

Adds to TrafficHookService what only exists in Lambda: the event, the remaining time, idempotency (DynamoDB),
structured logs and metrics. Settings come from the handler module, which reads the environment once at import.

Duplicate delivery (async invoke may deliver an event twice; Lambda retries a failed async invocation twice):
- first attempt finished -> the COMPLETED idempotency record answers; no check runs, nothing is reported;
- first attempt still running -> IdempotencyAlreadyInProgressError -> HookAlreadyInProgress is raised so the
  invocation fails and Lambda's async retry comes back later (by then: COMPLETED, or the first attempt died);
- first attempt died hard (timeout, OOM) -> its INPROGRESS record expires when that attempt's Lambda would have
  timed out (register_lambda_context), i.e. within minutes and well before CodeDeploy's 1 h hook limit; the retry
  then runs the checks and reports. If the dead attempt had reported already, CodeDeploy answers
  LifecycleEventAlreadyCompletedException, which is treated as done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import CodeDeployLifecycleHookEvent

from release_train.domain.checks import HookPhase, HookStatus
from release_train.domain.errors import ReleaseTrainError
from release_train.hooks import HookOutcome, HookRequest, ReportResult, StatusReporter, TrafficHookService

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

METRICS_NAMESPACE = "ReleaseTrain"


class HookAlreadyInProgress(ReleaseTrainError):
    """Another invocation holds this hook execution. Raised so Lambda's async retry re-delivers the event later."""


class HookEventInvalid(ReleaseTrainError):
    """The event lacks DeploymentId or LifecycleEventHookExecutionId: there is nothing to report to."""


@dataclass(frozen=True)
class HookSettings:
    phase: HookPhase
    idempotency_table: str | None
    safety_margin_ms: int = 10_000  # kept back from the Lambda's remaining time to report and save the record
    idempotency_ttl_s: int = 24 * 3600  # COMPLETED records outlive Lambda's 6 h maximum event age

    def problems(self) -> list[str]:
        return [] if self.idempotency_table else ["IDEMPOTENCY_TABLE is not set"]


ServiceFactory = Callable[[Logger], TrafficHookService]


class HookRuntime:
    """One per hook module (cold start). Builds the service and the idempotency layer on first use."""

    def __init__(
        self, settings: HookSettings, logger: Logger, metrics: Metrics, service_factory: ServiceFactory
    ) -> None:
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        self._service_factory = service_factory
        self._service: TrafficHookService | None = None
        self._once: Callable[..., dict[str, Any]] | None = None
        self._idempotency_config: Any = None
        self._local = threading.local()  # per invocation thread: the sandbox may run hooks concurrently
        self._init_lock = threading.Lock()

    @property
    def service(self) -> TrafficHookService:
        if self._service is None:
            self._service = self._service_factory(self.logger)
        return self._service

    def handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if not isinstance(event, dict):  # the data class would raise a bare TypeError on None or a list
            got = type(event).__name__
            raise HookEventInvalid(f"not a CodeDeploy lifecycle hook event: expected an object, got {got}")
        hook_event = CodeDeployLifecycleHookEvent(event)
        try:
            request = HookRequest(
                hook_event.deployment_id, hook_event.lifecycle_event_hook_execution_id, self.settings.phase
            )
        except KeyError as exc:
            raise HookEventInvalid(f"not a CodeDeploy lifecycle hook event: missing {exc}") from exc
        ids = {"DeploymentId": request.deployment_id, "LifecycleEventHookExecutionId": request.execution_id}
        if bad := [k for k, v in ids.items() if not isinstance(v, str) or not v]:
            raise HookEventInvalid(f"not a CodeDeploy lifecycle hook event: {', '.join(bad)}: not a non-empty string")
        self.logger.append_keys(deployment_id=request.deployment_id, hook_phase=request.phase.value)
        self.metrics.add_dimension(name="Hook", value=request.phase.value)

        problems = self.settings.problems()
        if problems:  # misconfigured hook: still answer CodeDeploy rather than stall the deployment for an hour
            return self._report_without_checks(request, "hook misconfigured: " + "; ".join(problems))

        self._local.ran = False
        try:
            run_once = self._run_once()
            self._idempotency_config.register_lambda_context(context)
            result = run_once(hook_event=dict(event), remaining_ms=float(context.get_remaining_time_in_millis()))
        except HookAlreadyInProgress:
            raise
        except Exception as exc:
            if self._local.ran:  # the service ran and reported (or failed to): do not report a second time
                raise
            from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

            if isinstance(exc, IdempotencyAlreadyInProgressError):
                self.metrics.add_metric(name="HookDuplicateInProgress", unit=MetricUnit.Count, value=1)
                self.logger.warning("hook execution already in progress elsewhere; failing so Lambda retries later")
                raise HookAlreadyInProgress(request.execution_id) from exc
            self.logger.exception("idempotency layer failed before the checks ran; reporting Failed")
            return self._report_without_checks(request, f"hook error: {type(exc).__name__}: {exc}")
        if not self._local.ran:
            self.metrics.add_metric(name="HookDuplicateDelivery", unit=MetricUnit.Count, value=1)
            self.logger.info(
                "duplicate delivery: already handled, nothing run, nothing reported", extra={"result": result}
            )
        return result

    def _run_once(self) -> Callable[..., dict[str, Any]]:
        with self._init_lock:  # built once even if two invocations share this module (a local emulator does)
            return self._build_once()

    def _build_once(self) -> Callable[..., dict[str, Any]]:
        if self._once is None:
            from aws_lambda_powertools.utilities.idempotency import (
                DynamoDBPersistenceLayer,
                IdempotencyConfig,
                idempotent_function,
            )

            self._idempotency_config = IdempotencyConfig(
                event_key_jmespath="LifecycleEventHookExecutionId",
                raise_on_no_idempotency_key=True,
                expires_after_seconds=self.settings.idempotency_ttl_s,
            )
            persistence = DynamoDBPersistenceLayer(table_name=str(self.settings.idempotency_table))
            self._once = idempotent_function(
                self._checked_and_reported,
                data_keyword_argument="hook_event",
                persistence_store=persistence,
                config=self._idempotency_config,
            )
        return self._once

    def _checked_and_reported(self, *, hook_event: dict[str, Any], remaining_ms: float) -> dict[str, Any]:
        self._local.ran = True
        request = HookRequest(
            str(hook_event["DeploymentId"]), str(hook_event["LifecycleEventHookExecutionId"]), self.settings.phase
        )
        outcome = self.service.handle(request, remaining_ms, self.settings.safety_margin_ms)
        self._publish(outcome)
        return outcome.to_dict()

    def _report_without_checks(self, request: HookRequest, reason: str) -> dict[str, Any]:
        reporter: StatusReporter = self.service.reporter
        report = reporter.report(request.deployment_id, request.execution_id, HookStatus.FAILED)
        outcome = HookOutcome(
            request.deployment_id,
            request.execution_id,
            request.phase,
            HookStatus.FAILED,
            report,
            (reason,),
            (),
            None,
            0.0,
        )
        self._publish(outcome)
        return outcome.to_dict()

    def _publish(self, outcome: HookOutcome) -> None:
        for result in outcome.results:
            name = "CheckPassed" if result.passed else "CheckFailed"
            self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
            level = self.logger.info if result.passed else self.logger.warning
            level(
                "check %s %s",
                result.name,
                result.outcome.value,
                extra={
                    "check": result.name,
                    "check_kind": result.kind,
                    "outcome": result.outcome.value,
                    "duration_ms": result.duration_ms,
                    "reasons": list(result.reasons),
                },
            )
        self.metrics.add_metric(
            name="HookSucceeded" if outcome.status is HookStatus.SUCCEEDED else "HookFailed",
            unit=MetricUnit.Count,
            value=1,
        )
        self.metrics.add_metric(name="HookDuration", unit=MetricUnit.Milliseconds, value=outcome.duration_ms)
        if outcome.report is ReportResult.ALREADY_COMPLETED:
            self.metrics.add_metric(name="HookAlreadyCompleted", unit=MetricUnit.Count, value=1)
        summary = {k: v for k, v in outcome.to_dict().items() if k != "checks"}
        if outcome.status is HookStatus.SUCCEEDED:
            self.logger.info("hook Succeeded", extra=summary)
        else:
            self.logger.warning("hook Failed", extra=summary)


def hook_from_environment(phase: HookPhase) -> tuple[Logger, Metrics, HookRuntime]:
    """What a hook module builds at import: both hooks are this, with their own phase (one place to change)."""
    import os

    from release_train.adapters.check_runners import ExpressExecutor, HttpRequester, LambdaInvoker
    from release_train.adapters.checks_store import SsmChecksSource
    from release_train.adapters.codedeploy import CodeDeployDeployments, CodeDeployStatusReporter

    settings = HookSettings(
        phase=phase,
        idempotency_table=os.environ.get("IDEMPOTENCY_TABLE"),
        safety_margin_ms=int(os.environ.get("HOOK_SAFETY_MARGIN_MS", "10000")),
        idempotency_ttl_s=int(os.environ.get("HOOK_IDEMPOTENCY_TTL_SECONDS", "86400")),
    )
    checks_prefix = os.environ.get("CHECKS_PARAMETER_PREFIX", "/release-train/checks")

    def build_service(log: Logger) -> TrafficHookService:
        # Clients are built on first use (adapters.hook_clients): cheap import, and created after any sandbox mock.
        return TrafficHookService(
            deployments=CodeDeployDeployments(),
            reporter=CodeDeployStatusReporter(),
            checks=SsmChecksSource(prefix=checks_prefix),
            invoker=LambdaInvoker(),
            http=HttpRequester(),
            express=ExpressExecutor(),
            log=log,
        )

    logger = Logger()
    metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE))
    return logger, metrics, HookRuntime(settings, logger, metrics, build_service)
