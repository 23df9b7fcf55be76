"""Traffic-hook checks: the declared checks, how a check's observation is judged, and the hook's time budget.

Pure: no boto3, no os.environ, no Powertools. Adapters observe (invoke, request, execute); this module decides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from release_train.domain.errors import InvalidInput

JsonObject = dict[str, JsonValue]


class HookPhase(StrEnum):
    """Which hook runs: the suite holds one list of checks per phase."""

    PRE_TRAFFIC = "pre_traffic"
    POST_TRAFFIC = "post_traffic"


class HookStatus(StrEnum):
    """The only two values PutLifecycleEventHookExecutionStatus accepts from a hook."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class CheckOutcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ERROR = "error"  # the check could not run (AWS error, connection refused...): fails the hook too


# ---------------------------------------------------------------------------------------------------------------
# Declared checks (the JSON a service publishes, e.g. in SSM /release-train/checks/<function-name>)
# ---------------------------------------------------------------------------------------------------------------


class _Model(BaseModel):
    # Unknown keys are typos until proven otherwise: reject them so a check is never silently skipped.
    model_config = ConfigDict(extra="forbid", frozen=True)


class InvokeExpect(_Model):
    status_code: int | None = None  # compared with the response payload's "statusCode" (API Gateway proxy shape)
    json_subset: JsonValue | None = None  # must be contained in the response payload
    body_json_subset: JsonValue | None = None  # must be contained in json.loads(payload["body"])
    max_duration_ms: int | None = Field(default=None, gt=0)


class InvokeCheck(_Model):
    """Invoke the deployment's target version (Qualifier = TargetVersion) and judge the response."""

    kind: Literal["invoke"]
    name: str = Field(min_length=1, max_length=128)
    payload: JsonValue = Field(default_factory=dict)
    expect: InvokeExpect = Field(default_factory=InvokeExpect)
    timeout_ms: int | None = Field(default=None, gt=0)


class HttpRequest(_Model):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    url: str | None = Field(default=None, pattern=r"^https?://")
    path: str | None = Field(default=None, pattern=r"^/")
    # The name the service answers to, e.g. orders.example.com: sent as the Host header (so listener rules that
    # route by host select the service's rule), as TLS SNI, and the name the certificate is verified against. An
    # HTTPS test listener serves the service's certificate, never one for the load balancer's DNS name.
    host: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$",
    )
    headers: dict[str, str] = Field(default_factory=dict)
    body: JsonValue | None = None  # a string is sent as is; anything else as JSON

    @model_validator(mode="after")
    def _url_xor_path(self) -> HttpRequest:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of 'url' (absolute) or 'path' (joined to the suite's base_url)")
        if self.host is not None and any(k.lower() == "host" for k in self.headers):
            raise ValueError("give the host once: 'host' (also used for TLS) instead of a Host header")
        return self


class HttpExpect(_Model):
    status: int = Field(default=200, ge=100, le=599)
    json_subset: JsonValue | None = None
    max_latency_ms: int | None = Field(default=None, gt=0)


class HttpCheck(_Model):
    kind: Literal["http"]
    name: str = Field(min_length=1, max_length=128)
    request: HttpRequest
    expect: HttpExpect = Field(default_factory=HttpExpect)
    timeout_ms: int | None = Field(default=None, gt=0)


class ExpressExpect(_Model):
    output_json_subset: JsonValue | None = None


class ExpressCheck(_Model):
    """StartSyncExecution of an Express state machine; passes iff the execution SUCCEEDED (and output matches)."""

    kind: Literal["stepfunctions-express"]
    name: str = Field(min_length=1, max_length=128)
    state_machine_arn: str = Field(pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_.:-]+$")
    input: JsonValue = Field(default_factory=dict)
    expect: ExpressExpect = Field(default_factory=ExpressExpect)
    timeout_ms: int | None = Field(default=None, gt=0)


Check = Annotated[InvokeCheck | HttpCheck | ExpressCheck, Field(discriminator="kind")]


class CheckSuite(_Model):
    """Everything a service declares for one deployment target (a function, or an ECS deployment group)."""

    version: Literal[1] = 1
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    pre_traffic: list[Check] = Field(default_factory=list, max_length=20)
    post_traffic: list[Check] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _unique_names(self) -> CheckSuite:
        for phase in HookPhase:
            names = [c.name for c in self.checks_for(phase)]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{phase.value}: duplicate check names {duplicates}")
        return self

    def checks_for(self, phase: HookPhase) -> list[InvokeCheck | HttpCheck | ExpressCheck]:
        return list(self.pre_traffic if phase is HookPhase.PRE_TRAFFIC else self.post_traffic)


def parse_check_suite(raw: str, source: str) -> CheckSuite:
    """Parse and validate a suite; every problem names its field path (`pre_traffic.0.expect.status_code: ...`)."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(source, [f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from exc
    try:
        return CheckSuite.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(source, [_describe(err) for err in exc.errors()]) from exc


def _describe(err: Any) -> str:
    path = ".".join(str(part) for part in err["loc"]) or "(root)"
    return f"{path}: {err['msg']}"


# ---------------------------------------------------------------------------------------------------------------
# Observations (what adapters saw) and results (what the domain decided)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvokeObservation:
    function_error: str | None  # the X-Amz-Function-Error header: "Unhandled" / "Handled"
    payload: bytes
    duration_ms: float
    executed_version: str | None = None


@dataclass(frozen=True)
class HttpObservation:
    status: int
    body: bytes
    latency_ms: float


@dataclass(frozen=True)
class ExpressObservation:
    status: str  # SUCCEEDED | FAILED | TIMED_OUT
    output: str | None
    error: str | None
    cause: str | None


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: str
    outcome: CheckOutcome
    duration_ms: float
    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.outcome is CheckOutcome.PASSED


def _result(check: InvokeCheck | HttpCheck | ExpressCheck, duration_ms: float, reasons: list[str]) -> CheckResult:
    outcome = CheckOutcome.FAILED if reasons else CheckOutcome.PASSED
    return CheckResult(check.name, check.kind, outcome, round(duration_ms, 1), tuple(reasons))


def judge_invoke(check: InvokeCheck, seen: InvokeObservation) -> CheckResult:
    reasons: list[str] = []
    text = seen.payload.decode("utf-8", errors="replace")
    if seen.function_error:
        reasons.append(f"function error ({seen.function_error}): {text[:500]}")
        return _result(check, seen.duration_ms, reasons)
    expect = check.expect
    if expect.max_duration_ms is not None and seen.duration_ms > expect.max_duration_ms:
        reasons.append(f"took {seen.duration_ms:.0f} ms, more than max_duration_ms {expect.max_duration_ms}")
    needs_json = expect.status_code is not None or expect.json_subset is not None or expect.body_json_subset is not None
    if not needs_json:
        return _result(check, seen.duration_ms, reasons)
    payload, problem = _loads(text, "response payload")
    if problem:
        return _result(check, seen.duration_ms, [*reasons, problem])
    if expect.status_code is not None:
        actual = payload.get("statusCode") if isinstance(payload, dict) else None
        if actual != expect.status_code:
            reasons.append(f"statusCode is {actual!r}, expected {expect.status_code}")
    if expect.json_subset is not None:
        reasons += json_subset_mismatches(expect.json_subset, payload, "$")
    if expect.body_json_subset is not None:
        raw_body = payload.get("body") if isinstance(payload, dict) else None
        if not isinstance(raw_body, str):
            reasons.append("response payload has no string 'body' to compare body_json_subset with")
        else:
            body, problem = _loads(raw_body, "response body")
            reasons += [problem] if problem else json_subset_mismatches(expect.body_json_subset, body, "$.body")
    return _result(check, seen.duration_ms, reasons)


def judge_http(check: HttpCheck, seen: HttpObservation) -> CheckResult:
    reasons: list[str] = []
    expect = check.expect
    if seen.status != expect.status:
        reasons.append(f"HTTP {seen.status}, expected {expect.status}")
    if expect.max_latency_ms is not None and seen.latency_ms > expect.max_latency_ms:
        reasons.append(f"latency {seen.latency_ms:.0f} ms, more than max_latency_ms {expect.max_latency_ms}")
    if expect.json_subset is not None:
        body, problem = _loads(seen.body.decode("utf-8", errors="replace"), "response body")
        reasons += [problem] if problem else json_subset_mismatches(expect.json_subset, body, "$")
    return _result(check, seen.latency_ms, reasons)


def judge_express(check: ExpressCheck, seen: ExpressObservation, duration_ms: float) -> CheckResult:
    if seen.status != "SUCCEEDED":
        detail = ": ".join(part for part in (seen.error, seen.cause) if part)
        return _result(check, duration_ms, [f"execution {seen.status}" + (f" ({detail})" if detail else "")])
    reasons: list[str] = []
    if check.expect.output_json_subset is not None:
        output, problem = _loads(seen.output or "null", "execution output")
        reasons += [problem] if problem else json_subset_mismatches(check.expect.output_json_subset, output, "$")
    return _result(check, duration_ms, reasons)


def not_run(check: InvokeCheck | HttpCheck | ExpressCheck, outcome: CheckOutcome, reason: str) -> CheckResult:
    return CheckResult(check.name, check.kind, outcome, 0.0, (reason,))


def _loads(text: str, what: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except json.JSONDecodeError:
        return None, f"{what} is not JSON: {text[:200]!r}"


def json_subset_mismatches(expected: Any, actual: Any, path: str) -> list[str]:
    """Where `actual` fails to contain `expected`.

    Objects: every expected key must be present and match (extra actual keys are fine).
    Arrays: same length, element by element (order matters: a subset of a list is ambiguous).
    Scalars: equal, and of the same JSON type (True is not 1).
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {_json_type(actual)}"]
        problems: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            else:
                problems += json_subset_mismatches(value, actual[key], f"{path}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: expected an array, got {_json_type(actual)}"]
        if len(expected) != len(actual):
            return [f"{path}: expected {len(expected)} items, got {len(actual)}"]
        return [
            p
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for p in json_subset_mismatches(e, a, f"{path}[{i}]")
        ]
    if _json_type(expected) != _json_type(actual) or expected != actual:
        return [f"{path}: expected {json.dumps(expected)}, got {json.dumps(actual, default=str)[:200]}"]
    return []


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# ---------------------------------------------------------------------------------------------------------------
# Time budget
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeBudget:
    """The hook's time for checks: the Lambda's remaining time minus a margin kept for reporting the status.

    Times are in milliseconds on a monotonic clock the caller supplies, so tests need no sleeping.
    """

    started_at_ms: float
    total_ms: float

    @classmethod
    def start(cls, now_ms: float, remaining_ms: float, safety_margin_ms: float) -> TimeBudget:
        return cls(started_at_ms=now_ms, total_ms=max(0.0, remaining_ms - safety_margin_ms))

    def remaining_ms(self, now_ms: float) -> float:
        return max(0.0, self.total_ms - (now_ms - self.started_at_ms))

    def allowance_ms(self, now_ms: float, requested_ms: float | None) -> float:
        """What one check may use: its own timeout if it has one, never more than what is left."""
        left = self.remaining_ms(now_ms)
        return left if requested_ms is None else min(left, float(requested_ms))


@dataclass(frozen=True)
class Verdict:
    status: HookStatus
    reasons: tuple[str, ...]
    results: tuple[CheckResult, ...] = field(default=())

    @classmethod
    def of(cls, results: list[CheckResult]) -> Verdict:
        failed = [r for r in results if not r.passed]
        reasons = tuple(f"{r.name}: {'; '.join(r.reasons)}" for r in failed)
        return cls(HookStatus.FAILED if failed else HookStatus.SUCCEEDED, reasons, tuple(results))

    @classmethod
    def failed(cls, reason: str, results: tuple[CheckResult, ...] = ()) -> Verdict:
        return cls(HookStatus.FAILED, (reason,), results)
