"""The events the Lambda handlers receive, as typed models: a malformed event fails with one InvalidEvent naming the
field, before any AWS call or ledger write.

Each model is what statemachines/release_train.asl.json passes (its Task's Parameters/Payload), or for
CleanupExecution the EventBridge "Step Functions Execution Status Change" event of the rule in template.yaml. Only the
fields a service reads are modelled. Bounds come from the schemas the values were made by: release ids from the
execution input, stage and service names from the fleet, and AWS's own limits (botocore's Step Functions model:
execution ARN 1-256, execution name 1-80, task token 1-2048, error 0-256, cause 0-32768 characters).

`extra` is decided per model by who builds it:
- "forbid" where the ASL names every key of the payload (a Task's Payload, the Pass states building a wave's
  results): a state machine version pins the function versions it calls (template.yaml `!Ref <Function>.Version`),
  so ASL and handler ship together and an unknown key is contract drift, caught by the sandbox tests, not ignored;
- "ignore" where AWS or the whole state shapes it: EventBridge events and Step Functions' error objects ({Error,
  Cause}) may gain fields at any time, and EvaluateGate gets the whole stage iteration (`"Payload.$": "$"`), which
  grows whenever a state upstream adds a ResultPath.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from pydantic_core import ErrorDetails

from release_train.domain.errors import ReleaseTrainError
from release_train.domain.fleet import NAME
from release_train.domain.scale import CHUNK_SIZE, MAX_SERVICES

# The pattern ExecutionInput.release_id (domain/release.py) accepts; generated ids ("2026-W48", "2026-W48-manual-x")
# match it too. tests/unit/test_malformed_events.py fails if the two drift apart.
RELEASE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# CodeBuild: "<project name>:<build uuid>"; project names are 2-150 characters (botocore's CodeBuild model).
BUILD_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{1,149}:[A-Za-z0-9-]{1,64}$"
EXECUTION_ARN = r"^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:execution:[^:\s]+:[^:\s]+$"
MAX_WAVE = 50  # Service.wave in domain/fleet.py: 1..50

ReleaseId = Annotated[str, Field(max_length=64, pattern=RELEASE_ID)]
StageName = Annotated[str, Field(max_length=63, pattern=NAME)]
ServiceName = Annotated[str, Field(max_length=63, pattern=NAME)]
# Strict: the ASL passes waves as JSON numbers (PlanService's `waves`), never as strings; "1" or 1.0 is a defect.
Wave = Annotated[int, Field(strict=True, ge=1, le=MAX_WAVE)]
# LoadWave's chunk numbers: 0-based, a wave of at most MAX_SERVICES in chunks of CHUNK_SIZE.
Chunk = Annotated[int, Field(strict=True, ge=0, le=MAX_SERVICES // CHUNK_SIZE)]
BuildId = Annotated[str, Field(max_length=256, pattern=BUILD_ID)]
ExecutionArn = Annotated[str, Field(max_length=256, pattern=EXECUTION_ARN)]
ErrorName = Annotated[str, Field(max_length=256)]
Cause = Annotated[str, Field(max_length=32768)]

# Values never echoed in an error message (anyone holding a task token can answer the approval).
_SECRET_FIELDS = frozenset({"task_token"})
_SHOWN_CHARS = 64


class InvalidEvent(ReleaseTrainError, ValueError):
    """A handler's event is malformed, or names a stage (or service) its release does not have. Raised before any
    write. Step Functions sees the class name: no Retry matches it (retrying the same event cannot help); the Catch
    States.ALL of RunStages and FinalizeRelease routes it to RecordFailure, which closes the release FAILED."""

    def __init__(self, event: str, problems: list[str]) -> None:
        self.event = event
        self.problems = problems
        super().__init__(f"{event} event is invalid: " + "; ".join(problems))


class _Payload(BaseModel):
    """A payload the ASL builds key by key: an unknown key means the ASL and the handler disagree."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    event_name: ClassVar[str]


class _AwsShaped(BaseModel):
    """Shaped by AWS or by the whole state: new fields may appear and are not ours to refuse."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- Step Functions Lambda tasks ------------------------------------------------------------------------------------


class PlanReleaseEvent(_Payload):
    """PlanRelease Payload: the execution input and the execution's id and name. The input is the user's document:
    PlanService validates it (InvalidInput, with its own messages); here it only has to be JSON."""

    event_name = "PlanRelease"
    input: JsonValue
    execution_arn: ExecutionArn
    execution_name: Annotated[str, Field(min_length=1, max_length=80)]


class LoadWaveEvent(_Payload):
    """The release's LoadWave (no `chunk`: may the wave start, in how many chunks) or BuildChunk's LoadChunk."""

    event_name = "LoadWave"
    release_id: ReleaseId
    stage: StageName
    wave: Wave
    chunk: Chunk | None = None


class BuildSucceeded(_Payload):
    """BuildDone: a .sync build task succeeds only when the build SUCCEEDED; any other end is BuildFailed."""

    service: ServiceName
    status: Literal["SUCCEEDED"]
    build_id: BuildId


class BuildFailed(_Payload):
    """BuildFailed's summary (RecordWave's `summarise_failure`): CodeBuild's verdict, its id if a build started, and
    a short reason. The whole cause never travels further than the summarising call."""

    service: ServiceName
    status: Literal["FAILED", "FAULT", "TIMED_OUT", "STOPPED"]
    error: Annotated[str, Field(max_length=1000)]
    build_id: BuildId | None = None


BuildResult = Annotated[BuildSucceeded | BuildFailed, Field(discriminator="status")]


class FailedBuild(_Payload):
    """The Build task's Catch output, as BuildFailed passes it: the cause is the build as JSON or an error message."""

    service: ServiceName
    error: ErrorName
    cause: Cause | None = None


class SummariseFailureEvent(_Payload):
    event_name = "RecordWave"
    release_id: ReleaseId
    stage: StageName
    wave: Wave
    chunk: Chunk
    failed: FailedBuild


class RecordChunkEvent(_Payload):
    event_name = "RecordWave"
    release_id: ReleaseId
    stage: StageName
    wave: Wave
    chunk: Chunk
    # BuildChunk's Map output: one item per build LoadChunk returned.
    results: Annotated[list[BuildResult], Field(min_length=1, max_length=CHUNK_SIZE)]


class ChunkSucceeded(_Payload):
    chunk: Chunk
    status: Literal["SUCCEEDED"]


class ChunkFailed(_Payload):
    chunk: Chunk
    status: Literal["FAILED"]
    error: ErrorName


ChunkResult = Annotated[ChunkSucceeded | ChunkFailed, Field(discriminator="status")]


class RecordWaveEvent(_Payload):
    event_name = "RecordWave"
    release_id: ReleaseId
    stage: StageName
    wave: Wave
    # BuildChunks' Map output: one item per chunk LoadWave returned.
    chunks: Annotated[list[ChunkResult], Field(min_length=1, max_length=MAX_SERVICES // CHUNK_SIZE + 1)]


def record_wave_model(event: object) -> type[SummariseFailureEvent | RecordChunkEvent | RecordWaveEvent]:
    """Which of RecordWave's three payloads this is: BuildFailed's has `failed`, RecordChunk's a `chunk` (and its
    `results`), the release's RecordWave neither (its `chunks`)."""
    keys = event.keys() if isinstance(event, dict) else ()
    if "failed" in keys:
        return SummariseFailureEvent
    return RecordChunkEvent if {"chunk", "results"} & set(keys) else RecordWaveEvent


class RequestApprovalEvent(_Payload):
    event_name = "RequestApproval"
    release_id: ReleaseId
    stage: StageName
    task_token: Annotated[str, Field(min_length=1, max_length=2048)]


class FinalizeReleaseEvent(_Payload):
    event_name = "FinalizeRelease"
    release_id: ReleaseId


class StepFunctionsError(_AwsShaped):
    """What a Catch puts at its ResultPath: {Error, Cause} (Cause may be absent)."""

    error: ErrorName = Field(alias="Error")
    cause: Cause | None = Field(default=None, alias="Cause")


class RecordFailureEvent(_Payload):
    """RecordFailure and RecordBlocked Payload."""

    event_name = "RecordFailure"
    release_id: ReleaseId
    outcome: Literal["BLOCKED", "FAILED"]
    error: StepFunctionsError
    execution_arn: ExecutionArn


class GateStage(_AwsShaped):
    """A stage of the plan (PlanService's output); the gate reads the rest from the pinned fleet."""

    name: StageName


class RunTestsResult(_AwsShaped):
    """RunTests' ResultSelector: {build_id, status}; the gate reads the build's reports."""

    build_id: BuildId


class EvaluateGateEvent(_AwsShaped):
    """The whole stage iteration (`"Payload.$": "$"`): tests after RunTests succeeded, tests_error after it failed,
    neither for a stage without a test project."""

    event_name: ClassVar[str] = "EvaluateGate"
    release_id: ReleaseId
    stage: GateStage
    tests: RunTestsResult | None = None
    tests_error: StepFunctionsError | None = None


# --- EventBridge ----------------------------------------------------------------------------------------------------


class ExecutionStatusChange(_AwsShaped):
    """The detail of "Step Functions Execution Status Change" (EventBridge events reference, aws.states). Only the
    statuses the rule matches: a SUCCEEDED execution must never be closed as FAILED by a misrouted event."""

    execution_arn: ExecutionArn = Field(alias="executionArn")
    status: Literal["ABORTED", "FAILED", "TIMED_OUT"]
    error: ErrorName | None = None
    cause: Cause | None = None


class CleanupExecutionEvent(EventBridgeModel):
    """The EventBridge envelope (Powertools' EventBridgeModel: version, id, account, time, region, resources...)."""

    event_name: ClassVar[str] = "CleanupExecution"
    source: Literal["aws.states"]
    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    detail: ExecutionStatusChange  # narrowed from RawDictOrModel


# --- parsing --------------------------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def parse_event(model: type[M], event: object) -> M:
    """The event as `model`, or one InvalidEvent listing every problem, each naming its field."""
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        raise InvalidEvent(
            str(getattr(model, "event_name", model.__name__)), [_problem(e) for e in exc.errors()]
        ) from None


def _problem(error: ErrorDetails) -> str:
    loc = [p for p in error["loc"] if p not in ("SUCCEEDED", "FAILED")]  # drop the union's tag from the path
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    kind, got = error["type"], error.get("input")
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{path or 'event'}: must be a JSON object (got {_json_type(got)})"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = str(ctx.get("discriminator", "status")).strip("'")
        expected = str(ctx.get("expected_tags", "'SUCCEEDED', 'FAILED'")).replace("'", "")
        shown = f" (got {ctx['tag']!r})" if kind == "union_tag_invalid" else " (missing)"
        return f"{path}.{field}: must be one of {expected}{shown}"
    if kind == "missing":
        return f"{path}: Field required"
    if kind == "extra_forbidden":
        return f"{path}: unknown field (the state machine does not pass it)"
    secret = bool(loc) and str(loc[-1]) in _SECRET_FIELDS
    return f"{path or 'event'}: {error['msg']} ({_shown(got, secret)})"


def _shown(value: object, secret: bool = False) -> str:
    if isinstance(value, str) and (secret or len(value) > _SHOWN_CHARS):
        return f"got a string of {len(value)} characters"
    if secret or isinstance(value, dict | list):
        return f"got {_json_type(value)}"
    return f"got {value!r}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "an object" if isinstance(value, dict) else type(value).__name__
