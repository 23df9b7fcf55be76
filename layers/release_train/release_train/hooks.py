"""Use case: a CodeDeploy traffic hook (BeforeAllowTraffic / AfterAllowTraffic).

find the deployment target -> load its declared checks -> run them within the time budget -> report the status to
CodeDeploy exactly once, whatever happened (invariant 5). Every collaborator is a port (typing.Protocol) given to the
constructor: production passes the boto3/requests adapters, tests and the sandbox pass fakes or moto-backed ones.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from release_train.domain.checks import (
    CheckOutcome,
    CheckResult,
    CheckSuite,
    ExpressCheck,
    ExpressObservation,
    HookPhase,
    HookStatus,
    HttpCheck,
    HttpObservation,
    InvokeCheck,
    InvokeObservation,
    TimeBudget,
    Verdict,
    judge_express,
    judge_http,
    judge_invoke,
    not_run,
    parse_check_suite,
)
from release_train.domain.errors import InvalidInput
from release_train.domain.hook_targets import DeploymentTarget, EcsTarget, LambdaTarget, route_problem

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------------------------


class ReportResult(StrEnum):
    REPORTED = "reported"
    ALREADY_COMPLETED = "already_completed"  # LifecycleEventAlreadyCompletedException: someone reported first


class DeploymentReader(Protocol):
    def target(self, deployment_id: str) -> DeploymentTarget:
        """GetDeployment -> what is deployed (ECS: with the test endpoint resolved when possible)."""
        ...


class StatusReporter(Protocol):
    def report(self, deployment_id: str, execution_id: str, status: HookStatus) -> ReportResult:
        """PutLifecycleEventHookExecutionStatus. Raises on anything but 'already completed'."""
        ...


@dataclass(frozen=True)
class RawChecks:
    source: str  # where they came from, for messages: "ssm:/release-train/checks/my-fn"
    text: str


class ChecksSource(Protocol):
    def load(self, checks_key: str) -> RawChecks | None:
        """The declared checks for a target, or None when none are declared."""
        ...


class LambdaInvoker(Protocol):
    def invoke(self, function_name: str, qualifier: str, payload: bytes, timeout_s: float) -> InvokeObservation: ...


class HttpRequester(Protocol):
    def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> HttpObservation: ...


class ExpressExecutor(Protocol):
    def start_sync(self, state_machine_arn: str, input_json: str, timeout_s: float) -> ExpressObservation: ...


# ---------------------------------------------------------------------------------------------------------------
# Request / outcome
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HookRequest:
    deployment_id: str
    execution_id: str
    phase: HookPhase


@dataclass(frozen=True)
class HookOutcome:
    deployment_id: str
    execution_id: str
    phase: HookPhase
    status: HookStatus
    report: ReportResult
    reasons: tuple[str, ...]
    results: tuple[CheckResult, ...]
    target: str | None
    duration_ms: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the handler returns it and the idempotency record stores it."""
        return {
            "deploymentId": self.deployment_id,
            "lifecycleEventHookExecutionId": self.execution_id,
            "phase": self.phase.value,
            "status": self.status.value,
            "report": self.report.value,
            "reasons": list(self.reasons),
            "target": self.target,
            "durationMs": self.duration_ms,
            "checks": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "outcome": r.outcome.value,
                    "durationMs": r.duration_ms,
                    "reasons": list(r.reasons),
                }
                for r in self.results
            ],
        }


class CheckTimedOut(Exception):
    """A check used up its allowance (its timeout, or what was left of the hook's budget)."""


# ---------------------------------------------------------------------------------------------------------------
# Service
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TrafficHookService:
    deployments: DeploymentReader
    reporter: StatusReporter
    checks: ChecksSource
    invoker: LambdaInvoker
    http: HttpRequester
    express: ExpressExecutor
    clock_ms: Callable[[], float] = field(default=lambda: time.monotonic() * 1000)
    log: Any = field(default_factory=lambda: logging.getLogger(__name__))  # Powertools Logger in Lambda

    def handle(self, request: HookRequest, remaining_ms: float, safety_margin_ms: float) -> HookOutcome:
        """Never raises except when the status itself could not be reported (then the invocation must fail so
        Lambda's async retry tries again); every other problem becomes a Failed status with its reason."""
        started = self.clock_ms()
        budget = TimeBudget.start(started, remaining_ms, safety_margin_ms)
        target: DeploymentTarget | None = None
        try:
            target = self.deployments.target(request.deployment_id)
            verdict = self._evaluate(request.phase, target, budget)
        except InvalidInput as exc:
            verdict = Verdict.failed(str(exc))
        except Exception as exc:  # fail closed: any surprise is a Failed status, never a silent hook
            self.log.exception("traffic hook crashed before a verdict; reporting Failed")
            verdict = Verdict.failed(f"hook error: {type(exc).__name__}: {exc}")
        report = self.reporter.report(request.deployment_id, request.execution_id, verdict.status)
        return HookOutcome(
            deployment_id=request.deployment_id,
            execution_id=request.execution_id,
            phase=request.phase,
            status=verdict.status,
            report=report,
            reasons=verdict.reasons,
            results=verdict.results,
            target=_describe(target),
            duration_ms=round(self.clock_ms() - started, 1),
        )

    def _evaluate(self, phase: HookPhase, target: DeploymentTarget, budget: TimeBudget) -> Verdict:
        raw = self.checks.load(target.checks_key)
        if raw is None:
            # Fail closed: a target without declared checks was never validated (publish an empty list to opt out).
            return Verdict.failed(f"no checks declared for {target.checks_key!r} (missing check parameter)")
        suite = parse_check_suite(raw.text, raw.source)
        checks = suite.checks_for(phase)
        if not checks:
            self.log.info("no checks for this phase: succeeding", extra={"checks_source": raw.source})
        results: list[CheckResult] = []
        for check in checks:
            allowance_ms = budget.allowance_ms(self.clock_ms(), check.timeout_ms)
            if allowance_ms <= 0:
                results.append(not_run(check, CheckOutcome.TIMED_OUT, "time budget exhausted before the check ran"))
                continue
            results.append(self._run(check, suite, target, allowance_ms))
        return Verdict.of(results)

    def _run(
        self, check: InvokeCheck | HttpCheck | ExpressCheck, suite: CheckSuite, target: DeploymentTarget, ms: float
    ) -> CheckResult:
        timeout_s = ms / 1000
        started = self.clock_ms()
        try:
            if isinstance(check, InvokeCheck):
                if not isinstance(target, LambdaTarget):
                    raise InvalidInput(check.name, ["'invoke' checks need a Lambda deployment"])
                payload = json.dumps(check.payload).encode()
                invoked = _within(
                    timeout_s,
                    lambda: self.invoker.invoke(target.function_name, target.target_version, payload, timeout_s),
                )
                return judge_invoke(check, invoked)
            if isinstance(check, HttpCheck):
                url, headers, body = _http_request(check, suite, target)
                answered = _within(
                    timeout_s, lambda: self.http.request(check.request.method, url, headers, body, timeout_s)
                )
                return judge_http(check, answered)
            input_json = json.dumps(check.input)
            executed = _within(
                timeout_s, lambda: self.express.start_sync(check.state_machine_arn, input_json, timeout_s)
            )
            return judge_express(check, executed, self.clock_ms() - started)
        except CheckTimedOut:
            return not_run(check, CheckOutcome.TIMED_OUT, f"no answer within {ms:.0f} ms")
        except Exception as exc:
            return not_run(check, CheckOutcome.ERROR, f"{type(exc).__name__}: {exc}")


def _http_request(
    check: HttpCheck, suite: CheckSuite, target: DeploymentTarget
) -> tuple[str, dict[str, str], bytes | None]:
    request = check.request
    if request.url is not None:
        url = request.url
    else:
        base = target.base_url or suite.base_url  # ECS: the test listener wins over a declared base_url
        if base is None:
            raise InvalidInput(check.name, ["request.path needs a base_url (suite base_url or an ECS test listener)"])
        url = base.rstrip("/") + str(request.path)
        if isinstance(target, EcsTarget) and target.base_url is not None:
            # The check's host and path select a rule of the test listener, as ELBv2 would.
            host = request.host or _header(request.headers, "host") or urlsplit(base).hostname or ""
            host = host.split(":")[0]  # host-header conditions match the name, not a port
            problem = route_problem(target.listener_rules, host, urlsplit(url).path)
            if problem is not None:
                raise InvalidInput(check.name, [problem])
    headers = dict(request.headers)
    if request.host is not None:
        headers["Host"] = request.host  # the HTTP adapter also takes it as the TLS server name (SNI + verification)
    body: bytes | None = None
    if isinstance(request.body, str):
        body = request.body.encode()
    elif request.body is not None:
        body = json.dumps(request.body).encode()
        headers.setdefault("Content-Type", "application/json")
    return url, headers, body


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _within(timeout_s: float, call: Callable[[], T]) -> T:
    """Run `call` in a daemon thread and stop waiting after timeout_s.

    Adapters get the timeout too (HTTP and SDK read timeouts), but only this guarantees the budget: a hung socket
    must not make the hook miss its own report. A thread left behind is abandoned (Lambda freezes it).
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed back to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=run, name="hook-check", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise CheckTimedOut
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def _describe(target: DeploymentTarget | None) -> str | None:
    if target is None:
        return None
    if isinstance(target, LambdaTarget):
        return f"lambda:{target.function_name}:{target.alias} {target.current_version} -> {target.target_version}"
    task = f" task={target.service.task_definition}" if target.service else ""
    return f"ecs:{target.application_name}/{target.deployment_group_name}{task} test={target.base_url}"
